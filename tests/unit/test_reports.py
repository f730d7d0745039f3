"""apiary.core.reports: the `reports:` key checked at trigger time, a report cut into job:report bodies, and
what part 0 records on the job."""

from __future__ import annotations

from pathlib import Path

import pytest

from apiary.core import reports
from apiary.core.junit import parse_junit
from apiary.core.pipeline import PipelineError, load_pipeline
from apiary.drone.testreports import _read_all

STAGES = "stages: [{name: t, steps: [make test]}]\n"


@pytest.mark.parametrize(("text", "compiled"), [
    ("", None),
    ("reports: {junit: ['**/junit*.xml', './target/*.xml']}", {"junit": ["**/junit*.xml", "target/*.xml"]}),
    ("reports: {junit: out/report.xml}", {"junit": ["out/report.xml"]}),
])
def test_reports_key_compiles(text: str, compiled: dict[str, list[str]] | None) -> None:
    assert load_pipeline(STAGES + text).get("reports") == compiled


@pytest.mark.parametrize(("text", "message"), [
    ("reports: {junit: ['/etc/*.xml']}",
     ".apiary.yml, line 2: reports.junit[0]: '/etc/*.xml' must stay inside the workspace (no leading '/', no '..')"),
    ("reports: {junit: ['out/../../x.xml']}",
     (".apiary.yml, line 2: reports.junit[0]: 'out/../../x.xml' must stay inside the workspace (no leading '/', "
     "no '..')")),
    ("reports: {junit: ['']}", ".apiary.yml, line 2: reports.junit[0]: must be a non-empty glob"),
    ("reports: {junit: []}", ".apiary.yml, line 2: reports.junit: must be a list of 1 to 20 globs"),
    ("reports: {tap: [x.tap]}", ".apiary.yml, line 2: reports.tap: unknown report kind 'tap' (kinds: junit)"),
    ("reports: [x.xml]", ".apiary.yml, line 2: reports: must be a mapping such as {junit: ['**/junit*.xml']}"),
    ("reports:\n  junit:\n    - ok.xml\n    - 7", ".apiary.yml, line 5: reports.junit[1]: must be a non-empty glob"),
])
def test_a_bad_reports_key_is_refused_naming_the_line_and_field(text: str, message: str) -> None:
    with pytest.raises(PipelineError) as caught:
        load_pipeline(STAGES + text)
    assert str(caught.value) == message


def test_a_report_is_sent_in_parts_of_chunk_tests_with_the_counts_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reports, "CHUNK_TESTS", 2)
    report = parse_junit(b'<testsuite><testcase name="a"/><testcase name="b"><failure/></testcase>'
                         b'<testcase name="c"/></testsuite>')
    bodies = reports.report_bodies(report, [{"path": "r.xml", "tests": 3}])
    assert [(b["part"], b["parts"], b["first"], [t["name"] for t in b["tests"]]) for b in bodies] == [
        (0, 2, 0, ["b", "a"]), (1, 2, 2, ["c"])]
    listed = {"failed": 1, "error": 0, "skipped": 0, "passed": 2}
    assert bodies[0]["counts"] == {**report.counts, "stored": 3, "listed": listed} and "counts" not in bodies[1]
    assert reports.report_fields(bodies[0]) == {"report": {"tests": 3, "passed": 2, "failed": 1, "errors": 0,
                                                           "skipped": 0, "stored": 3, "listed": listed,
                                                           "seconds": 0.0,
                                                           "files": [{"path": "r.xml", "tests": 3}]}}
    assert reports.report_fields(bodies[1]) == {}
    empty = reports.report_bodies(parse_junit(b"<testsuites/>"), [{"path": "e.xml", "tests": 0}])
    assert [(b["part"], b["parts"], b["tests"]) for b in empty] == [(0, 1, [])]


def test_what_a_drone_says_of_a_report_is_bounded_on_the_job() -> None:
    fields = reports.report_fields({"counts": {"tests": -1, "passed": True, "seconds": float("inf"), "x": 1},
                                    "files": [{"path": "p" * 9999, "error": "e" * 9999}, "junk", {"path": 3}]})
    assert fields == {"report": {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "stored": 0,
                                 "listed": {"failed": 0, "error": 0, "skipped": 0, "passed": 0},
                                 "seconds": 0.0, "files": [{"path": "p" * 400, "error": "e" * 500}]}}


@pytest.mark.parametrize(("counts", "line"), [
    ({"tests": 8, "passed": 3, "failed": 3, "errors": 1, "skipped": 1, "seconds": 1003.75},
     "tests: 8 (3 failed, 1 error, 1 skipped, 3 passed) in 1003.8 s"),
    ({"tests": 2, "passed": 2, "errors": 0, "seconds": 0.5}, "tests: 2 (2 passed) in 0.5 s"),
    ({"tests": 4, "errors": 4}, "tests: 4 (4 errors)"),
    ({"tests": 0, "seconds": 0}, "tests: 0 in 0.0 s"),
])
def test_the_terminal_line_of_a_reports_counts(counts: dict[str, float], line: str) -> None:
    assert reports.counts_line(counts) == line


def test_a_report_link_that_loops_is_named_and_skipped_and_the_other_reports_are_read(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "junit-ok.xml").write_text(
        '<testsuite name="s"><testcase classname="s" name="t1"/><testcase classname="s" name="t2"/></testsuite>')
    (tmp_path / "out" / "junit-loop.xml").symlink_to("junit-loop.xml")
    read = _read_all(tmp_path, ["**/junit*.xml"], {"**/junit*.xml"})
    assert read.report.counts["tests"] == 2
    assert {"path": "out/junit-loop.xml", "error": "a link that loops or leads nowhere"} in read.files
    assert any("out/junit-loop.xml skipped: a link that loops" in text for _, text in read.said)
