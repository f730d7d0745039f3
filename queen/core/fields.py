"""Checking one field of what somebody gives: a string, a number, a name, the keys allowed, a link.

Pure, no I/O. The queen's API handlers (queen/validate.py reads their bodies),
its repository settings and the job request (core/jobrequest.py) check fields
with these; every fault raises BadRequest naming the field (``trigger.url``,
``retention.keep_days``), so whoever sent it learns what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, Literal, overload
from urllib.parse import urlsplit

from .errors import BadRequest

# A parameter's or a secret's name: what a shell takes as an environment variable's name.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@overload
def get_str(body: Mapping[str, Any], name: str, default: str | None = None, *, required: Literal[True],
            pattern: re.Pattern[str] | None = None, prefix: str = "") -> str: ...
@overload
def get_str(body: Mapping[str, Any], name: str, default: str, *, required: bool = False,
            pattern: re.Pattern[str] | None = None, prefix: str = "") -> str: ...
@overload
def get_str(body: Mapping[str, Any], name: str, default: None = None, *, required: bool = False,
            pattern: re.Pattern[str] | None = None, prefix: str = "") -> str | None: ...
def get_str(body: Mapping[str, Any], name: str, default: str | None = None, *, required: bool = False,
            pattern: re.Pattern[str] | None = None, prefix: str = "") -> str | None:
    """`body[name]`: a string, or `default` when it is absent or null; BadRequest (``prefix+name``) otherwise."""
    field = prefix + name
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{field}: required", field=field)
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{field}: must be a string, got {type(value).__name__}", field=field)
    if pattern is not None and not pattern.match(value):
        raise BadRequest(f"{field}: {value!r} is not allowed here", field=field)
    return value


def get_number(body: Mapping[str, Any], name: str, *, low: float, integer: bool = False, prefix: str = "") -> Any:
    field = prefix + name
    value = body.get(name)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < low:
        what = "an integer" if integer else "a number"
        raise BadRequest(f"{field}: must be {what} of at least {low:g}, got {value!r}", field=field)
    return value


def no_unknown(body: Mapping[str, Any], known: Collection[str], prefix: str = "") -> None:
    for key in body:
        if key not in known:
            raise BadRequest(f"{prefix}{key}: unknown field (known: {', '.join(sorted(known))})", field=prefix + key)


def is_web_link(url: object) -> bool:
    """Whether a page may show `url` as a link: an http or https address with a host, nothing else.

    Browsers run ``javascript:`` links and render ``data:`` ones as pages; they
    also drop leading spaces and control characters before reading the
    scheme, so any such character disqualifies the URL outright.
    """
    if not isinstance(url, str) or len(url) > 2048 or not url.isprintable() or any(c.isspace() for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a port that is not a number raises ValueError)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def kind_of(value: Any) -> str:
    """What a value of parsed YAML or JSON is, as an error message says it: "a mapping", "true/false"..."""
    kinds = {type(None): "null", bool: "true/false", dict: "a mapping", list: "a list", str: "a string",
             int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)
