"""Accounts at /api/v1: the first admin (setup), signing in and out, users, API tokens; and their pages.

Access is decided before these handlers run (queen/auth.py); here: input
checked, passwords verified, sessions and tokens made. Errors are JSON as
everywhere in the API.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from apiary.core.errors import BadRequest, Conflict, InputError, NotFound
from apiary.core.fields import get_str, no_unknown
from apiary.queen.auth import COOKIE, SESSION_SECONDS, Busy
from apiary.queen.pages import render
from apiary.queen.strict_json import json_response
from apiary.queen.throttle import retry_after
from apiary.queen.users import Role, check_password, check_username, name_key, new_secret, new_token, same
from apiary.queen.validate import read_json

from . import keys

routes = web.RouteTableDef()


class Forbidden(InputError):
    """Signed in, but as someone else than the request names."""

    status = 403


def _identity(request: web.Request) -> dict[str, Any]:
    identity = request.get("identity")
    if identity is None:
        raise BadRequest("this needs a signed-in user (the queen has none yet, or you are not signed in)",
                         field="user")
    return identity


async def _start_session(request: web.Request, user: str, role: str) -> web.Response:
    session_id, csrf = new_secret(), new_secret()
    await request.app[keys.STORE].create_session(session_id, user, csrf, time.time() + SESSION_SECONDS)
    response = json_response({"user": user, "role": role, "csrf": csrf})
    # Secure also behind a TLS proxy (public_url https://), where the queen itself sees plain HTTP.
    secure = request.secure or request.app[keys.CONFIG].public_url.startswith("https://")
    response.set_cookie(COOKIE, session_id, max_age=SESSION_SECONDS, httponly=True, samesite="Lax",
                        secure=secure, path="/")
    return response


@routes.post("/api/v1/setup")
async def setup(request: web.Request) -> web.Response:
    """An admin made with the setup token from data_dir/setup-token, while the queen has none.

    A name that exists (a member) becomes the admin, with this password: the
    token proves its holder runs the queen.
    """
    gate, store = request.app[keys.GATE], request.app[keys.STORE]
    body = await read_json(request)
    no_unknown(body, {"token", "username", "password"})
    if await store.count_users(Role.ADMIN.value):
        raise Conflict("this queen has an admin already; an admin adds more", field="username")
    address = f"addr:{request.remote}"
    wait = gate.by_address.wait(address, time.monotonic())
    if wait:
        return _too_many(wait, "token")
    if not same(get_str(body, "token", "") or "", gate.setup_token()):
        gate.by_address.failed(address, time.monotonic())
        raise BadRequest("token: not this queen's setup token (see its data_dir/setup-token)", field="token")
    name, password = check_username(body.get("username")), check_password(body.get("password"))
    like = await store.user_like(name)
    if like is not None and like["_id"] != name:
        raise Conflict(f"username: {like['_id']!r} exists; a name differing only in case or form is the same "
                       "person's", field="username")
    await store.make_admin(name, await _hash(gate, password))
    gate.setup_done()
    gate.forget()
    return await _start_session(request, name, Role.ADMIN.value)


def _too_many(wait: float, field: str) -> web.Response:
    return json_response({"error": f"too many failed attempts: try again in {retry_after(wait)} s", "field": field},
                         status=429, headers={"Retry-After": retry_after(wait)})


async def _hash(gate: Any, password: str) -> str:
    try:
        return await gate.passwords.hash(password)
    except Busy:
        raise web.HTTPTooManyRequests(headers={"Retry-After": "1"}) from None


@routes.post("/api/v1/session")
async def sign_in(request: web.Request) -> web.Response:
    """Sign in with a password: a session cookie and its CSRF token; 429 after too many failures."""
    gate = request.app[keys.GATE]
    body = await read_json(request)
    no_unknown(body, {"username", "password"})
    name, password = get_str(body, "username", "") or "", get_str(body, "password", "") or ""
    # A typed name is the user whose name is the same but for case and form (users.name_key: what is unique);
    # its failures count against that key, so "ADA" and "ada" share one budget.
    key = f"user:{name_key(name)}"
    throttled = [(gate.by_address, f"addr:{request.remote}")] + ([(gate.by_user, key)] if name else [])
    wait = max(throttle.wait(key, time.monotonic()) for throttle, key in throttled)
    if wait:
        return _too_many(wait, "password")
    # Counted as failed before the check, cleared if right: sign-ins arriving while
    # others are being checked cannot slip past the limit.
    for throttle, key in throttled:
        throttle.failed(key, time.monotonic())
    store = request.app[keys.STORE]
    like = await store.user_like(name) if name else None
    user = await store.get_user(like["_id"]) if like else None
    try:
        right = await gate.passwords.verify(user["password"] if user else None, password)
    except Busy:  # not checked: not a failure
        for throttle, key in throttled:
            throttle.undo(key)
        return json_response({"error": "the queen is busy checking passwords: try again in a second",
                              "field": "password"}, status=429, headers={"Retry-After": "1"})
    if user is None or not right:
        return json_response({"error": "wrong username or password", "field": "password"}, status=401)
    # The user's count starts again; the address's does not (one success must not buy another ten guesses).
    gate.by_user.succeeded(key)
    gate.by_address.undo(f"addr:{request.remote}")
    return await _start_session(request, user["_id"], user["role"])  # the name as stored, as shown everywhere


@routes.delete("/api/v1/session")
async def sign_out(request: web.Request) -> web.Response:
    session_id = request.cookies.get(COOKIE)
    if session_id:
        await request.app[keys.STORE].delete_session(session_id)
        request.app[keys.GATE].forget()
    response = json_response({"signed_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


@routes.get("/api/v1/me")
async def me(request: web.Request) -> web.Response:
    identity = request.get("identity")
    if identity is None:
        return json_response({"user": None, "setup": not request.app[keys.GATE].admin_exists})
    return json_response({"user": identity["user"], "role": identity["role"].value, "via": identity["via"]})


@routes.get("/api/v1/users")
async def list_users(request: web.Request) -> web.Response:
    users = await request.app[keys.STORE].list_users()
    return json_response({"users": [{"name": u["_id"], "role": u["role"], "created": u["created"]}
                                    for u in users]})


@routes.post("/api/v1/users")
async def add_user(request: web.Request) -> web.Response:
    body = await read_json(request)
    no_unknown(body, {"username", "password", "role"})
    name, password = check_username(body.get("username")), check_password(body.get("password"))
    role = get_str(body, "role", Role.MEMBER.value)
    if role not in Role._value2member_map_:
        raise BadRequest("role: admin or member", field="role")
    if not await request.app[keys.STORE].insert_user(name, await _hash(request.app[keys.GATE], password), role):
        like = await request.app[keys.STORE].user_like(name)
        raise Conflict(f"username: {like['_id'] if like else name!r} exists"
                       + ("" if like is None or like["_id"] == name else
                          "; a name differing only in case or form would be mistaken for it"), field="username")
    request.app[keys.GATE].forget()
    return json_response({"name": name, "role": role}, status=201)


@routes.delete("/api/v1/users/{name}")
async def delete_user(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    like = await request.app[keys.STORE].user_like(name)  # as typed: "erin" is Erin
    name = like["_id"] if like else name
    if name == _identity(request)["user"]:
        raise Conflict("you cannot delete yourself; another admin can", field="name")
    if not await request.app[keys.STORE].delete_user(name):
        raise NotFound(f"no user {name!r}", field="name")
    request.app[keys.GATE].forget()
    return json_response({"name": name, "deleted": True})


@routes.get("/api/v1/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    tokens = await request.app[keys.STORE].list_tokens(_identity(request)["user"])
    return json_response({"tokens": [{"id": t["_id"], "name": t["name"], "created": t["created"]}
                                     for t in tokens]})


@routes.post("/api/v1/tokens")
async def create_token(request: web.Request) -> web.Response:
    user = _identity(request)["user"]
    body = await read_json(request) if request.can_read_body else {}
    no_unknown(body, {"name", "user"})
    # A request names whose token it wants; one signed in as someone else (a bearer token sent along with
    # another's session: the token wins) is refused rather than given a token of the wrong person.
    named = get_str(body, "user", None)
    if named is not None and name_key(named) != name_key(user):
        raise Forbidden(f"user: this request is signed in as {user!r}, not {named!r}: sign in as {named!r} "
                        "(and send no other API token) to make a token of theirs", field="user")
    name = get_str(body, "name", "") or "token"
    token_id, secret_hash, token = new_token()
    await request.app[keys.STORE].create_token(token_id, user, secret_hash, name[:80])
    return json_response({"id": token_id, "name": name[:80], "token": token,
                          "note": "shown once: keep it (APIARY_CLIENT_TOKEN or [client] token)"}, status=201)


@routes.delete("/api/v1/tokens/{id}")
async def delete_token(request: web.Request) -> web.Response:
    if not await request.app[keys.STORE].delete_token(request.match_info["id"], _identity(request)["user"]):
        raise NotFound("no such token of yours", field="id")
    request.app[keys.GATE].forget()
    return json_response({"id": request.match_info["id"], "deleted": True})


# -- pages ----------------------------------------------------------------------------------

@routes.get("/signin")
async def signin_page(request: web.Request) -> web.Response:
    return render(request, "signin.html", page="signin")


@routes.get("/setup")
async def setup_page(request: web.Request) -> web.StreamResponse:
    if await request.app[keys.STORE].count_users(Role.ADMIN.value):
        raise web.HTTPSeeOther("/signin")
    request.app[keys.GATE].setup_token()  # written now, for the operator to read
    return render(request, "setup.html", page="setup", token_file=str(request.app[keys.GATE].setup_file))
