"""Debug shells' rules (apiary.core.debug), as tables: the pipeline key, who may open a shell, when a job has none,
when an open shell ends, and how a session is recorded."""

from __future__ import annotations

import pytest

from apiary.core import debug
from apiary.core.errors import InputError
from apiary.core.pipeline import PipelineError, load_pipeline

STAGES = "stages: [{name: s, steps: [make]}]\n"


@pytest.mark.parametrize(("text", "want"), [
    ("debug: {keep: true}", {"keep": True, "idle": 900.0, "total": 3600.0}),
    ("debug: {keep: false, idle: 5m, total: 2h}", {"keep": False, "idle": 300.0, "total": 7200.0}),
    ("debug: {idle: 90}", {"keep": False, "idle": 90.0, "total": 3600.0}),
])
def test_the_key(text: str, want: dict) -> None:
    assert load_pipeline(text + "\n" + STAGES)["debug"] == want


def test_no_key_no_debug() -> None:
    assert "debug" not in load_pipeline(STAGES)


@pytest.mark.parametrize(("text", "error"), [
    ("debug: true", ".apiary.yml, line 1: debug: must be a mapping like {keep: true}, got true"),
    ("debug: {keep: 1}", "debug.keep: must be true or false"),
    ("debug: {kept: true}", "debug.kept: unknown key (allowed: idle, keep, total)"),
    ("debug: {idle: 5h}", "debug.idle: at most 4 h"),
    ("debug: {total: 9h}", "debug.total: at most 8 h"),
    ("debug: {idle: 0}", "debug.idle: must be more than zero"),
    ("debug: {idle: soon}", "debug.idle: 'soon' is not a duration"),
    ("debug: {idle: 30m, total: 10m}", "debug.idle: must not be longer than debug.total"),
])
def test_bad_keys_are_refused_naming_the_field(text: str, error: str) -> None:
    with pytest.raises(PipelineError) as caught:
        load_pipeline(text + "\n" + STAGES)
    assert error in str(caught.value)


@pytest.mark.parametrize(("role", "needed", "may"), [
    ("admin", "admin", True), ("member", "admin", False), (None, "admin", False),
    ("admin", "member", True), ("member", "member", True), (None, "member", False),
])
def test_who_may(role: str | None, needed: str, may: bool) -> None:
    assert debug.role_allows(role, needed) is may


NOW = 10_000.0
FAILED = {"_id": "J1", "status": "failed", "drone": "d1", "finished": NOW - 60,
          "pipeline": {"debug": {"keep": True, "idle": 900.0, "total": 3600.0}}}


@pytest.mark.parametrize(("change", "role", "open_", "connected", "why"), [
    ({}, "admin", 0, True, None),
    ({}, "member", 0, True, "a debug shell needs the admin role; a member may not open one"),
    ({}, None, 0, True, "someone not signed in may not open one"),
    ({"status": "passed"}, "admin", 0, True, "job J1 is passed: a debug shell opens only in a failed job"),
    ({"status": "running"}, "admin", 0, True, "job J1 is running"),
    ({"pipeline": {}}, "admin", 0, True, "this job's workspace was not kept: an admin turns on the repository's `debug_keep`"),
    ({"finished": NOW - 3601}, "admin", 0, True, "this job's workspace is no longer kept: it went 1 s ago"),
    ({"finished": NOW - 3601}, "admin", 0, False, "no longer kept"),
    ({"finished": NOW - 7200}, "admin", 0, True, "it went 60 min ago"),
    ({}, "admin", 0, False, "drone d1 is gone"),
    ({"drone": None}, "admin", 0, True, "this job ran on no drone"),
    ({}, "admin", 1, True, "1 debug shell already open in this job (at most 1)"),
    ({"debug_sessions": {str(i): {} for i in range(100)}}, "admin", 0, True, "this job has had 100 debug shells"),
    ({"debug_sessions": {str(i): {} for i in range(99)}}, "admin", 0, True, None),
])
def test_refusals(change: dict, role: str | None, open_: int, connected: bool, why: str | None) -> None:
    found = debug.refusal({**FAILED, **change}, role, "admin", open_, 1, connected, NOW)
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found


def test_a_window_held_open_by_a_shell_still_caps_the_shells() -> None:
    late = {**FAILED, "finished": NOW - 4000}
    assert "already open" in (debug.refusal(late, "admin", "admin", 1, 1, True, NOW) or "")
    assert debug.refusal(late, "member", "member", 1, 2, True, NOW) is None


@pytest.mark.parametrize(("opened", "active", "now", "how"), [
    (0, 0, 10, None), (0, 0, 15, "idle"), (0, 50, 64, None), (0, 95, 100, "total"), (0, 99, 99.9, None),
])
def test_when_a_shell_ends(opened: float, active: float, now: float, how: str | None) -> None:
    assert debug.expired(opened, active, now, idle=15, total=100) == how


def test_next_check_is_the_nearer_limit() -> None:
    assert debug.next_check(0, 50, 60, idle=15, total=100) == 5
    assert debug.next_check(0, 95, 99, idle=15, total=100) == 1
    assert debug.next_check(0, 0, 200, idle=15, total=100) == 0.05


@pytest.mark.parametrize(("rows", "cols", "error"), [
    (24, 80, None), (1, 1, None), (500, 1000, None), (0, 80, "rows:"), (24, 1001, "cols:"), (True, 80, "rows:"),
    ("24", 80, "rows:"), (24, None, "cols:"),
])
def test_terminal_sizes(rows: object, cols: object, error: str | None) -> None:
    if error is None:
        assert debug.size(rows, cols) == (rows, cols)
    else:
        with pytest.raises(InputError, match=error):
            debug.size(rows, cols)


def test_a_session_as_recorded() -> None:
    entry = debug.record("abc", "ada", 100.0, "d1")
    assert entry["how"] is None and entry["ended"] is None
    done = debug.ended(entry, 130.5, "idle", "no input")
    assert (done["duration"], done["how"], done["detail"], done["user"]) == (30.5, "idle", "no input", "ada")
    assert debug.ended(entry, 90.0, "whatever")["how"] == "error"
    assert debug.ended(entry, 90.0, "closed")["duration"] == 0.0


@pytest.mark.parametrize(("pipeline", "repo", "want"), [
    ({}, {}, None),
    ({}, {"debug_keep": False}, None),
    ({}, {"debug_keep": True}, {"keep": True, "idle": 900.0, "total": 3600.0}),
    ({"debug": {"keep": False, "idle": 60.0, "total": 120.0}}, {"debug_keep": True},
     {"keep": True, "idle": 60.0, "total": 120.0}),
    ({"debug": {"keep": True, "idle": 60.0, "total": 120.0}}, {},
     {"keep": True, "idle": 60.0, "total": 120.0}),
])
def test_the_repository_setting_keeps_too(pipeline: dict, repo: dict, want: dict | None) -> None:
    debug.with_repository(pipeline, repo)
    assert pipeline.get("debug") == want
