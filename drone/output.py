"""Coalesces a command's output into chunks: one event per few ms or KiB, not per line.

Bytes from stdout and stderr arrive as the pipes give them. Each stream has an
incremental UTF-8 decoder, so a character split across two reads is never split
across two events (undecodable bytes become U+FFFD). The buffer holds one
stream at a time: output of the other stream flushes it first, which keeps the
two streams in the order they were read (child.py reads both pipes in one loop,
in the order the kernel reports them readable). With a Masker, secrets are
masked as the text is decoded, before it is buffered; a secret split across two
reads is held back until it can be masked whole — but never behind the other
stream's later text: that releases it first (`MaskingStream.release`).
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .masking import Masker

EmitFn = Callable[[str, str], None]  # (stream "stdout" | "stderr", text)


class OutputBuffer:
    def __init__(self, emit: EmitFn, flush_after: float, max_bytes: int, masker: Masker | None = None) -> None:
        self.emit = emit
        self._masks = {s: masker.stream() for s in ("stdout", "stderr")} if masker is not None else None
        self.flush_after = flush_after
        self.max_bytes = max_bytes
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in ("stdout", "stderr")}
        self._stream = "stdout"
        self._parts: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def feed(self, stream: str, data: bytes) -> None:
        text = self._decoders[stream].decode(data)
        if self._masks is not None:
            other = "stderr" if stream == "stdout" else "stdout"
            held = self._masks[other].release()  # written before `data`: it goes first
            if held:
                self._put(other, held, len(held))
            text = self._masks[stream].feed(text)
        if text:
            self._put(stream, text, len(data))

    def _put(self, stream: str, text: str, size: int) -> None:
        if stream != self._stream:
            self.flush()
            self._stream = stream
        self._parts.append(text)
        self._size += size
        if self._size >= self.max_bytes:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_after, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._parts:
            text = "".join(self._parts)
            self._parts.clear()
            self._size = 0
            self.emit(self._stream, text)

    def close(self) -> None:
        """Flush everything, including a trailing partial character (as U+FFFD)."""
        for stream, decoder in self._decoders.items():
            tail = decoder.decode(b"", final=True)
            if self._masks is not None:
                tail = self._masks[stream].feed(tail) + self._masks[stream].flush()
            if tail:
                if stream != self._stream:
                    self.flush()
                    self._stream = stream
                self._parts.append(tail)
        self.flush()
