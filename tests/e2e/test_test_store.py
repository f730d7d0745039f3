"""The store's tests collection over a real embedded store (nx-27017): a report part stored twice is
stored once, a job's tests come failed first, a test's runs are found by repository, and they go with
their job."""

from __future__ import annotations

from apiary.core.junit import MAX_TESTS, parse_junit
from apiary.core.reports import report_bodies
from apiary.queen.store import Store
from tests.e2e.test_store_and_recorder import store  # noqa: F401  (fixture)

REPORT = (b'<testsuite name="s"><testcase classname="c" name="ok"/><testcase classname="c" name="bad">'
          b'<failure message="no">trace</failure></testcase><testcase classname="c" name="later"><skipped/>'
          b'</testcase><testcase classname="c" name="broken"><error/></testcase></testsuite>')


async def test_tests_are_stored_once_listed_failed_first_and_deleted_with_their_job(store: Store) -> None:  # noqa: F811
    for n, commit in ((1, "a" * 40), (2, "b" * 40)):
        await store.jobs.insert_one({"_id": f"j{n}", "repo": "app", "number": n,
                                     "ref": {"branch": "main", "id": commit}, "report": {"tests": 4}})
        [body] = report_bodies(parse_junit(REPORT), [{"path": "r.xml", "tests": 4}])
        await store.save_tests(f"j{n}", body["first"], body["tests"])
        await store.save_tests(f"j{n}", body["first"], body["tests"])  # a drone resending after a queen restart
    listed = await store.job_tests("j2", None, 0, 10)
    assert [(t["test"], t["status"], t["n"]) for t in listed] == [
        ("c.bad", "failed", 0), ("c.broken", "error", 1), ("c.later", "skipped", 3), ("c.ok", "passed", 2)]
    assert listed[0] == {"job": "j2", "test": "c.bad", "name": "bad", "classname": "c", "suite": "s",
                         "status": "failed", "seconds": 0.0, "message": "no", "text": "trace", "commit": "b" * 40,
                         "number": 2, "n": 0}
    assert [t["test"] for t in await store.job_tests("j2", "passed", 0, 10)] == ["c.ok"]
    assert [t["test"] for t in await store.job_tests("j2", None, 1, 2)] == ["c.broken", "c.later"]
    jobs = await store.reported_jobs("app", "main", None, 20)
    assert [j["_id"] for j in jobs] == ["j2", "j1"]
    assert [j["_id"] for j in await store.reported_jobs("app", "main", 1, 20)] == ["j1"]
    runs = await store.test_runs("app", ["c.bad", "c.ok"], ["j1", "j2"])
    assert sorted((r["job"], r["test"], r["status"]) for r in runs) == [
        ("j1", "c.bad", "failed"), ("j1", "c.ok", "passed"), ("j2", "c.bad", "failed"), ("j2", "c.ok", "passed")]
    # Past what a drone may send for one job, nothing more is stored, whatever it sends
    await store.save_tests("j2", MAX_TESTS - 1, body["tests"])
    assert await store.tests.count_documents({"job": "j2"}) == 5
    await store.delete_jobs(["j1"])
    assert await store.tests.count_documents({"job": "j1"}) == 0
    assert await store.tests.count_documents({"job": "j2"}) == 5


async def test_a_later_attempts_report_replaces_the_earlier_attempts_tests(store: Store) -> None:  # noqa: F811
    # Attempt 1 lost its drone after sending its report; attempt 2 ran the tests again, all passing.
    await store.jobs.insert_one({"_id": "j3", "repo": "app", "number": 3, "ref": {"branch": "main", "id": "c" * 40}})
    [first] = report_bodies(parse_junit(REPORT), [{"path": "r.xml", "tests": 4}])
    await store.save_tests("j3", first["first"], first["tests"], 1)
    passing = b'<testsuite name="s"><testcase classname="c" name="ok"/><testcase classname="c" name="bad"/></testsuite>'
    [second] = report_bodies(parse_junit(passing), [{"path": "r.xml", "tests": 2}])
    await store.save_tests("j3", second["first"], second["tests"], 2)
    await store.save_tests("j3", second["first"], second["tests"], 2)  # resent: stored once
    listed = await store.job_tests("j3", None, 0, 10)
    assert sorted((t["test"], t["status"]) for t in listed) == [("c.bad", "passed"), ("c.ok", "passed")]
