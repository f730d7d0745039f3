"""Test sharding's pure part (apiary.core.shards), as tables: the key, the test list a tests command prints,
the names history knows tests by, and the levelled split (longest processing time first) against an even one."""

from __future__ import annotations

import pytest

from apiary.core.pipeline import PipelineError, load_pipeline, parse_pipeline
from apiary.core.shards import (
    MAX_NAME,
    MAX_OUTPUT_BYTES,
    MAX_SHARDS,
    MAX_TESTS,
    ShardsError,
    compile_shards,
    durations,
    even_split,
    expected,
    here,
    listing_name,
    makespan,
    parse_tests,
    plan,
    report_name,
    shard_env,
    shard_file,
    shard_name,
)

AT = "stages[0].shards"


@pytest.mark.parametrize("value, compiled", [
    (None, None),
    ({"count": 4, "tests": "pytest --collect-only -q"}, {"count": 4, "tests": "pytest --collect-only -q"}),
    ({"count": 1, "tests": "cat tests.txt"}, {"count": 1, "tests": "cat tests.txt"}),
    ({"count": MAX_SHARDS, "tests": "ls tests"}, {"count": MAX_SHARDS, "tests": "ls tests"}),
])
def test_the_key_compiles(value, compiled):
    assert compile_shards(value, AT) == compiled


@pytest.mark.parametrize("value, path, problem", [
    (4, AT, "must be a mapping"),
    ({"count": 0, "tests": "x"}, f"{AT}.count", "from 1 to 64, got 0"),
    ({"count": 65, "tests": "x"}, f"{AT}.count", "from 1 to 64, got 65"),
    ({"count": True, "tests": "x"}, f"{AT}.count", "from 1 to 64"),
    ({"count": 2.5, "tests": "x"}, f"{AT}.count", "got 2.5"),
    ({"count": "4", "tests": "x"}, f"{AT}.count", "got a string '4'"),
    ({"count": "three", "tests": "x"}, f"{AT}.count", "from 1 to 64, got a string 'three'"),  # the value named
    ({"count": "x" * 100, "tests": "x"}, f"{AT}.count", f"got a string '{'x' * 40}'…"),
    ({"tests": "x"}, f"{AT}.count", "from 1 to 64"),
    ({"count": 2}, f"{AT}.tests", "must be a command that lists the tests"),
    ({"count": 2, "tests": "  "}, f"{AT}.tests", "is empty: give the command that lists the tests"),
    ({"count": 2, "tests": ""}, f"{AT}.tests", "is empty"),
    ({"count": 2, "tests": ["pytest"]}, f"{AT}.tests", "got a list"),
    ({"count": 2, "tests": "x" * 5000}, f"{AT}.tests", "at most 4096 characters"),
    ({"count": 2, "tests": "x", "by": "time"}, f"{AT}.by", "unknown key 'by' (allowed: count, tests)"),
])
def test_a_bad_key_is_refused_naming_the_field(value, path, problem):
    with pytest.raises(ShardsError) as fault:
        compile_shards(value, AT)
    assert fault.value.path == path and problem in fault.value.problem


PYTEST_Q = """tests/test_a.py::test_one
tests/test_a.py::TestX::test_two[1-a b]
tests/sub/test_b.py::test_three

3 tests collected in 0.01s
"""
PYTEST_WARNINGS = """tests/test_a.py::test_one

=============================== warnings summary ===============================
tests/test_a.py:3
  DeprecationWarning: old
-- Docs: https://docs.pytest.org/en/stable/how-to/capture-warnings.html
1 test collected, 1 warning in 0.01s
"""


@pytest.mark.parametrize("output, names", [
    (PYTEST_Q, ["tests/test_a.py::test_one", "tests/test_a.py::TestX::test_two[1-a b]",
                "tests/sub/test_b.py::test_three"]),
    (PYTEST_WARNINGS, ["tests/test_a.py::test_one"]),
    ("tests/test_a.py: 2\ntests/test_b.py: 5\n", ["tests/test_a.py", "tests/test_b.py"]),  # pytest -qq
    ("test_one.sh\n\n# a comment\ntest_two.sh\ntest_one.sh\n", ["test_one.sh", "test_two.sh"]),  # once each
    ("  spaced.py  \r\nwindows.py\r\n", ["spaced.py", "windows.py"]),
    (b"bytes_too\n", ["bytes_too"]),
])
def test_the_list_is_read_from_what_the_command_printed(output, names):
    assert parse_tests(output) == names


@pytest.mark.parametrize("output, problem", [
    ("", "listed no tests"),
    ("\n\nno tests ran in 0.01s\n", "listed no tests"),
    ("a\n" + "x" * (MAX_NAME + 1) + "\n", "line 2 is longer than 1000 characters"),
    ("a\nb\x1b[31m\n", "line 2 holds control characters"),
    (b"a\n\xff\xfe\n", "line 2 holds control characters or is not UTF-8"),
    ("".join(f"t{i}\n" for i in range(MAX_TESTS + 1)), "listed more than 50,000 tests"),
    (b"x" * (MAX_OUTPUT_BYTES + 1), "printed more than 4 MiB"),
])
def test_an_unusable_list_says_why(output, problem):
    with pytest.raises(ShardsError, match=problem):
        parse_tests(output)


@pytest.mark.parametrize("name, reported", [
    ("tests/test_a.py::test_one", "tests.test_a.test_one"),
    ("tests/test_a.py::TestX::test_two[1-a/b::c]", "tests.test_a.TestX.test_two[1-a/b::c]"),
    ("test_top.py::test_x", "test_top.test_x"),
    ("tests/test_a.py", "tests.test_a"),
    ("suite.case", "suite.case"),  # a plain name is taken as the report's
    ("run_me.sh", "run_me.sh"),
])
def test_a_pytest_node_id_is_named_as_its_junit_report_names_it(name, reported):
    assert report_name(name) == reported


def test_durations_are_each_tests_median_over_past_jobs():
    runs = [{"test": "a", "seconds": 1.0}, {"test": "a", "seconds": 9.0}, {"test": "a", "seconds": 2.0},
            {"test": "b", "seconds": 4}, {"test": "b", "seconds": None}, {"test": "c", "seconds": -1},
            {"test": "d", "seconds": True}, {"seconds": 3}, {"test": "e", "seconds": float("nan")}]
    assert durations(runs) == {"a": 2.0, "b": 4.0}
    newest_first = [{"test": "a", "seconds": s} for s in (1, 1, 1, 2, 2, 50, 50, 50, 50)]
    assert durations(newest_first) == {"a": 1.0}  # its newest RUNS_PER_TEST runs: an old slow past forgotten


@pytest.mark.parametrize("tests, known, seconds, had", [
    # unknown tests get the median of the known ones in the list
    (["a", "b", "c", "new"], {"a": 1.0, "b": 2.0, "c": 9.0}, {"a": 1.0, "b": 2.0, "c": 9.0, "new": 2.0},
     {"a", "b", "c"}),
    # no history at all: a second each
    (["x", "y"], {}, {"x": 1.0, "y": 1.0}, set()),
    # a node id found under its report name; a file as its tests together
    (["t/test_a.py::test_1", "t/test_b.py"], {"t.test_a.test_1": 3.0, "t.test_b.test_2": 4.0,
                                                "t.test_b.test_3": 5.0, "t.test_bc.test_4": 100.0},
     {"t/test_a.py::test_1": 3.0, "t/test_b.py": 9.0}, {"t/test_a.py::test_1", "t/test_b.py"}),
    # near-zero records: every test counts at least MIN_SECONDS, unknown ones too
    (["a", "b", "new"], {"a": 0.0005, "b": 0.0}, {"a": 0.01, "b": 0.01, "new": 0.01}, {"a", "b"}),
])
def test_expected_seconds(tests, known, seconds, had):
    assert expected(tests, known) == (seconds, had)


@pytest.mark.parametrize("tests, known, count, shards", [
    # longest first, each to the least loaded shard; shards keep the listed order
    (["a", "b", "c", "d"], {"a": 5, "b": 4, "c": 3, "d": 2}, 2,
     [(["a", "d"], 7.0), (["b", "c"], 7.0)]),
    # equal times: by name, to the lower index first
    (["d", "c", "b", "a"], {}, 2, [(["c", "a"], 2.0), (["d", "b"], 2.0)]),
    # fewer tests than shards: the last ones empty
    (["a", "b"], {}, 4, [(["a"], 1.0), (["b"], 1.0), ([], 0.0), ([], 0.0)]),
    (["only"], {"only": 3}, 1, [(["only"], 3.0)]),
    # 7 quick tests on record (~0.5 ms) and 3 unknown: split by count, not 9 in one shard and 1 in the other
    (["k1", "k2", "k3", "k4", "k5", "k6", "k7", "u1", "u2", "u3"], {f"k{i}": 0.0005 for i in range(1, 8)}, 2,
     [(["k1", "k3", "k5", "k7", "u2"], 0.05), (["k2", "k4", "k6", "u1", "u3"], 0.05)]),
    # one long test alone, the rest levelled beside it
    (["s1", "s2", "s3", "long", "s4"], {"long": 10, "s1": 1, "s2": 1, "s3": 1, "s4": 1}, 2,
     [(["long"], 10.0), (["s1", "s2", "s3", "s4"], 4.0)]),
])
def test_plan_levels_the_expected_time(tests, known, count, shards):
    got = plan(tests, known, count)
    assert [(s["tests"], s["seconds"]) for s in got] == shards
    assert [s["index"] for s in got] == list(range(1, len(shards) + 1))
    assert sorted(t for s in got for t in s["tests"]) == sorted(tests)


def test_plan_is_deterministic_whatever_the_listed_order():
    tests = [f"t{i:03}" for i in range(200)]
    known = {t: (i * 7919) % 13 / 2 for i, t in enumerate(tests)}
    first = plan(tests, known, 5)
    again = plan(list(reversed(tests)), known, 5)
    assert [sorted(s["tests"]) for s in first] == [sorted(s["tests"]) for s in again]


def test_the_levelled_split_beats_an_even_split_on_skewed_durations():
    """A suite as suites are: most tests quick, a few slow ones side by side in one file."""
    tests = [f"tests/test_fast.py::test_{i:02}" for i in range(36)] + \
            [f"tests/test_slow.py::test_{i}" for i in range(4)]
    known = {report_name(t): 0.2 for t in tests[:36]} | {report_name(t): 30.0 for t in tests[36:]}
    levelled, even = plan(tests, known, 4), even_split(tests, known, 4)
    print(f"\n4 shards, 40 tests (36 x 0.2 s, 4 x 30 s): levelled makespan {makespan(levelled):.1f} s "
          f"{[s['seconds'] for s in levelled]}, even split by count {makespan(even):.1f} s "
          f"{[s['seconds'] for s in even]}")
    assert makespan(levelled) == 31.8  # each shard one slow test and 9 quick ones
    assert makespan(even) == 121.2  # the last shard holds every slow test (and 6 quick ones)
    assert sorted(len(s["tests"]) for s in levelled) == [10, 10, 10, 10]


def test_a_shard_gets_its_list_as_a_file_and_variables():
    assert shard_file(["a", "b c"]) == b"a\nb c\n"
    assert shard_env(2, 4, ".apiary/shard-tests.txt", 7) == {
        "APIARY_SHARD_FILE": ".apiary/shard-tests.txt", "APIARY_SHARD_INDEX": "2", "APIARY_SHARD_COUNT": "4",
        "APIARY_SHARD_TESTS": "7"}


SHARDED = """stages:
  - name: build
    steps: [make]
  - name: test
    needs: [build]
    shards: {count: 4, tests: "pytest --collect-only -q"}
    steps: ['pytest $(cat "$APIARY_SHARD_FILE")']
"""


def test_a_sharded_stage_is_listed_on_the_jobs_drone_then_run_as_shards_and_compiles_to_itself():
    compiled = load_pipeline(SHARDED + "  - name: report\n    needs: [test, build]\n    steps: [./report.sh]\n")
    names = [s["name"] for s in compiled["stages"]]
    shards = [shard_name("test", i, 4) for i in range(1, 5)]
    assert names == ["build", listing_name("test"), *shards, "report"]
    listing, first = compiled["stages"][1], compiled["stages"][2]
    assert listing["name"] == "test · list" and listing["shards"] == {"lists": "test"}
    assert listing["needs"] == ["build"] and [s["run"] for s in listing["steps"]] == ["pytest --collect-only -q"]
    assert listing["steps"][0]["title"] == "list the tests for 4 shards" and "remote" not in listing
    assert first["name"] == "test (shard 1 of 4)" and first["needs"] == ["build", "test · list"]
    assert first["shards"] == {"of": "test", "index": 1, "count": 4, "tests": "pytest --collect-only -q"}
    assert first["remote"] == {"kind": "shard", "unit": "test (shard 1 of 4)"}
    assert first["steps"][0]["run"] == 'pytest $(cat "$APIARY_SHARD_FILE")'
    assert compiled["stages"][-1]["needs"] == [*shards, "build"]  # needs: [test] is every shard
    assert "shards" not in compiled["stages"][0]
    assert parse_pipeline(compiled) == compiled


def test_too_many_shards_in_all_are_refused():
    text = "stages:\n" + "".join(f"  - name: t{i}\n    shards: {{count: 64, tests: x}}\n    steps: [x]\n"
                                  for i in range(4))
    with pytest.raises(PipelineError, match="line 3: stages.0..shards.count: the pipeline would have more than 256"):
        load_pipeline(text)


def test_a_listing_stage_takes_the_stages_env_and_when():
    compiled = load_pipeline(SHARDED.replace("needs: [build]", "needs: [build]\n    env: {DB: sqlite}\n"
                                                               "    when: {branch: main}"))
    listing, shard = compiled["stages"][1], compiled["stages"][2]
    assert listing["env"] == shard["env"] == {"DB": "sqlite"} and listing["when"] == shard["when"]


def test_a_fault_in_a_sharded_stage_names_the_stage_as_written():
    with pytest.raises(PipelineError) as fault:
        load_pipeline(SHARDED.replace("needs: [build]", "needs: [biuld]"))
    assert str(fault.value).startswith(".apiary.yml, line 5: stages[1].needs[0]: unknown stage 'biuld'")


@pytest.mark.parametrize("text, message", [
    (SHARDED.replace("count: 4", "count: 0"),
     ".apiary.yml, line 6: stages[1].shards.count: must be a whole number from 1 to 64, got 0"),
    (SHARDED.replace('tests: "pytest --collect-only -q"', "tests: [pytest]"),
     ".apiary.yml, line 6: stages[1].shards.tests: must be a command that lists the tests"),
    (SHARDED.replace("needs: [build]", "deploy: true"),
     ".apiary.yml, line 6: stages[1].shards: only a test stage without a matrix is sharded"),
    (SHARDED.replace("needs: [build]", "matrix: {py: ['3.11', '3.12']}"),
     ".apiary.yml, line 6: stages[1].shards: only a test stage without a matrix is sharded"),
    (SHARDED.replace("shards: {", "shards: {every: 2, "),
     ".apiary.yml, line 6: stages[1].shards.every: unknown key 'every'"),
])
def test_a_bad_shards_key_is_refused_when_the_job_is_triggered(text, message):
    with pytest.raises(PipelineError) as fault:
        load_pipeline(text)
    assert str(fault.value).startswith(message)


def test_apiary_run_lists_and_splits_in_a_folder_and_runs_the_shards_here():
    local = here(load_pipeline(SHARDED), "/venv/bin/python", "/tmp/run")
    build, listing, first, *_ = local["stages"]
    assert [s["run"] for s in listing["steps"]] == [
        "{ pytest --collect-only -q\n} > /tmp/run/s0.list",
        "/venv/bin/python -m apiary.drone.shardsplit /tmp/run/s0.list 4 /tmp/run/s0"]
    assert "remote" not in first and first["env"] == {
        "APIARY_SHARD_FILE": "/tmp/run/s0-1.txt", "APIARY_SHARD_INDEX": "1", "APIARY_SHARD_COUNT": "4"}
    assert build == load_pipeline(SHARDED)["stages"][0]


_SHARD = {"name": "test (shard 2 of 4)", "shards": {"of": "test", "index": 2, "count": 4, "tests": "ls"}}


@pytest.mark.parametrize("job, said", [
    ({"status": "running", "parent": {"number": 7}, "pipeline": {"stages": [_SHARD]}},
     "app#8 is shard 2 of 4 of job #7 (test)"),
    ({"status": "failed", "error": "its shard child jobs could not be made: stage test: the tests command listed no "
      "tests", "pipeline": {"stages": [{"name": "test · list", "shards": {"lists": "test"}}]}},
     ("app#8 failed and ran no shards: its shard child jobs could not be made: stage test: the tests command listed "
      "no tests")),
    ({"status": "cancelled", "pipeline": {"stages": [{"name": "test · list", "shards": {"lists": "test"}}]}},
     "app#8 cancelled and ran no shards"),
    ({"status": "running", "pipeline": {"stages": [{"name": "build"}]}}, "app#8 has no sharded stage"),
    ({"status": "running", "pipeline": {"stages": [{"name": "test · list", "shards": {"lists": "test"}}]}},
     "app#8 has no test shards yet: they are planned when its tests are listed"),
])
def test_apiary_shards_says_why_a_job_has_none(job, said):
    from apiary.cli.shards import no_plans
    assert no_plans("app#8", job) == said


def test_a_shards_list_from_the_queen_replaces_what_the_checkout_has(tmp_path) -> None:
    """A repository that commits a file (or a link) at the shard list's name does not choose what a shard runs:
    the queen's list (marked given) replaces it; where it cannot be written the job is told (it fails)."""
    from apiary.drone.restore import restore

    ws = tmp_path / "ws"
    (ws / ".apiary").mkdir(parents=True)
    (ws / ".apiary/shard-tests.txt").write_text("tests/test_f02.py\n")  # committed
    (tmp_path / "secret").write_text("kept")
    (ws / "linked.txt").symlink_to(tmp_path / "secret")
    (ws / "dir").mkdir()
    (ws / "plain").write_text("a file where a folder goes")
    given = [{"name": n, "data": b"tests/test_calc.py::test_add\n", "job": "P", "given": True}
             for n in (".apiary/shard-tests.txt", "linked.txt", "dir", "plain/list.txt")]
    refused: list[str] = []
    lines = restore(ws, [*given, {"name": "artifact.txt", "data": b"x", "job": "P"}], None, refused)
    assert [line.split(": ", 2)[-1].strip() for line in lines] == [
        "written (the checkout's copy replaced)", "written (the checkout's copy replaced)",
        "not written: the checkout has a folder dir", "not written: plain is not a folder", "restored"]
    assert (ws / ".apiary/shard-tests.txt").read_text() == "tests/test_calc.py::test_add\n"
    assert (tmp_path / "secret").read_text() == "kept" and not (ws / "linked.txt").is_symlink()
    assert refused == ["given file: could not write dir, this job's file from the queen: the checkout has a folder dir",
                       ("given file: could not write plain/list.txt, this job's file from the queen: plain is not a "
                        "folder")]
    assert lines[0].startswith("apiary: .apiary/shard-tests.txt (29 bytes), this job's file from the queen: ")
    # A checkout whose .apiary is a file: the job fails saying the shard list could not be written (not "artifacts").
    (other := tmp_path / "other").mkdir()
    (other / ".apiary").write_text("a file")
    refused = []
    restore(other, given[:1], None, refused)
    assert refused == [("shard list: could not write .apiary/shard-tests.txt, this job's file from the queen: "
                        ".apiary is not a folder")]


@pytest.mark.parametrize(("parent", "said"), [(False, ["reports: no file matches junit.xml\n"]), (True, [])])
def test_a_parent_whose_tests_ran_in_its_shards_does_not_say_it_found_no_report(tmp_path, parent: bool,
                                                                                 said: list[str]) -> None:
    import asyncio

    from apiary.drone.testreports import send_reports

    sent: list[tuple[object, dict]] = []
    asyncio.run(send_reports(tmp_path, {"reports": {"junit": ["junit.xml"]}}, {}, lambda m, b: sent.append((m, b)),
                             str, parent))
    assert [b["text"] for _, b in sent] == said


def test_a_shards_own_job_says_whose_shard_it_is() -> None:
    from apiary.core.shards import shard_of

    kid = {"parent": {"id": "P", "number": 40, "unit": "test (shard 2 of 4)"}, "pipeline": {"stages": [_SHARD]}}
    assert shard_of(kid) == {"job": "P", "number": 40, "stage": "test", "shard": 2, "count": 4}
    assert shard_of({**kid, "parent": None}) is None  # the sharded job itself
    assert shard_of({"parent": {"id": "P"}, "pipeline": {"stages": [{"name": "test (3.11)"}]}}) is None  # a cell
