"""Who may do what: roles and anonymous reading as a table. People signing in on a real queen:
tests/e2e/test_users.py."""

from __future__ import annotations

import pytest

from apiary.queen.users import Role, may, name_key


@pytest.mark.parametrize(("role", "method", "path", "allowed"), [
    (None, "GET", "/api/v1/jobs", False),
    (None, "POST", "/api/v1/session", True),
    (None, "POST", "/hooks/github/app", True),
    (None, "GET", "/badge/app.svg", True),
    (Role.MEMBER, "GET", "/api/v1/jobs", True),
    (Role.MEMBER, "POST", "/api/v1/repos/app/jobs", True),
    (Role.MEMBER, "POST", "/api/v1/jobs/01J/cancel", True),
    (Role.MEMBER, "POST", "/api/v1/jobs/01J/rerun", True),
    (Role.MEMBER, "PUT", "/api/v1/repos/app", False),
    (Role.MEMBER, "PUT", "/api/v1/repos/app/secrets/TOKEN", False),
    (Role.MEMBER, "POST", "/api/v1/prune", False),
    (Role.MEMBER, "GET", "/api/v1/users", False),
    (Role.MEMBER, "POST", "/api/v1/tokens", True),
    (Role.ADMIN, "PUT", "/api/v1/repos/app/secrets/TOKEN", True),
    (Role.ADMIN, "POST", "/api/v1/users", True),
    (None, "GET", "/metrics", False),
    (Role.MEMBER, "GET", "/metrics", False),
    (Role.ADMIN, "GET", "/metrics", True),
])
def test_who_may_do_what(role: Role | None, method: str, path: str, allowed: bool) -> None:
    assert may(role, method, path) is allowed


def test_anonymous_reading_when_enabled_reads_and_never_writes() -> None:
    assert may(None, "GET", "/api/v1/jobs", anonymous_read=True)
    assert not may(None, "POST", "/api/v1/repos/app/jobs", anonymous_read=True)
    assert not may(None, "GET", "/api/v1/users", anonymous_read=True)
    assert not may(None, "GET", "/metrics", anonymous_read=True)


@pytest.mark.parametrize(("a", "b", "same"), [
    ("ada", "ADA", True),
    ("ada", "Ada", True),
    ("ada", "\uff41\uff44\uff41", True),  # fullwidth letters: NFKC makes them ASCII
    ("strasse", "STRASSE", True),
    ("ada", "ada2", False),
    ("ada", "a.da", False),
])
def test_names_differing_only_in_case_or_form_are_one(a: str, b: str, same: bool) -> None:
    assert (name_key(a) == name_key(b)) is same
