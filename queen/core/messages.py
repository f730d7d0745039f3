"""The body of every message the queen and its drones exchange: one TypedDict each, every field
either side reads, units named. `apiary.core.protocol` maps each message type to its body and checks
the fields on decode. (No `from __future__ import annotations` here: TypedDict reads NotRequired from
evaluated annotations.)

Units: times are seconds since 1970 (float), durations seconds, sizes bytes.
"""

from typing import NotRequired, TypedDict

# A field marked NotRequired may be absent; extra fields are allowed, so a newer side can add information.


class DroneInfo(TypedDict):
    """drone -> queen: who the drone is; answers ``drone:query-info``, sent on (re)connecting."""

    id: str  # DRONE_ID; with CurveZMQ, bound to the key's name
    session: NotRequired[str]  # chosen at the drone's start: a reconnect of the same process keeps its id
    capacity: int  # job slots, 1..MAX_CAPACITY
    speed: float  # relative speed, > 0
    version: int  # PROTOCOL_VERSION; another one is refused
    apiary: NotRequired[str]  # the Apiary release
    host: NotRequired[str]
    plugins: NotRequired[list]  # plugin keys installed (list[str])
    installs_plugins: NotRequired[bool]  # False: take only jobs whose plugins it has
    jobs: list  # job ids running (list[str])
    held: NotRequired[list]  # job ids with events not yet acked (list[str])


class DroneHeartbeat(TypedDict):
    """drone -> queen, every heartbeat_interval seconds."""

    jobs: list  # job ids running
    held: NotRequired[list]  # job ids with events not yet acked
    load: NotRequired[float]  # 1-minute load average
    plugins: NotRequired[list]  # plugin keys installed
    stopping: NotRequired[bool]  # the drone is stopping: send it no more jobs (sent at once when it starts to)


class DroneBye(TypedDict):
    """drone -> queen: leaving the pool (its running jobs were reported first)."""


class QueenHeartbeat(TypedDict):
    """queen -> drone, every heartbeat_interval seconds, and at once on admission."""

    boot: str  # this queen process's id: a new one means the queen restarted (resend what is unacked)


class QueryInfo(TypedDict):
    """queen -> drone: say who you are (``drone:info``); a connection the queen does not know."""

    boot: NotRequired[str]


class QueueNew(TypedDict):
    """queen -> drone: run attempt `attempt` of a job (DESIGN.md §4)."""

    id: str
    number: NotRequired[int]
    attempt: int  # 1, 2, ...: the fencing token every event of this attempt carries back
    repo: dict  # {name, url, provider, vcs, auth}
    secrets: dict  # name -> value: the secrets this job's kind is given; only here, never stored
    ref: dict  # {branch?, id?, fetch?}
    type: str  # JobType
    trigger: dict
    parameters: NotRequired[dict]
    pipeline: dict  # compiled (apiary.core.pipeline)
    plugins: NotRequired[list]
    first_seq: NotRequired[int]  # a retry numbers its events on from here
    first_cmd: NotRequired[int]  # ... and its commands from here
    resume: NotRequired[dict]  # a partial run: {from_job, stages, files: [{name, data, job, given?}]} (apiary.core.partial)
    conditions: NotRequired[list]  # `when:` verdicts: [{stage, step, run, reason}] (apiary.core.conditions)


class JobCancel(TypedDict):
    """queen -> drone: stop attempt `attempt` of job `id` (or an older copy); cleanup still runs, unless
    `force` (somebody cancelled the job again). A plain cancel repeated is the same cancel."""

    id: str
    attempt: int
    force: NotRequired[bool]


class Ack(TypedDict):
    """queen -> drone: every event of attempt `attempt` of job `id` up to `seq` is stored."""

    id: str
    seq: int
    attempt: int


class Refused(TypedDict):
    """queen -> drone: not admitted, saying why; `retry`: the id is held by another connection for now."""

    reason: str
    retry: NotRequired[bool]


class JobEvent(TypedDict):
    """What every drone -> queen event of a job carries, added in one place (drone/connection.py)."""

    id: str  # the job
    seq: int  # 1, 2, 3... per job, continuing across attempts
    attempt: int


class JobStarted(JobEvent):
    timestamp: float


class JobCmdStart(JobEvent):
    num: int  # the command's number in the job, from 1 (a retry goes on from first_cmd)
    command: str  # masked
    screencmd: str  # as shown (masked)
    title: NotRequired[str]
    phase: NotRequired[str]
    stage: NotRequired[str]
    hook: NotRequired[str]
    timestamp: NotRequired[float]
    retry: NotRequired[dict]  # {attempt, of}: attempt 2 of 3 of a step with a retry (apiary.core.retry)


class JobCmdOutput(JobEvent):
    """``job:cmd:stdout`` / ``job:cmd:stderr``: a chunk of a command's output (masked, whole UTF-8)."""

    num: int
    text: str


class JobCmdDone(JobEvent):
    num: int
    exitCode: int  # negative: killed by that signal
    duration: float  # seconds
    usage: NotRequired[dict]  # {peak_rss: bytes, cpu_seconds}
    # The drone stopped it (a cancel, the job's timeout, a limit) rather than it ending by itself; its exit
    # code is then how it took that (143 after a SIGTERM its sandbox's init saw). Absent from older drones.
    stopped: NotRequired[bool]
    timedOut: NotRequired[bool]  # the step's own timeout stopped it: exitCode is TIMED_OUT (apiary.core.retry)


class JobOutput(JobEvent):
    """``job:stdout`` / ``job:stderr``: the drone's own lines about the job."""

    text: str


class JobPlugin(JobEvent):
    plugin: str
    data: dict  # figures the plugin reports (test counts, an install)


class JobPhase(JobEvent):
    phase: str
    state: str  # started, passed, failed, skipped


class JobCheckout(JobEvent):
    """``job:checkout``: the commit the checkout ended on, sent before the pipeline's first step when the
    job's ref named no whole commit (a branch or a refspec only); the queen records it as ``ref.id``."""

    commit: str  # the full sha (40 or 64 hex digits, lower case)
    message: NotRequired[str]  # its subject, as the checkout printed it (for the job page)
    author: NotRequired[str]  # its author's name, likewise
    at: NotRequired[float]  # its author's time: seconds since 1970


class JobPhaseCode(JobEvent):
    """``job:tested`` / ``job:deployed``: the phase's exit code."""

    code: int
    timestamp: float


class JobDone(JobEvent):
    timestamp: float
    result: str  # a final JobStatus; anything else is taken as errored
    error: NotRequired[str]
    retry: NotRequired[bool]  # the attempt could not be set up (or the drone stopped): run it again
    usage: NotRequired[dict]  # the job's {peak_rss: bytes, cpu_seconds}


class JobArtifact(JobEvent):
    """One part of a file the pipeline declared as an artifact (parts of ARTIFACT_PART_BYTES)."""

    name: str
    part: int  # from 0
    parts: int
    size: int  # bytes of the whole file
    data: bytes


class JobReport(JobEvent):
    """``job:report``: part `part` of `parts` of the job's test report (apiary.core.reports.report_bodies).

    `tests` holds at most CHUNK_TESTS tests, each {test, name, classname, suite, status, seconds, message?,
    text?} (apiary.core.junit.TestResult), numbered from `first` in the job; part 0 also carries `counts`
    {tests, passed, failed, errors, skipped, seconds, stored, listed: {status: tests stored}} and `files`
    [{path, tests} or {path, error}]."""

    part: int  # from 0
    parts: int
    first: int
    tests: list
    counts: NotRequired[dict]
    files: NotRequired[list]


class JobCache(JobEvent):
    """``job:cache``: a pipeline cache's outcome (apiary.core.caches), or one part of one being saved.

    `state`: ``hit`` (restored `restored_key` from scope `scope`), ``miss`` (nothing matched),
    ``refused`` (a stored cache could not be restored safely: `note` says why), ``part`` (one part of the
    tar.zst being saved: `part`, `parts`, `data`), ``saved`` (every part sent), ``skipped`` (not saved:
    `note` says why)."""

    index: int  # the entry in the pipeline's `cache:` list, from 0
    key: str  # the key filled in
    state: str
    restored_key: NotRequired[str]
    scope: NotRequired[str]  # where the restored cache was kept: a branch, or pull:<ref>
    size: NotRequired[int]  # bytes of the tar.zst (restored or saved)
    files: NotRequired[int]  # files in it
    note: NotRequired[str]
    part: NotRequired[int]  # from 0
    parts: NotRequired[int]
    data: NotRequired[bytes]


class CacheGet(TypedDict):
    """drone -> queen: a part of the cache job `id` should restore for its entry `key` (no `cache`: the
    queen chooses, by `key` then the `restore` prefixes, in the job's scopes; apiary.core.caches.choose)."""

    id: str  # the job, running on this drone
    attempt: int
    request: str  # the drone's name for this request: the answer carries it
    key: str
    restore: list  # key prefixes (list[str])
    part: int
    cache: NotRequired[str]  # the cache the first answer named, for the parts after it


class CachePart(TypedDict):
    """queen -> drone: the answer to ``cache:get``: part `part` of `parts` of cache `cache` (`found`
    False: no cache matches, or `error` says why none can be sent)."""

    request: str
    found: bool
    cache: NotRequired[str]
    key: NotRequired[str]  # the cache's own key (a restore key's match differs from the one asked)
    scope: NotRequired[str]
    size: NotRequired[int]  # bytes of the whole tar.zst
    part: NotRequired[int]
    parts: NotRequired[int]
    data: NotRequired[bytes]
    error: NotRequired[str]


# -- debug shells in failed jobs (apiary.core.debug; the drone's side: apiary.drone.debugshell) --------------


class DebugOpen(TypedDict):
    """queen -> drone: open shell `session` in the kept workspace of failed job `job` (a terminal of
    `rows` x `cols`), ending after `idle` seconds with nothing typed or printed, or `total` seconds."""

    session: str
    job: str
    rows: int
    cols: int
    idle: float
    total: float


class DebugInput(TypedDict):
    """queen -> drone: what the person typed (at most apiary.core.debug.MAX_CHUNK bytes)."""

    session: str
    data: bytes


class DebugResize(TypedDict):
    """queen -> drone: the person's terminal is now `rows` x `cols`."""

    session: str
    rows: int
    cols: int


class DebugClose(TypedDict):
    """queen -> drone: end shell `session` (the person left, or the queen ended it)."""

    session: str


class DebugAck(TypedDict):
    """queen -> drone: `bytes` more of the session's output were passed on: the drone may send that much more
    (at most apiary.core.debug.WINDOW in flight)."""

    session: str
    bytes: int


class DebugOpened(TypedDict):
    """drone -> queen: shell `session` runs (`sandboxed`: in the job's sandbox)."""

    session: str
    sandboxed: NotRequired[bool]


class DebugOutput(TypedDict):
    """drone -> queen: what the shell printed, the job's secrets masked (UTF-8, at most MAX_CHUNK bytes)."""

    session: str
    data: bytes


class DebugClosed(TypedDict):
    """drone -> queen: shell `session` ended, or never opened: `how` (apiary.core.debug.ENDINGS), `detail` why."""

    session: str
    how: str
    detail: NotRequired[str]
