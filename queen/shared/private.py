"""Private files: a secret written where only this process's user can read it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(folder: Path, text: str, prefix: str = "key-") -> Path:
    """`text` in a new file of mode 0600 in `folder` (made 0700 if missing); its path. The caller removes it."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix=prefix, dir=folder)  # mode 0600
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(name)
