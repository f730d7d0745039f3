"""JUnit XML test reports, read safely: the one parser (the drone's reports, the python plugin's counts). No I/O.

`parse_junit(data)` takes a report's bytes (the caller caps how many) and
returns a `JunitReport`: every ``<testcase>`` anywhere under ``<testsuites>``
or ``<testsuite>`` (pytest, Maven surefire, go-junit-report, jest-junit,
nested suites alike) as a `TestResult`, and the counts. A report is the job's
file, so it is hostile: defusedxml refuses entities and DTDs (billion laughs,
external entities), elements are dropped as soon as they are read (memory
stays flat however many tests), at most MAX_TESTS results are kept (failed
and errored ones first; the counts cover every test), names, messages and
texts are cut to MAX_NAME, MAX_MESSAGE and MAX_TEXT characters (and past
MAX_TEXTS characters of texts in a report, failures keep only their message). Anything
that is no report raises `JunitError` saying what is wrong.

Status of a test: ``failed`` (a ``<failure>``), ``error`` (an ``<error>``),
``skipped`` (a ``<skipped>``), else ``passed``. Seconds: the outermost
suites' ``time`` when they give one, else the tests' own.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from .errors import ApiaryError

MAX_TESTS = 20_000  # results kept per job (the counts cover all)
MAX_NAME = 500  # characters of a test's name, class name or suite name
MAX_MESSAGE = 1_000  # characters of a failure's message
MAX_TEXT = 4_000  # characters of a failure's text (its traceback): the end is kept, where the error is
MAX_TEXTS = 2 * 2**20  # characters of failures' texts kept per report (a job's too): later failures keep their message
STATUSES = ("failed", "error", "skipped", "passed")  # the order failed tests come first in
_BAD = {"failure": "failed", "error": "error"}


class JunitError(ApiaryError):
    """A file that is no JUnit XML report (malformed, entities, another root); the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class TestResult:
    """One test: `name` as the report gives it, `classname` (a class, a package, a file), `suite`,
    `status` (one of STATUSES), `seconds`, and for a failure its `message` and `text` (cut)."""

    __test__ = False  # not a pytest class

    name: str
    classname: str
    suite: str
    status: str
    seconds: float
    message: str = ""
    text: str = ""

    @property
    def test(self) -> str:
        """The test's identity in its repository's history: ``classname.name``."""
        return f"{self.classname}.{self.name}" if self.classname else self.name

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"test": self.test, "name": self.name, "classname": self.classname,
                               "suite": self.suite, "status": self.status, "seconds": self.seconds}
        if self.message:
            out["message"] = self.message
        if self.text:
            out["text"] = self.text
        return out


@dataclasses.dataclass
class JunitReport:
    """What a report holds: `results` (at most MAX_TESTS, failed and errored first) and the counts of all."""

    results: list[TestResult] = dataclasses.field(default_factory=list)
    counts: dict[str, Any] = dataclasses.field(default_factory=lambda: empty_counts())

    def add(self, other: JunitReport) -> None:
        """Another file's report into this one (a job's several files), keeping at most MAX_TESTS results."""
        self.counts = add_counts(self.counts, other.counts)
        bad = [r for r in self.results + other.results if r.status in _BAD.values()]
        rest = [r for r in self.results + other.results if r.status not in _BAD.values()]
        self.results, texts_left = [], MAX_TEXTS
        for r in (bad + rest)[:MAX_TESTS]:  # the job's texts within MAX_TEXTS too
            if len(r.text) > texts_left:
                r = dataclasses.replace(r, text="")
            texts_left -= len(r.text)
            self.results.append(r)


def empty_counts() -> dict[str, Any]:
    """``{tests, passed, failed, errors, skipped, seconds}``, all zero."""
    return {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "seconds": 0.0}


def add_counts(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {k: a[k] + b[k] for k in ("tests", "passed", "failed", "errors", "skipped")}
    out["seconds"] = round(a["seconds"] + b["seconds"], 3)
    return out


def parse_junit(data: bytes) -> JunitReport:
    """Read one report's bytes; JunitError says why it is none (the message names no path: the caller does)."""
    try:
        return _parse(data)
    except DefusedXmlException as exc:
        raise JunitError(f"refused: {type(exc).__name__} (entities and DTDs are not read)") from None
    except ParseError as exc:
        raise JunitError(f"not well-formed XML: {exc}") from None
    except RecursionError:
        raise JunitError("nested too deeply") from None


def _parse(data: bytes) -> JunitReport:
    bad: list[TestResult] = []
    rest: list[TestResult] = []
    counts = {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    suites: list[str] = []  # the open testsuite elements' names, outermost first
    open_elements: list[Any] = []
    suite_seconds = 0.0
    suites_timed = False
    case_seconds = 0.0
    root: str | None = None
    outcome: dict[str, Any] | None = None  # the open testcase's failure, error or skip
    texts_left = MAX_TEXTS
    for event, element in iterparse(io.BytesIO(data), events=("start", "end"), forbid_dtd=True):
        tag = element.tag
        if event == "start":
            open_elements.append(element)
            if root is None:
                root = tag
                if tag not in ("testsuites", "testsuite"):
                    raise JunitError(f"the root element is <{_cut(str(tag), 40)}>, not <testsuites> or <testsuite>")
            if len(open_elements) > 64:
                raise JunitError("nested more than 64 elements deep")
            if tag == "testsuite":
                suites.append(_cut(element.get("name") or "", MAX_NAME))
                if len(suites) == 1 and element.get("time") is not None:
                    suite_seconds += _seconds(element.get("time"))
                    suites_timed = True
            elif tag == "testcase":
                outcome = None
            continue
        open_elements.pop()
        if tag in ("failure", "error", "skipped") and outcome is None or tag in _BAD and outcome is not None \
                and outcome["status"] == "skipped":
            outcome = {"status": _BAD.get(tag, "skipped"), "message": _cut(element.get("message") or "", MAX_MESSAGE),
                       "text": _tail(element.text or "", MAX_TEXT)}
        elif tag == "testcase":
            seconds = _seconds(element.get("time"))
            case_seconds += seconds
            status = outcome["status"] if outcome else "passed"
            counts["tests"] += 1
            counts[{"failed": "failed", "error": "errors", "skipped": "skipped"}.get(status, "passed")] += 1
            kept = bad if status in _BAD.values() else rest
            if len(kept) < MAX_TESTS:
                text = outcome["text"] if outcome else ""
                if len(text) > texts_left:
                    text = ""
                texts_left -= len(text)
                kept.append(TestResult(
                    name=_cut(element.get("name") or "", MAX_NAME), classname=_cut(element.get("classname") or "",
                                                                                   MAX_NAME),
                    suite=suites[-1] if suites else "", status=status, seconds=seconds,
                    message=outcome["message"] if outcome else "", text=text))
            outcome = None
            if open_elements:
                open_elements[-1].clear()  # what was read goes: memory stays flat however many tests
        elif tag == "testsuite":
            suites.pop()
            if open_elements:
                open_elements[-1].clear()
    if root is None:
        raise JunitError("empty")
    results = (bad + rest)[:MAX_TESTS]
    return JunitReport(results, {**counts, "seconds": round(suite_seconds if suites_timed else case_seconds, 3)})


def _seconds(text: str | None) -> float:
    """A ``time`` attribute: seconds, 0 when absent or not a finite non-negative number (``1,234.5`` is read)."""
    try:
        value = float((text or "0").replace(",", ""))
    except ValueError:
        return 0.0
    return round(value, 6) if math.isfinite(value) and 0 <= value < 1e8 else 0.0


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"


def _tail(text: str, most: int) -> str:
    """A failure's text: its end, where the assertion is, when it is too long."""
    text = text.strip("\n")
    return text if len(text) <= most else "…" + text[-(most - 1):]
