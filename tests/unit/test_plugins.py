"""The worked example of docs/plugins.md is the plugin the tests build (files compared). Plugins on real
drones: tests/e2e/test_plugins.py (which imports EXAMPLE from here)."""

from __future__ import annotations

from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "docs" / "example-plugin"


def test_the_worked_example_in_the_docs_is_the_plugin_the_tests_build() -> None:
    doc = (EXAMPLE.parent / "plugins.md").read_text()
    for name in ("pyproject.toml", "apiary_hello.py"):
        assert (EXAMPLE / name).read_text().rstrip() in doc, f"docs/plugins.md shows an outdated {name}"
