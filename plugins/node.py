"""The node plugin: the project's packages with npm, then its npm scripts and its tests.

    plugins:
      - name: node
        config:
          install: auto                   # the default; or any command ("npm ci --ignore-scripts"), "" for none
          scripts: [lint, build]          # `npm run <each>`, in order, before the tests
          test: npm test -- --coverage    # the default is `npm test`; "" for none
          npm: /opt/node20/bin/npm        # the npm to run (default: npm on PATH)

Phase prepare installs: ``auto`` is ``npm ci`` when the checkout has a
``package-lock.json`` (or ``npm-shrinkwrap.json``), else ``npm install``,
decided when it runs. The scripts and then the test command form a stage
named ``node``; the first that fails fails it. Every command of the job runs
with npm's funding and audit notices and its update check off; ``CI=true``
is Apiary's own. ``NODE_ENV`` is left as it is: ``production`` would leave
out the devDependencies that tests need.
"""

from __future__ import annotations

from typing import Any

config_schema = {
    "install": {"type": "str", "default": "auto",
                "help": "auto: npm ci with a lockfile, else npm install; or a command; empty: no install"},
    "scripts": {"type": "list", "items": "str", "default": [], "help": "npm scripts run before the tests"},
    "test": {"type": "str", "help": "the test command (default: npm test); empty: no tests"},
    "npm": {"type": "str", "default": "npm", "help": "the npm command"},
}

LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json")


def check_config(config: dict[str, Any]) -> None:
    if not config["npm"].strip():
        raise ValueError("npm: must not be empty")
    for i, script in enumerate(config["scripts"]):
        if not script.strip():
            raise ValueError(f"scripts[{i}]: must not be empty")


def phases(job: dict[str, Any], config: dict[str, Any]) -> dict[str, list[Any]]:
    npm = config["npm"]
    out: dict[str, list[Any]] = {}
    install = config["install"].strip()
    if install == "auto":
        found = " || ".join(f"[ -f {name} ]" for name in LOCKFILES)
        out["prepare"] = [{"run": f"if {found}; then {npm} ci; else {npm} install; fi",
                           "title": f"{npm} ci (with a lockfile) or {npm} install"}]
    elif install:
        out["prepare"] = [install]
    test = config.get("test")
    test = f"{npm} test" if test is None else test.strip()
    steps = [f"{npm} run {script}" for script in config["scripts"]] + ([test] if test else [])
    if steps:
        out["test"] = steps
    return out


def env(job: dict[str, Any], config: dict[str, Any]) -> dict[str, str]:
    return {"npm_config_fund": "false", "npm_config_audit": "false", "npm_config_update_notifier": "false"}
