"""A pipeline's ``reports:`` key, and a job's test report as ``job:report`` messages. Pure, no I/O.

    reports:
      junit: ["**/junit*.xml", "target/surefire-reports/*.xml"]

`compile_reports` checks the key at trigger time (globs inside the workspace:
no leading '/', no '..'); the drone reads the files after the job's stages
(apiary.drone.testreports) with the parser of apiary.core.junit.
`report_bodies` cuts what it read into ``job:report`` bodies of at most
CHUNK_TESTS tests each, so no message is large: part 0 carries the counts and
the files read (each {path, tests} or {path, error}), every part its tests
numbered from `first` (the queen stores each test under ``JOB:N``, so a body
sent twice is stored once).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import InputError
from .junit import STATUSES, JunitReport

MAX_GLOBS = 20
MAX_GLOB = 200  # characters
MAX_FILES = 200  # report files read per job
MAX_FILE_BYTES = 32 * 2**20  # bytes of one report file; a larger one is skipped, saying so
MAX_TOTAL_BYTES = 128 * 2**20  # bytes of every report file of a job together
CHUNK_TESTS = 200  # tests per job:report message (a test at most ~6,500 characters: a body under ~4 MB)
KINDS = ("junit",)


class ReportsError(InputError):
    """A ``reports:`` key that does not validate: `path` (``reports.junit[0]``) and `problem`."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}", field=path)
        self.path, self.problem = path, problem


def compile_reports(value: Any) -> dict[str, list[str]] | None:
    """``{"junit": [glob, ...]}`` from the pipeline's ``reports:`` value; None when absent or empty."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ReportsError("reports", "must be a mapping such as {junit: ['**/junit*.xml']}")
    out: dict[str, list[str]] = {}
    for kind, globs in value.items():
        at = f"reports.{kind}"
        if kind not in KINDS:
            raise ReportsError(at, f"unknown report kind {kind!r} (kinds: {', '.join(KINDS)})")
        if isinstance(globs, str):
            globs = [globs]
        if not isinstance(globs, list) or not globs or len(globs) > MAX_GLOBS:
            raise ReportsError(at, f"must be a list of 1 to {MAX_GLOBS} globs")
        for i, glob in enumerate(globs):
            problem = glob_problem(glob)
            if problem:
                raise ReportsError(f"{at}[{i}]", problem)
        out[kind] = [g.strip().removeprefix("./") for g in globs]
    return out or None


def glob_problem(glob: Any) -> str | None:
    """Why `glob` cannot name report files in the workspace, or None."""
    if not isinstance(glob, str) or not glob.strip():
        return "must be a non-empty glob"
    if len(glob) > MAX_GLOB or "\n" in glob or "\0" in glob:
        return f"must be one line of at most {MAX_GLOB} characters"
    if glob.strip().startswith("/") or ".." in glob.strip().split("/"):
        return f"{glob!r} must stay inside the workspace (no leading '/', no '..')"
    return None


def report_bodies(report: JunitReport, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``job:report`` bodies for a job's report: [{part, parts, first, tests[, counts, files]}]."""
    rows = [r.to_dict() for r in report.results]
    parts = max(1, -(-len(rows) // CHUNK_TESTS))
    bodies = []
    for part in range(parts):
        first = part * CHUNK_TESTS
        body: dict[str, Any] = {"part": part, "parts": parts, "first": first,
                                "tests": rows[first:first + CHUNK_TESTS]}
        if part == 0:
            listed = {status: sum(1 for r in report.results if r.status == status) for status in STATUSES}
            body["counts"] = {**report.counts, "stored": len(rows), "listed": listed}
            body["files"] = files
        bodies.append(body)
    return bodies


def report_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The job document's ``report`` from a ``job:report`` body (part 0 carries it; the others nothing):
    the counts, as whole numbers and seconds, ``listed`` (the tests stored one by one, by status: what
    the API's pages count, as counting stored tests costs the store seconds), and at most MAX_FILES files
    {path, tests} or {path, error}."""
    counts = body.get("counts")
    if not isinstance(counts, dict):
        return {}
    report: dict[str, Any] = {}
    for key in ("tests", "passed", "failed", "errors", "skipped", "stored"):
        value = counts.get(key)
        report[key] = value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
    listed = counts.get("listed") if isinstance(counts.get("listed"), dict) else {}
    report["listed"] = {s: listed[s] if isinstance(listed.get(s), int) and not isinstance(listed.get(s), bool)
                        and listed[s] >= 0 else 0 for s in STATUSES}
    seconds = counts.get("seconds")
    report["seconds"] = float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) \
        and 0 <= seconds < 1e10 else 0.0
    files = []
    for item in (body.get("files") or [])[:MAX_FILES] if isinstance(body.get("files"), list) else []:
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            shown = {"path": item["path"][:MAX_GLOB * 2]}
            if isinstance(item.get("error"), str):
                shown["error"] = item["error"][:500]
            elif isinstance(item.get("tests"), int) and not isinstance(item.get("tests"), bool):
                shown["tests"] = item["tests"]
            files.append(shown)
    report["files"] = files
    return {"report": report}


def counts_line(counts: Mapping[str, Any]) -> str:
    """One line of a report's counts for a terminal: ``tests: 8 (3 failed, 1 error, 1 skipped, 3 passed) in
    1003.8 s``."""
    def number(key: str) -> int:
        value = counts.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    parts = [f"{number(key)} {'error' if key == 'errors' and number(key) == 1 else key}"
             for key in ("failed", "errors", "skipped", "passed") if number(key)]
    seconds = counts.get("seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else ""
    return f"tests: {number('tests')}" + (f" ({', '.join(parts)})" if parts else "") + took
