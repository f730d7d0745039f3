"""Which jobs speak for their branch (apiary.core.branchjobs): the badge, retention, when: changed's base,
bisect's last good commit, estimates and the trigger form all read the branch's state through this rule."""

from __future__ import annotations

import pytest

from apiary.core.branchjobs import is_child, speaks_for_branch

CHILD = {"parent": {"id": "p1", "number": 90, "unit": "N=2", "wave": 1}}


@pytest.mark.parametrize(("job", "child", "speaks"), [
    ({}, False, True),
    ({"triggered_by": {"kind": "webhook", "name": "github"}}, False, True),
    ({"triggered_by": {"kind": "rerun", "name": "ada"}}, False, True),
    ({"triggered_by": {"kind": "bisect", "bisect": "b1"}}, False, False),
    (CHILD, True, False),  # a spread cell's or a shard's job: its parent says how the run ended
    ({**CHILD, "triggered_by": {"kind": "bisect"}}, True, False),  # a bisect job's child
    ({"children": [{"unit": "N=1", "job": "c1"}]}, False, True),  # a parent speaks for its run
])
def test_speaks_for_branch(job: dict, child: bool, speaks: bool) -> None:
    assert is_child(job) is child
    assert speaks_for_branch(job) is speaks

