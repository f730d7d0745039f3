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
import logging
import sys

# queen/cli/ is also reachable as apiary.queen.cli in an editable install. Checked before the imports below,
# which would otherwise load this package a second time under its right name.
if __name__ != "apiary.cli":
    raise ImportError("import apiary.cli, not " + __name__)

import zmq

from apiary.cli import keys, remote, server, users
from apiary.cli.connect import Command, run_client_command
from apiary.cli.settings import DEFAULT_CONFIG, as_toml, config_path, load_config, with_flags
from apiary.core import __version__
from apiary.core.errors import ApiaryError

# The commands that talk to a queen's API (apiary.cli.connect runs them), by name.
CLIENT_COMMANDS: dict[str, Command] = {
    "trigger": remote.trigger, "ls": remote.ls, "logs": remote.logs, "cancel": remote.cancel,
    "drones": remote.drones, "prune": remote.prune, "user": users.add_user, "token": users.create_token,
    "join-token": keys.join_token,
}


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


def main(argv: list[str] | None = None) -> None:
    """The `apiary` command: parse `argv`, read the settings, run the command; errors as one line."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        config = with_flags(load_config(config_path(args.config)), args)
        if args.command == "config":
            print(as_toml(config))
            return
        if args.command == "keys":
            keys.make_keys(args, config)
            return
        if args.command == "run":
            sys.exit(server.run_here(args, config))
        if args.command in CLIENT_COMMANDS:
            sys.exit(run_client_command(CLIENT_COMMANDS[args.command], args, config))
        server.serve(args, config)
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
