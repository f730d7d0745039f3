"""Other web sites are kept out: the cross-site rule, links, throttling and connection decisions as
tables. The headers every answer carries and cut-off requests, on a real queen: tests/e2e/test_web_guard.py."""

from __future__ import annotations

import pytest

from apiary.core.fields import is_web_link
from apiary.queen.connections import State, cap_for, make_room, overdue
from apiary.queen.throttle import Throttle
from apiary.queen.web_guard import Policy, origin_of

LOCAL = Policy("", loopback_only=True)
PUBLIC = Policy("https://ci.example.com/", loopback_only=False)
HOST = {"Host": "127.0.0.1:8420"}
JSON = {"Content-Type": "application/json", "Content-Length": "2"}


@pytest.mark.parametrize(("policy", "method", "path", "headers", "status"), [
    # The dashboard's own requests, and clients that are not browsers (curl, the CLI).
    (LOCAL, "POST", "/api/v1/repos", {**HOST, **JSON, "Origin": "http://127.0.0.1:8420"}, None),
    (LOCAL, "POST", "/api/v1/repos", {**HOST, **JSON, "Sec-Fetch-Site": "same-origin"}, None),
    (LOCAL, "POST", "/api/v1/repos", {**HOST, **JSON}, None),
    (LOCAL, "POST", "/api/v1/jobs/J/cancel", {**HOST}, None),  # no body: no type needed
    (LOCAL, "GET", "/api/v1/jobs", {**HOST, "Origin": "http://evil.example"}, None),  # reads: the browser keeps it
    # Another site's page: refused, with users or without.
    (LOCAL, "POST", "/api/v1/repos", {**HOST, **JSON, "Origin": "http://127.0.0.1:9260"}, 403),
    (LOCAL, "POST", "/api/v1/repos", {**HOST, **JSON, "Origin": "null"}, 403),
    (LOCAL, "POST", "/api/v1/repos", {**HOST, **JSON, "Origin": "http://127.0.0.1:8420/evil"}, 403),
    (LOCAL, "POST", "/api/v1/repos", {**HOST, **JSON, "Origin": "http://evil@127.0.0.1:8420"}, 403),
    (LOCAL, "GET", "/api/v1/jobs", {"Host": "evil.example@127.0.0.1:8420"}, 400),
    (LOCAL, "DELETE", "/api/v1/session", {**HOST, "Origin": "http://evil.example"}, 403),
    (LOCAL, "POST", "/api/v1/repos", {**HOST, **JSON, "Sec-Fetch-Site": "cross-site"}, 403),
    (LOCAL, "POST", "/api/v1/repos", {**HOST, **JSON, "Sec-Fetch-Site": "same-site"}, 403),
    (LOCAL, "GET", "/ws", {**HOST, "Origin": "http://127.0.0.1:9260"}, 403),
    (LOCAL, "GET", "/ws", {**HOST, "Origin": "http://127.0.0.1:8420"}, None),
    # What a page may send without asking first (text/plain, forms) is never read as JSON.
    (LOCAL, "POST", "/api/v1/repos", {**HOST, "Content-Type": "text/plain", "Content-Length": "9"}, 415),
    (LOCAL, "POST", "/api/v1/repos", {**HOST, "Content-Type": "application/x-www-form-urlencoded",
                                      "Content-Length": "3"}, 415),
    (LOCAL, "POST", "/api/v1/repos", {**HOST, "Content-Type": "text/plain", "Transfer-Encoding": "chunked"}, 415),
    (LOCAL, "POST", "/api/v1/jobs/J/cancel", {**HOST, "Content-Type": "application/octet-stream",
                                              "Content-Length": "0"}, None),  # nothing to misread
    (LOCAL, "PUT", "/api/v1/repos/r", {**HOST, "Content-Length": "9"}, 415),
    (LOCAL, "POST", "/api/v1/repos", {**HOST, "Content-Type": "application/json; charset=utf-8",
                                      "Content-Length": "2"}, None),
    # DNS rebinding: another name that resolves to 127.0.0.1 is not this queen.
    (LOCAL, "GET", "/api/v1/jobs", {"Host": "evil.example:8420"}, 421),
    (LOCAL, "GET", "/", {"Host": "localhost:8420"}, None),
    (LOCAL, "GET", "/", {"Host": "[::1]:8420"}, None),
    # Webhooks come from forges, signed: none of this applies.
    (LOCAL, "POST", "/hooks/github/app", {"Host": "hooks.example", "Origin": "https://github.com",
                                           "Content-Type": "application/x-www-form-urlencoded"}, None),
    # Behind a proxy: public_url is the origin; the Host the proxy sends does not matter.
    (PUBLIC, "POST", "/api/v1/repos", {"Host": "10.0.0.5:8420", **JSON, "Origin": "https://ci.example.com"}, None),
    (PUBLIC, "POST", "/api/v1/repos", {"Host": "10.0.0.5:8420", **JSON, "Origin": "http://ci.example.com"}, 403),
    (PUBLIC, "GET", "/api/v1/jobs", {"Host": "anything.example"}, None),
])
def test_which_requests_are_refused(policy: Policy, method: str, path: str, headers: dict[str, str],
                                    status: int | None) -> None:
    refused = policy.refusal(method, path, "http", headers)
    assert (refused[0] if refused else None) == status, refused


def test_origins_compare_as_browsers_send_them() -> None:
    assert origin_of("HTTPS://CI.Example.com:443/x") == "https://ci.example.com"
    assert origin_of("http://127.0.0.1:8420") == "http://127.0.0.1:8420"
    assert origin_of("http://[::1]:80/") == "http://[::1]"
    assert origin_of("null") == ""


@pytest.mark.parametrize(("url", "link"), [
    ("https://github.com/team/app/commit/0123abc", True),
    ("http://ci.example.com:8080/x?y=1#z", True),
    ("javascript:alert(1)", False),
    ("JavaScript:alert(1)", False),
    (" javascript:alert(1)", False),
    ("java\tscript:alert(1)", False),
    ("data:text/html,<script>alert(1)</script>", False),
    ("vbscript:x", False),
    ("//evil.example", False),
    ("/relative/path", False),
    ("https://", False),
    ("http://host:99999/", False),
    ("https://a b.example", False),
])
def test_only_web_addresses_are_links(url: str, link: bool) -> None:
    assert is_web_link(url) is link


def test_failed_sign_ins_wait_once_over_the_limit_and_a_success_clears_them() -> None:
    throttle = Throttle(limit=3, window=60.0)
    for t in (0.0, 1.0, 2.0):
        assert throttle.wait("addr:1.2.3.4", t) == 0.0
        throttle.failed("addr:1.2.3.4", t)
    assert throttle.wait("addr:1.2.3.4", 3.0) == 57.0  # until the first failure leaves the window
    assert throttle.wait("addr:5.6.7.8", 3.0) == 0.0  # others are not held back
    assert throttle.wait("addr:1.2.3.4", 60.0) == 0.0  # it left: one more try
    throttle.succeeded("addr:1.2.3.4")
    assert throttle.wait("addr:1.2.3.4", 60.5) == 0.0


def test_a_flood_from_many_addresses_keeps_the_throttle_bounded() -> None:
    throttle = Throttle(limit=3, window=60.0, max_keys=100)
    for i in range(10_000):
        throttle.failed(f"addr:{i}", float(i) / 1000)
    assert len(throttle._failures) <= 100
    assert throttle.wait("addr:9999", 10.0) == 0.0  # one failure is under the limit


@pytest.mark.parametrize(("states", "now", "closed"), [
    ({"fresh": State(opened=0.0, idle_since=0.0)}, 5.0, []),
    ({"no-headers": State(opened=0.0, idle_since=0.0)}, 10.5, ["no-headers"]),
    ({"busy": State(opened=0.0, idle_since=0.0, busy=1, requests=1)}, 500.0, []),  # a WebSocket, a long download
    ({"kept-alive": State(opened=0.0, idle_since=1.0, requests=3)}, 20.0, []),
    ({"idle": State(opened=0.0, idle_since=1.0, requests=3)}, 31.5, ["idle"]),
    ({"doomed": State(opened=0.0, idle_since=0.0, doomed=True)}, 0.1, ["doomed"]),
])
def test_connections_without_headers_in_time_or_idle_too_long_are_closed(states: dict[str, State], now: float,
                                                                         closed: list[str]) -> None:
    assert overdue(states, now, header_timeout=10.0, idle_timeout=30.0) == closed


def test_at_the_cap_the_longest_idle_connections_make_room() -> None:
    states = {"busy": State(opened=0.0, idle_since=0.0, busy=1), "old": State(opened=1.0, idle_since=1.0),
              "older": State(opened=0.5, idle_since=0.5), "new": State(opened=3.0, idle_since=3.0)}
    assert make_room(states, cap=10) == []
    assert make_room(states, cap=4) == ["older"]
    assert make_room(states, cap=3) == ["older", "old"]
    assert make_room({"busy": State(opened=0.0, idle_since=0.0, busy=1)}, cap=1) == []  # nothing idle to close


def test_the_connection_cap_leaves_files_for_everything_else() -> None:
    assert cap_for(1024) == 768
    assert cap_for(20_000) == 10_000
    assert cap_for(100) == 16


def test_a_failure_counted_ahead_can_be_taken_back() -> None:
    throttle = Throttle(limit=2, window=60.0)
    throttle.failed("addr:a", 0.0)
    throttle.failed("addr:a", 1.0)
    assert throttle.wait("addr:a", 2.0) > 0
    throttle.undo("addr:a")  # the second was right after all
    assert throttle.wait("addr:a", 2.0) == 0.0


@pytest.mark.parametrize(("looks", "stalled_after"), [
    ([(0.0, 500_000), (10.0, 500_000), (31.0, 500_000)], True),  # nothing read for 31 s
    ([(0.0, 500_000), (10.0, 300_000), (31.0, 200_000)], True),  # drips, never catches up
    ([(0.0, 500_000), (10.0, 10_000), (20.0, 500_000), (31.0, 500_000)], False),  # caught up at 10 s
    ([(0.0, 60_000), (31.0, 60_000)], False),  # a little left unread is no load
])
def test_a_client_that_does_not_keep_up_with_its_answer_is_cut_off(looks: list[tuple[float, int]],
                                                                    stalled_after: bool) -> None:
    st = State(opened=0.0, idle_since=0.0, busy=1, requests=1)
    for now, buffered in looks:
        st.observe(buffered, now)
    assert (overdue({"c": st}, looks[-1][0], idle_timeout=30.0) == ["c"]) is stalled_after
