"""What the store's documents look like once read, whichever server gave them.

nx-27017 (the embedded store) returns a dotted projection under its dotted name (``{"resume.stages": …}``)
where MongoDB nests it (``{"resume": {"stages": …}}``); `nested` puts such keys back where MongoDB puts them,
so that code past the store reads one shape.
"""

from __future__ import annotations

from typing import Any


def nested(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with its dotted keys ("pipeline.stages": [...]) as nested documents, as MongoDB returns them."""
    for key in [k for k in doc if "." in k]:
        value = doc.pop(key)
        *parents, last = key.split(".")
        at = doc
        for name in parents:
            at = at.setdefault(name, {}) if isinstance(at.get(name, {}), dict) else {}
        at[last] = value
    return doc
