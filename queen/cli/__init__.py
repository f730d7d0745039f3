"""The `apiary` command: the entry point of every process.

    apiary up [--port P]              a queen (HTTP on P, drones on P+1) with the embedded store and one local drone
    apiary queen [-c apiary.toml]     a queen
    apiary drone --queen tcp://H:P    a drone
    apiary run [PATH] [--debug]       a working copy's pipeline, here, without a queen (--debug: a shell where it fails)
    apiary repo add|ls|show           register a repository, list them, show one's settings
    apiary trigger REPO [--follow]    start a job; with --follow show its output, exit with its result
    apiary rerun JOB [--follow] [--from-failed]  the same job again (its commit, type and parameters)
    apiary approve JOB STAGE [--reject]  decide on a waiting job's approval gate
    apiary ls [REPO]                  recent jobs
    apiary logs JOB [--follow]        a job's output
    apiary artifacts JOB [NAME]       a job's artifacts; download one
    apiary shards JOB                 a job's test shards: planned and real time of each
    apiary comment JOB TEXT           comment on a job (markdown); apiary comments JOB reads them
    apiary caches REPO [--clear]      a repository's pipeline caches; clear them
    apiary cancel JOB                 stop a job
    apiary debug JOB                  a shell in a failed job's kept workspace, on its drone
    apiary bisect REPO --good G --bad B  the commit that broke the pipeline, by jobs on free drones
    apiary drones                     the drones in the pool
    apiary prune                      apply the repositories' retention policies now
    apiary config                     the settings in force, as TOML (secrets as ***)
    apiary keys [--drone]             a CurveZMQ key pair for the queen (or a drone), and what to do with it

The client commands (repo … prune, user, token, join-token) talk to the queen that
apiary.cli.address finds: --url, APIARY_CLIENT_URL, [client] url, or the address the
queen on this machine wrote down. A followed job exits 0 passed, 1 failed,
3 errored, 130 cancelled; a refused request exits 2 (bad input, unknown name)
or 1 (anything else, or the queen unreachable).

Settings come from the config file (``-c``, else ``./apiary.toml`` if present),
then ``APIARY_*`` variables, then the command's flags. Errors Apiary can
explain are printed as one line and exit non-zero; never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Any

# queen/cli/ is also reachable as apiary.queen.cli in an editable install. Checked before the imports below,
# which would otherwise load this package a second time under its right name.
if __name__ != "apiary.cli":
    raise ImportError("import apiary.cli, not " + __name__)

import zmq

from apiary.cli import bisect, caches, comments, gates, keys, remote, repos, server, shards, users
from apiary.cli import debug as debug_shell
from apiary.cli.address import PRECEDENCE
from apiary.cli.connect import Command, find_queen, run_client_command
from apiary.cli.settings import DEFAULT_CONFIG, as_toml, config_path, load_config, origins, with_flags
from apiary.core import __version__
from apiary.core.errors import ApiaryError

# What a command taking a JOB accepts (apiary.cli.remote.job_id).
JOB_HELP = "the job: REPO#N as apiary ls shows it (app#3), or its id (01M8PHSCARHJK5XN1E1G2BK495)"

# The commands that talk to a queen's API (apiary.cli.connect runs them), by name.
CLIENT_COMMANDS: dict[str, Command] = {
    "trigger": remote.trigger, "ls": remote.ls, "logs": remote.logs, "cancel": remote.cancel,
    "drones": remote.drones, "prune": remote.prune, "user": users.add_user, "token": users.create_token,
    "join-token": keys.join_token, "repo": repos.repo, "rerun": remote.rerun, "artifacts": remote.artifacts,
    "approve": gates.approve, "caches": caches.caches, "bisect": bisect.bisect, "shards": shards.shards,
    "comment": comments.comment, "comments": comments.comments, "debug": debug_shell.debug,
}


def _command(sub: Any, name: str, about: str, examples: str, parents: list[argparse.ArgumentParser]) -> Any:
    """A subcommand whose --help has a one-line description and examples (`examples`: lines, # comments)."""
    return sub.add_parser(name, parents=parents, help=about, description=about[:1].upper() + about[1:] + ".",
                          epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apiary", description="Apiary: a continuous-integration cluster.",
        epilog="examples:\n  apiary up --port 9000                 # a queen and a drone on this machine\n"
               "  apiary repo add try --pipeline .apiary.yml\n  apiary trigger try --follow\n\n"
               "apiary COMMAND --help says more about each.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"apiary {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help=f"config file (default: ./{DEFAULT_CONFIG} if it exists)")
    common.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    queen_flags = argparse.ArgumentParser(add_help=False)
    queen_flags.add_argument("--port", type=int, metavar="P",
                             help="the port of the API and dashboard, and drones on the next one, P+1 "
                                  "(default: 8420 and 8421; 0: any free ports)")
    queen_flags.add_argument("--http-host", help="address the API and dashboard listen on")
    queen_flags.add_argument("--http-port", type=int, help="port of the API and dashboard alone (0: any free port)")
    queen_flags.add_argument("--drone-bind", help="ZeroMQ endpoint drones connect to, tcp://HOST:PORT")
    queen_flags.add_argument("--data-dir", help="where the queen keeps its data (and the embedded store), and writes "
                                                "its address for the client commands (default: ~/.apiary/queen)")
    queen_flags.add_argument("--mongodb-url", help='"embedded" or a mongodb:// URL')

    drone_flags = argparse.ArgumentParser(add_help=False)
    drone_flags.add_argument("--capacity", type=int, help="jobs run at once (default: one per CPU)")
    drone_flags.add_argument("--speed", type=float, help="relative speed, breaks ties between drones")
    drone_flags.add_argument("--id", help="this drone's name (default: HOST-PID)")
    drone_flags.add_argument("--work-dir", help="where job workspaces are made")

    _command(sub, "up", "a queen with the embedded store and one local drone, on this machine", """
apiary up                              # dashboard and API on 8420, drones on 8421
apiary up --port 9000                  # on 9000, drones on 9001; the client commands find it""",
             [common, queen_flags, drone_flags])
    _command(sub, "queen", "run a queen", """
apiary queen -c apiary.toml
apiary queen --port 9000 --data-dir /srv/apiary""", [common, queen_flags])
    drone = _command(sub, "drone", "run a drone", """
apiary drone                           # the queen apiary up or apiary queen runs on this machine
apiary drone --queen tcp://SERVER:8421 --capacity 4 --id build-1
apiary drone --queen tcp://SERVER:8421 --join TOKEN      # a token from apiary join-token""",
                     [common, drone_flags])
    drone.add_argument("--queen", help="the queen's drone endpoint, tcp://HOST:PORT (apiary up and apiary drones "
                                       "print it; default: [drone] queen, APIARY_DRONE_QUEEN, else the endpoint the "
                                       "queen on this machine wrote to DATA_DIR/queen.endpoint, else "
                                       "tcp://127.0.0.1:8421)")
    drone.add_argument("--join", metavar="TOKEN", help="join a queen whose drones use keys, with a one-time token "
                                                      "from apiary join-token (its key pair is made and kept)")
    run = _command(sub, "run", "run a working copy's pipeline here, without a queen", """
apiary run                             # ./.apiary.yml
apiary run ../app --param GREETING=hi --file ci/pipeline.yml""", [common])
    run.add_argument("path", nargs="?", default=".", help="the working copy (default: .)")
    run.add_argument("--type", default="TEST", choices=["TEST", "DEPLOY", "TEST_DEPLOY"], help="the job type")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a parameter (repeatable)")
    run.add_argument("--file", default=".apiary.yml", help="the pipeline file in PATH (default: .apiary.yml)")
    run.add_argument("--debug", action="store_true",
                     help="when a step fails, a shell in the working copy with the job's environment; then the job "
                          "goes on")

    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--url", help=f"the queen's URL, http://HOST:PORT (without it: {PRECEDENCE})")
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", help="the queen's data dir on this machine, where it writes its address "
                                             "and setup token (default: APIARY_QUEEN_DATA_DIR, [queen] data_dir, "
                                             "~/.apiary/queen)")
    client = [common, url, data_dir]
    repo = _command(sub, "repo", "repositories: register one, list them, show one's settings", """
apiary repo add try --pipeline .apiary.yml       # the pipeline kept on the queen
apiary repo add app --url https://git.example.com/team/app.git
apiary repo ls
apiary repo show app""", [])
    repo_sub = repo.add_subparsers(dest="action", required=True, metavar="ACTION")
    repo_add = _command(repo_sub, "add", "register a repository", """
apiary repo add try --pipeline .apiary.yml       # no repository needed: the pipeline is kept on the queen
apiary repo add app --url https://git.example.com/team/app.git   # .apiary.yml read at each job's commit
apiary repo add app --url /srv/git/app.git --default-branch trunk --replace""", [common, data_dir])
    repo_add.add_argument("name", help="its name: letters, digits, '.', '_', '-' (it becomes the URL)")
    repo_add.add_argument("--url", dest="repo_url", metavar="GIT_URL",
                          help="where drones clone it from (https://, ssh://, git@host:path, or a path on "
                               "the drones' machine)")
    repo_add.add_argument("--pipeline", metavar="FILE",
                          help="a pipeline file here whose text is stored on the queen (pipeline_source queen)")
    repo_add.add_argument("--pipeline-file", metavar="PATH",
                          help="the pipeline's path in the repository (default: .apiary.yml)")
    repo_add.add_argument("--default-branch", metavar="BRANCH", help="what a trigger without --branch builds "
                                                                     "(default: main)")
    repo_add.add_argument("--provider", help="git (default), github, gitlab or gitea: which forge plugin's "
                                             "webhook the settings page offers")
    repo_add.add_argument("--plugin", action="append", default=[], metavar="NAME",
                          help="a queen plugin it uses, with its default config (repeatable): github, gitlab, …")
    repo_add.add_argument("--replace", action="store_true", help="replace the settings of one that exists")
    repo_add.add_argument("--queen-url", dest="url", metavar="URL",
                          help=f"the queen's URL, http://HOST:PORT (--url of the other commands; without it: {PRECEDENCE})")
    _command(repo_sub, "ls", "the registered repositories", "apiary repo ls", client)
    repo_show = _command(repo_sub, "show", "a repository's settings (and the names of its secrets)", """
apiary repo show app
apiary repo show app --json""", client)
    repo_show.add_argument("name", help="the repository's name")
    repo_show.add_argument("--json", action="store_true", help="as the API gives them")

    trigger = _command(sub, "trigger", "start a job", """
apiary trigger app                               # the default branch
apiary trigger app --branch main --param GREETING=hi --follow""", client)
    trigger.add_argument("repo", help="the repository's name")
    trigger.add_argument("--branch", help="the branch (default: the repository's default branch)")
    trigger.add_argument("--commit", metavar="SHA", help="the commit to run")
    trigger.add_argument("--type", default="TEST", choices=["TEST", "DEPLOY", "TEST_DEPLOY"], help="the job type")
    trigger.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a parameter (repeatable)")
    trigger.add_argument("--follow", action="store_true", help="show the job's output; exit with its result")
    rerun = _command(sub, "rerun", "run a job again: its commit, type and parameters", """
apiary rerun app#3                      # as apiary ls names it
apiary rerun 01M8PHSCARHJK5XN1E1G2BK495 --follow
apiary rerun app#3 --from-failed        # reuse the stages that passed""", client)
    rerun.add_argument("job", help=JOB_HELP)
    rerun.add_argument("--follow", action="store_true", help="show the new job's output; exit with its result")
    rerun.add_argument("--from-failed", action="store_true",
                       help="reuse the stages that passed (and their artifacts); run the failed stage and those after")
    gates.add_parser(sub, _command, client, JOB_HELP)
    caches.add_parser(sub, _command, client)
    bisect.add_parser(sub, _command, client)
    comments.add_parser(sub, _command, client, JOB_HELP)
    shards.add_parser(sub, _command, client, JOB_HELP)
    debug_shell.add_parser(sub, _command, client, JOB_HELP)
    ls = _command(sub, "ls", "recent jobs, of every repository or of one", """
apiary ls
apiary ls app --limit 5""", client)
    ls.add_argument("repo", nargs="?", help="only this repository's jobs")
    ls.add_argument("--limit", type=int, default=20, help="how many (default: 20)")
    logs = _command(sub, "logs", "a job's output", """
apiary logs app#3
apiary logs 01M8PHSCARHJK5XN1E1G2BK495 --follow""", client)
    logs.add_argument("job", help=JOB_HELP)
    logs.add_argument("--follow", action="store_true", help="then live until it ends; exit with its result")
    artifacts = _command(sub, "artifacts", "a job's artifacts: list them, or download one", """
apiary artifacts app#3                                # name and size of each
apiary artifacts app#3 dist/app.tar.gz                # to ./app.tar.gz
apiary artifacts app#3 dist/app.tar.gz -o - | tar tz""", client)
    artifacts.add_argument("job", help=JOB_HELP)
    artifacts.add_argument("name", nargs="?", help="the artifact to download (its name as listed)")
    artifacts.add_argument("-o", "--output", metavar="PATH",
                           help="where to write it (default: its file name, here; -: standard output)")
    cancel = _command(sub, "cancel", "cancel a job", """
apiary cancel app#3
apiary cancel 01M8PHSCARHJK5XN1E1G2BK495""", client)
    cancel.add_argument("job", help=JOB_HELP)
    drones = _command(sub, "drones", "the drones in the pool", """
apiary drones
apiary drone --queen $(apiary drones --endpoint)     # one more drone, here""", client)
    drones.add_argument("--endpoint", action="store_true",
                        help="print only the endpoint drones connect to, tcp://HOST:PORT (for apiary drone --queen)")
    _command(sub, "prune", "apply the retention policies now", "apiary prune", client)
    join_token = _command(sub, "join-token", "a one-time token with which a drone joins (apiary drone --join TOKEN)",
                          "apiary join-token --id build-1", client)
    join_token.add_argument("--id", help="the drone id it is for (default: the id the drone gives)")
    join_token.add_argument("--expires", type=float, default=3600.0, metavar="SECONDS",
                            help="how long it may be used (default: 3600)")
    user = _command(sub, "user", "people: add a user (the first one, on the queen's machine, is its admin)", """
apiary user add ada                    # on the queen's machine: its first admin (asks a password)
apiary user add bob --role member      # then, with an admin's APIARY_CLIENT_TOKEN""", client)
    user.add_argument("action", choices=["add"], help="add a user (the first one needs no token: it is the admin "
                                                      "made with this machine's setup token)")
    user.add_argument("name", help="the username")
    user.add_argument("--role", choices=["admin", "member"], default=None,
                      help="admin or member (default: admin while the queen has none, else member)")
    token = _command(sub, "token", "make an API token for the CLI", "apiary token create --user ada", client)
    token.add_argument("action", choices=["create"], help="sign in with a password and print a new token")
    token.add_argument("--user", required=True, help="your username")
    token.add_argument("--name", default="cli", help="what the token is for (default: cli)")
    config = _command(sub, "config", "print the settings in force, as TOML (secrets as ***, with where each "
                                     "setting comes from)", """
apiary config
apiary config -c apiary.toml""", [common])
    config.add_argument("--data-dir", help="the queen's data dir (to find the address its queen wrote down)")
    keys = _command(sub, "keys", "make a CurveZMQ key pair for the queen or a drone", """
apiary keys                            # the queen's, under DATA_DIR/keys
apiary keys --name build-1             # a drone's, under WORK_DIR/keys""", [common])
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
        path = config_path(args.config)
        config = with_flags(load_config(path), args)
        where = origins(path)
        if args.command == "config":
            address = find_queen(args, config, where)  # the queen the client commands would talk to
            client = dataclasses.replace(config.client, url=address.url)
            endpoint = server.drone_queen(args, config, where)  # and the one apiary drone would join
            drone = dataclasses.replace(config.drone, queen=endpoint.url)
            print(as_toml(dataclasses.replace(config, client=client, drone=drone), where, address.origin,
                          endpoint.origin))
            return
        if args.command == "keys":
            keys.make_keys(args, config)
            return
        if args.command == "run":
            sys.exit(server.run_here(args, config))
        if args.command in CLIENT_COMMANDS:
            sys.exit(run_client_command(CLIENT_COMMANDS[args.command], args, config, where))
        server.serve(args, config, where)
    except ApiaryError as exc:
        print(f"apiary: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # The reader went away (apiary ls | head): stop quietly, as a shell's SIGPIPE does. Python would still
        # flush stdout at exit and complain, so stdout goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except OSError as exc:
        print(f"apiary: error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        sys.exit(1)
    except zmq.ZMQError as exc:
        print(f"apiary: error: ZeroMQ: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
