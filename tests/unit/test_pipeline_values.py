"""Values stay as written: env values, parameter defaults and descriptions are the text typed in `.apiary.yml`,
never YAML 1.1's reading of it (`3.10` is not 3.1, `0755` not 493, `yes` not true); a list or mapping where one
value belongs is refused naming the file, the line and the field. JSON from the API keeps its numbers."""

from __future__ import annotations

import pytest

from apiary.core.pipeline import PipelineError, load_pipeline, parse_pipeline
from apiary.core.stages import resolve_parameters

STAGES = "stages: [{name: s, steps: [x]}]\n"

# (as written after `KEY: `, what the shell must see)
AS_WRITTEN = [
    ("3.10", "3.10"),
    ("0755", "0755"),
    ("yes", "yes"),
    ("no", "no"),
    ("on", "on"),
    ("off", "off"),
    ("True", "True"),
    ("1e3", "1e3"),
    ("0x1F", "0x1F"),
    ("~", "~"),
    ("null", "null"),
    ("12:30", "12:30"),  # sexagesimal in YAML 1.1: 750
    ("2001-01-01", "2001-01-01"),
    ("1_000", "1_000"),
    (".inf", ".inf"),
    ("=", "="),
    ("'0755'", "0755"),
    ('"3.10"', "3.10"),
    ('"a\\tb"', "a\tb"),  # quoting's own escapes still apply
    ("''", ""),
    ("!!str 0755", "0755"),
    ("!!int 0755", "0755"),  # a tag does not change the text either
    ("|\n    line one\n    line two", "line one\nline two\n"),
    (">-\n    folded\n    text", "folded text"),
    ("plain\n    continued", "plain continued"),
]


@pytest.mark.parametrize(("written", "seen"), AS_WRITTEN)
def test_env_values_are_the_text_as_written(written: str, seen: str) -> None:
    pipeline = load_pipeline(f"env:\n  V: {written}\n{STAGES}")
    assert pipeline["env"] == {"V": seen}


@pytest.mark.parametrize(("written", "seen"), AS_WRITTEN)
def test_stage_env_values_are_the_text_as_written(written: str, seen: str) -> None:
    indented = written.replace("\n", "\n    ")
    pipeline = load_pipeline(f"stages:\n  - name: s\n    steps: [x]\n    env:\n      V: {indented}\n")
    assert pipeline["stages"][0]["env"] == {"V": seen}


@pytest.mark.parametrize(("written", "seen"), AS_WRITTEN)
def test_parameter_defaults_are_the_text_as_written(written: str, seen: str) -> None:
    indented = written.replace("\n", "\n  ")
    pipeline = load_pipeline(f"parameters:\n  P:\n    default: {indented}\n  Q: {indented}\n{STAGES}")
    assert (pipeline["parameters"]["P"]["default"], pipeline["parameters"]["Q"]["default"]) == (seen, seen)
    assert resolve_parameters(pipeline, {}) == {"P": seen, "Q": seen}


def test_the_case_from_the_issue_keeps_every_value() -> None:
    pipeline = load_pipeline("env:\n  PYVER: 3.10\n  DEBUG: yes\n  MODE: off\n  PERMS: 0755\n" + STAGES)
    assert pipeline["env"] == {"PYVER": "3.10", "DEBUG": "yes", "MODE": "off", "PERMS": "0755"}


def test_aliases_and_merges_keep_the_text() -> None:
    pipeline = load_pipeline("env: &base {PYVER: 3.10, PERMS: 0755}\n"
                             "stages: [{name: s, steps: [x], env: {<<: *base, MODE: off}},\n"
                             "         {name: t, steps: [x], env: {V: &v 1.50, W: *v}}]\n")
    assert pipeline["stages"][0]["env"] == {"PYVER": "3.10", "PERMS": "0755", "MODE": "off"}
    assert pipeline["stages"][1]["env"] == {"V": "1.50", "W": "1.50"}


def test_descriptions_are_text_and_other_values_keep_their_types() -> None:
    pipeline = load_pipeline("parameters: {P: {description: 1.10, required: yes}}\n"
                             "timeout: 1.5\nparallel: 0x2\nstages: [{name: s, steps: [x], deploy: no}]\n")
    assert pipeline["parameters"]["P"] == {"required": True, "default": None, "description": "1.10"}
    assert (pipeline["timeout"], pipeline["parallel"], pipeline["stages"][0]["deploy"]) == (1.5, 2, False)


def test_nothing_written_is_no_value() -> None:
    assert load_pipeline(f"parameters:\n  P:\n  Q: {{default: }}\n{STAGES}")["parameters"] == {
        "P": {"required": False, "default": None, "description": ""},
        "Q": {"required": False, "default": None, "description": ""}}
    with pytest.raises(PipelineError) as err:
        load_pipeline(f"env:\n  LANG: C\n  EMPTY:\n{STAGES}")
    assert str(err.value) == ".apiary.yml, line 3: env.EMPTY: has no value: write '' for an empty one"


@pytest.mark.parametrize(("text", "message"), [
    ("env:\n  A: [1, 2]\n" + STAGES, ".apiary.yml, line 2: env.A: must be one value (text), got a list"),
    ("env:\n  A: x\n  B:\n    c: 1\n" + STAGES, ".apiary.yml, line 3: env.B: must be one value (text), got a mapping"),
    ("stages:\n  - name: s\n    steps: [x]\n    env:\n      A:\n        - 1\n",
     ".apiary.yml, line 5: stages[0].env.A: must be one value (text), got a list"),
    ("parameters:\n  P: {default: [a]}\n" + STAGES,
     ".apiary.yml, line 2: parameters.P.default: must be one value (text), got a list"),
    ("env: {A: !!binary aGk=}\n" + STAGES, ".apiary.yml, line 1: env.A: must be one value (text), got bytes"),
])
def test_a_list_or_mapping_where_one_value_belongs_is_refused_with_file_line_and_field(text: str, message: str) -> None:
    with pytest.raises(PipelineError) as err:
        load_pipeline(text)
    assert str(err.value) == message


def test_json_from_the_api_still_gives_numbers_and_true_false() -> None:
    pipeline = parse_pipeline({"env": {"N": 3, "R": 0.5, "B": True, "S": "3.10"},
                               "parameters": {"P": {"default": 7}}, "stages": [{"name": "s", "steps": ["x"]}]})
    assert pipeline["env"] == {"N": "3", "R": "0.5", "B": "true", "S": "3.10"}
    assert pipeline["parameters"]["P"]["default"] == "7"
    assert parse_pipeline(pipeline) == pipeline  # the compiled form is stable
