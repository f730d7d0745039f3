"""apiary.core.junit: JUnit XML of any language read into tests and counts; hostile files refused."""

from __future__ import annotations

import pytest

from apiary.core import junit
from apiary.core.junit import JunitError, JunitReport, parse_junit


def _statuses(data: str) -> list[tuple[str, str]]:
    return [(r.test, r.status) for r in parse_junit(data.encode()).results]


@pytest.mark.parametrize(("xml", "statuses", "counts"), [
    # pytest: <testsuites><testsuite>, classname a module; failed and errored first in the results
    (('<testsuites><testsuite name="pytest" time="2.5"><testcase classname="m" name="ok"/>'
     '<testcase classname="m" name="bad"><failure message="x"/></testcase>'
     '<testcase classname="m" name="broken"><error/></testcase>'
     '<testcase classname="m" name="later"><skipped/></testcase></testsuite></testsuites>'),
     [("m.bad", "failed"), ("m.broken", "error"), ("m.ok", "passed"), ("m.later", "skipped")],
     {"tests": 4, "passed": 1, "failed": 1, "errors": 1, "skipped": 1, "seconds": 2.5}),
    # Maven surefire: a lone <testsuite>, properties, system-out, a time with a thousands separator
    (('<testsuite name="a.CalcTest" time="1,000.5"><properties><property name="k" value="v"/></properties>'
     '<testcase classname="a.CalcTest" name="adds" time="0.5"><system-out>hi</system-out></testcase></testsuite>'),
     [("a.CalcTest.adds", "passed")], {"tests": 1, "passed": 1, "failed": 0, "errors": 0, "skipped": 0,
                                       "seconds": 1000.5}),
    # go-junit-report: suites without a time on <testsuites>: the outer suites' times summed
    (('<testsuites><testsuite name="pkg/a" time="0.25"><testcase classname="a" name="TestX" time="0.25"/>'
     '</testsuite><testsuite name="pkg/b" time="0.5"><testcase classname="b" name="TestY" time="0.5">'
     '<failure message="Failed">x_test.go:12: want 1</failure></testcase></testsuite></testsuites>'),
     [("b.TestY", "failed"), ("a.TestX", "passed")],
     {"tests": 2, "passed": 1, "failed": 1, "errors": 0, "skipped": 0, "seconds": 0.75}),
    # nested suites (jest-junit, NUnit): the outermost suite's time only; no suite time: the tests' own
    (('<testsuites><testsuite name="outer"><testsuite name="inner" time="9"><testcase name="t" time="0.125"/>'
     '</testsuite></testsuite></testsuites>'), [("t", "passed")],
     {"tests": 1, "passed": 1, "failed": 0, "errors": 0, "skipped": 0, "seconds": 0.125}),
    # a skip that then errors (pytest: a skipped test whose teardown failed) is an error
    ('<testsuite><testcase name="t"><skipped/><error message="teardown"/></testcase></testsuite>',
     [("t", "error")], {"tests": 1, "passed": 0, "failed": 0, "errors": 1, "skipped": 0, "seconds": 0.0}),
    # times that are no time count as 0
    (('<testsuite><testcase name="t" time="NaN"/><testcase name="u" time="-3"/><testcase name="v" time="soon"/>'
     '</testsuite>'), [("t", "passed"), ("u", "passed"), ("v", "passed")],
     {"tests": 3, "passed": 3, "failed": 0, "errors": 0, "skipped": 0, "seconds": 0.0}),
    ("<testsuites/>", [], {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "seconds": 0.0}),
])
def test_reports_of_every_style_give_their_tests_failed_first_and_counts(xml: str, statuses: list[tuple[str, str]],
                                                                         counts: dict[str, object]) -> None:
    report = parse_junit(xml.encode())
    assert [(r.test, r.status) for r in report.results] == statuses
    assert report.counts == counts


def test_a_failure_keeps_its_message_and_the_end_of_its_text_both_cut() -> None:
    long = "x" * 5000 + "THE END"
    xml = (f'<testsuite name="s"><testcase classname="c" name="t"><failure message="{"m" * 2000}">{long}'
           '</failure></testcase></testsuite>')
    [result] = parse_junit(xml.encode()).results
    assert len(result.message) == junit.MAX_MESSAGE and result.message.endswith("…")
    assert len(result.text) == junit.MAX_TEXT and result.text.startswith("…") and result.text.endswith("THE END")
    assert result.to_dict() == {"test": "c.t", "name": "t", "classname": "c", "suite": "s", "status": "failed",
                                "seconds": 0.0, "message": result.message, "text": result.text}
    [named] = parse_junit(f'<testsuite><testcase name="{"n" * 9999}"/></testsuite>'.encode()).results
    assert len(named.name) == junit.MAX_NAME


@pytest.mark.parametrize(("data", "problem"), [
    (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aa"><!ENTITY b "&a;&a;">]><testsuite name="&b;"/>',
     "refused: DTDForbidden (entities and DTDs are not read)"),
    (b'<!DOCTYPE t SYSTEM "file:///etc/passwd"><testsuite/>', "refused: DTDForbidden (entities and DTDs are not read)"),
    (b"<testsuite><testcase>", "not well-formed XML: no element found: line 1, column 21"),
    (b"", "not well-formed XML: no element found: line 1, column 0"),
    (b"\xff\xfe garbage", "not well-formed XML: syntax error: line 1, column 1"),
    (b"<html><body>502</body></html>", "the root element is <html>, not <testsuites> or <testsuite>"),
    (b"<testsuite>" + b"<a>" * 100 + b"</a>" * 100 + b"</testsuite>", "nested more than 64 elements deep"),
])
def test_what_is_no_report_is_refused_saying_why(data: bytes, problem: str) -> None:
    with pytest.raises(JunitError) as caught:
        parse_junit(data)
    assert str(caught.value) == problem


def test_many_tests_are_all_counted_and_at_most_max_tests_kept_failed_ones_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(junit, "MAX_TESTS", 10)
    cases = "".join(f'<testcase name="t{i}">{"<failure/>" if i % 7 == 0 else ""}</testcase>' for i in range(100))
    report = parse_junit(f"<testsuite>{cases}</testsuite>".encode())
    assert report.counts["tests"] == 100 and report.counts["failed"] == 15
    assert [r.name for r in report.results] == [f"t{i}" for i in range(0, 70, 7)]
    both = JunitReport()
    both.add(parse_junit(b'<testsuite><testcase name="a"/></testsuite>'))
    both.add(parse_junit(b'<testsuite time="1"><testcase name="b"><error/></testcase></testsuite>'))
    assert [r.name for r in both.results] == ["b", "a"]
    assert both.counts == {"tests": 2, "passed": 1, "failed": 0, "errors": 1, "skipped": 0, "seconds": 1.0}


def test_past_max_texts_failures_keep_their_message_but_not_their_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(junit, "MAX_TEXTS", 25)
    cases = "".join(f'<testcase name="t{i}"><failure message="m{i}">{"x" * 10}</failure></testcase>' for i in range(4))
    report = parse_junit(f"<testsuite>{cases}</testsuite>".encode())
    assert [(r.message, len(r.text)) for r in report.results] == [("m0", 10), ("m1", 10), ("m2", 0), ("m3", 0)]
    both = JunitReport()
    both.add(report)
    both.add(parse_junit(b'<testsuite><testcase name="u"><error message="e">yyyyy</error></testcase></testsuite>'))
    assert [(r.name, len(r.text)) for r in both.results] == [("t0", 10), ("t1", 10), ("t2", 0), ("t3", 0), ("u", 5)]
