"""Repository secrets reach jobs as variables and never leave the drone unmasked."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import stat
import sys
import urllib.parse

from cryptography.fernet import Fernet

from tests.cluster import Cluster

TOKEN = "s3cr3t-T0KEN/with+odd=chars"
KEY = "-----BEGIN KEY-----\nline-one-of-the-key\nline-two-of-the-key\n-----END KEY-----"


async def test_secrets_are_masked_in_every_form_and_never_stored(queen: Cluster) -> None:
    await queen.add_drone("d1")
    b64 = base64.b64encode(TOKEN.encode()).decode()
    url = urllib.parse.quote(TOKEN, safe="")
    steps = [
        'echo "token=$API_TOKEN"',
        'printf %s "$API_TOKEN" | base64',
        f"{sys.executable} -c 'import os, urllib.parse; print(urllib.parse.quote(os.environ[\"API_TOKEN\"], safe=\"\"))'",
        'echo "$DEPLOY_KEY"',
        # the secret split across two writes, and so likely across two chunks
        'printf %s "$API_TOKEN" | head -c 7; sleep 0.05; printf %s "$API_TOKEN" | tail -c +8; echo',
        'echo "$API_TOKEN" >&2',
    ]
    pipeline = "stages:\n  - name: leak\n    steps:\n" + "".join(f"      - {json.dumps(s)}\n" for s in steps)
    await queen.create_pipeline_repo("app", pipeline)
    await queen.request("PUT", "/repos/app/secrets/API_TOKEN", {"value": TOKEN}, expect=200)
    await queen.request("PUT", "/repos/app/secrets/DEPLOY_KEY", {"value": KEY}, expect=200)

    names = (await queen.get("/repos/app/secrets"))["secrets"]
    assert [s["name"] for s in names] == ["API_TOKEN", "DEPLOY_KEY"] and "value" not in json.dumps(names)

    job = await queen.wait_job((await queen.trigger("app"))["id"])
    assert job["status"] == "passed"
    events = await queen.events(job["id"])
    stored = json.dumps(events) + json.dumps(job)
    for form in (TOKEN, b64, url, "line-one-of-the-key", "line-two-of-the-key"):
        assert form not in stored, form
    out = "".join(e.get("text", "") for e in events)
    assert out.count("********") >= 6
    # Joined, the output would show a secret whose halves slipped out in two chunks.
    split = next(c for c in job["commands"] if "head -c 7" in c["command"])["num"]
    joined = "".join(e["text"] for e in events if e.get("num") == split and "text" in e)
    assert TOKEN not in joined and joined.strip() == "********"


async def test_secret_names_are_checked_and_deleting_an_unknown_one_is_404(queen: Cluster) -> None:
    await queen.create_pipeline_repo("app", 'stages: [{name: t, steps: ["true"]}]')
    status, answer = await queen.request("PUT", "/repos/app/secrets/bad-name", {"value": "x"})
    assert status == 400 and answer["field"] == "name"
    status, answer = await queen.request("PUT", "/repos/app/secrets/OK", {"valeu": "x"})
    assert status == 400 and answer["field"] == "valeu"
    # Too short to be masked: refused, saying why, and nothing stored.
    status, answer = await queen.request("PUT", "/repos/app/secrets/SHORT", {"value": "xq"})
    assert status == 400 and answer["field"] == "value" and "at least 3 characters" in answer["error"], answer
    assert (await queen.get("/repos/app/secrets"))["secrets"] == []
    status, _ = await queen.request("DELETE", "/repos/app/secrets/NOPE")
    assert status == 404


async def test_secrets_are_sealed_at_rest_and_another_key_is_refused_at_start(queen: Cluster) -> None:
    await queen.add_drone("d1")
    await queen.create_pipeline_repo("app", 'stages: [{name: s, steps: [\'test "$TOKEN" = "s3cr3t-at-rest"\']}]')
    await queen.request("PUT", "/repos/app/secrets/TOKEN", {"value": "s3cr3t-at-rest"}, expect=200)
    assert (await queen.wait_job((await queen.trigger("app"))["id"]))["status"] == "passed"

    assert queen.queen is not None
    with queen.raw_store() as raw:
        stored = raw.secrets.find_one({"name": "TOKEN"})
    assert stored["value"].startswith("fernet:") and "s3cr3t-at-rest" not in str(stored)
    key_file = queen.tmp / "queen" / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    await queen.queen.stop(signal.SIGTERM)
    key_file.write_bytes(Fernet.generate_key())  # not the key that sealed them
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "apiary.cli", "queen", "--data-dir", str(queen.tmp / "queen"), "--http-port", "0",
        "--drone-bind", "tcp://127.0.0.1:*", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=queen.queen.env)  # the same store and database
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "[queen] secrets_key_file: the stored secrets were sealed with another key" in err.decode()
    assert "Traceback" not in err.decode()
