"""The schedule plugin's pure parts: entries validated, next times computed, the timetable. Due entries
fired by a real queen: tests/e2e/test_schedule.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apiary.plugins import schedule
from apiary.plugins.api import ConfigProblem, check_config
from apiary.plugins.schedule import Entry, Timetable, next_cron, parse_duration, parse_entry


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- pure: parsing and times ------------------------------------------------------------------

def test_cron_next_time_is_the_next_match_strictly_after_now_in_the_time_zone() -> None:
    assert iso(next_cron("*/15 * * * *", "UTC", at("2024-03-01 12:07:30"))) == "2024-03-01 12:15:00"
    assert iso(next_cron("*/15 * * * *", "UTC", at("2024-03-01 12:15:00"))) == "2024-03-01 12:30:00"
    assert iso(next_cron("0 3 * * 1-5", "UTC", at("2024-03-01 12:00:00"))) == "2024-03-04 03:00:00"  # Fri -> Mon
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    assert iso(next_cron("0 9 * * *", "Europe/Paris", at("2024-03-01 12:00:00"))) == "2024-03-02 08:00:00"
    assert iso(next_cron("0 9 * * *", "Europe/Paris", at("2024-07-01 12:00:00"))) == "2024-07-02 07:00:00"
    assert iso(next_cron("@daily", "UTC", at("2024-03-01 12:00:00"))) == "2024-03-02 00:00:00"


def test_entries_are_parsed_with_defaults() -> None:
    entry = parse_entry({"cron": "*/15  * * * *"}, "schedules[0]", "Europe/Paris")
    assert (entry.spec, entry.cron, entry.every, entry.timezone, entry.branch, entry.type, entry.parameters) == (
        "*/15 * * * *", "*/15  * * * *", None, "Europe/Paris", None, "TEST", {})
    entry = parse_entry({"every": "1h30m", "branch": "nightly", "type": "DEPLOY", "parameters": {"N": 3},
                         "timezone": "UTC"}, "schedules[1]")
    assert (entry.spec, entry.every, entry.branch, entry.type, entry.parameters) == (
        "every 1h30m", 5400.0, "nightly", "DEPLOY", {"N": "3"})
    assert parse_entry({"every": 45}, "s").spec == "every 45s"
    assert [parse_duration(v) for v in ("1s", "2.5s", "10m", "1h", 90)] == [1, 2.5, 600, 3600, 90]


@pytest.mark.parametrize(("entry", "field", "words"), [
    ({"cron": "61 * * * *"}, "schedules[0].cron", "not a cron expression"),
    ({"cron": "* * * *"}, "schedules[0].cron", "5 fields"),
    ({"cron": "* * * * * *"}, "schedules[0].cron", "5 fields"),
    ({"cron": 15}, "schedules[0].cron", "not a cron expression"),
    ({"every": "0.5s"}, "schedules[0].every", "at least 1 s"),
    ({"every": "soon"}, "schedules[0].every", "not a duration"),
    ({"cron": "* * * * *", "every": "1m"}, "schedules[0]", "either cron"),
    ({"branch": "main"}, "schedules[0]", "either cron"),
    ({"every": "1m", "when": "now"}, "schedules[0].when", "unknown setting"),
    ({"every": "1m", "type": "BUILD"}, "schedules[0].type", "TEST, DEPLOY, TEST_DEPLOY"),
    ({"every": "1m", "timezone": "Mars/Olympus"}, "schedules[0].timezone", "unknown time zone"),
    ({"every": "1m", "parameters": {"A-B": "x"}}, "schedules[0].parameters.A-B", "not a parameter name"),
    ({"every": "1m", "parameters": {"A": ["x"]}}, "schedules[0].parameters.A", "string"),
    ("every minute", "schedules[0]", "mapping"),
])
def test_a_bad_entry_is_refused_naming_its_field(entry: Any, field: str, words: str) -> None:
    with pytest.raises(ConfigProblem) as err:
        check_config(schedule.config_schema, {"schedules": [entry]}, schedule)
    assert err.value.field == field and words in err.value.problem


def test_the_config_needs_entries_and_a_known_time_zone() -> None:
    for config, field in [({}, "schedules"), ({"schedules": []}, "schedules"),
                          ({"schedules": [{"every": "1m"}], "timezone": "Nowhere"}, "timezone")]:
        with pytest.raises(ConfigProblem) as err:
            check_config(schedule.config_schema, config, schedule)
        assert err.value.field == field
    ok = check_config(schedule.config_schema, {"schedules": [{"every": "1m"}]}, schedule)
    assert ok == {"schedules": [{"every": "1m"}], "timezone": "UTC"}


def test_the_timetable_fires_due_entries_once_and_makes_up_no_backlog() -> None:
    every = Entry(spec="every 10s", every=10.0)
    cron = Entry(spec="*/15 * * * *", cron="*/15 * * * *")
    table, t0 = Timetable(), at("2024-03-01 12:07:30")
    assert table.due([("a", every), ("a", cron)], t0) == []  # first seen: times set, nothing fired
    assert sorted(iso(t) for t in table.next.values()) == ["2024-03-01 12:07:40", "2024-03-01 12:15:00"]
    assert table.sleep(t0) == 1.0
    assert table.sleep(t0 + 9.5) == pytest.approx(0.5)

    assert table.due([("a", every), ("a", cron)], t0 + 9) == []
    assert table.due([("a", every), ("a", cron)], t0 + 10.3) == [("a", every, t0 + 10)]
    assert table.next[("a", every.key)] == t0 + 20  # the rhythm is kept when on time

    # A stall of an hour: each entry fires once, then its next time is after now.
    late = t0 + 3600
    fired = table.due([("a", every), ("a", cron)], late)
    assert sorted(e.spec for _, e, _ in fired) == ["*/15 * * * *", "every 10s"]
    assert table.next[("a", every.key)] == late + 10
    assert iso(table.next[("a", cron.key)]) == "2024-03-01 13:15:00"

    # An entry no longer given is forgotten; given again, it starts afresh.
    assert table.due([("a", cron)], late + 1) == [] and list(table.next) == [("a", cron.key)]
    assert table.due([("a", cron), ("b", every)], late + 2) == []
    assert table.next[("b", every.key)] == late + 12
