"""What a secret's value must be for the drones' masker to hide it: one rule, the queen's and the drones'.

Pure. The queen refuses to store a value `unmaskable` names (apiary.queen.api); the drones' masker
(apiary.drone.masking) ignores values shorter than MIN_VALUE, as masking ``xq`` everywhere would hide
ordinary output.
"""

from __future__ import annotations

MIN_VALUE = 3  # shorter values are ignored: masking "a" everywhere would destroy the log


def unmaskable(value: str) -> str | None:
    """Why `value` cannot be a secret, as a person reads it (the queen refuses to store it), or None.

    The drones' masker ignores values shorter than MIN_VALUE characters and whitespace alone: masking ``xq`` everywhere
    would hide ordinary output, so such a value would reach every log and shell in clear."""
    if len(value) < MIN_VALUE:
        return (f"at least {MIN_VALUE} characters (got {len(value)}): a shorter value cannot be masked in logs and "
                "shells without hiding ordinary output, so it would show in clear")
    if not value.strip():
        return "not only whitespace: such a value cannot be masked in logs and shells, so it would show in clear"
    return None
