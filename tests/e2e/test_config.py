"""Configuration faults where processes meet them: the CLI exits with a message, a port in use is named.
Defaults, file, environment and the errors themselves: tests/unit/test_config.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_a_queen_with_a_bad_config_file_exits_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "apiary.toml"
    path.write_text("[queen]\nheartbeat_interval = -1\n")
    result = subprocess.run([sys.executable, "-m", "apiary.cli", "queen", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"apiary: error: {path}: [queen] heartbeat_interval: must be a finite number greater than 0, got -1.0"


def test_a_bad_flag_value_is_named(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "apiary.cli", "drone", "--queen", "nowhere"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert "--queen: must look like tcp://HOST:PORT" in result.stderr and "Traceback" not in result.stderr


async def test_a_port_in_use_is_named_and_nothing_is_left_running(queen, tmp_path: Path) -> None:
    http_port = queen.api.rsplit(":", 1)[1].split("/")[0]
    for flags, words in ((["--http-port", http_port], f"cannot listen on 127.0.0.1:{http_port} (http_port)"),
                         (["--http-port", "0", "--drone-bind", queen.endpoint],
                          f"cannot bind the drone endpoint {queen.endpoint} (drone_bind)")):
        result = subprocess.run([sys.executable, "-m", "apiary.cli", "queen", "--data-dir", str(tmp_path / "q2"),
                                 *flags], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    store = tmp_path / "q2" / "store"
    assert not (store / "nx-27017.pid").exists()  # the embedded store it started is stopped
