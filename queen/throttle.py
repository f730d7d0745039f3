"""Failed sign-ins, counted and slowed down: per address and per username, in bounded memory. No I/O.

`Throttle` keeps, per key (``addr:127.0.0.1``, ``user:ada``), the times of
its recent failures. Once a key has `limit` failures within `window`
seconds, `wait` says how long until the oldest of them leaves the window;
the caller answers 429 with that as Retry-After, without checking the
password (so a flood costs no hashing). The caller counts an attempt as a
failure before checking it (so attempts made meanwhile see it) and `undo`es
that when it was not one; a success clears the username's failures. At most
`max_keys` keys are kept: the quietest are forgotten first, so a flood from
many addresses cannot grow it without end.

The usual defence against online guessing (OWASP Authentication Cheat
Sheet, "Protect against automated attacks": login throttling per account
and per source).
"""

from __future__ import annotations

import math
from collections import deque

ADDRESS_LIMIT = 10  # failures from one address ...
USER_LIMIT = 20  # ... or for one username ...
WINDOW = 300.0  # ... within this many seconds, then wait


class Throttle:
    def __init__(self, limit: int, window: float = WINDOW, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def wait(self, key: str, now: float) -> float:
        """Seconds `key` must wait before its next attempt; 0 when it may try now."""
        times = self._failures.get(key)
        if not times:
            return 0.0
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) < self.limit:
            if not times:
                del self._failures[key]
            return 0.0
        return times[0] + self.window - now

    def failed(self, key: str, now: float) -> None:
        times = self._failures.pop(key, None) or deque(maxlen=self.limit)
        times.append(now)
        self._failures[key] = times  # re-inserted: dict order is least recently failed first
        if len(self._failures) > self.max_keys:
            self._forget(now)

    def succeeded(self, key: str) -> None:
        """Forget `key`'s failures."""
        self._failures.pop(key, None)

    def undo(self, key: str) -> None:
        """Take back the last failure counted for `key` (counted ahead, and it did not fail after all)."""
        times = self._failures.get(key)
        if times:
            times.pop()

    def _forget(self, now: float) -> None:
        for key in [k for k, t in self._failures.items() if not t or now - t[-1] >= self.window]:
            del self._failures[key]
        while len(self._failures) > self.max_keys:
            del self._failures[next(iter(self._failures))]


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
