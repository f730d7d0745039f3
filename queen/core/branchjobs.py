"""Which jobs speak for their branch: the one rule for every "the latest job of a branch" the queen picks.

Pure, no I/O. A branch's state (its badge, the base a ``when: changed`` compares with, a bisect's last good
commit, the trigger form's defaults, the durations estimates and shard splits learn from, a test's history
and flaky mark, retention's "last pass of the branch") is read from jobs that ran the branch as a whole:

* not a bisect's job: it ran an older commit on purpose (``triggered_by.kind`` "bisect");
* not a child job: a spread cell's or a shard's job (``parent`` set, apiary.core.spread) ran one part of
  its parent's run; the parent speaks for the run, passed only when every child did.

`speaks_for_branch` tells one job document; `SPEAKS_FOR_BRANCH` is the same rule as a store query
fragment, merged into a query's other conditions (``{**query, **SPEAKS_FOR_BRANCH}``). `is_child` tells a
child job, which retention keeps and deletes with its parent only (apiary.queen.retention).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SPEAKS_FOR_BRANCH: dict[str, Any] = {"triggered_by.kind": {"$ne": "bisect"}, "parent": {"$exists": False}}


def is_child(job: Mapping[str, Any]) -> bool:
    """Whether `job` is a spread cell's or a shard's child job (it has a ``parent``)."""
    return job.get("parent") is not None


def speaks_for_branch(job: Mapping[str, Any]) -> bool:
    """Whether `job`'s outcome is its branch's state: neither a bisect's job nor a child job."""
    return not is_child(job) and (job.get("triggered_by") or {}).get("kind") != "bisect"
