"""`apiary run`: a working copy's pipeline run here, with no queen and no store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PIPELINE = """
parameters:
  NAME: {required: true}
  CODE: {default: "0"}
stages:
  - name: hello
    steps: ["echo hello $NAME", "echo to-stderr >&2", "ls marker.txt"]
  - name: finish
    needs: [hello]
    steps: ["exit $CODE"]
"""


def apiary(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apiary.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_a_working_copy_runs_here_with_live_output_and_a_summary(tmp_path: Path) -> None:
    (tmp_path / ".apiary.yml").write_text(PIPELINE)
    (tmp_path / "marker.txt").write_text("in the working copy\n")

    ok = apiary("run", str(tmp_path), "--param", "NAME=ada", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "hello ada" in ok.stdout and "marker.txt" in ok.stdout and "to-stderr" in ok.stderr
    assert "Summary" in ok.stdout and "Job passed" in ok.stdout

    failed = apiary("run", str(tmp_path), "--param", "NAME=ada", "--param", "CODE=3", cwd=tmp_path)
    assert failed.returncode == 1 and "exit 3" in failed.stdout and "Job failed" in failed.stdout


def test_a_bad_pipeline_or_parameter_is_named_not_run(tmp_path: Path) -> None:
    (tmp_path / ".apiary.yml").write_text(PIPELINE)
    missing = apiary("run", str(tmp_path), cwd=tmp_path)
    assert missing.returncode == 2
    assert "parameters.NAME" in missing.stderr and "Traceback" not in missing.stderr

    (tmp_path / ".apiary.yml").write_text("stages:\n  - name: a\n    stepz: [x]\n")
    bad = apiary("run", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2
    assert ".apiary.yml, line 3" in bad.stderr and "stepz" in bad.stderr and "Traceback" not in bad.stderr

    nothing = apiary("run", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert nothing.returncode == 2 and "No such file" in nothing.stderr
