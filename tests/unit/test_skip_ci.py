"""`[skip ci]` in a push's head commit (apiary.plugins.forge.skip_ci)."""

import pytest

from apiary.plugins.forge import skip_ci


@pytest.mark.parametrize("kind, message, reason", [
    ("push", "Fix typo [skip ci]", "the head commit's message says [skip ci]"),
    ("push", "docs\n\n[CI SKIP]", "the head commit's message says [ci skip]"),
    ("push", "[No CI] wip", "the head commit's message says [no ci]"),
    ("push", "[skip apiary]", "the head commit's message says [skip apiary]"),
    ("push", "skip ci", None),
    ("push", "", None),
    ("push", None, None),
    ("tag", "release [skip ci]", None),
    ("pull_request", "[skip ci]", None),
    ("manual", "[skip ci]", None),
])
def test_skip_ci(kind, message, reason):
    assert skip_ci(kind, message) == reason
