"""The queen's side of partial runs (apiary.core.partial decides; this reads the store for it).

`from_failed` prepares a re-run of a failed job from its first failed stage: the check of the
new job's pipeline runs once `create_job` has resolved it. `resume_message` is what a partial
run's ``queue:new`` carries: its reused stages, the gates approved and the artifacts to restore, read from the store
(GridFS, apiary.queen.store.artifacts), at most MAX_RESTORE_BYTES in all so that the message stays
under the protocol's frame limit (apiary.core.protocol.MAX_MESSAGE_BYTES).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from apiary.core.errors import Conflict
from apiary.core.partial import rerun_from_failed
from apiary.queen.store import Store

log = logging.getLogger(__name__)

# Bytes of artifacts a partial run restores: they travel in its queue:new (16 MiB frames), with room to spare.
MAX_RESTORE_BYTES = 12 * 1024 * 1024


async def artifact_bytes(store: Store, job_ids: list[str]) -> int:
    """The stored size of the artifacts of `job_ids`, in bytes."""
    total = 0
    for job_id in job_ids:
        total += sum(a["size"] for a in await store.list_artifacts(job_id))
    return total


async def from_failed(store: Store, old: Mapping[str, Any], outcome: Mapping[str, Any]
                      ) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """What makes a re-run of `old` (its `outcome`) a partial run: given the pipeline the new job would
    run, its ``resume``; raises Conflict (apiary.core.partial.rerun_from_failed says when)."""
    if old.get("status") != "failed":  # said before the pipeline is read (a Git fetch)
        raise Conflict(f"job #{old.get('number')} {old.get('status')}: only a failed job can be re-run from its "
                       "failed stage (re-run it whole instead)", field="from_failed")
    # A stage it reused from an earlier job: that job must still be there (its shard's list, its results).
    earlier = {str(e["job"]): (name, e.get("number")) for name, e in
               (((old.get("resume") or {}).get("stages")) or {}).items() if isinstance(e, Mapping) and e.get("job")}
    there = {j["_id"] for j in await store.job_states(list(earlier))} if earlier else set()
    for job_id, (name, number) in earlier.items():
        if job_id not in there:
            raise Conflict(f"stage {name} of job #{old.get('number')} was reused from job #{number}, which is gone "
                           "(pruned): re-run the whole job", field="from_failed")
    # A spread parent's cells passed in its child jobs: their artifacts are restored after its own.
    kids = [c["job"] for c in old.get("children") or [] if c.get("status") == "passed" and c.get("job")]
    size = await artifact_bytes(store, [old["_id"], *kids])

    def resume(pipeline: Mapping[str, Any]) -> dict[str, Any]:
        made = rerun_from_failed(old, outcome, pipeline, size, MAX_RESTORE_BYTES)
        return {**made, "artifacts_of": [*made["artifacts_of"], *kids]} if kids else made
    return resume


async def resume_message(store: Store, resume: Mapping[str, Any]) -> dict[str, Any]:
    """The ``resume`` of a partial run's ``queue:new``: its stages and ``files`` ([{name, data, job, given?}]) to
    restore (``given``: the queen's own file for this job, a child's, not an artifact).
    An artifact named by more than one job comes from the last of ``artifacts_of``."""
    files: dict[str, dict[str, Any]] = {}
    total = 0
    chain = list(resume.get("artifacts_of") or [])
    listed = await store.list_artifacts_of(chain)  # one query for them all (a parent's hundreds of children)
    for job_id in chain:
        for info in listed[job_id]:
            earlier = files.get(info["name"])
            if earlier is not None and len(earlier["data"]) == info["size"] and earlier["data"] == b"".join(
                    [await store.read_artifact_part(job_id, info["name"], p) for p in range(info["parts"])]):
                continue  # a child job's copy of what it restored (apiary.core.spread): restored once, counted once
            total += info["size"]
            if total > MAX_RESTORE_BYTES:  # checked when the job was made; artifacts do not grow, but be sure
                log.warning("partial run: artifacts of %s over %d bytes; %s not restored", job_id,
                            MAX_RESTORE_BYTES, info["name"])
                continue
            data = b"".join([await store.read_artifact_part(job_id, info["name"], part)
                             for part in range(info["parts"])])
            files[info["name"]] = {"name": info["name"], "data": data, "job": job_id}
    for given in resume.get("given") or []:  # a child job's own files from the queen (apiary.core.spread)
        # Marked given: it replaces what the checkout has there (apiary.drone.restore), so a committed file at
        # its name cannot stand in for the queen's (a shard's list).
        files[given["name"]] = {"name": given["name"], "data": given["text"].encode(), "job": resume.get("from_job"),
                                "given": True}
    return {"from_job": resume.get("from_job"), "stages": dict(resume.get("stages") or {}),
            "approved": list(resume.get("approved") or []),  # gates approved (apiary.core.approvals)
            **({"unit": resume["unit"]} if resume.get("unit") else {}),  # a child job's (apiary.core.spread)
            "files": list(files.values())}
