"""`when:` conditions (apiary.core.conditions): compiling, the expression language, the verdicts."""

import pytest

from apiary.core.conditions import (
    Changes,
    ConditionError,
    JobFacts,
    check,
    compile_when,
    decide,
    evaluate,
    matching_paths,
    parse_expression,
    skipped,
)
from apiary.core.pipeline import PipelineError, load_pipeline, parse_pipeline

PARAMS = {"ENV": "prod", "OTHER": "y", "FLAG": "true", "EMPTY": ""}


@pytest.mark.parametrize("text, holds", [
    ("ENV == 'prod'", True),
    ("ENV != 'prod'", False),
    ("ENV == \"prod\" && OTHER == 'y'", True),
    ("ENV == 'x' || OTHER == 'y'", True),
    ("ENV == 'prod' && (OTHER != 'y' || FLAG == 'true')", True),
    ("ENV == 'prod' && (OTHER != 'y' || FLAG == 'false')", False),
    ("!(ENV == 'prod')", False),
    ("FLAG", True),
    ("EMPTY", False),
    ("!EMPTY", True),
    ("UNSET == ''", True),
    ("FLAG == true", True),
    ("'a' == 'a' || 'x'", True),
    ("ENV == 'x' || ENV == 'y' || ENV == 'prod'", True),
    ("!!FLAG", True),
])
def test_expressions(text, holds):
    assert evaluate(parse_expression(text), PARAMS) is holds


@pytest.mark.parametrize("text, problem", [
    ("ENV ==", "expected a parameter name or a 'text' at column 7"),
    ("(ENV == 'x'", "expected ')' at column 12"),
    ("ENV = 'x'", "cannot read"),
    ("ENV == 'x' OTHER", "expected an operator"),
    ("__import__('os').system('x')", "cannot read"),
    ("ENV == 'x' &&", "expected a parameter name"),
    ("(" * 40 + "ENV" + ")" * 40, "nested more than"),
    ("ENV == 'unterminated", "cannot read"),
])
def test_bad_expressions_name_the_fault(text, problem):
    with pytest.raises(ConditionError) as caught:
        parse_expression(text, "stages[0].when.expression")
    assert caught.value.path == "stages[0].when.expression"
    assert problem in caught.value.problem


@pytest.mark.parametrize("paths, patterns, hit", [
    (["migrations/0001.sql", "app.py"], ["migrations/**"], ["migrations/0001.sql"]),
    (["a/migrations/x.sql"], ["migrations/**"], []),
    (["a/b/c.sql", "c.py"], ["*.sql"], ["a/b/c.sql"]),
    (["docs/a.md", "docs/sub/b.md"], ["docs/*.md"], ["docs/a.md"]),
    (["docs/sub/b.md"], ["docs/"], ["docs/sub/b.md"]),
    (["src/x/test_a.py"], ["src/**/test_*.py"], ["src/x/test_a.py"]),
    (["README"], ["READM?"], ["README"]),
    # matched name by name (several ** or two * in a name): the same answers as one expression gave
    (["a/b/c/d", "a/c", "c/d"], ["a/**/c/**"], ["a/b/c/d"]),
    (["x", "a/b/x.py"], ["**"], ["x", "a/b/x.py"]),
    (["a/test_x_test.py", "test.txt"], ["*test*.py"], ["a/test_x_test.py"]),
    (["a", "a/b"], ["a/**/**"], ["a/b"]),
    # a fork's pattern and paths that one expression took hours over: answered at once
    (["a/" * 2000 + "b", "a/" * 2000 + "zz"], ["**/" * 80 + "zz"], ["a/" * 2000 + "zz"]),
    (["src/" + "a" * 4000], ["*a" * 100 + "b"], []),
])
def test_changed_paths(paths, patterns, hit):
    assert matching_paths(paths, patterns) == hit


def facts(**kw):
    base = {"branch": "main", "event": "push", "type": "TEST", "parameters": PARAMS}
    return JobFacts(**{**base, **kw})


CHANGES = Changes(("migrations/0002.sql", "app.py"), base="a" * 40, since="aaaaaaaaaaaa (job app#12)")


@pytest.mark.parametrize("when, job, runs, reason", [
    ({"branch": ["main", "release/*"]}, facts(), True, "when.branch: main matches main"),
    ({"branch": ["release/*"]}, facts(branch="release/1.2"), True, "when.branch: release/1.2 matches release/*"),
    ({"branch": ["release/*"]}, facts(), False, "when.branch: branch main matches none of release/*"),
    ({"branch": ["main"]}, facts(branch=""), False, "when.branch: the job has no branch (a tag) matches none of main"),
    ({"not_branch": ["main"]}, facts(), False, "when.not_branch: branch main matches main"),
    ({"event": ["push", "tag"]}, facts(), True, "when.event: a push job"),
    ({"event": ["tag"]}, facts(), False, "when.event: a push job, not tag"),
    ({"event": ["pull_request"]}, facts(event="fork"), True, "when.event: a fork job"),
    ({"event": ["manual", "schedule"]}, facts(event="pull_request"), False,
     "when.event: a pull_request job, not manual or schedule"),
    ({"type": ["DEPLOY", "TEST_DEPLOY"]}, facts(), False, "when.type: a TEST job, not DEPLOY or TEST_DEPLOY"),
    ({"expression": "ENV == 'prod'"}, facts(), True, "when.expression: ENV == 'prod' is true"),
    ({"expression": "ENV  ==  'dev'"}, facts(), False, "when.expression: ENV == 'dev' is false"),
    ({"changed": ["migrations/**"]}, facts(changes=CHANGES), True,
     "when.changed: migrations/0002.sql changed since aaaaaaaaaaaa (job app#12)"),
    ({"changed": ["docs/**", "*.md"]}, facts(changes=CHANGES), False,
     "when.changed: nothing under docs/**, *.md changed since aaaaaaaaaaaa (job app#12)"),
    ({"changed": ["docs/**"]}, facts(changes=Changes(None, why="no earlier passed job of main")), True,
     "when.changed: everything counts as changed (no earlier passed job of main)"),
    ({"branch": ["main"], "event": ["tag"]}, facts(), False, "when.event: a push job, not tag"),
])
def test_verdicts(when, job, runs, reason):
    assert check(compile_when(when, "when"), job) == (runs, reason)


def test_decide_and_skipped_cover_stages_and_steps():
    pipeline = load_pipeline("""
parameters: {ENV: {default: dev}}
stages:
  - name: migrate
    when: {changed: ["migrations/**"]}
    steps: [./migrate]
  - name: test
    steps:
      - run: pytest
      - run: ./publish
        when: {branch: [release/*]}
""")
    decisions = [d.doc() for d in decide(pipeline, facts(changes=CHANGES, parameters={"ENV": "dev"}))]
    assert decisions == [
        {"stage": "migrate", "step": None, "run": True,
         "reason": "when.changed: migrations/0002.sql changed since aaaaaaaaaaaa (job app#12)"},
        {"stage": "test", "step": 1, "run": False, "reason": "when.branch: branch main matches none of release/*"}]
    assert skipped(decisions) == ({}, {("test", 1): "when.branch: branch main matches none of release/*"})
    assert parse_pipeline(pipeline) == pipeline  # compiled compiles to itself


@pytest.mark.parametrize("yaml, message", [
    ("stages:\n  - name: a\n    when: [main]\n    steps: [x]\n",
     (".apiary.yml, line 3: stages[0].when: must be a mapping of branch, not_branch, event, type, expression, "
      "changed, got a list")),
    ("stages:\n  - name: a\n    when: {branches: [main]}\n    steps: [x]\n",
     ".apiary.yml, line 3: stages[0].when.branches: unknown key 'branches'"),
    ("stages:\n  - name: a\n    steps:\n      - run: x\n        when:\n          event: [pr]\n",
     "stages[0].steps[0].when.event[0]: must be one of push, tag, pull_request, fork, manual, schedule, got 'pr'"),
    ("stages:\n  - name: a\n    when:\n      expression: \"X == 'y'\"\n    steps: [x]\n",
     ".apiary.yml, line 4: stages[0].when.expression: names X, not a parameter the pipeline declares"),
    ("stages:\n  - name: a\n    when:\n      changed: [../etc/**]\n    steps: [x]\n",
     "stages[0].when.changed[0]: '../etc/**' is a path in the repository"),
    ("stages:\n  - name: a\n    when:\n      type: [BUILD]\n    steps: [x]\n",
     "stages[0].when.type[0]: must be one of TEST, DEPLOY, TEST_DEPLOY, got 'BUILD'"),
    ("on_failure: [{run: x, when: {branch: [main]}}]\nstages: [{name: a, steps: [x]}]\n",
     ".apiary.yml, line 1: on_failure[0].when: only a stage or a stage's step takes a 'when'; on_failure always runs"),
    ("stages:\n  - name: a\n    steps: [x]\n    hooks:\n      on_start:\n        - run: y\n          when: {}\n",
     "stages[0].hooks.on_start[0].when: only a stage or a stage's step takes a 'when'"),
])
def test_bad_when_names_file_line_and_field(yaml, message):
    with pytest.raises(PipelineError) as caught:
        load_pipeline(yaml)
    assert message in str(caught.value)


def test_the_outcome_shows_what_a_when_skips_before_the_drone_says_so():
    from apiary.core.outcome import job_outcome

    pipeline = load_pipeline("""
stages:
  - name: migrate
    when: {branch: [release/*]}
    steps: [./migrate]
  - name: test
    needs: [migrate]
    steps: [pytest, {run: ./publish, when: {event: [tag]}}]
""")
    job = {"_id": "j1", "status": "queued", "type": "TEST", "pipeline": pipeline, "commands": {}, "phases": {},
           "conditions": [d.doc() for d in decide(pipeline, facts())]}
    stages = {s["name"]: s for s in job_outcome(job, [])["stages"]}
    assert (stages["migrate"]["status"], stages["migrate"]["reason"]) == (
        "skipped", "when.branch: branch main matches none of release/*")
    assert stages["test"]["status"] == "waiting" and stages["test"]["reason"] is None  # not "waits for migrate"
    assert [(c["title"], c["status"]) for c in stages["test"]["commands"]] == [
        ("pytest", "waiting"), ("./publish", "skipped")]
