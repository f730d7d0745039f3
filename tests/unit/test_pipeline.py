"""The pipeline model: `.apiary.yml` and API data compile to one form, and every fault says where."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from apiary.core.errors import BadRequest, InputError
from apiary.core.pipeline import PipelineError, load_pipeline, parse_duration, parse_pipeline
from apiary.core.stages import blocked_stages, next_stages, resolve_parameters, runnable_stages

FULL_YAML = """\
env: {LANG: C.UTF-8, DEBUG: true, JOBS: 4, RATIO: 0.5}
parameters:
  GREETING: {default: hi, description: "How to greet"}
  TARGET: {required: true}
  VERBOSE: 1
timeout: 1h30m
output_timeout: 300
parallel: 2
artifacts: ["dist/*.whl", "reports/**/*.xml"]
plugins:
  - python
  - apiary-hello==1.0
  - {name: private, pip: "git+https://${TOKEN}@git.example.com/p.git", config: {level: 2}}
on_start: [echo starting]
on_success: [echo yay]
on_failure: [{run: ./collect-logs, title: Logs, ignore_exit_code: true}]
environment: [pip install -e .]
prepare: [make deps]
cleanup: [rm -rf build]
stages:
  - name: build
    env: {CC: gcc}
    steps:
      - run: make
        title: Build
      - make lint
    on_failure: [cat build.log]
  - name: unit tests
    needs: [build]
    steps:
      - run: |
          set -e
          pytest -q
        ignore_exit_code: true
  - name: publish
    deploy: true
    needs: [unit tests]
    steps: [twine upload dist/*]
"""


def step(run: str, title: str | None = None, ignore: bool = False) -> dict[str, Any]:
    return {"run": run, "title": title or run, "ignore_exit_code": ignore}


def no_hooks() -> dict[str, list[Any]]:
    return {"on_start": [], "on_success": [], "on_failure": []}


FULL_COMPILED = {
    "env": {"LANG": "C.UTF-8", "DEBUG": "true", "JOBS": "4", "RATIO": "0.5"},
    "parameters": {"GREETING": {"required": False, "default": "hi", "description": "How to greet"},
                   "TARGET": {"required": True, "default": None, "description": ""},
                   "VERBOSE": {"required": False, "default": "1", "description": ""}},
    "timeout": 5400.0,
    "output_timeout": 300.0,
    "parallel": 2,
    "artifacts": ["dist/*.whl", "reports/**/*.xml"],
    "plugins": [{"name": "python", "pip": None, "config": {}},
                {"name": "apiary-hello", "pip": "apiary-hello==1.0", "config": {}},
                {"name": "private", "pip": "git+https://${TOKEN}@git.example.com/p.git", "config": {"level": 2}}],
    "hooks": {"on_start": [step("echo starting")], "on_success": [step("echo yay")],
              "on_failure": [step("./collect-logs", "Logs", True)]},
    "phases": {"environment": [step("pip install -e .")], "prepare": [step("make deps")],
               "cleanup": [step("rm -rf build")]},
    "stages": [
        {"name": "build", "needs": [], "deploy": False, "env": {"CC": "gcc"},
         "steps": [step("make", "Build"), step("make lint")],
         "hooks": {**no_hooks(), "on_failure": [step("cat build.log")]}},
        {"name": "unit tests", "needs": ["build"], "deploy": False, "env": {},
         "steps": [step("set -e\npytest -q\n", "set -e", True)], "hooks": no_hooks()},
        {"name": "publish", "needs": ["unit tests"], "deploy": True, "env": {},
         "steps": [step("twine upload dist/*")], "hooks": no_hooks()},
    ],
}


def yaml_error(text: str) -> PipelineError:
    with pytest.raises(PipelineError) as err:
        load_pipeline(textwrap.dedent(text))
    return err.value


def stages(*specs: str) -> list[dict[str, Any]]:
    """Stages from "name<-need,need" specs, for the scheduling tests."""
    out = []
    for spec in specs:
        name, _, needs = spec.partition("<-")
        out.append({"name": name, "needs": needs.split(",") if needs else [], "deploy": False})
    return out


# -- compiling ------------------------------------------------------------------------------

def test_a_full_yaml_pipeline_compiles_to_the_stored_form() -> None:
    compiled = load_pipeline(FULL_YAML)
    assert compiled == FULL_COMPILED
    assert json.loads(json.dumps(compiled)) == compiled  # stored in the store, sent to drones


def test_compiling_a_compiled_pipeline_returns_it_unchanged() -> None:
    assert parse_pipeline(FULL_COMPILED) == FULL_COMPILED
    assert parse_pipeline(parse_pipeline({"stages": [{"name": "a", "steps": ["x"]}]})) == parse_pipeline(
        {"stages": [{"name": "a", "steps": ["x"]}]})


def test_a_minimal_pipeline_gets_the_defaults() -> None:
    assert parse_pipeline({"stages": [{"name": "t", "steps": ["make test"]}]}) == {
        "env": {}, "parameters": {}, "timeout": None, "output_timeout": None, "parallel": 4, "artifacts": [], "plugins": [],
        "hooks": no_hooks(), "phases": {"environment": [], "prepare": [], "cleanup": []},
        "stages": [{"name": "t", "needs": [], "deploy": False, "env": {}, "steps": [step("make test")],
                    "hooks": no_hooks()}]}


def test_steps_are_normalised_with_titles_from_the_first_line_at_most_80_characters() -> None:
    long = "echo " + "x" * 100
    compiled = parse_pipeline({"stages": [{"name": "t", "steps": [
        "make test", {"run": "ls", "title": "List"}, {"run": "\n  cd src  \nmake\n"}, long]}]})
    assert [(s["run"], s["title"]) for s in compiled["stages"][0]["steps"]] == [
        ("make test", "make test"), ("ls", "List"), ("\n  cd src  \nmake\n", "cd src"), (long, long[:80])]


def test_null_optional_keys_mean_their_defaults() -> None:
    compiled = load_pipeline("env:\ntimeout:\non_start:\nstages:\n  - name: a\n    needs:\n    steps: [x]\n")
    assert compiled["env"] == {} and compiled["timeout"] is None and compiled["hooks"]["on_start"] == []
    assert compiled["stages"][0]["needs"] == []


def test_yaml_anchors_and_merge_keys_are_followed() -> None:
    compiled = load_pipeline(textwrap.dedent("""\
        x-common: &common {CC: gcc, OPT: "2"}
        stages:
          - name: a
            env: {<<: *common, OPT: "3"}
            steps: [make]
        """).replace("x-common: &common", "env: &common"))
    assert compiled["env"] == {"CC": "gcc", "OPT": "2"}
    assert compiled["stages"][0]["env"] == {"CC": "gcc", "OPT": "3"}


@pytest.mark.parametrize(("value", "seconds"), [
    (None, None), (30, 30.0), (2.5, 2.5), ("45", 45.0), ("90s", 90.0), ("10m", 600.0), ("1h30m", 5400.0),
    ("1h", 3600.0), ("1m30s", 90.0), ("1.5h", 5400.0), (" 2m ", 120.0),
])
def test_durations_are_seconds_or_hours_minutes_seconds(value: Any, seconds: float | None) -> None:
    assert parse_duration(value, "timeout") == seconds


@pytest.mark.parametrize("value", ["", "10 minutes", "1d", "m", "30m1h", -5, 0, "0s", True, [1], float("inf")])
def test_bad_durations_are_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(InputError) as err:
        parse_duration(value, "output_timeout")
    assert err.value.field == "output_timeout" and str(err.value).startswith("output_timeout: ")


# -- errors from plain data (the API) -----------------------------------------------------

@pytest.mark.parametrize(("data", "field", "words"), [
    ([], "pipeline", "must be a mapping with 'stages'"),
    ({}, "pipeline.stages", "non-empty list of stages"),
    ({"stages": "x"}, "pipeline.stages", "non-empty list of stages"),
    ({"stages": [{"name": "", "steps": ["x"]}]}, "pipeline.stages[0].name", "letters, digits"),
    ({"stages": [{"name": "a/b", "steps": ["x"]}]}, "pipeline.stages[0].name", "letters, digits"),
    ({"stages": [{"name": "a"}]}, "pipeline.stages[0].steps", "non-empty list of steps"),
    ({"stages": [{"name": "a", "steps": []}]}, "pipeline.stages[0].steps", "non-empty list of steps"),
    ({"stages": [{"name": "a", "steps": [{"title": "no run"}]}]}, "pipeline.stages[0].steps[0].run",
     "non-empty command"),
    ({"stages": [{"name": "a", "steps": [{"run": "  "}]}]}, "pipeline.stages[0].steps[0].run", "non-empty command"),
    ({"stages": [{"name": "a", "steps": [{"run": "x", "title": 3}]}]}, "pipeline.stages[0].steps[0].title",
     "one-line string"),
    ({"stages": [{"name": "a", "steps": [{"run": "x", "title": "t" * 81}]}]}, "pipeline.stages[0].steps[0].title",
     "1 to 80 characters"),
    ({"stages": [{"name": "a", "steps": [{"run": "x", "ignore_exit_code": "yes"}]}]},
     "pipeline.stages[0].steps[0].ignore_exit_code", "true or false"),
    ({"stages": [{"name": "a", "steps": [7]}]}, "pipeline.stages[0].steps[0]", "command string"),
    ({"stages": [{"name": "a", "steps": ["x"]}], "extra": 1}, "pipeline.extra", "unknown key 'extra' (allowed: "),
    ({"stages": [{"name": "a", "steps": ["x"], "nedds": []}]}, "pipeline.stages[0].nedds", "unknown key"),
    ({"stages": [{"name": "a", "steps": [{"run": "x", "cmd": "y"}]}]}, "pipeline.stages[0].steps[0].cmd",
     "allowed: ignore_exit_code, merge_output, retry, run, timeout, title"),
    ({"stages": [{"name": "a", "steps": ["x"]}, {"name": "a", "steps": ["y"]}]}, "pipeline.stages[1].name",
     "stage 'a' appears twice"),
    ({"stages": [{"name": "a", "steps": ["x"], "deploy": "no"}]}, "pipeline.stages[0].deploy", "true or false"),
    ({"stages": [{"name": "a", "steps": ["x"], "needs": "b"}]}, "pipeline.stages[0].needs", "list of stage names"),
    ({"stages": [{"name": "a", "steps": ["x"], "needs": ["a"]}]}, "pipeline.stages[0].needs[0]",
     "needs form a cycle: a -> a"),
    ({"stages": [{"name": "a", "steps": ["x"]}, {"name": "b", "steps": ["x"], "needs": ["a", "a"]}]},
     "pipeline.stages[1].needs[1]", "listed twice"),
    ({"env": ["A=1"], "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.env", "must be a mapping"),
    ({"env": {"1A": "x"}, "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.env.1A", "variable name"),
    ({"env": {"A": None}, "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.env.A", "has no value: write '' for an empty one"),
    ({"stages": [{"name": "a", "steps": ["x"], "env": {"B-C": "x"}}]}, "pipeline.stages[0].env.B-C", "variable"),
    ({"parameters": {"bad name": {}}, "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.parameters.bad name",
     "parameter name"),
    ({"parameters": {"P": {"required": True, "default": "x"}}, "stages": [{"name": "a", "steps": ["x"]}]},
     "pipeline.parameters.P.default", "takes no default"),
    ({"parameters": {"P": {"requird": True}}, "stages": [{"name": "a", "steps": ["x"]}]},
     "pipeline.parameters.P.requird", "allowed: default, description, required"),
    ({"parameters": {"P": {"description": 5}}, "stages": [{"name": "a", "steps": ["x"]}]},
     "pipeline.parameters.P.description", "must be a string"),
    ({"parallel": 0, "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.parallel", "from 1 to 64"),
    ({"parallel": 65, "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.parallel", "from 1 to 64"),
    ({"parallel": True, "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.parallel", "from 1 to 64"),
    ({"timeout": "soon", "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.timeout", "not a duration"),
    ({"artifacts": "dist/*", "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.artifacts", "list of globs"),
    ({"artifacts": ["/etc/passwd"], "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.artifacts[0]", "inside"),
    ({"artifacts": ["../up/*"], "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.artifacts[0]", "inside"),
    ({"on_start": "echo", "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.on_start", "list of steps"),
    ({"cleanup": [{"run": ""}], "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.cleanup[0].run", "command"),
    ({"on_start": [], "hooks": {"on_start": []}, "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.on_start",
     "given twice"),
    ({"hooks": {"on_begin": []}, "stages": [{"name": "a", "steps": ["x"]}]}, "pipeline.hooks.on_begin",
     "unknown key"),
    ({"phases": {"prepare": ["ok", ""]}, "stages": [{"name": "a", "steps": ["x"]}]},
     "pipeline.phases.prepare[1].run", "non-empty command"),
])
def test_invalid_pipelines_name_the_field(data: Any, field: str, words: str) -> None:
    with pytest.raises(PipelineError) as err:
        parse_pipeline(data)
    assert err.value.field == field and str(err.value).startswith(field + ": ") and words in str(err.value)
    assert err.value.line is None and err.value.filename is None
    # Bad input, whoever gave it (the API answers 400, apiary run exits 2), but not an HTTP error of its own.
    assert isinstance(err.value, InputError) and not isinstance(err.value, BadRequest)
    assert (err.value.status, err.value.exit_code) == (400, 2)


def test_where_prefixes_the_field_of_plain_data() -> None:
    with pytest.raises(PipelineError) as err:
        parse_pipeline({"stages": []}, where="config.pipeline")
    assert err.value.field == "config.pipeline.stages" and err.value.path == "stages"


def test_an_unknown_need_names_the_stages_that_exist() -> None:
    with pytest.raises(PipelineError) as err:
        parse_pipeline({"stages": [{"name": "build", "steps": ["x"]}, {"name": "test", "steps": ["y"],
                                                                      "needs": ["biuld"]}]})
    assert str(err.value) == "pipeline.stages[1].needs[0]: unknown stage 'biuld' (stages: build, test)"


# -- errors from .apiary.yml: file, line and path --------------------------------------------

def test_an_unknown_need_is_refused_naming_file_line_and_path() -> None:
    err = yaml_error("""\
        stages:
          - name: build
            steps: [make]
          - name: test
            steps: [make test]
            needs:
              - biuld
        """)
    assert str(err) == ".apiary.yml, line 7: stages[1].needs[0]: unknown stage 'biuld' (stages: build, test)"
    assert (err.filename, err.line, err.path, err.field) == (".apiary.yml", 7, "stages[1].needs[0]",
                                                             "pipeline.stages[1].needs[0]")


def test_a_cycle_in_needs_is_refused_naming_the_cycle_and_line() -> None:
    err = yaml_error("""\
        stages:
          - name: a
            needs: [c]
            steps: [x]
          - name: b
            needs: [a]
            steps: [x]
          - name: c
            needs: [b]
            steps: [x]
        """)
    # a needs c needs b needs a: found where b needs a, and told from there
    assert str(err) == ".apiary.yml, line 6: stages[1].needs[0]: needs form a cycle: b -> a -> c -> b"


def test_an_unknown_key_is_refused_naming_it_the_allowed_keys_and_its_line() -> None:
    err = yaml_error("""\
        stages:
          - name: build
            steps: [make]
            nedds: [x]
        """)
    assert err.line == 4 and err.path == "stages[0].nedds"
    assert str(err) == (".apiary.yml, line 4: stages[0].nedds: unknown key 'nedds' (allowed: approval, deploy, env, hooks, "
                        "matrix, name, needs, on_failure, on_start, on_success, remote, shards, steps, when)")


def test_a_wrong_type_is_refused_at_the_line_of_its_value() -> None:
    err = yaml_error("""\
        parallel: 4
        stages:
          - name: build
            steps:
              - run: make
                ignore_exit_code: maybe
        """)
    assert str(err) == (".apiary.yml, line 6: stages[0].steps[0].ignore_exit_code: "
                        "must be true or false, got a string")


def test_a_missing_key_points_at_the_mapping_that_lacks_it() -> None:
    err = yaml_error("""\
        stages:
          - name: build
            steps: [make]
          - name: test
        """)
    assert (err.line, err.path) == (4, "stages[1].steps")


def test_a_duplicate_stage_is_refused_at_its_second_name() -> None:
    err = yaml_error("""\
        stages:
          - name: build
            steps: [make]
          - steps: [make again]
            name: build
        """)
    assert str(err) == ".apiary.yml, line 5: stages[1].name: stage 'build' appears twice (also stages[0])"


def test_a_bad_duration_is_refused_with_its_line() -> None:
    err = yaml_error("""\
        stages: [{name: a, steps: [x]}]
        timeout: 10 minutes
        """)
    assert err.line == 2 and err.path == "timeout" and "'10 minutes' is not a duration" in str(err)


def test_a_duplicate_yaml_key_is_refused_naming_both_lines() -> None:
    err = yaml_error("""\
        stages:
          - name: build
            steps: [make]
            steps: [make all]
        """)
    assert str(err) == ".apiary.yml, line 4: stages[0].steps: key 'steps' appears twice (first on line 3)"


def test_a_yaml_syntax_error_gives_the_line_of_the_yaml_error() -> None:
    err = yaml_error("""\
        stages:
          - name: build
            steps: [make
          - name: test
        """)
    assert err.filename == ".apiary.yml" and err.line == 4 and err.path == "" and err.field == "pipeline"
    assert str(err).startswith(".apiary.yml, line 4: not valid YAML: ")


def test_a_test_stage_may_not_need_a_deploy_stage() -> None:
    err = yaml_error("""\
        stages:
          - name: ship
            deploy: true
            steps: [deploy]
          - name: check
            needs: [ship]
            steps: [test]
        """)
    assert err.line == 6 and err.path == "stages[1].needs[0]"
    assert "test stage 'check' cannot need deploy stage 'ship'" in str(err)


def test_the_file_name_given_is_the_one_reported() -> None:
    with pytest.raises(PipelineError) as err:
        load_pipeline("stages: 3\n", "ci/apiary.yaml")
    assert str(err.value) == "ci/apiary.yaml, line 1: stages: must be a non-empty list of stages, got a number"


@pytest.mark.parametrize(("text", "words"), [
    ("", "empty"),
    ("- a\n- b\n", "must be a mapping with 'stages'"),
    ("stages: [{name: a, steps: [x]}]\n---\nstages: []\n", "not valid YAML"),
    ("env: {A: !!python/name:os.system x}\nstages: [{name: a, steps: [x]}]\n", "line 1"),
    ("a: &x [*x]\n", "alias"),
    ("stages: [{name: a, steps: [x]}]\nparallel: !!int abc\n", "line 2: parallel: cannot read this value"),
    ("? [a, b]\n: c\n", "plain value"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n", "more than"),
])
def test_unreadable_or_hostile_yaml_is_refused_plainly(text: str, words: str) -> None:
    with pytest.raises(PipelineError) as err:
        load_pipeline(text)
    assert str(err.value).startswith(".apiary.yml") and words in str(err.value)


# -- parameters ------------------------------------------------------------------------------

def test_parameters_take_the_given_values_then_the_defaults() -> None:
    pipeline = load_pipeline("parameters:\n  GREETING: {default: hi}\n  TARGET: {required: true}\n  EXTRA: {}\n"
                             "stages: [{name: a, steps: [x]}]\n")
    assert resolve_parameters(pipeline, {"TARGET": "prod"}) == {"GREETING": "hi", "TARGET": "prod"}
    assert resolve_parameters(pipeline, {"TARGET": "prod", "GREETING": "yo", "EXTRA": ""}) == {
        "GREETING": "yo", "TARGET": "prod", "EXTRA": ""}


def test_a_missing_required_parameter_is_refused() -> None:
    pipeline = parse_pipeline({"parameters": {"GREETING": {"default": "hi"}, "TARGET": {"required": True}},
                               "stages": [{"name": "a", "steps": ["x"]}]})
    with pytest.raises(InputError) as err:
        resolve_parameters(pipeline, {"GREETING": "yo"})
    assert err.value.field == "parameters.TARGET"
    assert str(err.value) == "parameters.TARGET: required by the pipeline, not given"


def test_an_undeclared_parameter_is_refused_naming_the_declared_ones() -> None:
    pipeline = parse_pipeline({"parameters": {"GREETING": {"default": "hi"}, "TARGET": {"required": True}},
                               "stages": [{"name": "a", "steps": ["x"]}]})
    with pytest.raises(InputError) as err:
        resolve_parameters(pipeline, {"TRAGET": "prod"})
    assert err.value.field == "parameters.TRAGET"
    assert str(err.value) == "parameters.TRAGET: not declared by the pipeline (declared: GREETING, TARGET)"
    with pytest.raises(InputError, match=r"declared: none"):
        resolve_parameters(parse_pipeline({"stages": [{"name": "a", "steps": ["x"]}]}), {"X": "1"})


# -- which stages a job runs --------------------------------------------------------------------

MIXED = parse_pipeline({"stages": [
    {"name": "build", "steps": ["make"]},
    {"name": "ship", "deploy": True, "needs": ["build", "sign"], "steps": ["upload"]},
    {"name": "test", "needs": ["build"], "steps": ["make test"]},
    {"name": "sign", "deploy": True, "steps": ["gpg"]},
]})


def names_and_needs(selected: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    return [(s["name"], s["needs"]) for s in selected]


def test_a_test_job_runs_the_test_stages() -> None:
    assert names_and_needs(runnable_stages(MIXED, "TEST")) == [("build", []), ("test", ["build"])]


def test_a_test_deploy_job_runs_deploy_stages_after_every_test_stage() -> None:
    assert names_and_needs(runnable_stages(MIXED, "TEST_DEPLOY")) == [
        ("build", []), ("test", ["build"]), ("ship", ["build", "test", "sign"]), ("sign", ["build", "test"])]


def test_a_deploy_job_runs_the_deploy_stages_without_their_test_needs() -> None:
    assert names_and_needs(runnable_stages(MIXED, "DEPLOY")) == [("ship", ["sign"]), ("sign", [])]


def test_choosing_stages_leaves_the_pipeline_unchanged() -> None:
    before = parse_pipeline(MIXED)
    for job_type in ("TEST", "DEPLOY", "TEST_DEPLOY"):
        runnable_stages(MIXED, job_type)
    assert MIXED == before


def test_an_unknown_job_type_is_refused() -> None:
    with pytest.raises(InputError) as err:
        runnable_stages(MIXED, "BUILD")
    assert err.value.field == "type"


# -- scheduling ---------------------------------------------------------------------------------

def test_stages_without_needs_start_together_in_pipeline_order_up_to_the_limit() -> None:
    graph = stages("a", "b", "c", "d<-a")
    assert next_stages(graph, {}, set(), 4) == ["a", "b", "c"]
    assert next_stages(graph, {}, set(), 2) == ["a", "b"]
    assert next_stages(graph, {}, {"a", "b"}, 2) == []
    assert next_stages(graph, {}, {"a"}, 2) == ["b"]


def test_a_stage_starts_once_all_its_needs_passed() -> None:
    graph = stages("build", "lint", "test<-build,lint", "package<-test")
    assert next_stages(graph, {"build": True}, {"lint"}, 4) == []
    assert next_stages(graph, {"build": True, "lint": True}, set(), 4) == ["test"]
    assert next_stages(graph, {"build": True, "lint": True}, {"test"}, 4) == []
    assert next_stages(graph, {"build": True, "lint": True, "test": True}, set(), 4) == ["package"]
    assert next_stages(graph, {"build": True, "lint": True, "test": True, "package": True}, set(), 4) == []


def test_needs_may_point_forward_in_the_pipeline() -> None:
    assert next_stages(stages("b<-a", "a"), {}, set(), 4) == ["a"]
    assert next_stages(stages("b<-a", "a"), {"a": True}, set(), 4) == ["b"]


def test_a_failed_need_blocks_its_dependents_for_good_and_they_are_reported() -> None:
    graph = stages("build", "lint", "test<-build", "package<-test", "docs<-lint")
    done = {"build": False}
    assert next_stages(graph, done, set(), 4) == ["lint"]
    assert blocked_stages(graph, done) == ["test", "package"]
    done = {"build": False, "lint": True}
    assert next_stages(graph, done, set(), 4) == ["docs"]
    assert blocked_stages(graph, {"build": True, "test": True}) == []


def test_needs_outside_the_stages_given_count_as_met_so_phases_can_run_one_after_the_other() -> None:
    deploys = [s for s in runnable_stages(MIXED, "TEST_DEPLOY") if s["deploy"]]
    assert next_stages(deploys, {}, set(), 4) == ["sign"]
    assert next_stages(deploys, {"sign": True}, set(), 4) == ["ship"]
    assert blocked_stages(deploys, {"sign": False}) == ["ship"]


def test_a_failed_test_stage_blocks_every_deploy_stage_of_a_test_deploy_job() -> None:
    graph = runnable_stages(MIXED, "TEST_DEPLOY")
    assert next_stages(graph, {}, set(), 4) == ["build"]
    assert next_stages(graph, {"build": True}, set(), 4) == ["test"]
    assert blocked_stages(graph, {"build": True, "test": False}) == ["ship", "sign"]
    assert next_stages(graph, {"build": True, "test": True}, set(), 4) == ["sign"]


def test_plugin_mistakes_name_the_line_and_the_field() -> None:
    err = yaml_error("""\
        plugins:
          - python
          - {name: hello, pip: 3}
        stages: [{name: t, steps: [x]}]
        """)
    assert (err.line, err.path) == (3, "plugins[1].pip")
    err = yaml_error("""\
        plugins: [python, {name: python}]
        """)
    assert err.path == "plugins[1].name" and "twice" in str(err)
    err = yaml_error("""\
        plugins: [{name: hello, conf: {}}]
        """)
    assert err.path == "plugins[0].conf"


def test_a_pipeline_of_plugins_alone_needs_no_stages() -> None:
    assert load_pipeline("plugins: [shell]\n")["stages"] == []
    assert yaml_error("env: {A: b}\n").path == "stages"


def test_a_step_may_ask_for_one_stream_for_stdout_and_stderr() -> None:
    pipeline = parse_pipeline({"stages": [{"name": "s", "steps": [{"run": "make", "merge_output": True}, "true"]}]})
    first, second = pipeline["stages"][0]["steps"]
    assert first["merge_output"] is True and "merge_output" not in second
    with pytest.raises(PipelineError, match=r"stages\[0\]\.steps\[0\]\.merge_output: must be true or false"):
        parse_pipeline({"stages": [{"name": "s", "steps": [{"run": "make", "merge_output": "yes"}]}]})
