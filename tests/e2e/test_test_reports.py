"""Test reports: JUnit XML the job writes, read by the drone after the stages, counted on the job, listed
failed first in the API, a test's history across jobs with a flaky one flagged; hostile files leave the
drone and the queen well, each named in the job's output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser import browser, page, shot  # noqa: F401  (fixtures)
from tests.cluster import Cluster
from tests.e2e.test_client import apiary, url

# pytest's style: <testsuites><testsuite>, classname a module, one test's outcome from $OUTCOME.
PYTEST_XML = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" failures="1"
 skipped="1" tests="5" time="1.250"><testcase classname="tests.test_calc" name="test_adds" time="0.010"/>
<testcase classname="tests.test_calc" name="test_divides" time="0.020"><failure message="assert 3 == 4">def test_divides():
&gt;       assert 6 / 2 == 4
E       assert 3.0 == 4</failure></testcase>
<testcase classname="tests.test_calc" name="test_needs_db" time="0.001"><error message="failed on setup with RuntimeError: no db">RuntimeError: no db</error></testcase>
<testcase classname="tests.test_calc" name="test_later" time="0.000"><skipped type="pytest.skip" message="not yet"/></testcase>
<testcase classname="tests.test_net" name="test_network" time="0.300">$NET</testcase>
</testsuite></testsuites>"""

# Maven surefire's style: a lone <testsuite> per class, times with a thousands separator.
SUREFIRE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="com.example.CalcTest" time="1,002.5"
 tests="3" errors="0" skipped="0" failures="1"><properties><property name="java.version" value="21"/></properties>
<testcase name="multiplies" classname="com.example.CalcTest" time="0.004"/>
<testcase name="subtracts" classname="com.example.CalcTest" time="0.002"><failure message="expected: &lt;1&gt; but was: &lt;2&gt;" type="org.opentest4j.AssertionFailedError">org.opentest4j.AssertionFailedError: expected: &lt;1&gt; but was: &lt;2&gt;
	at com.example.CalcTest.subtracts(CalcTest.java:14)</failure><system-out>hello</system-out></testcase>
<testcase name="rounds" classname="com.example.CalcTest" time="1002.4"/>
</testsuite>"""

PIPELINE = f"""
parameters: {{OUTCOME: pass}}
reports:
  junit: ["**/junit*.xml", "target/surefire-reports/*.xml"]
stages:
  - name: python
    steps:
      - run: |
          mkdir -p reports
          if [ "$OUTCOME" = pass ]; then NET=''; else NET='<failure message="timed out">TimeoutError</failure>'; fi
          cat > reports/junit-py.xml <<EOF
{PYTEST_XML}
          EOF
  - name: java
    needs: [python]
    steps:
      - run: |
          mkdir -p target/surefire-reports
          cat > target/surefire-reports/TEST-com.example.CalcTest.xml <<'EOF'
{SUREFIRE_XML}
          EOF
          echo "Tests run: 3, Failures: 1"; exit 1
"""


def _indented(pipeline: str) -> str:
    """The XML inside the YAML block scalars, indented as the block (cat's here-document keeps it)."""
    out = []
    inside = False
    for line in pipeline.splitlines():
        if line.strip().startswith("cat > "):
            out.append(line)
            inside = True
            continue
        if inside and line.strip() == "EOF":
            out.append("          EOF")
            inside = False
            continue
        out.append(("          " + line) if inside else line)
    return "\n".join(out) + "\n"


async def test_a_jobs_junit_reports_are_counted_listed_failed_first_and_kept_per_test(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("calc", _indented(PIPELINE))
    job = await queen.wait_job((await queen.trigger("calc", parameters={"OUTCOME": "fail"}))["id"])
    # The java stage failed the job: that is when the reports matter, and they were read.
    assert job["status"] == "failed", job
    report = job["report"]
    assert {k: report[k] for k in ("tests", "passed", "failed", "errors", "skipped", "stored")} == {
        "tests": 8, "passed": 3, "failed": 3, "errors": 1, "skipped": 1, "stored": 8}
    assert report["seconds"] == 1.25 + 1002.5
    assert report["files"] == [{"path": "reports/junit-py.xml", "tests": 5},
                               {"path": "target/surefire-reports/TEST-com.example.CalcTest.xml", "tests": 3}]
    text = "".join(e.get("text", "") for e in await queen.events(job["id"]))
    assert "reports: reports/junit-py.xml: 5 tests (2 failed, 1 error, 1 skipped)" in text, text

    listed = await queen.get(f"/jobs/{job['id']}/tests")
    assert listed["total"] == 8 and listed["report"]["tests"] == 8
    tests = listed["tests"]
    assert [(t["test"], t["status"]) for t in tests] == [
        ("tests.test_calc.test_divides", "failed"), ("tests.test_calc.test_needs_db", "error"),
        ("tests.test_net.test_network", "failed"), ("com.example.CalcTest.subtracts", "failed"),
        ("tests.test_calc.test_later", "skipped"), ("tests.test_calc.test_adds", "passed"),
        ("com.example.CalcTest.multiplies", "passed"), ("com.example.CalcTest.rounds", "passed")]
    divides = tests[0]
    assert divides["message"] == "assert 3 == 4" and divides["text"].endswith("E       assert 3.0 == 4")
    assert divides["suite"] == "pytest" and divides["seconds"] == 0.02
    assert tests[3]["message"] == "expected: <1> but was: <2>" and "CalcTest.java:14" in tests[3]["text"]
    assert tests[4]["message"] == "not yet"
    assert all(t["history"]["flaky"] is False for t in tests)

    paged = await queen.get(f"/jobs/{job['id']}/tests?offset=2&limit=3")
    assert [t["name"] for t in paged["tests"]] == ["test_network", "subtracts", "test_later"]
    assert (await queen.get(f"/jobs/{job['id']}/tests?status=passed"))["total"] == 3
    status, body = await queen.request("GET", f"/jobs/{job['id']}/tests?status=green")
    assert status == 400 and body["field"] == "status"


async def test_a_test_that_passes_and_fails_on_one_commit_is_flagged_flaky(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("flaky", _indented(PIPELINE))
    commit = "ab" * 20
    ids = []
    for outcome in ("pass", "fail", "pass"):
        job = await queen.wait_job((await queen.trigger("flaky", commit=commit,
                                                        parameters={"OUTCOME": outcome}))["id"])
        ids.append(job["id"])
        assert job["report"]["tests"] == 8
    history = await queen.get("/repos/flaky/tests/history?test=tests.test_net.test_network")
    assert [(r["job"], r["status"]) for r in history["runs"]] == [(ids[2], "passed"), (ids[1], "failed"),
                                                                (ids[0], "passed")]
    assert history["runs"][1]["message"] == "timed out"
    assert (history["passed"], history["failed"], history["flaky"]) == (2, 1, True)
    assert history["why"] == f"passed and failed on the same commit {commit[:12]}"
    steady = await queen.get("/repos/flaky/tests/history?test=tests.test_calc.test_divides")
    assert (steady["passed"], steady["failed"], steady["flaky"]) == (0, 3, False)

    tests = {t["test"]: t for t in (await queen.get(f"/jobs/{ids[2]}/tests"))["tests"]}
    assert tests["tests.test_net.test_network"]["history"]["flaky"] is True
    assert tests["tests.test_calc.test_divides"]["history"] == {"passed": 0, "failed": 3, "skipped": 0, "flips": 0,
                                                               "flaky": False, "why": ""}
    # The first job's history stops at it: nothing flaky yet then.
    first = {t["test"]: t for t in (await queen.get(f"/jobs/{ids[0]}/tests"))["tests"]}
    assert first["tests.test_net.test_network"]["history"]["flaky"] is False
    status, body = await queen.request("GET", "/repos/flaky/tests/history")
    assert status == 400 and body["field"] == "test"


HOSTILE = r"""
reports: {junit: ["hostile/*.xml"]}
stages:
  - name: write
    steps:
      - run: |
          mkdir -p hostile
          printf '%s' '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><testsuite><testcase name="&lol3;"/></testsuite>' > hostile/laughs.xml
          printf '%s' '<testsuite><testcase name="cut' > hostile/malformed.xml
          printf '%s' '<html><body>502 Bad Gateway</body></html>' > hostile/proxy.xml
          truncate -s 200M hostile/huge.xml
          ln -s /etc/passwd hostile/escape.xml
          { echo '<testsuites><testsuite name="big">'; seq 100000 | awk '{print "<testcase classname=\"big.Suite\" name=\"t"$1"\" time=\"0.001\">" ($1 % 1000 == 0 ? "<failure message=\"no " $1 "\"/>" : "") "</testcase>"}'; echo '</testsuite></testsuites>'; } > hostile/many.xml
"""


async def test_hostile_reports_are_named_and_skipped_and_leave_the_drone_and_queen_well(
        queen: Cluster, page: Page) -> None:  # noqa: F811
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("hostile", HOSTILE)
    job = await queen.wait_job((await queen.trigger("hostile"))["id"], timeout=120)
    assert (job["status"], job.get("error")) == ("passed", None), job
    files = {f["path"]: f for f in job["report"]["files"]}
    assert files["hostile/laughs.xml"]["error"] == "refused: DTDForbidden (entities and DTDs are not read)"
    assert files["hostile/malformed.xml"]["error"].startswith("not well-formed XML: ")
    assert files["hostile/proxy.xml"]["error"] == "the root element is <html>, not <testsuites> or <testsuite>"
    assert files["hostile/huge.xml"]["error"] == "209,715,200 bytes, over the 33,554,432 bytes per file"
    assert files["hostile/escape.xml"]["error"] == "a link to outside the workspace"
    assert files["hostile/many.xml"] == {"path": "hostile/many.xml", "tests": 100000}
    counts = {k: job["report"][k] for k in ("tests", "passed", "failed", "stored")}
    assert counts == {"tests": 100000, "passed": 99900, "failed": 100, "stored": 20000}
    text = "".join(e.get("text", "") for e in await queen.events(job["id"]))
    assert "reports: hostile/laughs.xml skipped: refused: DTDForbidden" in text
    assert "reports: hostile/huge.xml skipped: 209,715,200 bytes" in text

    listed = await queen.get(f"/jobs/{job['id']}/tests?limit=500")
    assert listed["total"] == 20000 and len(listed["tests"]) == 500
    assert [t["status"] for t in listed["tests"][:101]] == ["failed"] * 100 + ["passed"]
    assert listed["tests"][0]["message"] == "no 1000"
    # Both still serve: the drone runs the next job, the queen answers.
    again = await queen.wait_job((await queen.trigger("hostile"))["id"], timeout=120)
    assert again["status"] == "passed" and again["report"]["tests"] == 100000
    assert "d1" in await queen.drone_ids()

    await page.goto(f"/jobs/{job['id']}")
    await expect(page.locator("#tests-counts")).to_have_text(
        "100,000 tests 100 failed 99,900 passed 1 min 40 s (20,000 listed, failed first)")
    await expect(page.locator("#tests-files > li")).to_have_text([
        "hostile/escape.xml skipped: a link to outside the workspace",
        "hostile/huge.xml skipped: 209,715,200 bytes, over the 33,554,432 bytes per file",
        "hostile/laughs.xml skipped: refused: DTDForbidden (entities and DTDs are not read)",
        re.compile(r"hostile/malformed.xml skipped: not well-formed XML: .*"),
        "hostile/proxy.xml skipped: the root element is <html>, not <testsuites> or <testsuite>"])
    await expect(page.locator("#tests-list > li")).to_have_count(100)
    await page.locator("#tests").evaluate("e => e.scrollIntoView()")
    await page.screenshot(path="/tmp/shots/job-tests-hostile.png")
    await page.locator("#tests-more").click()
    await expect(page.locator("#tests-list > li")).to_have_count(200)
    await expect(page.locator("#tests-list > li").nth(99)).to_have_attribute("data-test", "big.Suite.t100000")
    await expect(page.locator("#tests-list > li").nth(100)).to_have_attribute("data-test", "big.Suite.t1")
    await expect(page.locator("#tests-more")).to_have_text("Show more tests (19,800 more)")



async def test_the_job_page_shows_the_tests_failed_first_with_messages_and_the_flaky_one_marked(
        queen: Cluster, page: Page) -> None:  # noqa: F811
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("web", _indented(PIPELINE))
    commit = "cd" * 20
    for outcome in ("pass", "pass"):
        await queen.wait_job((await queen.trigger("web", commit=commit, parameters={"OUTCOME": outcome}))["id"])
    job = await queen.trigger("web", commit=commit, parameters={"OUTCOME": "fail"})
    await page.goto(f"/jobs/{job['id']}")  # open while it runs: the panel comes when the job has its report
    panel = page.locator("#tests")
    await expect(panel).to_be_visible(timeout=30_000)
    await expect(page.locator("#job")).to_have_attribute("data-status", "failed")
    await expect(page.locator("#tests-counts")).to_have_text(
        "8 tests 3 failed 1 error 1 skipped 3 passed 16 min 44 s")
    rows = panel.locator("#tests-list > li")
    await expect(rows).to_have_count(8)
    assert await rows.evaluate_all("rows => rows.map(r => r.dataset.test)") == [
        "tests.test_calc.test_divides", "tests.test_calc.test_needs_db", "tests.test_net.test_network",
        "com.example.CalcTest.subtracts", "tests.test_calc.test_later", "tests.test_calc.test_adds",
        "com.example.CalcTest.multiplies", "com.example.CalcTest.rounds"]
    first = rows.nth(0)
    await expect(first.locator(".status")).to_have_text("failed")
    await expect(first.locator(".t-message")).to_have_text("assert 3 == 4")
    await expect(first.locator(".t-dur")).to_have_text("20 ms")
    await first.locator("details > summary").click()
    await expect(first.locator("pre.t-text")).to_contain_text("E       assert 3.0 == 4")
    network = panel.locator('li[data-test="tests.test_net.test_network"]')
    await expect(network.locator(".t-flaky")).to_have_attribute(
        "title", f"passed and failed on the same commit {commit[:12]}")
    await expect(network.locator(".t-hist")).to_have_text("last jobs: 2 passed, 1 failed")
    assert await panel.locator(".t-flaky").count() == 1
    await expect(panel.locator('li[data-test="tests.test_calc.test_later"] .t-message')).to_have_text("not yet")
    await shot(page, "job-tests")
    await page.screenshot(path="/tmp/shots/job-tests.png", full_page=True)


async def test_apiary_trigger_follow_and_logs_say_the_test_counts(queen: Cluster, tmp_path: Path) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("cli", _indented(PIPELINE))
    followed = await apiary(tmp_path, "trigger", "cli", "--param", "OUTCOME=fail", "--follow", *url(queen))
    assert followed.code == 1, followed
    assert "reports: reports/junit-py.xml: 5 tests (2 failed, 1 error, 1 skipped)\n" in followed.out, followed
    assert "tests: 8 (3 failed, 1 error, 1 skipped, 3 passed) in 1003.8 s\n" in followed.out, followed
    job_id = followed.out.split("\n", 1)[0].rsplit("/", 1)[1]
    logs = await apiary(tmp_path, "logs", job_id, *url(queen))
    assert "tests: 8 (3 failed, 1 error, 1 skipped, 3 passed) in 1003.8 s\n" in logs.out, logs


def test_apiary_run_reads_the_reports_here_and_says_the_counts(tmp_path: Path) -> None:
    (tmp_path / ".apiary.yml").write_text("""
reports: {junit: ["out/junit*.xml"]}
stages:
  - name: t
    steps:
      - mkdir -p out && echo '<broken' > out/junit-b.xml
      - printf '%s' '<testsuite><testcase classname="a" name="ok"/><testcase classname="a" name="bad"><failure/></testcase></testsuite>' > out/junit-a.xml
""")
    done = subprocess.run([sys.executable, "-m", "apiary.cli", "run", str(tmp_path)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reports: out/junit-a.xml: 2 tests (1 failed)\n" in done.stdout
    assert "reports: out/junit-b.xml skipped: not well-formed XML: unclosed token: line 1, column 0\n" in done.stderr
    assert "tests: 2 (1 failed, 1 passed) in 0.0 s\n" in done.stdout
