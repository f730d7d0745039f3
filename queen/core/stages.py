"""The decisions made from a compiled pipeline (core/pipeline.py): at trigger time and while a job runs.

Pure, no I/O. The queen resolves a job's parameters and the plugins it needs
(`resolve_parameters`, `plugin_keys`) when the job is made; the drone picks
the stages a job's type runs (`runnable_stages`), which may start now
(`next_stages`) and which never will (`blocked_stages`). Faults raise
InputError naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .errors import InputError
from .models import Pipeline, Stage


def plugin_key(plugin: Mapping[str, Any]) -> str:
    """What identifies a plugin a drone has: its pip requirement as written, else its name."""
    return plugin.get("pip") or plugin["name"]


def plugin_keys(pipeline: Pipeline) -> list[str]:
    """The keys of every plugin a job's pipeline names: a drone that runs the job must have them all."""
    return [plugin_key(p) for p in pipeline.get("plugins") or []]


def resolve_parameters(pipeline: Pipeline, given: dict[str, str]) -> dict[str, str]:
    """The job's parameters at trigger time: given values, then defaults; refuse missing and undeclared ones."""
    declared = pipeline.get("parameters", {})
    for name in given:
        if name not in declared:
            raise InputError(f"parameters.{name}: not declared by the pipeline "
                             f"(declared: {', '.join(declared) or 'none'})", field=f"parameters.{name}")
    out = {}
    for name, spec in declared.items():
        if name in given:
            out[name] = given[name]
        elif spec["required"]:
            raise InputError(f"parameters.{name}: required by the pipeline, not given", field=f"parameters.{name}")
        elif spec["default"] is not None:
            out[name] = spec["default"]
    return out


def runnable_stages(pipeline: Pipeline, job_type: str) -> list[Stage]:
    """The stages a job of `job_type` runs, as one graph for `next_stages` (copies; the pipeline is not changed).

    TEST: the test stages. TEST_DEPLOY: the test stages, then the deploy stages,
    each of which now also needs every test stage (deploy only after the tests
    passed: a failed test blocks every deploy stage, whether the caller runs
    all of them as one graph or the deploy stages as a second one). DEPLOY: the
    deploy stages only; their needs on test stages are dropped.
    """
    tests = [s for s in pipeline["stages"] if not s["deploy"]]
    deploys = [s for s in pipeline["stages"] if s["deploy"]]
    deploy_names = {s["name"] for s in deploys}
    if job_type == "TEST":
        return [s.copy() for s in tests]
    if job_type == "DEPLOY":
        return [{**s, "needs": [n for n in s["needs"] if n in deploy_names]} for s in deploys]
    if job_type == "TEST_DEPLOY":
        test_names = [s["name"] for s in tests]
        return [s.copy() for s in tests] + [
            {**s, "needs": test_names + [n for n in s["needs"] if n in deploy_names]} for s in deploys]
    raise InputError(f"type: must be one of TEST, DEPLOY, TEST_DEPLOY, got {job_type!r}", field="type")


def next_stages(stages: Sequence[Mapping[str, Any]], done: dict[str, bool], running: set[str], limit: int) -> list[str]:
    """Stages that may start now, in pipeline order: not started, every need done and passed, within `limit`.

    `done` maps each finished stage to whether it passed. A need that is not
    among `stages` counts as met: a caller that runs the deploy stages as a
    graph of their own does so only once the test stages passed.
    """
    names = {s["name"] for s in stages}
    ready = [s["name"] for s in stages if s["name"] not in done and s["name"] not in running
             and all(done.get(need, need not in names) for need in s["needs"])]
    return ready[:max(0, limit - len(running))]


def blocked_stages(stages: Sequence[Mapping[str, Any]], done: dict[str, bool]) -> list[str]:
    """Stages that can never run because a need failed or is itself blocked, in pipeline order (to report skipped)."""
    blocked = {name for name, passed in done.items() if not passed}
    for _ in stages:  # a round reaches one step further down every chain; needs may point forward
        blocked |= {s["name"] for s in stages if any(need in blocked for need in s["needs"])}
    return [s["name"] for s in stages if s["name"] in blocked and s["name"] not in done]
