"""What a drone's event records on its job document besides the job's status. Pure: no I/O.

`job_update` turns one event into ``$set`` fields: commands, phases, plugin
figures, the commit the drone checked out (``ref.id``, for a job whose ref
named none, with its subject and author as ``commit``). Every update is a set of leaf fields, never an increment, so applying
an event twice (a drone resending after a queen restart) leaves the same
document. The status, and the times and reasons that go with it, are the job
state machine's (apiary.core.jobstate): ``job:started`` and ``job:done`` record
nothing here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from apiary.core.caches import job_fields as cache_fields
from apiary.core.context import checkout_facts
from apiary.core.protocol import Msg
from apiary.core.refs import FULL_SHA
from apiary.core.reports import report_fields
from apiary.core.retry import retry_attempt

_PHASE = re.compile(r"^[a-z_]{1,32}$")
_FIELD = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def job_update(msg: Msg, body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``$set`` fields that event `msg` with `body` applies to its job (never its status)."""
    if msg is Msg.JOB_CMD_START:
        key = f"commands.{body['num']}"
        fields = {f"{key}.num": body["num"], f"{key}.command": body["screencmd"]}
        for name in ("stage", "title", "phase", "hook", "timestamp"):
            if name in body:
                fields[f"{key}.{'started' if name == 'timestamp' else name}"] = body[name]
        if (attempt := retry_attempt(body.get("retry"))) is not None:  # apiary.core.retry
            fields[f"{key}.retry"] = attempt
        return fields
    if msg is Msg.JOB_CMD_DONE:
        key = f"commands.{body['num']}"
        fields = {f"{key}.exitCode": body["exitCode"], f"{key}.duration": body["duration"]}
        if isinstance(body.get("usage"), dict):
            fields[f"{key}.usage"] = body["usage"]
        if isinstance(body.get("stopped"), bool):
            fields[f"{key}.stopped"] = body["stopped"]
        if body.get("timedOut") is True:
            fields[f"{key}.timedOut"] = True
        return fields
    if msg is Msg.JOB_PHASE:
        if not _PHASE.match(body["phase"]):
            return {}  # not a name that can be a field of the job document
        return {f"phases.{body['phase']}.state": body["state"]}
    if msg is Msg.JOB_PLUGIN:
        # A plugin's figures (test counts, an install) on the job: plugins.NAME.KEY
        if not _FIELD.match(body["plugin"]):
            return {}
        return {f"plugins.{body['plugin']}.{k}": v for k, v in body["data"].items()
                if isinstance(k, str) and _FIELD.match(k)}
    if msg is Msg.JOB_REPORT:  # its counts (part 0); its tests go to the store's tests (recorder)
        return report_fields(body)
    if msg is Msg.JOB_TESTED:
        return {"phases.test.code": body["code"], "tested": body["timestamp"]}
    if msg is Msg.JOB_DEPLOYED:
        return {"phases.deploy.code": body["code"], "deployed": body["timestamp"]}
    if msg is Msg.JOB_CACHE:  # a pipeline cache's hit, miss, saved (apiary.core.caches)
        return cache_fields(body)
    if msg is Msg.JOB_CHECKOUT:
        # The commit the job runs: shown with it, built again by a re-run, given its commit statuses.
        if not FULL_SHA.fullmatch(body["commit"]):
            return {}  # not a commit id: the job keeps the ref it had
        fields: dict[str, Any] = {"ref.id": body["commit"].lower()}
        facts = checkout_facts(body)  # sent only when the queen knew no commit, so it had no facts of it
        if facts is not None:
            fields["commit"] = facts
        return fields
    return {}
