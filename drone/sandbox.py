"""The box each command of a job runs in, so that a job reaches only what it should.

With bubblewrap (``bwrap``, Debian's ``bubblewrap``) each command runs in:

- its own PID namespace with a private /proc: it cannot see or signal other
  jobs, the drone or the queen, nor read their environment; when its shell
  ends, whatever it left running ends with it (the kernel kills the namespace);
- its own IPC and UTS namespaces;
- a read-only view of the machine, in which only the job's workspace and a
  private /tmp (shared by the job's commands, gone with the job) are writable;
- with Apiary's own files hidden: the drone's work dir (other workspaces, its
  keys, its outbox), the queen's data dir (the store, the secrets key, the setup
  token), ``~/.apiary``, the drone user's usual credentials (``~/.ssh``,
  ``~/.aws``, ``~/.docker``, ``~/.netrc``…) and any path in ``sandbox_hide``;
  paths *shown* (``sandbox_show``, the drone's own Python by default, and the
  plugins' code) are bound back read-only inside hidden or closed folders,
  except the credentials, and with what is hidden inside them hidden again;
- a network apart from the machine's (``job_network``): ``isolated`` (the
  default) is one network namespace per job, which the job's commands join
  (jobnet.py), reaching the internet through slirp4netns (Debian's
  ``slirp4netns``), which is told to keep the host's loopback out of reach, so
  nothing listening on 127.0.0.1 (the queen's embedded store, its API)
  answers; ``none`` has no network (one per command); ``host`` shares the
  drone's;
- limits per process on open files, memory and (per user) processes.

A command's line is util-linux's programs around bubblewrap, each of which execs
the next, so that the drone starts it without running any code of its own in the
child (Python can then vfork: a fork of the drone, 50 MB, blocks its event loop
about 4 ms): ``prlimit`` sets the limits, ``nsenter`` joins the job's network
(and user) namespace from the files the drone holds open, bubblewrap makes the
box, and as root ``setpriv`` becomes ``job_user`` inside it.

Every job also gets a small environment of its own (PATH, locale, proxies and
``pass_env``), not the drone's. Without bubblewrap (or with ``sandbox =
"off"``) the drone says so once; it then kills, after each command, every
process still marked with the job's id in its environment (``APIARY_JOB_ID``:
what a step left running, daemonised or not, unless it cleared its
environment), and when it runs as root it runs jobs as ``job_user``. The ideas
are those of Flatpak's sandbox and of CI runners' process clean-up.

`Sandbox` decides the command lines (pure but for `detect`, which finds the
programs); child.py starts a command, in its job's network (jobnet.py) when the
network is isolated.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import os
import pwd
import resource
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from apiary.core.errors import ApiaryError

log = logging.getLogger(__name__)

# The drone user's files that hold credentials; hidden from jobs when they exist.
CREDENTIALS = (".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".docker", ".kube", ".netrc", ".git-credentials",
               ".pypirc", ".npmrc", ".config/gh", ".apiary")
# What a job inherits of the drone's environment, besides pass_env.
KEEP_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "USER", "LOGNAME", "SHELL", "http_proxy", "https_proxy",
            "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "all_proxy")
SLIRP_DNS = "10.0.2.3"  # slirp4netns's resolver inside the namespace
# util-linux's programs a sandboxed command line runs (Debian's util-linux, which every system has).
TOOLS = ("prlimit", "nsenter", "setpriv")
# Limits (resource.RLIMIT_*) by prlimit's name for them.
RLIMITS = {"nofile": resource.RLIMIT_NOFILE, "data": resource.RLIMIT_DATA, "nproc": resource.RLIMIT_NPROC}


@dataclasses.dataclass(frozen=True)
class JobPaths:
    """Where one job's files are on the drone."""

    workspace: Path
    tmp: Path  # the job's private /tmp (its HOME is tmp/home)
    private: Path | None = None  # the checkout's key, readable by the checkout only (the sandbox shows it read-only)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-process limits of a job's commands (setrlimit); 0: leave as the drone has it."""

    open_files: int = 0
    memory: int = 0  # bytes of data (RLIMIT_DATA)
    processes: int = 0  # per user (RLIMIT_NPROC): takes effect for a user of the job's own

    def by_name(self) -> dict[str, int]:
        """The limits set, by prlimit's name (nofile, data, nproc)."""
        named = {"nofile": self.open_files, "data": self.memory, "nproc": self.processes}
        return {name: value for name, value in named.items() if value > 0}


class Sandbox:
    """How a drone runs its jobs' commands: `command` gives the argv, `environment` the env."""

    def __init__(self, bwrap: str | None, network: str, hide: list[Path], limits: Limits,
                 job_user: pwd.struct_passwd | None = None, pass_env: tuple[str, ...] = (),
                 slirp: str | None = None, shown: tuple[Path, ...] = (), tools: Mapping[str, str] | None = None,
                 hard: Mapping[str, int | None] | None = None) -> None:
        self.bwrap = bwrap
        self.network = network if bwrap else "host"
        self.hide = [p for p in dict.fromkeys(hide) if p.exists()]
        # Read-only inside hidden or closed folders (plugins' code, sandbox_show), never a credential.
        secret = [home / c for c in CREDENTIALS] if (home := _home()) else []
        self.shown = tuple(p for p in dict.fromkeys(Path(os.path.normpath(s)) for s in shown)
                           if p.exists() and p != Path("/") and not any(p.is_relative_to(c) for c in secret))
        self.limits = limits
        # Without a sandbox, the drone drops to job_user before exec; in one, the sandbox does (setpriv),
        # after bubblewrap (as root) has made its mounts: the job never runs as root either way.
        self.job_user = job_user
        self.pass_env = pass_env
        self.slirp = slirp if self.network == "isolated" else None
        self.resolv = _resolv_for_slirp() if self.slirp else None
        # Absolute paths (found by detect): a bare name would be looked up in the job's PATH, which the job sets.
        self.tools = {name: (tools or {}).get(name, f"/usr/bin/{name}") for name in TOOLS}
        # The drone's own hard limits (None: unlimited), read once: what a command's limits may reach.
        self.hard = dict(hard) if hard is not None else _hard_limits()

    @property
    def isolated(self) -> bool:
        return self.bwrap is not None

    @property
    def needs_preexec(self) -> bool:
        """Whether a command needs `preexec` (code in the forked child): only without bubblewrap, the rare path;
        a sandboxed command's limits, network and user are programs in its command line."""
        return self.bwrap is None and bool(self.limits.by_name() or self.job_user)

    def describe(self) -> str:
        who = f", as {self.job_user.pw_name}" if self.job_user else ""
        if not self.bwrap:
            return f"no sandbox (bubblewrap not in use): jobs run as processes of this drone{who}"
        net = "isolated (one per job, through slirp4netns)" if self.slirp else self.network
        return f"each job in a bubblewrap sandbox{who}, network {net}"

    def environment(self, job_env: Mapping[str, str], drone_env: Mapping[str, str], paths: JobPaths) -> dict[str, str]:
        """The environment of a job's commands: a few of the drone's variables, then the job's own."""
        env = {k: v for k, v in drone_env.items() if k in KEEP_ENV or k.startswith("LC_") or k in self.pass_env}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        tmp = Path("/tmp") if self.bwrap else paths.tmp
        env.update({"HOME": str(tmp / "home"), "TMPDIR": str(tmp)})
        if self.job_user is not None:
            env.update({"USER": self.job_user.pw_name, "LOGNAME": self.job_user.pw_name})
        env.update(job_env)
        return env

    def command(self, argv: list[str], paths: JobPaths, *, network: str | None = None,
                join: Sequence[tuple[str, int]] = ()) -> list[str]:
        """`argv` as the sandbox runs it (unchanged without one). No I/O.

        `network` overrides job_network; ``"host"`` is the checkout's: it fetches as the drone would, on its
        network and with the machine's /tmp (read-only) in view, where a local repository may be.
        `join`: the job's isolated network (jobnet.py) as (namespace, fd) pairs, ``("user", 5), ("net", 6)``,
        fds the drone holds open and passes to the command (pass_fds); nsenter joins them before bubblewrap
        runs. An isolated command that joins none gets a network of its own, with no way out.
        The command line: ``[prlimit …] [nsenter …] bwrap … -- [setpriv …] argv``, each execing the next.
        """
        if not self.bwrap:
            return argv
        net = network or self.network
        join = join if net == "isolated" else ()
        out = [self.bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--hostname", "apiary-job", "--cap-drop", "ALL"]
        if self.job_user is not None:
            # Root's bubblewrap keeps the two capabilities setpriv needs to become the job's user; the change of
            # user then drops them too, and bubblewrap's no_new_privs keeps setuid programs from bringing any back.
            out += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        if net == "none" or (net == "isolated" and not join):
            out.append("--unshare-net")
        out += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        emptied = [*self.hide, *self._closed_to_job(paths)]
        out += _emptying(emptied)
        if network != "host":
            out += ["--bind", str(paths.tmp), "/tmp", "--bind", str(paths.tmp), "/var/tmp"]
            emptied += [Path("/tmp"), Path("/var/tmp")]
        for shown in self.shown:
            out += ["--ro-bind", str(shown), str(shown)]
        # What is hidden inside a shown folder stays hidden (a shown parent of the work dir, say).
        again = [h for h in self.hide if any(h != s and h.is_relative_to(s) for s in self.shown)]
        out += _emptying(again)
        if self.resolv is not None and net == "isolated":
            out += ["--ro-bind", str(self.resolv), "/etc/resolv.conf"]
        private = [paths.private] if paths.private is not None and network == "host" else []
        out += _passable([*emptied, *again], [paths.workspace, *self.shown, *private], self.shown)
        out += ["--bind", str(paths.workspace), str(paths.workspace)]
        for path in private:
            # The checkout's credentials (drone/checkout.py): its commands alone see them, not the job's.
            out += ["--ro-bind", str(path), str(path)]
        out += ["--chdir", str(paths.workspace)]
        if self.job_user is not None:
            user = self.job_user
            argv = [self.tools["setpriv"], f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                    "--inh-caps=-all", "--", *argv]
        return [*self._limiting(), *self._joining(join), *out, "--", *argv]

    def _limiting(self) -> list[str]:
        """prlimit and its options, before bubblewrap: the limits it and the command inherit (none: nothing)."""
        options = limit_options(self.limits, self.hard)
        return [self.tools["prlimit"], *options, "--"] if options else []

    def _joining(self, join: Sequence[tuple[str, int]]) -> list[str]:
        """nsenter into the job's namespaces, by the fds the command is given (none: nothing). Entering a user
        namespace (a drone not root) keeps the drone's user and groups (--preserve-credentials: not root in it,
        as the namespace's owner may not set its groups), and nsenter enters it first."""
        if not join:
            return []
        out = [self.tools["nsenter"], *(f"--{kind}=/proc/self/fd/{fd}" for kind, fd in join)]
        if any(kind == "user" for kind, _ in join):
            out.append("--preserve-credentials")
        return [*out, "--"]

    def holder_command(self, info_fd: int) -> list[str]:
        """The process that holds a job's network namespace (jobnet.py), reporting its pid on `info_fd`.
        Made by bubblewrap as for a command: as root, a network namespace; as another user, a user namespace
        too, which the job's commands join first."""
        assert self.bwrap is not None
        return [self.bwrap, "--unshare-net", "--die-with-parent", "--cap-drop", "ALL", "--ro-bind", "/", "/",
                "--info-fd", str(info_fd), "--", "sleep", "infinity"]

    def _closed_to_job(self, paths: JobPaths) -> list[Path]:
        """Folders above what the job must reach that its own user could not pass through (root's 0700 home,
        where the drone's work dir is by default): each becomes an empty folder it can pass, with the job's
        folders bound back inside."""
        if self.job_user is None:
            return []
        closed: list[Path] = []
        for needed in (paths.workspace, paths.tmp, *(p for p in (paths.private,) if p), *self.shown):
            for folder in reversed(needed.parents):
                if folder == Path("/") or any(folder.is_relative_to(c) for c in closed):
                    continue
                try:
                    mode = folder.stat().st_mode
                except OSError:
                    break
                if not mode & 0o001:
                    closed.append(folder)
                    break
        return closed

    def slirp_command(self, pid: int, ready_fd: int, exit_fd: int) -> list[str]:
        """slirp4netns for the network namespace of `pid` (a job's holder): internet, not the host's loopback.
        It joins the holder's user namespace too when the holder has one of its own."""
        assert self.slirp is not None
        return [self.slirp, "--configure", "--mtu=65520", "--disable-host-loopback", "--ready-fd", str(ready_fd),
                "--exit-fd", str(exit_fd), str(pid), "tap0"]

    def preexec(self) -> None:
        """Without bubblewrap, in the forked child, before exec: the limits, and the job's own user when there
        is one (the drone is root). Async-signal-safe enough for subprocess (no locks, no allocation beyond
        setrlimit's arguments). The same limits as prlimit's in a sandbox (`limit_options`)."""
        for name, value in self.limits.by_name().items():
            _set_limit(RLIMITS[name], value)
        if self.job_user is not None and not self.bwrap:
            os.setgroups([])
            os.setgid(self.job_user.pw_gid)
            os.setuid(self.job_user.pw_uid)

    def prepare(self, paths: JobPaths) -> None:
        """Make the job's /tmp (and its home); hand the job's folders to its own user, if it has one."""
        (paths.tmp / "home").mkdir(parents=True, exist_ok=True)
        # Passable by anyone (the sandbox reaches the workspace through it when the workspace lives under
        # /tmp); on the machine it sits in the drone's work dir, which only the drone may enter.
        os.chmod(paths.tmp, 0o755)
        if self.job_user is not None:
            for path in (paths.workspace, paths.tmp, paths.tmp / "home"):
                os.chown(path, self.job_user.pw_uid, self.job_user.pw_gid)


def limit_options(limits: Limits, hard: Mapping[str, int | None]) -> list[str]:
    """prlimit's options for `limits` (only those set), given the drone's own hard limits (None or absent:
    unlimited): the soft limit is the value, at most the hard one; the hard limit becomes the value only
    where it was unlimited, so a job may raise its soft limit as far as the drone could, and prlimit never
    needs to raise a hard limit (which a drone not root may not). As `_set_limit` does in the child."""
    out = []
    for name, value in limits.by_name().items():
        top = hard.get(name)
        out.append(f"--{name}={value}:{value}" if top is None else f"--{name}={min(value, top)}:{top}")
    return out


def _hard_limits() -> dict[str, int | None]:
    hard = {name: resource.getrlimit(which)[1] for name, which in RLIMITS.items()}
    return {name: None if value == resource.RLIM_INFINITY else value for name, value in hard.items()}


def _set_limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(which, (value, value if hard == resource.RLIM_INFINITY else hard))
    except (ValueError, OSError):
        pass


def _resolv_for_slirp() -> Path | None:
    """A resolv.conf naming slirp4netns's resolver, when the host's names one on its loopback
    (systemd-resolved's 127.0.0.53), which the sandbox cannot reach; else None (the host's works)."""
    try:
        text = Path("/etc/resolv.conf").read_text()
    except OSError:
        text = ""
    servers = [line.split()[1] for line in text.splitlines() if line.startswith("nameserver") and len(line.split()) > 1]
    try:
        if servers and not any(ipaddress.ip_address(s.split("%")[0]).is_loopback for s in servers):
            return None
    except ValueError:
        return None
    path = Path("/run") / f"apiary-resolv-{os.getpid()}.conf" if os.access("/run", os.W_OK) else \
        Path(os.environ.get("TMPDIR", "/tmp")) / f"apiary-resolv-{os.getpid()}.conf"
    path.write_text(f"nameserver {SLIRP_DNS}\n")
    return path


def bwrap_works(bwrap: str) -> str | None:
    """None when bubblewrap can make a sandbox here, else why not (user namespaces off, seccomp…)."""
    try:
        result = subprocess.run([bwrap, "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--ro-bind", "/", "/",
                                 "--dev", "/dev", "--proc", "/proc", "--", "/bin/true"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if result.returncode == 0 else (result.stderr.strip() or f"exit {result.returncode}")


def detect(mode: str, network: str, hide: list[Path], limits: Limits, job_user: str, pass_env: tuple[str, ...],
           shown: tuple[Path, ...] = ()) -> Sandbox:
    """The sandbox this machine allows for `mode` (auto, bwrap, off); says what it chose, once.

    Raises ApiaryError for ``bwrap`` when bubblewrap cannot work here (or util-linux's programs are missing).
    """
    bwrap = None
    tools = {name: shutil.which(name) for name in TOOLS}
    if mode != "off":
        found = shutil.which("bwrap")
        missing = ", ".join(name for name, path in tools.items() if path is None)
        why = ("bubblewrap is not installed (apt-get install bubblewrap)" if found is None else
               f"{missing} not found (apt-get install util-linux)" if missing else bwrap_works(found))
        if why is None:
            bwrap = found
        elif mode == "bwrap":
            raise ApiaryError(f"[drone] sandbox = \"bwrap\", but {why}")
        else:
            log.warning("jobs run without a sandbox: %s. They can see this drone's other jobs and files; "
                        "what they leave running is killed after each command", why)
    slirp = shutil.which("slirp4netns") if bwrap and network == "isolated" else None
    if bwrap and network == "isolated" and slirp is None:
        log.warning("job_network = \"isolated\" needs slirp4netns (apt-get install slirp4netns): jobs share this "
                    "drone's network, and can reach what listens on its loopback")
    user = None
    if os.geteuid() == 0 and job_user:
        try:
            user = pwd.getpwnam(job_user)
        except KeyError:
            raise ApiaryError(f"[drone] job_user {job_user!r} does not exist on this machine: name a user jobs "
                              "may run as (they never run as root)") from None
    elif os.geteuid() == 0 and bwrap:
        raise ApiaryError("[drone] job_user is empty, but this drone runs as root: jobs would run as root in their "
                          "sandbox; name a user for them (default nobody), or run the drone as another user")
    box = Sandbox(bwrap, network if (slirp or network != "isolated") else "host", hide, limits, user, pass_env,
                  slirp, shown, {name: path for name, path in tools.items() if path is not None})
    log.info("%s", box.describe())
    return box


# -- without a sandbox: a sweep by the job's mark -----------------------------------------------


STEP_MARK = "APIARY_STEP_MARK"  # in each command's environment: JOB:NUM


def marked(name: str, value: str) -> list[int]:
    """Processes whose environment holds ``name=value`` (a command's mark), found in /proc."""
    needle = f"{name}={value}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(name))
    return found


def _emptying(paths: list[Path]) -> list[str]:
    """bubblewrap arguments that empty each path: a folder becomes an empty tmpfs, a file /dev/null."""
    out: list[str] = []
    for path in paths:
        out += ["--tmpfs", str(path)] if path.is_dir() else ["--ro-bind", "/dev/null", str(path)]
    return out


def _passable(emptied: list[Path], needed: list[Path], bound: tuple[Path, ...] = ()) -> list[str]:
    """bubblewrap arguments that make the folders above each `needed` path passable where they lie in a
    folder the sandbox emptied or replaced (a tmpfs, the job's /tmp): bubblewrap would make them as the
    drone's umask says, often 0700, which the job's user cannot pass (a workspace under /tmp or a hidden
    work dir). Outside those folders the machine's own folders are as they are, and so are those of a
    `bound` folder (the machine's, shown read-only) unless emptied again inside it."""
    # Only the folders above each needed path count, never the path itself: a job's workspace
    # (workspaces/k-HEX, new for each job) answers as any name in its folder does, so the answer (~1 ms of
    # pathlib, a quarter of a drone's CPU for a trivial job) is kept for the next job's.
    return list(_passable_above(tuple(emptied), tuple(path.parent for path in needed), tuple(bound)))


@functools.lru_cache(maxsize=64)
def _passable_above(emptied: tuple[Path, ...], tops: tuple[Path, ...], bound: tuple[Path, ...]) -> tuple[str, ...]:
    """`_passable` for needed paths whose parent folders are `tops`. Pure."""
    out: list[str] = []
    made: set[Path] = set()
    for top in tops:
        for folder in (*reversed(top.parents), top):
            inside = [e for e in emptied if folder != e and folder.is_relative_to(e)]
            if folder in made or not inside:
                continue
            nearest = max(inside, key=lambda e: len(e.parts))
            if any(folder.is_relative_to(b) and b.is_relative_to(nearest) and b != nearest for b in bound):
                continue  # the machine's own folder, bound read-only over the emptied one
            made.add(folder)
            # --dir makes it when missing; --chmod opens one bubblewrap already made for a mount below it.
            out += ["--perms", "0755", "--dir", str(folder), "--chmod", "0755", str(folder)]
    return tuple(out)


def _home() -> Path | None:
    try:
        return Path.home()
    except RuntimeError:
        return None
