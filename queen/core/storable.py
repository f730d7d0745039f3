"""What a stored document can hold: the one check of data from outside before it is kept.

Pure, no I/O. The API checks request bodies with it (queen/validate.py) and the
pipeline compiler a plugin's ``config`` (core/pipeline.py): YAML and JSON can
both say things no stored document holds.
"""

from __future__ import annotations

import math
from typing import Any

# Deepest nesting a body may have (a pipeline as JSON needs about six levels).
MAX_DEPTH = 32
MAX_VALUES = 100_000
_INT64 = 2**63


def unstorable(value: Any) -> tuple[str, str] | None:
    """Where in `value` and why it cannot be kept in a stored document, or None.

    Stored data is what JSON carries and BSON holds: text without unpaired
    surrogates (``"\\ud800"``), 64-bit integers, finite numbers, true/false,
    null, lists, and mappings whose keys are text without NUL; at most
    MAX_DEPTH deep and MAX_VALUES values (YAML aliases can make a small text a
    huge or endless tree). YAML can say more (dates, binary, numeric keys);
    so can JSON (huge integers, 1e400). The path is relative: ``.key``, ``[i]``.
    """
    todo: list[tuple[Any, str, int]] = [(value, "", 0)]
    count = 0
    while todo:
        value, path, depth = todo.pop()
        count += 1
        if count > MAX_VALUES:
            return "", f"holds more than {MAX_VALUES} values"
        if isinstance(value, str):
            if not _encodes(value):
                return path, "holds an unpaired surrogate (\\ud800-\\udfff), not text"
        elif value is None or isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not -_INT64 <= value < _INT64:
                return path, "a whole number that does not fit in 64 bits"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return path, "a number too large to keep"
        elif not isinstance(value, (dict, list)):
            return path, f"must be text, a number, true/false, a list or a mapping, not {type(value).__name__}"
        elif depth >= MAX_DEPTH:
            return path, f"nested more than {MAX_DEPTH} levels deep"
        elif isinstance(value, list):
            todo.extend((item, f"{path}[{i}]", depth + 1) for i, item in reversed(list(enumerate(value))))
        else:
            for key in value:
                if not isinstance(key, str) or not _encodes(key) or "\x00" in key:
                    return path, f"the key {key!r} is not a name (text without NUL)"
            todo.extend((item, f"{path}.{key}", depth + 1) for key, item in reversed(list(value.items())))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
