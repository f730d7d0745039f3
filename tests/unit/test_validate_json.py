"""A JSON body's object keys: each at most once (apiary.queen.validate.read_json's hook)."""

from __future__ import annotations

import json

import pytest

from apiary.queen.validate import one_of_each


@pytest.mark.parametrize(("raw", "kept"), [
    ('{"text": "a"}', {"text": "a"}),
    ('{"a": {"b": 1}, "b": 2}', {"a": {"b": 1}, "b": 2}),  # the same key in another object is another key
    ("{}", {}),
])
def test_objects_kept(raw: str, kept: dict) -> None:
    assert json.loads(raw, object_pairs_hook=one_of_each) == kept


@pytest.mark.parametrize("raw", ['{"text": "a", "text": "b"}', '{"a": {"b": 1, "b": 2}}'])
def test_a_key_given_twice_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="twice"):
        json.loads(raw, object_pairs_hook=one_of_each)
