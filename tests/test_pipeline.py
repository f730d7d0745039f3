from __future__ import annotations

import pytest

from queen.errors import BadRequest
from queen.pipeline import parse_pipeline


def test_steps_are_normalised_with_titles() -> None:
    assert parse_pipeline({"stages": [{"name": "t", "steps": ["make test", {"run": "ls", "title": "List"}]}]}) == {
        "stages": [{"name": "t", "steps": [{"run": "make test", "title": "make test"},
                                           {"run": "ls", "title": "List"}]}]}


@pytest.mark.parametrize(("data", "field"), [
    ([], "pipeline"),
    ({"stages": "x"}, "pipeline.stages"),
    ({"stages": [{"name": "", "steps": ["x"]}]}, "pipeline.stages[0].name"),
    ({"stages": [{"name": "a", "steps": [{"title": "no run"}]}]}, "pipeline.stages[0].steps[0].run"),
    ({"stages": [{"name": "a", "steps": [{"run": "x", "title": 3}]}]}, "pipeline.stages[0].steps[0].title"),
    ({"stages": [{"name": "a", "steps": ["x"]}], "extra": 1}, "pipeline.extra"),
])
def test_invalid_pipelines_name_the_field(data: object, field: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_pipeline(data)
    assert err.value.field == field and field in str(err.value)
