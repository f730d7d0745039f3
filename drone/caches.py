"""A job's caches on the drone: restored after the checkout, saved after a passing job.

For each entry of the pipeline's ``cache:`` (apiary.core.caches) `JobCaches.restore` fills the key in
(``hashFiles`` over the checked-out workspace), asks the queen for the cache to restore (``cache:get``:
the queen chooses by key, then the restore keys, in the job's scopes, and answers ``cache:part`` part
by part), and unpacks it into the job's home and workspace (cachetar.py: checked first, nothing
outside them). `JobCaches.save` packs the paths of every entry whose exact key missed and sends the
tar.zst as ``job:cache`` parts, through the outbox like artifacts (delivered once, acked). Each entry
ends with one ``job:cache`` event saying hit, miss, saved, skipped or refused (and the size): what the
job page shows. A cache never fails a job: whatever goes wrong is said and the job goes on.

`CacheRequests` is the drone's side of ``cache:get`` / ``cache:part``: one future per request, answered
when the queen's part arrives, given up after ANSWER_TIMEOUT seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from apiary.core.caches import render
from apiary.core.protocol import ARTIFACT_PART_BYTES, Msg

from .cachetar import CacheRefused, CacheTooBig, hash_files, pack, unpack

log = logging.getLogger(__name__)

ANSWER_TIMEOUT = 60.0  # seconds the queen may take to answer one cache:get
AskFn = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
EmitFn = Callable[[Msg, dict[str, Any]], None]


class CacheRequests:
    """``cache:get`` out, ``cache:part`` back: `ask(body)` sends and returns the answer's body."""

    def __init__(self, send: Callable[[Msg, dict[str, Any]], bool]) -> None:
        self.send = send
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def ask(self, body: dict[str, Any]) -> dict[str, Any]:
        """The queen's answer to ``cache:get`` `body` (a `request` name is added); raises TimeoutError."""
        request = secrets.token_hex(8)
        future = asyncio.get_running_loop().create_future()
        self._waiting[request] = future
        try:
            self.send(Msg.CACHE_GET, {**body, "request": request})
            return await asyncio.wait_for(future, ANSWER_TIMEOUT)
        finally:
            self._waiting.pop(request, None)

    def answer(self, body: dict[str, Any]) -> None:
        """A ``cache:part`` arrived; one nobody waits for (given up on) is dropped."""
        future = self._waiting.get(str(body.get("request")))
        if future is not None and not future.done():
            future.set_result(body)


class JobCaches:
    """One job's caches. `restore` once the checkout is done, `save` once the job passed."""

    def __init__(self, job: dict[str, Any], workspace: Path, home: Path, emit: EmitFn, ask: AskFn,
                 scratch: Path, max_bytes: int, owner: tuple[int, int] | None = None,
                 room: Callable[[], Awaitable[None]] | None = None) -> None:
        self.job = job
        self.entries: list[dict[str, Any]] = list((job.get("pipeline") or {}).get("cache") or [])
        self.roots = {"home": home, "workspace": workspace}
        self.emit, self.ask, self.room = emit, ask, room
        self.scratch, self.max_bytes, self.owner = scratch, max_bytes, owner
        self.keys: dict[int, str] = {}
        self.to_save: set[int] = set()  # entries whose exact key missed

    def _say(self, text: str) -> None:
        self.emit(Msg.JOB_STDOUT, {"text": f"cache: {text}\n"})

    def _fill(self, template: str) -> str:
        return render(template, branch=str((self.job.get("ref") or {}).get("branch") or ""),
                      os_name=platform.system().lower(), arch=platform.machine(),
                      parameters=self.job.get("parameters") or {},
                      hash_files=lambda globs: hash_files(self.roots["workspace"], globs))

    async def restore(self) -> None:
        for index, entry in enumerate(self.entries):
            try:
                await self._restore(index, entry)
            except Exception as exc:  # never the job's failure
                log.warning("job %s: cache %d: %s", self.job.get("id"), index, exc, exc_info=True)
                self._say(f"{self.keys.get(index, entry['key'])}: not restored: {exc}")
                self.emit(Msg.JOB_CACHE, {"index": index, "key": self.keys.get(index, ""), "state": "miss",
                                          "note": str(exc)[:300]})

    async def _restore(self, index: int, entry: dict[str, Any]) -> None:
        try:
            key = await asyncio.to_thread(self._fill, entry["key"])
            restore = [await asyncio.to_thread(self._fill, k) for k in entry.get("restore_keys") or []]
        except CacheTooBig as exc:
            self._say(f"{entry['key']}: no key: {exc}; not restored, not saved")
            self.emit(Msg.JOB_CACHE, {"index": index, "key": "", "state": "skipped", "note": str(exc)[:300]})
            return
        self.keys[index] = key
        ask = {"id": self.job["id"], "attempt": int(self.job.get("attempt") or 1), "key": key, "restore": restore}
        first = await self.ask({**ask, "part": 0})
        if not first.get("found"):
            self.to_save.add(index)
            why = f" ({first['error']})" if first.get("error") else ""
            self._say(f"{key}: miss{why}")
            self.emit(Msg.JOB_CACHE, {"index": index, "key": key, "state": "miss"})
            return
        size, parts, cache = int(first.get("size") or 0), int(first.get("parts") or 1), str(first.get("cache"))
        found_key, scope = str(first.get("key") or ""), str(first.get("scope") or "")
        if found_key != key:
            self.to_save.add(index)  # a restore key's match: this job saves the exact key
        if size > self.max_bytes:
            self._refused(index, key, found_key, scope, f"{size:,} bytes, over this drone's cap of {self.max_bytes:,}")
            return
        self.scratch.mkdir(parents=True, exist_ok=True)
        path = self.scratch / f"{self.job['id']}-{index}.tar.zst"
        try:
            with await asyncio.to_thread(open, path, "wb") as f:
                answer, got = first, 0
                for part in range(parts):
                    if part:
                        answer = await self.ask({**ask, "part": part, "cache": cache})
                    data = answer.get("data") or b""
                    if not answer.get("found") or answer.get("cache") != cache or got + len(data) > size:
                        raise CacheRefused(answer.get("error") or "the cache changed while it was being fetched")
                    got += len(data)
                    await asyncio.to_thread(f.write, data)
            notes = await asyncio.to_thread(unpack, path, self.roots, self.max_bytes, self.owner,
                                             paths=entry["paths"])
        except CacheRefused as exc:
            self._refused(index, key, found_key, scope, str(exc))
            return
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
        for note in notes[:20]:
            self._say(note)
        where = f" from {scope}" if scope else ""
        self._say(f"{key}: hit{'' if found_key == key else ' on ' + found_key}{where} ({size:,} bytes)")
        self.emit(Msg.JOB_CACHE, {"index": index, "key": key, "state": "hit", "restored_key": found_key,
                                  "scope": scope, "size": size})

    def _refused(self, index: int, key: str, found_key: str, scope: str, why: str) -> None:
        self.to_save.discard(index)  # what is there is suspect: this job does not add to it
        self._say(f"{key}: the cache {found_key} of {scope} was not restored: {why}")
        self.emit(Msg.JOB_CACHE, {"index": index, "key": key, "state": "refused", "restored_key": found_key,
                                  "scope": scope, "note": why[:300]})

    async def save(self) -> None:
        """Pack and send each entry whose exact key missed (call only after the job passed)."""
        for index in sorted(self.to_save):
            try:
                await self._save(index, self.entries[index], self.keys[index])
            except Exception as exc:
                log.warning("job %s: cache %d not saved: %s", self.job.get("id"), index, exc, exc_info=True)
                self._say(f"{self.keys[index]}: not saved: {exc}")
                self.emit(Msg.JOB_CACHE, {"index": index, "key": self.keys[index], "state": "skipped",
                                          "note": str(exc)[:300]})

    async def _save(self, index: int, entry: dict[str, Any], key: str) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)
        path = self.scratch / f"{self.job['id']}-{index}-save.tar.zst"
        try:
            try:
                files, notes = await asyncio.to_thread(pack, self.roots, entry["paths"], path, self.max_bytes)
            except CacheTooBig as exc:
                self._say(f"{key}: not saved: {exc} (this drone's cache_max_bytes is {self.max_bytes:,})")
                self.emit(Msg.JOB_CACHE, {"index": index, "key": key, "state": "skipped", "note": str(exc)[:300]})
                return
            for note in notes[:20]:
                self._say(note)
            if files == 0:
                self._say(f"{key}: nothing to save")
                self.emit(Msg.JOB_CACHE, {"index": index, "key": key, "state": "skipped", "note": "nothing to save"})
                return
            size = path.stat().st_size
            parts = max(1, -(-size // ARTIFACT_PART_BYTES))
            with await asyncio.to_thread(open, path, "rb") as f:
                for part in range(parts):
                    if self.room is not None:
                        await self.room()
                    data = await asyncio.to_thread(f.read, ARTIFACT_PART_BYTES)
                    self.emit(Msg.JOB_CACHE, {"index": index, "key": key, "state": "part", "part": part,
                                              "parts": parts, "size": size, "data": data})
            self._say(f"{key}: saved ({files:,} files, {size:,} bytes)")
            self.emit(Msg.JOB_CACHE, {"index": index, "key": key, "state": "saved", "size": size, "files": files})
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
