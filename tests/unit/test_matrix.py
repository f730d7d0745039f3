"""Matrix expansion (apiary.core.matrix, through the compiler), as tables: cells with exclude and include
(GitHub Actions' semantics), names, environment, needs mapped, the caps, and errors with file, line and field."""

from __future__ import annotations

import json

import pytest

from apiary.core.matrix import MAX_CELLS, cells
from apiary.core.pipeline import PipelineError, load_pipeline, parse_pipeline


def _cells(spec: dict) -> list[str]:
    return [", ".join(f"{k}={v}" for k, v in c.items()) for c in cells(spec, "matrix")]


@pytest.mark.parametrize("spec, expected", [
    ({"py": ["3.11", "3.12"]}, ["py=3.11", "py=3.12"]),
    ({"py": ["3.11", "3.12"], "db": ["sqlite", "pg"]},
     ["py=3.11, db=sqlite", "py=3.11, db=pg", "py=3.12, db=sqlite", "py=3.12, db=pg"]),
    ({"py": ["3.11", "3.12"], "db": ["sqlite", "pg"], "exclude": [{"py": "3.11", "db": "pg"}]},
     ["py=3.11, db=sqlite", "py=3.12, db=sqlite", "py=3.12, db=pg"]),
    ({"py": ["3.11", "3.12"], "db": ["sqlite", "pg"], "exclude": [{"db": "pg"}]},  # a partial entry: every match
     ["py=3.11, db=sqlite", "py=3.12, db=sqlite"]),
    # include: a cell of its own when it fits no original cell
    ({"py": ["3.11"], "db": ["sqlite"], "include": [{"py": "3.13", "db": "sqlite"}]},
     ["py=3.11, db=sqlite", "py=3.13, db=sqlite"]),
    # include: an extra value added to the cells it does not change
    ({"py": ["3.11", "3.12"], "include": [{"py": "3.12", "experimental": "true"}]},
     ["py=3.11", "py=3.12, experimental=true"]),
    ({"py": ["3.11", "3.12"], "include": [{"os": "linux"}]}, ["py=3.11, os=linux", "py=3.12, os=linux"]),
    # an added value may be overwritten by a later entry, a matrix value never
    ({"py": ["3.11", "3.12"], "include": [{"os": "linux"}, {"py": "3.12", "os": "mac"}]},
     ["py=3.11, os=linux", "py=3.12, os=mac"]),
    # GitHub's own example: {fruit: banana, animal: cat} does not join the {fruit: banana} cell include made
    ({"fruit": ["apple", "pear"], "animal": ["cat", "dog"],
      "include": [{"color": "green"}, {"color": "pink", "animal": "cat"}, {"fruit": "apple", "shape": "circle"},
                  {"fruit": "banana"}, {"fruit": "banana", "animal": "cat"}]},
     ["fruit=apple, animal=cat, color=pink, shape=circle", "fruit=apple, animal=dog, color=green, shape=circle",
      "fruit=pear, animal=cat, color=pink", "fruit=pear, animal=dog, color=green",
      "fruit=banana", "fruit=banana, animal=cat"]),
    ({"include": [{"py": "3.11"}, {"py": "3.12"}]}, ["py=3.11", "py=3.12"]),  # include alone
    ({"n": [1, 2.5, True]}, ["n=1", "n=2.5", "n=true"]),  # from JSON: as JSON writes them
])
def test_cells(spec: dict, expected: list[str]) -> None:
    assert _cells(spec) == expected


@pytest.mark.parametrize("spec, path, words", [
    ([], "matrix", "must be a mapping"),
    ({}, "matrix", "must be a mapping"),
    ({"py": []}, "matrix.py", "non-empty list"),
    ({"py": "3.11"}, "matrix.py", "non-empty list"),
    ({"py": [["3.11"]]}, "matrix.py[0]", "one value"),
    ({"py": [{"v": 1}]}, "matrix.py[0]", "one value"),
    ({"py": [None]}, "matrix.py[0]", "has no value"),
    ({"py": ["3.11", "3.11"]}, "matrix.py[1]", "listed twice"),
    ({"py": [str(i) for i in range(100_000)] + ["0"]}, "matrix.py[100000]", "listed twice"),  # at once, not minutes
    ({"py": ["1", "2"], "exclude": [{"py": "1"}] * 257}, "matrix.exclude", "at most 256 entries"),
    ({"py": ["a\nb"]}, "matrix.py[0]", "one line"),
    ({"py": ["x" * 65]}, "matrix.py[0]", "at most 64 characters (it names the cell), got 65"),
    ({"py": ["a\u2028b"]}, "matrix.py[0]", "one line"),
    ({"py": ["a\x07b"]}, "matrix.py[0]", "has a control character (U+0007)"),
    ({"py": ["a\x9bb"]}, "matrix.py[0]", "has a control character (U+009B)"),  # C1 CSI
    # what would make `apiary ls` and the pages show the cell's name reversed or hidden ("Trojan Source")
    ({"py": ["abc\u202edcba"]}, "matrix.py[0]", "has a bidirectional control (U+202E)"),
    ({"py": ["1"], "include": [{"py": "\u2067x"}]}, "matrix.include[0].py", "has a bidirectional control (U+2067)"),
    ({"py": ["a\u200bb"]}, "matrix.py[0]", "has an invisible formatting character (U+200B)"),
    ({"2py": ["1"]}, "matrix.2py", "environment variable's name"),
    ({"py": ["1"], "exclude": [{"pyhton": "1"}]}, "matrix.exclude[0].pyhton", "unknown matrix variable 'pyhton'"),
    ({"py": ["1"], "exclude": {"py": "1"}}, "matrix.exclude", "non-empty list"),
    ({"py": ["1"], "exclude": [{}]}, "matrix.exclude[0]", "non-empty mapping"),
    ({"py": ["1"], "exclude": [{"py": "1"}]}, "matrix.exclude", "leaves no cell"),
    ({"py": ["1"], "include": [{"py": ["2"]}]}, "matrix.include[0].py", "one value"),
    ({"py": ["1"], "include": [{"bad-name": "2"}]}, "matrix.include[0].bad-name", "environment variable's name"),
    ({"py": ["1"], "include": [{"py": "2"}, {"py": "2"}]}, "matrix.include", "gives the cell (2) twice"),
    ({"exclude": [{"py": "1"}]}, "matrix.exclude[0].py", "unknown matrix variable"),
    ({"py": ["1"], "spread": "yes"}, "matrix.spread", "must be true or false"),
    # Apiary's own variables stay Apiary's (PATH and the like are the user's to set, as in env:)
    ({"APIARY_JOB_ID": ["x"], "PATH": ["/nonexistent"]}, "matrix.APIARY_JOB_ID", "are Apiary's own variables"),
    ({"py": ["1"], "include": [{"apiary_shard_file": "x"}]}, "matrix.include[0].apiary_shard_file", "Apiary's own"),
    ({f"v{i}": ["a", "b"] for i in range(9)}, "matrix", "gives 512 cells; a matrix has at most 256"),
    ({f"v{i}": ["a", "b", "c"] for i in range(20)}, "matrix", "a matrix has at most 256"),  # never listed
])
def test_bad_matrix_is_refused_naming_the_field(spec: object, path: str, words: str) -> None:
    with pytest.raises(Exception) as err:
        cells(spec, "matrix")
    assert err.value.path == path and words in err.value.problem, err.value  # type: ignore[attr-defined]


def test_the_cap_is_on_cells_after_exclude() -> None:
    spec = {f"v{i}": ["a", "b"] for i in range(9)} | {"exclude": [{"v0": "b"}]}
    assert len(cells(spec, "matrix")) == MAX_CELLS


STAGE = """\
env: {TOP: "1"}
stages:
  - name: build
    steps: [make]
  - name: test
    needs: [build]
    env: {DB: none, KEEP: "k"}
    matrix:
      python: ["3.11", 3.12, 3.10]
      db: [sqlite, postgres]
      exclude: [{python: "3.11", db: postgres}]
      include: [{python: 3.13, db: sqlite}]
    steps: [pytest]
  - name: report
    needs: [build, test]
    steps: [echo done]
"""


def test_a_stage_matrix_is_one_stage_per_cell_with_its_values_as_environment() -> None:
    pipeline = load_pipeline(STAGE)
    names = [s["name"] for s in pipeline["stages"]]
    assert names == ["build", "test (3.11, sqlite)", "test (3.12, sqlite)", "test (3.12, postgres)",
                     "test (3.10, sqlite)", "test (3.10, postgres)", "test (3.13, sqlite)", "report"]
    cell = pipeline["stages"][5]
    assert cell["env"] == {"DB": "none", "KEEP": "k", "python": "3.10", "db": "postgres"}  # 3.10 as written
    assert cell["matrix"] == {"group": "test", "values": {"python": "3.10", "db": "postgres"}}
    assert cell["needs"] == ["build"] and cell["steps"] == pipeline["stages"][1]["steps"]
    assert pipeline["stages"][-1]["needs"] == ["build"] + names[1:7]  # `needs: [test]`: every cell of test
    assert "matrix" not in pipeline["stages"][0] and pipeline["env"] == {"TOP": "1"}
    assert parse_pipeline(json.loads(json.dumps(pipeline))) == pipeline  # the compiled form compiles to itself


JOB = """\
matrix:
  os: [linux, bsd]
stages:
  - name: build
    steps: [make]
  - name: test
    needs: [build]
    steps: [make test]
  - name: lint
    steps: [ruff]
"""


def test_a_job_matrix_expands_every_stage_per_cell_with_needs_within_the_cell() -> None:
    pipeline = load_pipeline(JOB)
    assert [(s["name"], s["needs"], s["env"]) for s in pipeline["stages"]] == [
        ("build (linux)", [], {"os": "linux"}), ("build (bsd)", [], {"os": "bsd"}),
        ("test (linux)", ["build (linux)"], {"os": "linux"}), ("test (bsd)", ["build (bsd)"], {"os": "bsd"}),
        ("lint (linux)", [], {"os": "linux"}), ("lint (bsd)", [], {"os": "bsd"})]
    assert pipeline["stages"][3]["matrix"] == {"group": "test", "values": {"os": "bsd"}}
    assert "matrix" not in pipeline
    assert parse_pipeline(json.loads(json.dumps(pipeline))) == pipeline


@pytest.mark.parametrize("text, message", [
    # the line and the field of the stage as written, not of its cells
    (STAGE.replace("exclude: [{python: \"3.11\", db: postgres}]", "exclude: [{pyton: \"3.11\"}]"),
     ".apiary.yml, line 11: stages[1].matrix.exclude[0].pyton: unknown matrix variable 'pyton' (variables: python, db)"),
    (STAGE.replace("db: [sqlite, postgres]", "db: []"), ".apiary.yml, line 10: stages[1].matrix.db: must be a non-empty"),
    (STAGE.replace("db: [sqlite, postgres]", "db: [sqlite, [postgres]]"),
     ".apiary.yml, line 10: stages[1].matrix.db[1]: must be one value"),
    (STAGE.replace("steps: [pytest]", "steps: [{run: pytest, retry: 99}]"),
     ".apiary.yml, line 13: stages[1].steps[0].retry.attempts: must be a whole number from 1 to 10"),
    (STAGE.replace("needs: [build]\n    env", "needs: [biuld]\n    env"),
     ".apiary.yml, line 6: stages[1].needs[0]: unknown stage 'biuld'"),
    (STAGE.replace("needs: [build, test]", "needs: [build, tset]"),
     ".apiary.yml, line 15: stages[2].needs[1]: unknown stage 'tset'"),
    (STAGE.replace("name: test", "name: te/st"), ".apiary.yml, line 5: stages[1].name: must be a name of letters"),
    (JOB.replace("    steps: [ruff]", "    steps: [ruff]\n    matrix: {x: [1]}"),
     ".apiary.yml, line 11: stages[2].matrix: the job has a matrix already"),
    (JOB.replace("os: [linux, bsd]", "os: [linux, bsd]\n  spread: 1"),
     ".apiary.yml, line 3: matrix.spread: must be true or false"),
    ("matrix: {n: [" + ", ".join(str(i) for i in range(200)) + "]}\nstages:\n  - {name: a, steps: [x]}\n"
     "  - {name: b, steps: [x]}\n", ".apiary.yml, line 1: matrix: the pipeline would have more than 256 stages"),
])
def test_a_bad_matrix_in_a_file_names_its_line_and_field(text: str, message: str) -> None:
    with pytest.raises(PipelineError) as err:
        load_pipeline(text)
    assert str(err.value).startswith(message), str(err.value)


def test_a_matrix_from_the_api_names_the_field() -> None:
    with pytest.raises(PipelineError) as err:
        parse_pipeline({"stages": [{"name": "t", "steps": ["x"], "matrix": {"py": ["1"], "exclude": [{"os": "x"}]}}]})
    assert str(err.value).startswith("pipeline.stages[0].matrix.exclude[0].os: unknown matrix variable 'os'")


def _shown(name: str, status: str, needs: list[str], group: str | None = None) -> dict:
    return {"name": name, "status": status, "needs": needs,
            "matrix": {"group": group, "values": {"v": name}} if group else None}


def test_the_page_groups_a_columns_cells_with_their_worst_state_and_shared_needs() -> None:
    from apiary.core.matrix import grouped, short_needs
    stages = [_shown("lint", "passed", []), _shown("t (1)", "passed", ["b"], "t"), _shown("x", "passed", []),
              _shown("t (2)", "failed", ["b"], "t"), _shown("t (3)", "running", ["b"], "t")]
    out = grouped(stages)
    assert [s.get("name") or s["group"] for s in out] == ["lint", "t", "x"]
    assert out[1]["status"] == "failed" and out[1]["counts"] == {"passed": 1, "failed": 1, "running": 1}
    assert [c["name"] for c in out[1]["cells"]] == ["t (1)", "t (2)", "t (3)"] and out[1]["after"] == ["b"]
    # a job matrix's cells need different stages: said per cell
    job = [_shown("u (a)", "passed", ["b (a)"], "u"), _shown("u (b)", "passed", ["b (b)"], "u")]
    assert grouped(job)[0]["after"] is None
    needs = short_needs([_shown("t (1)", "passed", [], "t"), _shown("t (2)", "passed", [], "t"),
                         _shown("r", "passed", ["lint", "t (1)", "t (2)"]), _shown("s", "passed", ["t (1)"])])
    assert needs["r"] == ["lint", "t"] and needs["s"] == ["t (1)"]  # a group named once only when all are needed


def test_cells_that_would_copy_too_much_are_refused() -> None:
    long_step = "echo " + "x" * 20_000
    text = ("stages:\n  - name: t\n    matrix: {n: [" + ", ".join(str(i) for i in range(250)) + "]}\n"
            f"    steps: ['{long_step}']\n")
    with pytest.raises(PipelineError) as err:
        load_pipeline(text)
    assert str(err.value).startswith(".apiary.yml, line 3: stages[0].matrix: the stages would come to more than 4 "
                                     "million characters")
