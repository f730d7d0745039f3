"""Per-job workspaces: a fresh directory for each job, removed when it ends."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path


class Workspaces:
    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, job_id: str) -> Path:
        path = self.root / job_id
        if path.exists():  # a previous attempt of the same job on this drone
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    async def remove(self, path: Path) -> None:
        await asyncio.to_thread(shutil.rmtree, path, True)
