"""The `apiary` command: the entry point of every process.

    apiary up                         a queen with the embedded store and one local drone
    apiary queen [-c apiary.toml]     a queen
    apiary drone --queen tcp://H:P    a drone
    apiary run [PATH]                 a working copy's pipeline, here, without a queen
    apiary trigger REPO [--follow]    start a job; with --follow show its output, exit with its result
    apiary ls [REPO]                  recent jobs
    apiary logs JOB [--follow]        a job's output
    apiary cancel JOB                 stop a job
    apiary drones                     the drones in the pool
    apiary prune                      apply the repositories' retention policies now
    apiary config                     the settings in force, as TOML
    apiary keys [--drone]             a CurveZMQ key pair for the queen (or a drone), and what to do with it

The client commands (trigger … prune) talk to the queen at ``--url`` (default:
the ``[client] url`` setting). A followed job exits 0 passed, 1 failed,
3 errored, 130 cancelled; a refused request exits 2 (bad input, unknown name)
or 1 (anything else, or the queen unreachable).

Settings come from the config file (``-c``, else ``./apiary.toml`` if present),
then ``APIARY_*`` variables, then the command's flags. Errors Apiary can
explain are printed as one line and exit non-zero; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import zmq

from apiary.core import __version__
from apiary.core.config import Config, load_config, with_changes
from apiary.core.errors import ApiaryError
from apiary.core.protocol import FINAL_STATES

if TYPE_CHECKING:
    from apiary.queen.client import Client, Follower

if __name__ != "apiary.cli":  # queen/cli/ is also reachable as apiary.queen.cli in an editable install
    raise ImportError("import apiary.cli, not " + __name__)

log = logging.getLogger("apiary")

DEFAULT_CONFIG = "apiary.toml"
FINAL = {s.value for s in FINAL_STATES}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apiary", description="Apiary: a continuous-integration cluster.")
    parser.add_argument("--version", action="version", version=f"apiary {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help=f"config file (default: ./{DEFAULT_CONFIG} if it exists)")
    common.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    queen_flags = argparse.ArgumentParser(add_help=False)
    queen_flags.add_argument("--http-host", help="address the API and dashboard listen on")
    queen_flags.add_argument("--http-port", type=int, help="port of the API and dashboard (0: any free port)")
    queen_flags.add_argument("--drone-bind", help="ZeroMQ endpoint drones connect to, tcp://HOST:PORT")
    queen_flags.add_argument("--data-dir", help="where the queen keeps its data (and the embedded store)")
    queen_flags.add_argument("--mongodb-url", help='"embedded" or a mongodb:// URL')

    drone_flags = argparse.ArgumentParser(add_help=False)
    drone_flags.add_argument("--capacity", type=int, help="jobs run at once (default: one per CPU)")
    drone_flags.add_argument("--speed", type=float, help="relative speed, breaks ties between drones")
    drone_flags.add_argument("--id", help="this drone's name (default: HOST-PID)")
    drone_flags.add_argument("--work-dir", help="where job workspaces are made")

    sub.add_parser("up", parents=[common, queen_flags, drone_flags],
                   help="a queen with the embedded store and one local drone")
    sub.add_parser("queen", parents=[common, queen_flags], help="run a queen")
    drone = sub.add_parser("drone", parents=[common, drone_flags], help="run a drone")
    drone.add_argument("--queen", help="the queen's drone endpoint, tcp://HOST:PORT")
    drone.add_argument("--join", metavar="TOKEN", help="join a queen whose drones use keys, with a one-time token "
                                                      "from apiary join-token (its key pair is made and kept)")
    run = sub.add_parser("run", parents=[common], help="run a working copy's pipeline here, without a queen")
    run.add_argument("path", nargs="?", default=".", help="the working copy (default: .)")
    run.add_argument("--type", default="TEST", choices=["TEST", "DEPLOY", "TEST_DEPLOY"], help="the job type")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a parameter (repeatable)")
    run.add_argument("--file", default=".apiary.yml", help="the pipeline file in PATH (default: .apiary.yml)")
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--url", help="the queen's URL, http://HOST:PORT (default: [client] url)")
    client = [common, url]
    trigger = sub.add_parser("trigger", parents=client, help="start a job")
    trigger.add_argument("repo", help="the repository's name")
    trigger.add_argument("--branch", help="the branch (default: the repository's default branch)")
    trigger.add_argument("--commit", metavar="SHA", help="the commit to run")
    trigger.add_argument("--type", default="TEST", choices=["TEST", "DEPLOY", "TEST_DEPLOY"], help="the job type")
    trigger.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a parameter (repeatable)")
    trigger.add_argument("--follow", action="store_true", help="show the job's output; exit with its result")
    ls = sub.add_parser("ls", parents=client, help="recent jobs, of every repository or of one")
    ls.add_argument("repo", nargs="?", help="only this repository's jobs")
    ls.add_argument("--limit", type=int, default=20, help="how many (default: 20)")
    logs = sub.add_parser("logs", parents=client, help="a job's output")
    logs.add_argument("job", help="the job's id")
    logs.add_argument("--follow", action="store_true", help="then live until it ends; exit with its result")
    cancel = sub.add_parser("cancel", parents=client, help="cancel a job")
    cancel.add_argument("job", help="the job's id")
    sub.add_parser("drones", parents=client, help="the drones in the pool")
    sub.add_parser("prune", parents=client, help="apply the retention policies now")
    join_token = sub.add_parser("join-token", parents=client,
                                help="a one-time token with which a drone joins (apiary drone --join TOKEN)")
    join_token.add_argument("--id", help="the drone id it is for (default: the id the drone gives)")
    join_token.add_argument("--expires", type=float, default=3600.0, metavar="SECONDS",
                            help="how long it may be used (default: 3600)")
    user = sub.add_parser("user", parents=client, help="people: apiary user add NAME [--role admin|member]")
    user.add_argument("action", choices=["add"], help="add a user (the first one needs no token: it is the admin "
                                                      "made with this machine's setup token)")
    user.add_argument("name", help="the username")
    user.add_argument("--role", choices=["admin", "member"], default=None,
                      help="admin or member (default: admin while the queen has none, else member)")
    user.add_argument("--data-dir", help="the queen's data dir, where its setup token is (default: [queen] data_dir; "
                                         "needed, on the queen's machine, while the queen has no admin)")
    token = sub.add_parser("token", parents=client, help="make an API token for the CLI: apiary token create")
    token.add_argument("action", choices=["create"], help="sign in with a password and print a new token")
    token.add_argument("--user", required=True, help="your username")
    token.add_argument("--name", default="cli", help="what the token is for (default: cli)")
    sub.add_parser("config", parents=[common], help="print the settings in force")
    keys = sub.add_parser("keys", parents=[common], help="make a CurveZMQ key pair for the queen or a drone")
    keys.add_argument("--drone", action="store_true",
                      help="a drone's key pair (implied by a --name other than queen)")
    keys.add_argument("--name", help="the files' name, NAME.key and NAME.key_secret "
                                     "(default: queen; for a drone, its [drone] id or the host name)")
    keys.add_argument("--dir", help="where to write them (default: [queen] data_dir/keys; "
                                    "for a drone, [drone] work_dir/keys)")
    keys.add_argument("--force", action="store_true", help="replace existing key files")
    return parser


def _with_flags(config: Config, args: argparse.Namespace) -> Config:
    def pick(section: Any, names: dict[str, str]) -> Any:
        changes = {field: getattr(args, flag) for flag, field in names.items()
                   if getattr(args, flag, None) is not None}
        if not changes:
            return section
        return with_changes(section, lambda key: f"--{key.replace('_', '-')}", **changes)

    queen = pick(config.queen, {"http_host": "http_host", "http_port": "http_port", "drone_bind": "drone_bind",
                                "data_dir": "data_dir", "mongodb_url": "mongodb_url"})
    drone = pick(config.drone, {"capacity": "capacity", "speed": "speed", "id": "id", "work_dir": "work_dir",
                                "queen": "queen"})
    return dataclasses.replace(config, queen=queen, drone=drone)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        path = args.config
        if path is None and Path(DEFAULT_CONFIG).is_file():
            path = DEFAULT_CONFIG
        config = _with_flags(load_config(path), args)
        if args.command == "config":
            print(_as_toml(config))
            return
        if args.command == "keys":
            _keys(args, config)
            return
        if args.command == "run":
            from apiary.drone.local import run_local

            from apiary.queen.validate import parse_params

            code = _run(_until_signalled(run_local(Path(args.path), args.type, parse_params(args.param),
                                                   args.file, drone=config.drone)), fast_loop=False)
            sys.exit(code if isinstance(code, int) else 1)
        if args.command in CLIENT_COMMANDS:
            sys.exit(_client_command(args, config))
        runner = {"up": _up, "queen": _queen, "drone": _drone}[args.command]
        if args.command == "drone" and args.join:
            from apiary.drone.joining import join

            config = dataclasses.replace(config, drone=_run(join(config.drone, args.join), fast_loop=False))
        _run(_until_signalled(runner(config)), fast_loop=args.command != "drone")
    except ApiaryError as exc:
        print(f"apiary: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OSError as exc:
        print(f"apiary: error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        sys.exit(1)
    except zmq.ZMQError as exc:
        print(f"apiary: error: ZeroMQ: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


def _run(coro: Any, fast_loop: bool) -> Any:
    """Run `coro`; on uvloop if `fast_loop` and it is installed.

    The queen gains from uvloop; a drone does not: it mostly starts processes,
    which asyncio's own loop does faster (2.0 against 3.3 ms a spawn here).
    """
    if fast_loop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


async def _until_signalled(coro: Any) -> Any:
    """Run `coro` until it ends or SIGINT/SIGTERM arrives (then cancel it and let it clean up)."""
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        return await task
    return None


def _say(text: str) -> None:
    print(text, flush=True)


async def _queen(config: Config) -> None:
    from apiary.queen.app import running_queen
    from apiary.queen.curve import server_curve

    server_curve(config.queen)  # key files and the drone port's safety, before anything starts
    async with running_queen(config.queen) as where:
        _say(f"apiary queen {__version__}")
        _say(f"  dashboard: {where.http}/")
        _say(f"  API:       {where.api}")
        _say(f"  drones:    {where.drones}    (start one: apiary drone --queen {where.drones})")
        _say(f"  store:     {_store_text(config)}")
        await asyncio.Event().wait()


async def _drone(config: Config) -> None:
    from apiary.drone.agent import Agent

    async with Agent(config.drone) as agent:
        _say(f"apiary drone {agent.id}: {agent.capacity} slots, queen {config.drone.queen}")
        await agent.run()


async def _up(config: Config) -> None:
    from apiary.drone.agent import Agent

    from apiary.queen.app import running_queen
    from apiary.queen.curve import server_curve

    server_curve(config.queen)  # key files and the drone port's safety, before anything starts
    async with running_queen(config.queen) as where:
        host, port = where.drones.rsplit(":", 1)
        # Its jobs must not see the queen's data (the store's files, the secrets key, the setup token).
        hidden = ",".join(filter(None, [config.drone.sandbox_hide, str(config.queen.data_path),
                                        str(config.queen.secrets_key_path)]))
        drone_config = dataclasses.replace(config.drone, queen=f"{host.replace('0.0.0.0', '127.0.0.1')}:{port}",
                                           id=config.drone.id or "local", sandbox_hide=hidden)
        if config.queen.curve_secret_key and not config.drone.curve_secret_key:
            # The local drone presents the queen's own key pair, which the queen always admits.
            drone_config = dataclasses.replace(drone_config, curve_secret_key=config.queen.curve_secret_key,
                                               queen_public_key=config.queen.curve_secret_key)
        async with Agent(drone_config) as agent:
            _say(f"apiary {__version__} is up")
            _say(f"  dashboard: {where.http}/")
            _say(f"  API:       {where.api}")
            _say(f"  drones:    {where.drones}    (add one: apiary drone --queen {where.drones})")
            _say(f"  store:     {_store_text(config)}")
            _say(f"  local drone {agent.id}: {agent.capacity} slots")
            _say("Press Ctrl-C to stop.")
            await agent.run()


def _store_text(config: Config) -> str:
    if config.queen.mongodb_url == "embedded":
        return f"embedded (data in {config.queen.data_path / 'store'})"
    return config.queen.mongodb_url


def _as_toml(config: Config) -> str:
    lines = []
    for table in ("queen", "drone", "client"):
        lines.append(f"[{table}]")
        for field in dataclasses.fields(getattr(config, table)):
            value = getattr(getattr(config, table), field.name)
            lines.append(f"{field.name} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)


def _keys(args: argparse.Namespace, config: Config) -> None:
    """apiary keys: a CurveZMQ key pair, and what to do with it."""
    import socket

    import zmq.auth

    from apiary.queen.curve import create_key_pair

    drone = args.drone or (args.name is not None and args.name != "queen")
    if drone:
        name = args.name or config.drone.id or socket.gethostname().split(".")[0]
        directory = Path(args.dir).expanduser() if args.dir else config.drone.work_path / "keys"
    else:
        name = args.name or "queen"
        directory = Path(args.dir).expanduser() if args.dir else config.queen.data_path / "keys"
    public, secret = create_key_pair(directory.absolute(), name, force=args.force)
    key = zmq.auth.load_certificate(public)[0].decode()
    who = f"drone key pair {name}" if drone else "queen key pair"
    _say(f"{who} written:")
    _say(f"  public: {public}    (the key: {key})")
    _say(f"  secret: {secret}    (mode 0600: keep it on this machine)")
    if drone:
        _say("Next:")
        _say(f"  1. copy {public.name} into the queen's authorized_keys folder (no restart needed)")
        _say("  2. copy the queen's public key file (queen.key) here, and set in this drone's [drone] table:")
        _say(f'       curve_secret_key = "{secret}"')
        _say('       queen_public_key = "/path/to/queen.key"')
        return
    authorized = public.parent / "authorized"
    authorized.mkdir(exist_ok=True)
    _say(f"  authorized drone keys: {authorized}/")
    _say("Next:")
    _say("  1. set in the queen's [queen] table (then restart it):")
    _say(f'       curve_secret_key = "{secret}"')
    _say(f'       authorized_keys = "{authorized}"')
    _say("  2. on each drone machine run apiary keys --drone, and copy the drone's .key file into")
    _say(f"     {authorized}/")
    _say(f"  3. copy {public} to each drone machine and set its [drone] queen_public_key to that copy")


# -- the client commands -----------------------------------------------------------

CLIENT_COMMANDS = ("trigger", "ls", "logs", "cancel", "drones", "prune", "user", "token", "join-token")


def _client_command(args: argparse.Namespace, config: Config) -> int:
    """Run a client command against the queen at --url or [client] url; its exit status."""
    settings = config.client
    if args.url:
        settings = with_changes(settings, lambda key: "--url", url=args.url)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")  # a job's output must not fail on a narrow terminal encoding
    command = {"trigger": _trigger, "ls": _ls, "logs": _logs, "cancel": _cancel, "drones": _drones,
               "prune": _prune, "user": _user, "token": _token, "join-token": _join_token}[args.command]
    args.setup_file = config.queen.data_path / "setup-token"
    recorded = config.queen.data_path / "queen.url"
    if args.command == "user" and not args.url and args.setup_file.exists() and recorded.exists():
        # The setup token goes to the queen it belongs to, whatever [client] url says.
        settings = with_changes(settings, lambda key: str(recorded), url=recorded.read_text().strip())
    code = _run(_until_signalled(_with_client(settings.url, settings.token, command, args)), fast_loop=False)
    return 130 if code is None else code  # None: interrupted


async def _with_client(url: str, token: str, command: Any, args: argparse.Namespace) -> int:
    from apiary.queen.client import Client

    async with Client(url, token) as client:
        return await command(client, args)


def _password(confirm: bool) -> str:
    """A password from the terminal (asked twice for a new one), or the first line of stdin."""
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != password:
        raise ApiaryError("the passwords differ")
    return password


async def _user(client: Any, args: argparse.Namespace) -> int:
    """apiary user add: an admin made with this machine's setup token while the queen has none, else a user
    made with an admin's API token. Never a member in place of the first admin."""
    from apiary.queen.client import ApiError

    setup_file: Path = args.setup_file  # the token also decided which queen `client` talks to
    token = _setup_token(setup_file)
    if token is None and (await client.request("GET", "/me")).get("setup"):
        raise ApiaryError(f"the queen at {client.url} has no admin yet, and its setup token is not at {setup_file}: "
                          "run this on the queen's machine as the user it runs as, with its data dir "
                          "(--data-dir DIR, -c CONFIG or APIARY_QUEEN_DATA_DIR, as given to apiary queen or up)")
    if token is not None:
        if args.role == "member":
            raise ApiaryError("the queen has no admin yet: the first user made here is its admin "
                              "(leave out --role member)")
        password = _password(confirm=True)
        try:
            await client.request("POST", "/setup", {"token": token, "username": args.name, "password": password})
        except ApiError as exc:
            if exc.status == 409:  # a token file left behind
                raise ApiaryError(f"the queen at {client.url} has an admin already (and {setup_file} is left "
                                  "over): an admin adds people, with an API token (apiary token create)") from None
            raise
        _say(f"{args.name} is an admin of this queen; sign in at {client.url}/signin "
             f"(and make a CLI token: apiary token create --user {args.name})")
        return 0
    password = _password(confirm=True)
    await client.request("POST", "/users", {"username": args.name, "password": password,
                                            "role": args.role or "member"})
    _say(f"{args.name} added ({args.role or 'member'})")
    return 0


def _setup_token(path: Path) -> str | None:
    """The queen's setup token from its data dir, or None when there is none (it has an admin)."""
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
    except PermissionError:
        raise ApiaryError(f"cannot read {path}: run this as the user the queen runs as") from None


async def _token(client: Any, args: argparse.Namespace) -> int:
    """apiary token create: sign in with a password, print a new API token once."""
    session = await client.request("POST", "/session", {"username": args.user, "password": _password(False)})
    made = await client.request("POST", "/tokens", {"name": args.name},
                                headers={"X-CSRF-Token": session["csrf"], "Cookie": client.cookie})
    print(made["token"])  # alone on stdout, for scripts
    print("keep it: export APIARY_CLIENT_TOKEN=<the token> (or [client] token); it is not shown again",
          file=sys.stderr)
    return 0


async def _trigger(client: Client, args: argparse.Namespace) -> int:
    from apiary.queen.client import Follower, q, whoami
    from apiary.queen.validate import parse_params

    body: dict[str, Any] = {"type": args.type, "parameters": parse_params(args.param),
                            "trigger": {"source": "API", "author": whoami()}}
    if args.branch:
        body["branch"] = args.branch
    if args.commit:
        body["commit"] = args.commit
    job = await client.request("POST", f"/repos/{q(args.repo)}/jobs", body)
    _say(f"{job['repo']} #{job['number']} {job['status']}: {client.page(job['id'])}")
    if not args.follow:
        return 0
    return await _follow(Follower(client, job, sys.stdout, sys.stderr))


async def _logs(client: Client, args: argparse.Namespace) -> int:
    from apiary.queen.client import Follower

    job = await client.job(args.job)
    follower = Follower(client, job, sys.stdout, sys.stderr)
    await follower.stored()
    if args.follow:
        return await _follow(follower)
    if job["status"] in FINAL and not follower.renderer.result:
        await follower.ended()  # ended with no job:done (cancelled in the queue): say so
    elif job["status"] not in FINAL:
        print(f"apiary: job {job['id']} is {job['status']}; apiary logs --follow {job['id']} shows the rest",
              file=sys.stderr)
    return 0


async def _follow(follower: Follower) -> int:
    try:
        return await follower.run()
    except asyncio.CancelledError:
        print(f"\napiary: stopped following; the job goes on (apiary cancel {follower.job_id} stops it)",
              file=sys.stderr)
        raise


async def _ls(client: Client, args: argparse.Namespace) -> int:
    from apiary.queen.client import age, colour_on, paint, q, span, table

    path = f"/repos/{q(args.repo)}/jobs" if args.repo else "/jobs"
    jobs = (await client.request("GET", f"{path}?limit={args.limit}"))["jobs"]
    if not jobs:
        _say("no jobs yet" + (f" in {args.repo}" if args.repo else ""))
        return 0
    now = time.time()
    rows = []
    for job in jobs:
        ref, trigger = job.get("ref") or {}, job.get("trigger") or {}
        source = " ".join(x for x in ((trigger.get("source") or {}).get("type"),
                                      (trigger.get("author") or {}).get("name")) if x)
        if job.get("duration") is not None:
            took = span(job["duration"])
        elif job.get("started") and job["status"] not in FINAL:
            took = span(now - job["started"])  # still running
        else:
            took = "-"
        rows.append([job["id"], f"{job['repo']}#{job['number']}", job["status"],
                     ref.get("branch") or ref.get("fetch") or (ref.get("id") or "-")[:12], source or "-",
                     job.get("drone") or "-", took, age(job.get("created"), now)])
    colours = {"passed": "32", "failed": "31", "errored": "31", "cancelled": "33", "running": "36"}
    on = colour_on(sys.stdout)
    _say(table(["ID", "JOB", "STATUS", "REF", "TRIGGER", "DRONE", "DURATION", "AGE"], rows,
               lambda col, value, cell: paint(cell, colours[value], on) if col == 2 and value in colours else cell))
    return 0


async def _cancel(client: Client, args: argparse.Namespace) -> int:
    from apiary.queen.client import q

    _say((await client.request("POST", f"/jobs/{q(args.job)}/cancel"))["status"])  # cancelled or cancelling
    return 0


async def _drones(client: Client, args: argparse.Namespace) -> int:
    from apiary.queen.client import age, table

    drones = (await client.request("GET", "/drones"))["drones"]
    if not drones:
        _say(f"no drones yet: run apiary drone --queen tcp://{urlsplit(client.url).hostname}:8421")
        return 0
    now = time.time()
    rows = [[d["id"], d.get("host") or "-", str(d["capacity"]), str(d["running"]), f"{d['speed']:g}",
             str(d["version"]), f"{age(d.get('last_heartbeat'), now)} ago"] for d in drones]
    _say(table(["ID", "HOST", "CAPACITY", "RUNNING", "SPEED", "VERSION", "HEARTBEAT"], rows))
    return 0


async def _join_token(client: Client, args: argparse.Namespace) -> int:
    """apiary join-token: a one-time token for a drone, and the command to run on its machine."""
    body: dict[str, Any] = {"expires_in": args.expires}
    if args.id:
        body["id"] = args.id
    made = await client.request("POST", "/drones/join-tokens", body)
    print(made["token"])  # alone on stdout, for scripts
    print(f"on the drone's machine (within {args.expires:g} s, once):\n  {made['run']}", file=sys.stderr)
    return 0


async def _prune(client: Client, args: argparse.Namespace) -> int:
    deleted = (await client.request("POST", "/prune"))["deleted"]
    for repo, count in sorted(deleted.items()):
        _say(f"{repo}: {count} job{'s' if count != 1 else ''} deleted")
    if not deleted:
        _say("no repositories")
    return 0

