"""Status badges: an SVG saying how the last finished job of a repository's default branch (or of a branch
asked for) ended.

`badge_svg`, `badge_branch` and `built_from` are pure; `last_finished` pages through the store's job
listing, newest first, past jobs still queued or running and pull requests' jobs.
"""

from __future__ import annotations

import logging
from html import escape

from apiary.core.branchjobs import speaks_for_branch
from apiary.core.models import Job
from apiary.core.protocol import JobStatus
from apiary.queen.store import Store

log = logging.getLogger(__name__)

COLOURS = {
    "passed": "#2f9e44",
    "failed": "#d6336c",
    "errored": "#868e96",
    "cancelled": "#868e96",
}
NO_JOBS = "#adb5bd"
LABEL_COLOUR = "#495057"
_PAGE = 50

# Verdana 11px advance widths, roughly: enough to size a badge without a font.
_NARROW = set("fijlrt.,:;!|'()[] ")
_WIDE = set("mwMW@%")


def _text_width(text: str) -> int:
    width = 0.0
    for ch in text:
        width += 4.0 if ch in _NARROW else 10.5 if ch in _WIDE else 8.0 if ch.isupper() else 7.0
    return int(width + 0.5)


def badge_svg(label: str, message: str, colour: str) -> str:
    """A flat two-part badge: `label` on grey, `message` on `colour`."""
    left = _text_width(label) + 12
    right = _text_width(message) + 12
    total = left + right
    label_e, message_e = escape(label), escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{label_e}: {message_e}">'
        f"<title>{label_e}: {message_e}</title>"
        f'<clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)">'
        f'<rect width="{left}" height="20" fill="{LABEL_COLOUR}"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/></g>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2:.1f}" y="14">{label_e}</text>'
        f'<text x="{left + right / 2:.1f}" y="14">{message_e}</text></g></svg>'
    )


def badge_for(label: str, job: Job | None) -> str:
    """The badge for the last finished `job` (None: the repository has none yet)."""
    if job is None:
        return badge_svg(label, "no jobs", NO_JOBS)
    status = job["status"]
    return badge_svg(label, status, COLOURS.get(status, NO_JOBS))


def badge_branch(default_branch: str, asked: str | None) -> str:
    """The branch a badge tells about: the one asked (``/badge/REPO/BRANCH.svg``, ``?branch=``), else the
    repository's default branch (a feature branch's failure does not turn the README's badge red)."""
    return asked or default_branch


def built_from(job: Job, branch: str) -> bool:
    """Whether `job` built `branch` itself: a pull request into it (or from it) is not the branch's state,
    nor a job that does not speak for its branch (apiary.core.branchjobs: a bisect's, a spread cell's or a
    shard's child job; its parent says how the run ended)."""
    return (job.get("ref") or {}).get("branch") == branch and speaks_for_branch(job)


async def last_finished(store: Store, repo: str, branch: str) -> Job | None:
    """The newest job built from `branch` of `repo` that has ended, or None."""
    before: str | None = None
    while True:
        jobs = await store.list_jobs(repo, branch=branch, before=before, limit=_PAGE)
        for job in jobs:
            if JobStatus(job["status"]).final and built_from(job, branch):
                return job
        if len(jobs) < _PAGE:
            return None
        before = jobs[-1]["_id"]
