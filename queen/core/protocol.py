"""The queen <-> drone wire protocol: message types, job states, framing.

The one definition both sides import (DESIGN.md §3). No I/O here: the broker
(queen) and the agent (drone) own the sockets and hand frames to `decode`.

A message is one ZeroMQ frame holding msgpack ``[type, body]`` with ``body`` a
map: the TypedDict `BODIES` names for its type, checked field by field on
decode. Every drone -> queen event of a job carries ``id`` (the job), ``seq``
(1, 2, 3… per job) and ``attempt`` (the fencing token, apiary.core.jobstate),
added in one place (the drone's connection); the queen stores, then acks
cumulatively with ``ack {id, seq, attempt}``; the drone resends what stays
unacked.
"""

import enum
import math
import re
import typing
from typing import Any

import msgpack

from .errors import ProtocolError
from .messages import (
    Ack,
    CacheGet,
    CachePart,
    DebugAck,
    DebugClose,
    DebugClosed,
    DebugInput,
    DebugOpen,
    DebugOpened,
    DebugOutput,
    DebugResize,
    DroneBye,
    DroneHeartbeat,
    DroneInfo,
    JobArtifact,
    JobCache,
    JobCancel,
    JobCheckout,
    JobCmdDone,
    JobCmdOutput,
    JobCmdStart,
    JobDone,
    JobOutput,
    JobPhase,
    JobPhaseCode,
    JobPlugin,
    JobReport,
    JobStarted,
    QueenHeartbeat,
    QueryInfo,
    QueueNew,
    Refused,
)

PROTOCOL_VERSION = 6  # 3: cancels and acks name the attempt they concern; 4: job:checkout;
# 5: job:report, job:cache, cache:get/cache:part; queue:new's conditions and resume (partial runs); job:phase waiting
# 6: stages' remote {kind, unit} and resume.unit (spread cells, test shards as child jobs); debug:* (debug shells)

# Largest frame either side accepts; ZeroMQ drops bigger ones (ZMQ_MAXMSGSIZE).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Artifacts travel in parts of this size, each one event (and one GridFS file).
ARTIFACT_PART_BYTES = 4 * 1024 * 1024
# A drone's id: its ZeroMQ routing identity, shown on pages and in logs.
DRONE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")
# What a drone may report about itself (drone:info, drone:heartbeat); outside this it is refused.
MAX_CAPACITY = 4096
MAX_SPEED = 1e6
MAX_LOAD = 1e6


class Msg(str, enum.Enum):
    """Every message type on the wire; `BODIES` names its body's TypedDict (apiary.core.messages)."""

    # drone -> queen, about the drone
    DRONE_INFO = "drone:info"
    DRONE_HEARTBEAT = "drone:heartbeat"
    DRONE_BYE = "drone:bye"
    # queen -> drone
    QUEEN_HEARTBEAT = "queen:heartbeat"
    QUERY_INFO = "drone:query-info"
    QUEUE_NEW = "queue:new"
    JOB_CANCEL = "job:cancel"
    ACK = "ack"
    REFUSED = "drone:refused"
    # drone -> queen, events of a job (each carries id, seq and attempt: `JobEvent`)
    JOB_STARTED = "job:started"
    JOB_CMD_START = "job:cmd:start"
    JOB_CMD_STDOUT = "job:cmd:stdout"
    JOB_CMD_STDERR = "job:cmd:stderr"
    JOB_CMD_DONE = "job:cmd:done"
    JOB_STDOUT = "job:stdout"
    JOB_STDERR = "job:stderr"
    JOB_PLUGIN = "job:plugin"
    JOB_PHASE = "job:phase"
    JOB_CHECKOUT = "job:checkout"
    JOB_TESTED = "job:tested"
    JOB_DEPLOYED = "job:deployed"
    JOB_DONE = "job:done"
    JOB_ARTIFACT = "job:artifact"
    JOB_REPORT = "job:report"  # a part of the job's test report (apiary.core.reports)
    JOB_CACHE = "job:cache"
    # a cache for a job, asked by its drone (not a job event: no seq) and answered part by part
    CACHE_GET = "cache:get"
    CACHE_PART = "cache:part"
    # a debug shell in a failed job's kept workspace (apiary.core.debug): not job events (no seq)
    DEBUG_OPEN = "debug:open"
    DEBUG_INPUT = "debug:input"
    DEBUG_RESIZE = "debug:resize"
    DEBUG_CLOSE = "debug:close"
    DEBUG_ACK = "debug:ack"
    DEBUG_OPENED = "debug:opened"
    DEBUG_OUTPUT = "debug:output"
    DEBUG_CLOSED = "debug:closed"


# The body of each message type: one TypedDict each (apiary.core.messages).
BODIES: dict[Msg, type] = {
    Msg.DRONE_INFO: DroneInfo, Msg.DRONE_HEARTBEAT: DroneHeartbeat, Msg.DRONE_BYE: DroneBye,
    Msg.QUEEN_HEARTBEAT: QueenHeartbeat, Msg.QUERY_INFO: QueryInfo, Msg.QUEUE_NEW: QueueNew,
    Msg.JOB_CANCEL: JobCancel, Msg.ACK: Ack, Msg.REFUSED: Refused,
    Msg.JOB_STARTED: JobStarted, Msg.JOB_CMD_START: JobCmdStart, Msg.JOB_CMD_STDOUT: JobCmdOutput,
    Msg.JOB_CMD_STDERR: JobCmdOutput, Msg.JOB_CMD_DONE: JobCmdDone, Msg.JOB_STDOUT: JobOutput,
    Msg.JOB_STDERR: JobOutput, Msg.JOB_PLUGIN: JobPlugin, Msg.JOB_PHASE: JobPhase, Msg.JOB_TESTED: JobPhaseCode,
    Msg.JOB_DEPLOYED: JobPhaseCode, Msg.JOB_DONE: JobDone, Msg.JOB_ARTIFACT: JobArtifact,
    Msg.JOB_CHECKOUT: JobCheckout, Msg.JOB_CACHE: JobCache, Msg.CACHE_GET: CacheGet, Msg.CACHE_PART: CachePart,
    Msg.JOB_REPORT: JobReport,
    Msg.DEBUG_OPEN: DebugOpen, Msg.DEBUG_INPUT: DebugInput, Msg.DEBUG_RESIZE: DebugResize, Msg.DEBUG_CLOSE: DebugClose,
    Msg.DEBUG_ACK: DebugAck, Msg.DEBUG_OPENED: DebugOpened, Msg.DEBUG_OUTPUT: DebugOutput,
    Msg.DEBUG_CLOSED: DebugClosed,
}

JOB_EVENTS = frozenset({
    Msg.JOB_STARTED, Msg.JOB_CMD_START, Msg.JOB_CMD_STDOUT, Msg.JOB_CMD_STDERR, Msg.JOB_CMD_DONE, Msg.JOB_STDOUT,
    Msg.JOB_STDERR, Msg.JOB_PLUGIN, Msg.JOB_PHASE, Msg.JOB_TESTED, Msg.JOB_DEPLOYED, Msg.JOB_DONE, Msg.JOB_ARTIFACT,
    Msg.JOB_CHECKOUT, Msg.JOB_CACHE, Msg.JOB_REPORT,
})

# Who may send what: each side refuses the other's types as malformed.
DRONE_SENDS = JOB_EVENTS | {Msg.DRONE_INFO, Msg.DRONE_HEARTBEAT, Msg.DRONE_BYE, Msg.CACHE_GET,
                            Msg.DEBUG_OPENED, Msg.DEBUG_OUTPUT, Msg.DEBUG_CLOSED}
QUEEN_SENDS = frozenset(Msg) - DRONE_SENDS

OUTPUT_EVENTS = frozenset(
    {Msg.JOB_CMD_STDOUT, Msg.JOB_CMD_STDERR, Msg.JOB_STDOUT, Msg.JOB_STDERR}
)


def _checks(body: type) -> tuple[tuple[str, tuple[type, ...], bool], ...]:
    """(field, accepted Python types, required) for a body TypedDict, from its annotations."""
    accepted = {str: (str,), int: (int,), float: (int, float), bool: (bool,), list: (list,), dict: (dict,),
                bytes: (bytes,)}
    return tuple((name, accepted[hint], name in body.__required_keys__)
                 for name, hint in typing.get_type_hints(body).items())


_CHECKS = {msg: _checks(body) for msg, body in BODIES.items()}


class JobStatus(str, enum.Enum):
    """Where a job is in its life. The last four are final."""

    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    WAITING = "waiting"  # for an approval (apiary.core.approvals), on no drone
    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {JobStatus.PASSED, JobStatus.FAILED, JobStatus.ERRORED, JobStatus.CANCELLED}
)
# Not ended, as stored values: what a newer job may supersede (apiary.core.concurrency).
UNDERWAY = tuple(s.value for s in JobStatus if s not in FINAL_STATES)


class JobType(str, enum.Enum):
    TEST = "TEST"
    DEPLOY = "DEPLOY"
    TEST_DEPLOY = "TEST_DEPLOY"


def encode(kind: Msg, body: dict[str, Any]) -> bytes:
    """One frame for `kind` with `body`."""
    return msgpack.packb([kind.value, body], use_bin_type=True)


def decode(frame: bytes, allowed: frozenset[Msg] = frozenset(Msg)) -> tuple[Msg, dict[str, Any]]:
    """Parse and check one frame of a type in `allowed`; raise ProtocolError saying what is wrong.

    Nothing else escapes: a frame is from outside, and a receive loop that met any other error
    would stop hearing every peer (a 1 KB frame nested 1000 levels once raised RecursionError).
    """
    try:
        return _decode(frame, allowed)
    except ProtocolError:
        raise
    except Exception as exc:  # a check we did not foresee: still only this frame is wrong
        raise ProtocolError(f"unreadable frame: {type(exc).__name__}") from None


def _decode(frame: bytes, allowed: frozenset[Msg]) -> tuple[Msg, dict[str, Any]]:
    try:
        data = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"not msgpack: {exc}") from None
    fault = _shape_fault([data])
    if fault is not None:
        raise ProtocolError(f"frame {fault}")
    if not isinstance(data, list) or len(data) != 2:
        raise ProtocolError("frame is not a [type, body] pair")
    kind, body = data
    try:
        msg = Msg(kind)
    except ValueError:
        raise ProtocolError(f"unknown message type {kind!r}") from None
    if msg not in allowed:
        raise ProtocolError(f"{msg.value} is not sent in this direction")
    if not isinstance(body, dict):
        raise ProtocolError(f"{msg.value}: body is not a map")
    for name, want, required in _CHECKS[msg]:
        if name not in body and not required:
            continue
        value = body.get(name)
        # bool is an int subclass; a True seq or exitCode is still a malformed frame
        if not isinstance(value, want) or isinstance(value, bool) and bool not in want:
            raise ProtocolError(f"{msg.value}: field {name!r} missing or not {_type_name(want)}", kind=msg)
    # What a drone reports is checked to the last number (a queen's messages carry what its API checked).
    fault = _number_fault(body) if msg in DRONE_SENDS else None
    if fault is not None:
        raise ProtocolError(f"{msg.value}: field {fault[0]!r} {fault[1]}", kind=msg)
    for name, (low, high) in _RANGES.items() if msg in DRONE_SENDS else ():
        value = body.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not low <= value <= high:
            raise ProtocolError(f"{msg.value}: field {name!r} must be between {low:g} and {high:g}, got {value!r}",
                                kind=msg)
    return msg, body


# Deepest nesting a frame may have: a job's stored data (at most storable.MAX_DEPTH, 32) wrapped in the
# few levels of a message. Checked before anything walks the frame, so no check recurses without bound.
MAX_NESTING = 64


def _shape_fault(value: Any) -> str | None:
    """Why `value` (decoded msgpack) is no message, or None: lists or maps nested more than MAX_NESTING
    deep, or an extension type (a msgpack timestamp or ext) that neither side sends nor the store keeps."""
    level: list[Any] = [value]
    for _ in range(MAX_NESTING + 1):
        inner: list[Any] = []
        for node in level:
            for item in node.values() if isinstance(node, dict) else node:
                if isinstance(item, (list, dict)):
                    inner.append(item)
                elif isinstance(item, _EXTENSIONS):
                    return "holds a msgpack extension type (only nil, bool, numbers, text, bytes, lists and maps)"
        if not inner:
            return None
        level = inner
    return f"nested more than {MAX_NESTING} levels deep"


_EXTENSIONS = (msgpack.ExtType, msgpack.Timestamp)


# Numbers both sides, JSON and a browser can hold exactly: finite, and whole numbers within 2**53.
MAX_NUMBER = 2**53
# Fields with a narrower range wherever they appear: times (seconds since 1970, before 2286), durations
# (seconds), exit codes (32-bit).
_RANGES: dict[str, tuple[float, float]] = {
    "timestamp": (0, 1e10), "duration": (0, 1e8), "exitCode": (-2**31, 2**31 - 1), "code": (-2**31, 2**31 - 1),
    # A command's number (1, 2, 3… in a job): the queen keeps the first one a job reports and would
    # refuse its own later messages naming a number beyond 2**53.
    "num": (1, 10**9),
}


def _number_fault(value: Any, path: str = "") -> tuple[str, str] | None:
    """(where, why) of the first number in `value` that is NaN, infinite or beyond ±MAX_NUMBER, or None.

    JSON has no NaN or Infinity, and larger numbers lose their value in a browser: either would make the
    API's answers unreadable or wrong. Paths read ``speed``, ``usage.cpu``, ``data[2]``.
    """
    if isinstance(value, float):
        if not math.isfinite(value):
            return path, "is not a finite number"
        return (path, f"is beyond ±2**53, got {value!r}") if abs(value) > MAX_NUMBER else None
    if isinstance(value, int):
        return (path, f"is beyond ±2**53, got {value!r}") if abs(value) > MAX_NUMBER else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (int, float, dict, list)):
                found = _number_fault(item, f"{path}.{key}" if path else str(key))
                if found is not None:
                    return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, (int, float, dict, list)):
                found = _number_fault(item, f"{path}[{i}]")
                if found is not None:
                    return found
    return None


def drone_info_fault(body: dict[str, Any]) -> str | None:
    """Why a decoded drone:info cannot be admitted (an id, capacity or speed out of range), or None."""
    drone_id = body["id"]
    if not DRONE_ID.match(drone_id):
        return (f"drone id {drone_id[:80]!r}: letters, digits, '.', '_' or '-' (at most 64), "
                "starting with a letter or digit")
    session = body.get("session", "")
    if not isinstance(session, str) or len(session) > 64:
        return "session must be a short text the drone chose at its start"
    if not 1 <= body["capacity"] <= MAX_CAPACITY:
        return f"capacity must be between 1 and {MAX_CAPACITY}, got {body['capacity']}"
    if not 0 < body["speed"] <= MAX_SPEED:
        return f"speed must be greater than 0 and at most {MAX_SPEED:g}, got {body['speed']}"
    if len(body["jobs"]) > MAX_CAPACITY or not all(isinstance(j, str) and len(j) <= 64 for j in body["jobs"]):
        return f"jobs must be at most {MAX_CAPACITY} job ids"
    host = body.get("host", "")
    if not isinstance(host, str) or len(host) > 255:
        return "host must be a host name (at most 255 characters)"
    plugins = body.get("plugins", [])
    if not isinstance(plugins, list) or len(plugins) > 1000 or not all(isinstance(p, str) and len(p) <= 200
                                                                        for p in plugins):
        return "plugins must be a list of at most 1000 names"
    return None


def reported_load(body: dict[str, Any]) -> float | None:
    """A heartbeat's load average, or None when absent or out of range (0 to MAX_LOAD)."""
    load = body.get("load")
    if isinstance(load, bool) or not isinstance(load, (int, float)) or not 0 <= load <= MAX_LOAD:
        return None
    return float(load)


def _type_name(want: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in want)


# What a drone says (job:stderr) when a cancel stops a job; a drone that is stopping says STOPPING_LINE instead.
CANCELLED_LINE = "job cancelled\n"
STOPPING_LINE = "job stopped: the drone is stopping\n"
