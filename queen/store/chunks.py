"""How a job's output is kept at rest: each output event's text as one zstd frame.

An output event (``job:cmd:stdout`` and the like) arrives with ``text``; the
store keeps it as ``z`` (the UTF-8 text compressed, one zstd frame, RFC 8878)
and ``n`` (the text's length in UTF-8 bytes), so the embedded store, which
keeps documents as JSON in SQLite, parses, writes and reads a few times fewer
bytes (typical build logs compress 5-10x, repetitive ones far more). Readers
get ``text`` back (`expand`); events stored before compression keep their
``text`` and read as they are. Concatenated zstd frames are one valid zstd
stream, so the raw log goes to a client that accepts ``zstd`` as the stored
frames one after the other, never decompressed on the queen (pages.raw_log).

zstd comes from the standard library from Python 3.14 (``compression.zstd``,
PEP 784) and from its backport (``backports.zstd``) before: the same module.
"""

from __future__ import annotations

import sys
from typing import Any

from bson.binary import Binary

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

# Level 3 (zstd's default): ~0.05 ms for a 64 KiB chunk of log text; higher levels cost more CPU for little.
LEVEL = 3
# Shorter texts are kept as they are: a frame's header would take more than it saves.
MIN_BYTES = 64


def compress(text: str) -> bytes:
    """One zstd frame holding `text` as UTF-8."""
    return zstd.compress(text.encode("utf-8", "surrogatepass"), LEVEL)


def pack(doc: dict[str, Any]) -> dict[str, Any]:
    """The document to store for event `doc` (unchanged when it has no text worth compressing).

    Never changes `doc` itself: the recorder publishes it to browsers as it came.
    """
    text = doc.get("text")
    if not isinstance(text, str) or len(text) < MIN_BYTES:
        return doc
    raw = text.encode("utf-8", "surrogatepass")
    stored = {k: v for k, v in doc.items() if k != "text"}
    stored["z"] = Binary(zstd.compress(raw, LEVEL))
    stored["n"] = len(raw)
    return stored


def expand(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored event as readers see it: ``text`` again, without ``z`` and ``n``. Changes `doc` in place."""
    frame = doc.pop("z", None)
    if frame is not None:
        doc.pop("n", None)
        doc["text"] = zstd.decompress(bytes(frame)).decode("utf-8", "replace")
    return doc


def text_size(doc: dict[str, Any]) -> int:
    """About how many bytes of text a stored (or expanded) event holds."""
    n = doc.get("n")
    if isinstance(n, int):
        return n
    return len(doc.get("text") or "")


def frame_of(doc: dict[str, Any]) -> bytes:
    """A stored event's output as one zstd frame (an old event's text is compressed now); b"" for none."""
    frame = doc.get("z")
    if frame is not None:
        return bytes(frame)
    text = doc.get("text")
    return compress(text) if text else b""
