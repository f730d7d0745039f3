"""The notify plugin on a real queen and drone: a local HTTP server takes the webhooks (JSON and Slack's),
a local SMTP server (aiosmtpd) the e-mails."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.cluster import Cluster

PIPELINE = """\
parameters:
  OUTCOME: {default: pass}
stages:
  - {name: unit, steps: ["test \\"$OUTCOME\\" = pass"]}
"""


class Receiver:
    """An HTTP server on a loopback port that records POSTs by path; /flaky answers 500 twice for each job,
    then 200; /gone 404; /hang answers only when the test ends."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.flaky_tries: dict[int, int] = {}  # job number -> requests to /flaky
        self.release = asyncio.Event()
        self.held = 0  # /hang requests not answered yet
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.received.append({"path": request.path, "headers": dict(request.headers), "body": body})
        if request.path == "/flaky":
            tries = self.flaky_tries[body["number"]] = self.flaky_tries.get(body["number"], 0) + 1
            if tries <= 2:
                return web.Response(status=500, text="busy")
        if request.path == "/gone":
            return web.Response(status=404, text="no such hook")
        if request.path == "/hang":
            self.held += 1
            await self.release.wait()
            self.held -= 1
        return web.Response(text="ok")

    def at(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["path"] == path]

    async def wait(self, path: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.at(path)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} requests to {path} expected, got {self.received}")
            await asyncio.sleep(0.02)
        return self.at(path)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    fake = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.base = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        fake.release.set()
        await runner.cleanup()


class Mailbox:
    """What a real SMTP server (aiosmtpd) on a loopback port accepted; logins ci / the right password."""

    PASSWORD = "smtp-pw-Zq8r!"

    def __init__(self) -> None:
        self.mails: list[dict[str, Any]] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls it so
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.mails.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "message": message,
                           "login": session.auth_data.login.decode() if session.authenticated else None})
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"ci", self.PASSWORD.encode())
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    async def wait(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.mails) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} e-mails expected, got {len(self.mails)}")
            await asyncio.sleep(0.02)
        return self.mails


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    box = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(box, authenticator=box.authenticate, auth_require_tls=False, loop=loop), "127.0.0.1", 0)
    box.port = server.sockets[0].getsockname()[1]
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()


def notify(*targets: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": "notify", "config": {"targets": list(targets)}}]


async def set_secret(queen: Cluster, repo: str, name: str, value: str) -> None:
    await queen.request("PUT", f"/repos/{repo}/secrets/{name}", {"value": value}, expect=200)


async def run(queen: Cluster, repo: str, outcome: str = "pass", branch: str = "main") -> dict[str, Any]:
    job = await queen.trigger(repo, branch=branch, parameters={"OUTCOME": outcome})
    return await queen.wait_job(job["id"])


async def queen_log(queen: Cluster) -> str:
    assert queen.queen is not None
    return await asyncio.to_thread(queen.queen.stderr.read_text)


async def wait_log(queen: Cluster, text: str, timeout: float = 30.0) -> str:
    return await queen.wait_for(lambda: queen_log(queen), lambda log: text in log, f"{text!r} in the queen's log",
                                timeout=timeout)


async def test_a_failure_is_told_by_webhook_slack_and_email_and_no_secret_leaks(
        queen: Cluster, receiver: Receiver, mailbox: Mailbox) -> None:
    await queen.add_drone("d1")
    # A bad config is refused when it is set, naming the field.
    status, body = await queen.request("POST", "/repos", {
        "name": "bad", "pipeline": PIPELINE, "pipeline_source": "queen",
        "plugins": notify({"type": "slack", "url_secret": "S"}, {"type": "webhook", "url": "ftp://x/y"})})
    assert status == 400 and body["field"] == "plugins[0].config.targets[1].url", body

    token, slack_url = "hook-tok-4Hk2", f"{receiver.base}/slack/T000/B000/slack-tok-9Xw1"
    leaky_url = "http://127.0.0.1:1/services/T1/B1/leaky-tok-7Pp3"  # nobody listens: three tries, then logged
    mail = {"type": "email", "host": "127.0.0.1", "port": mailbox.port, "security": "none",
            "from": "apiary@example.com", "to": ["team@example.com", "ops@example.com"], "when": "failure"}
    await queen.create_pipeline_repo("app", PIPELINE, plugins=notify(
        {"type": "webhook", "url": f"{receiver.base}/hook", "token_secret": "HOOK_TOKEN", "when": "failure"},
        {"type": "slack", "url_secret": "SLACK_URL", "when": ["failure"]},
        {**mail, "username": "ci", "password_secret": "SMTP_PASSWORD"},
        {"type": "slack", "url_secret": "LEAKY_URL", "when": "failure"},
        {**mail, "to": "nobody@example.com", "username": "ci", "password_secret": "WRONG_PASSWORD"}))
    secrets = {"HOOK_TOKEN": token, "SLACK_URL": slack_url, "SMTP_PASSWORD": Mailbox.PASSWORD,
               "LEAKY_URL": leaky_url, "WRONG_PASSWORD": "wrong-pw-Lm5t"}
    for name, value in secrets.items():
        await set_secret(queen, "app", name, value)
    await set_secret(queen, "app", "DEPLOY_KEY", "for-the-job")
    await queen.create_pipeline_repo("quiet", PIPELINE)  # does not use the plugin

    assert (await run(queen, "quiet", "fail"))["status"] == "failed"
    job = await run(queen, "app", "fail")
    assert job["status"] == "failed"
    job_url = queen.api.removesuffix("/api/v1") + f"/jobs/{job['id']}"  # the job's page on the dashboard

    (hook,) = await receiver.wait("/hook", 1)
    said = hook["body"]
    assert (said["event"], said["repo"], said["number"], said["id"], said["status"], said["branch"]) == (
        "failure", "app", 1, job["id"], "failed", "main")
    assert said["url"] == job_url
    assert said["failure"]["stage"] == "unit" and said["failure"]["command"] == 'test "$OUTCOME" = pass'
    assert said["failure"]["exitCode"] == 1 and said["duration"] >= 0 and said["triggered_by"]
    assert hook["headers"]["Authorization"] == f"Bearer {token}" and hook["headers"]["X-Apiary-Event"] == "failure"

    (slack,) = await receiver.wait("/slack/T000/B000/slack-tok-9Xw1", 1)
    assert slack["body"]["text"].startswith(":x: app #1 failed on main")
    assert said["url"] in slack["body"]["text"] and "stage unit" in slack["body"]["text"]
    assert f"<{said['url']}|app #1>" in slack["body"]["blocks"][0]["text"]["text"]

    (sent,) = await mailbox.wait(1)
    message = sent["message"]
    assert sent["to"] == ["team@example.com", "ops@example.com"] and sent["login"] == "ci"
    assert message["Subject"] == "[apiary] app #1 failed on main"
    assert message["From"] == "apiary@example.com" and message["To"] == "team@example.com, ops@example.com"
    text = message.get_content()
    assert said["url"] in text and "stage unit: test \"$OUTCOME\" = pass, exit code 1" in text

    # What could not be delivered is logged, naming the target, never the secret.
    await wait_log(queen, "to targets[4] (email): not sent: the SMTP server answered 535")
    await wait_log(queen, "to targets[3] (slack): not sent after 3 attempts")
    assert len(receiver.received) == 2 and len(mailbox.mails) == 1  # nothing for "quiet"

    # A passing job is no failure: nobody is told.
    assert (await run(queen, "app"))["status"] == "passed"
    await asyncio.sleep(1.0)
    assert len(receiver.received) == 2 and len(mailbox.mails) == 1

    # The plugin's secrets stay on the queen: the job was not given them; nothing shows their values.
    assert job["secrets"] == ["DEPLOY_KEY"]
    shown = json.dumps(await queen.get("/repos/app")) + json.dumps(await queen.job(job["id"]))
    logs = await queen_log(queen) + queen.all_logs()
    for value in [*secrets.values(), "slack-tok", "leaky-tok"]:
        assert value not in logs, value
        assert value not in shown, value


async def test_fixed_always_and_branch_filters(queen: Cluster, receiver: Receiver) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", PIPELINE, plugins=notify(
        {"type": "webhook", "url": f"{receiver.base}/fixed", "when": "fixed"},
        {"type": "webhook", "url": f"{receiver.base}/always", "when": "always"},
        {"type": "webhook", "url": f"{receiver.base}/release", "when": ["failure"], "branches": ["release/*"]}))

    runs = [("main", "pass"), ("main", "fail"), ("feature", "fail"), ("main", "pass"), ("main", "pass"),
            ("feature", "pass"), ("release/1", "fail"), ("main", "fail")]
    for branch, outcome in runs:
        assert (await run(queen, "app", outcome, branch))["status"] == ("passed" if outcome == "pass" else "failed")

    always = await receiver.wait("/always", len(runs))
    await asyncio.sleep(1.0)  # any notification still to come has come by now
    assert sorted(r["body"]["number"] for r in always) == list(range(1, len(runs) + 1))
    assert {r["body"]["event"] for r in always} == {"always"}
    # fixed: main #4 after main #2 (feature's #3 failure is not main's), feature #6 after #3; #5 is no fix
    assert [(r["body"]["number"], r["body"]["event"], r["body"]["branch"]) for r in receiver.at("/fixed")] == [
        (4, "fixed", "main"), (6, "fixed", "feature")]
    assert [(r["body"]["number"], r["body"]["status"]) for r in receiver.at("/release")] == [(7, "failed")]


async def test_a_retried_delivery_arrives_and_a_dead_receiver_delays_nothing(
        queen: Cluster, receiver: Receiver) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", PIPELINE, plugins=notify(
        {"type": "webhook", "url": f"{receiver.base}/hang", "when": "always"},
        {"type": "webhook", "url": f"{receiver.base}/flaky", "when": "always"},
        {"type": "webhook", "url": f"{receiver.base}/hook", "when": "always"},
        {"type": "webhook", "url": f"{receiver.base}/gone", "when": "always"}))

    began = time.monotonic()
    first = await run(queen, "app")
    ended = time.monotonic()
    await receiver.wait("/hang", 1)
    assert receiver.held == 1  # the first job's notification is still unanswered...
    second = await run(queen, "app")  # ...and the next job runs and ends all the same
    assert (first["status"], second["status"]) == ("passed", "passed")
    told = await receiver.wait("/hook", 2)
    assert [r["body"]["number"] for r in told] == [1, 2]
    assert receiver.held >= 1  # still hanging: nothing waited for it
    print(f"notify: first job {ended - began:.2f} s, second job and its notification done "
          f"{time.monotonic() - ended:.2f} s later while a receiver hangs")

    # 500 twice, then 200: the third try of each job's notification arrives, the same message each time.
    flaky = await receiver.wait("/flaky", 6)
    assert sorted(r["body"]["number"] for r in flaky) == [1, 1, 1, 2, 2, 2]
    assert len({json.dumps(r["body"], sort_keys=True) for r in flaky}) == 2
    for job in (first, second):
        await wait_log(queen, f"job app #{job['number']} ({job['id']}) to targets[1] (webhook): sent (attempt 3)")
    log = await queen_log(queen)
    assert f"job app #1 ({first['id']}) to targets[1] (webhook): attempt 2 failed: answered 500: busy" in log
    assert "targets[1] (webhook): not sent" not in log
    # A 404 will not change: said once, not tried again.
    assert f"job app #1 ({first['id']}) to targets[3] (webhook): not sent: answered 404: no such hook" in log
    assert sorted(r["body"]["number"] for r in receiver.at("/gone")) == [1, 2]
    assert queen.queen is not None and queen.queen.alive


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that signs itself, and its key (PEM files in `directory`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "apiary test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "smtp.crt", directory / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_email_over_starttls_and_tls_with_a_checked_certificate(cluster: Cluster, tmp_path: Path) -> None:
    cert_file, key_file = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_file, key_file)
    box = Mailbox()
    loop = asyncio.get_running_loop()
    # STARTTLS required before AUTH (aiosmtpd's default: no password in the clear), and TLS from the start.
    starttls = await loop.create_server(
        lambda: SMTP(box, authenticator=box.authenticate, tls_context=tls, require_starttls=True, loop=loop),
        "127.0.0.1", 0)
    # (aiosmtpd does not see that a connection was TLS from the start: told that AUTH needs none here)
    implicit = await loop.create_server(
        lambda: SMTP(box, authenticator=box.authenticate, auth_require_tls=False, loop=loop), "127.0.0.1", 0, ssl=tls)
    try:
        # The queen trusts this certificate as it would a public one (Python's default verify paths).
        await cluster.start_queen(env={"SSL_CERT_FILE": str(cert_file)})
        await cluster.add_drone("d1")
        mail = {"type": "email", "host": "127.0.0.1", "username": "ci", "password_secret": "SMTP_PASSWORD",
                "from": "apiary@example.com", "when": "failure"}
        await cluster.create_pipeline_repo("app", PIPELINE, plugins=notify(
            {**mail, "port": starttls.sockets[0].getsockname()[1], "to": "starttls@example.com"},
            {**mail, "port": implicit.sockets[0].getsockname()[1], "security": "tls", "to": "tls@example.com"}))
        await set_secret(cluster, "app", "SMTP_PASSWORD", Mailbox.PASSWORD)
        job = await run(cluster, "app", "fail")
        mails = await box.wait(2)
        assert sorted(m["to"][0] for m in mails) == ["starttls@example.com", "tls@example.com"]
        assert {m["login"] for m in mails} == {"ci"}
        assert {m["message"]["Subject"] for m in mails} == {"[apiary] app #1 failed on main"}
        assert all(f"/jobs/{job['id']}" in m["message"].get_content() for m in mails)
    finally:
        for server in (starttls, implicit):
            server.close()
            await server.wait_closed()
