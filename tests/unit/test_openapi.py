"""The OpenAPI description is true to the app's routes (an app built, not served), and what a stored
document can hold. Served, fuzzed by schemathesis and refused by a real queen: tests/e2e/test_openapi.py (which
imports _routes from here)."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest

from apiary.core.config import QueenConfig
from apiary.core.storable import unstorable
from apiary.queen import openapi
from apiary.queen.app import init_app


def _routes() -> set[tuple[str, str]]:
    app = init_app(QueenConfig())
    return {(route.method.lower(), route.resource.canonical) for route in app.router.routes()
            if route.resource is not None and route.resource.canonical.startswith("/api/v1")
            and route.method not in ("HEAD", "*")}


def test_the_description_lists_exactly_the_api_routes() -> None:
    described = {(method, path) for path, ops in openapi.PATHS.items() for method in ops}
    routes = _routes()
    assert described == routes, f"only described: {described - routes}; only routed: {routes - described}"
    assert len(routes) >= 17


@pytest.mark.parametrize(("value", "fault"), [
    ({"a": [1, "x", None, True, 1.5, {"b": ""}]}, None),
    ({"a": [1, 2**63]}, (".a[1]", "a whole number that does not fit in 64 bits")),
    ({"a": {"b": float("inf")}}, (".a.b", "a number too large to keep")),
    ({"a": "\ud800"}, (".a", "holds an unpaired surrogate (\\ud800-\\udfff), not text")),
    ({"a": {1: 2}}, (".a", "the key 1 is not a name (text without NUL)")),
    ({"a": datetime.date(2020, 1, 1)}, (".a", "must be text, a number, true/false, a list or a mapping, not date")),
    ({"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}, ("", "")),
])
def test_what_a_stored_document_can_hold(value: Any, fault: tuple[str, str] | None) -> None:
    found = unstorable(value)
    if fault == ("", ""):
        assert found is not None and "nested more than 32 levels deep" in found[1]
    else:
        assert found == fault


def test_an_alias_bomb_is_counted_not_walked() -> None:
    level: list[Any] = ["x"] * 9
    for _ in range(12):  # 9**13 values, shared
        level = [level] * 9
    started = time.monotonic()
    assert unstorable({"a": level}) == ("", "holds more than 100000 values")
    assert time.monotonic() - started < 2
