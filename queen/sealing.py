"""Secrets at rest: repository secrets are stored sealed (Fernet: AES with an HMAC), never in clear.

The key is a file named by ``[queen] secrets_key_file`` (default:
``data_dir/secrets.key``, made on first start, readable by its owner only).
Keep it apart from backups of the store: the store alone does not reveal a
secret. Values stored in clear by an older queen are sealed when the queen
starts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from apiary.core.errors import ConfigError

log = logging.getLogger(__name__)

PREFIX = "fernet:"


class Sealer:
    """Seals and opens secret values with one key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_file(cls, path: Path) -> Sealer:
        """The key in `path`; a new one is written there if the file does not exist."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
            log.info("made a key for secrets at rest: %s (keep it; without it the stored secrets are lost)", path)
        try:
            return cls(path.read_bytes().strip())
        except OSError as exc:
            raise ConfigError(f"[queen] secrets_key_file: cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(f"[queen] secrets_key_file: {path} does not hold a key (32 url-safe base64 bytes)") from None

    def seal(self, value: str) -> str:
        return PREFIX + self._fernet.encrypt(value.encode()).decode()

    def open(self, stored: str) -> str:
        """The value of a stored secret; raise ConfigError if this key did not seal it."""
        if not stored.startswith(PREFIX):
            return stored  # stored in clear by an older queen; sealed at start (see Store.seal_secrets)
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise ConfigError("[queen] secrets_key_file: the stored secrets were sealed with another key; "
                              "give the queen the key it used") from None

    @staticmethod
    def sealed(stored: str) -> bool:
        return stored.startswith(PREFIX)
