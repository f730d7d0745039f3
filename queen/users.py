"""People and what they may do: roles, password hashes, API tokens, and the access rule. No I/O.

Roles: ``admin`` manages repositories, secrets, drones and users; ``member``
triggers, cancels and re-runs jobs; both read everything. Anonymous visitors
read only when ``[queen] anonymous_read`` is on. Until the first user exists,
a queen bound to loopback is open to whoever reaches it (the machine's own
users, as with `apiary up`); bound elsewhere, only the setup page answers.

`may(role, method, path)` is the one access rule, used by the middleware in
queen/auth.py. Passwords are hashed with argon2id; API tokens are random,
shown once, and stored as a SHA-256 hash under their public id.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from apiary.core.errors import BadRequest

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
MIN_PASSWORD = 8
TOKEN_PREFIX = "apiary_"

_hasher = PasswordHasher()


class Role(str, enum.Enum):
    ADMIN = "admin"
    MEMBER = "member"


# Paths anyone may use: signing in, the first admin's setup, the API's description,
# static files, badges (for READMEs) and plugins' webhooks (they check the forge's signature).
PUBLIC = ("/signin", "/setup", "/api/v1/session", "/api/v1/setup", "/api/v1/me", "/api/v1/openapi.json",
          "/api/v1/drones/join", "/static/", "/badge/", "/hooks/")
# Unsafe requests a member may make: the job actions, and comments (whose they are: apiary.queen.comment_rules).
MEMBER_ACTIONS = re.compile(r"^/api/v1/(repos/[^/]+/(jobs|bisects)|bisects/[^/]+/cancel|jobs/[^/]+/(cancel|rerun|approvals|comments(/[^/]+)?))$")
# What every signed-in user may do to their own account.
SELF_SERVICE = re.compile(r"^/api/v1/(tokens(/[^/]+)?|session)$")
SAFE = {"GET", "HEAD", "OPTIONS"}


def is_public(path: str) -> bool:
    if path.startswith("/api/v1/drones/join-tokens"):
        return False  # admins make them; /api/v1/drones/join (a drone with a token) is public
    return path in ("/signin", "/setup") or path.startswith(PUBLIC)


def may(role: Role | None, method: str, path: str, anonymous_read: bool = False) -> bool:
    """Whether someone with `role` (None: not signed in) may make this request."""
    if is_public(path):
        return True
    if method in SAFE:
        if path.startswith("/api/v1/users") or path == "/metrics":
            return role is Role.ADMIN
        return role is not None or anonymous_read
    if role is None:
        return False
    if role is Role.ADMIN:
        return True
    return bool(MEMBER_ACTIONS.match(path) or SELF_SERVICE.match(path))


def check_username(name: object) -> str:
    if not isinstance(name, str) or not USERNAME.match(name):
        raise BadRequest("username: letters, digits, '.', '_' or '-' (at most 64)", field="username")
    return name


def name_key(name: str) -> str:
    """What two usernames must not share: the name NFKC-casefolded ("ADA", "Ada" and "ａｄａ" are all "ada")."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def new_user_id() -> str:
    """A user's own id, made once and never reused: what their comments are owned by (a name can come back)."""
    return secrets.token_hex(8)


def check_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise BadRequest(f"password: at least {MIN_PASSWORD} characters", field="password")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> tuple[str, str, str]:
    """(public id, secret hash to store, the token to show once)."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    return token_id, token_hash(secret), f"{TOKEN_PREFIX}{token_id}_{secret}"


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a token as shown, or None if it is not one."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, _, secret = token[len(TOKEN_PREFIX):].partition("_")
    return (token_id, secret) if token_id and secret else None


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_secret() -> str:
    """A session id, a CSRF token or a setup token."""
    return secrets.token_urlsafe(32)
