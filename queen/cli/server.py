"""The commands that start processes and run until stopped: up, queen, drone (and its --join), run."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

from apiary.cli.address import QueenAddress, choose_endpoint, recorded_endpoint
from apiary.cli.console import say
from apiary.cli.runner import run, until_signalled
from apiary.core import __version__
from apiary.core.config import Config

log = logging.getLogger(__name__)
SILENT_WARNING_AFTER = 5.0  # seconds with no answer from the queen before apiary drone says so

# The heavy imports (the queen's app, the drone's agent) are made in the command that needs them,
# so that the client commands and `apiary config` start quickly.


def serve(args: argparse.Namespace, config: Config, where: Mapping[str, str] | None = None) -> None:
    """apiary up, queen or drone: run it until it ends or a signal stops it. `where`: settings.origins()."""
    if args.command == "drone":
        queen = drone_queen(args, config, where or {})
        config = dataclasses.replace(config, drone=dataclasses.replace(config.drone, queen=queen.url))
        if args.join:
            from apiary.drone.joining import join

            config = dataclasses.replace(config, drone=run(join(config.drone, args.join), fast_loop=False))
        run(until_signalled(_drone(config, queen.origin)), fast_loop=False)
        return
    runner = {"up": _up, "queen": _queen}[args.command]
    run(until_signalled(runner(config)), fast_loop=True)


def drone_queen(args: argparse.Namespace, config: Config, where: Mapping[str, str]) -> QueenAddress:
    """The endpoint apiary drone connects to and where it came from (apiary.cli.address.choose_endpoint)."""
    origin = where.get("drone.queen")
    configured = (config.drone.queen, origin if origin.startswith("APIARY_") else f"{origin} queen") \
        if origin else None
    return choose_endpoint(getattr(args, "queen", None), configured, recorded_endpoint(config.queen.data_path))


def run_here(args: argparse.Namespace, config: Config) -> int:
    """apiary run: the working copy's pipeline, on this machine, without a queen; the exit status."""
    from apiary.drone.local import run_local
    from apiary.queen.validate import parse_params

    code = run(until_signalled(run_local(Path(args.path), args.type, parse_params(args.param),
                                         args.file, drone=config.drone, debug=args.debug)), fast_loop=False)
    return code if isinstance(code, int) else 1


async def _queen(config: Config) -> None:
    from apiary.queen.app import running_queen
    from apiary.queen.curve import server_curve

    server_curve(config.queen)  # key files and the drone port's safety, before anything starts
    async with running_queen(config.queen) as where:
        say(f"apiary queen {__version__}")
        say(f"  dashboard: {where.http}/")
        say(f"  API:       {where.api}")
        say(f"  drones:    {where.drones}    (start one: apiary drone --queen {where.drones})")
        say(f"  store:     {_store_text(config)}")
        await asyncio.Event().wait()


async def _drone(config: Config, origin: str = "") -> None:
    from apiary.drone.agent import Agent

    async with Agent(config.drone) as agent:
        said = f" (from {origin})" if origin else ""
        say(f"apiary drone {agent.id}: {agent.capacity} slots, queen {config.drone.queen}{said}")
        watch = asyncio.create_task(_say_if_silent(agent, config.drone.queen, said))
        try:
            await agent.run()
        finally:
            watch.cancel()


async def _say_if_silent(agent: object, endpoint: str, said: str) -> None:
    """One warning, not silence, when no queen answers at the endpoint soon after the start."""
    await asyncio.sleep(SILENT_WARNING_AFTER)
    if not getattr(getattr(agent, "conn", None), "last_heard", 0.0):
        log.warning("no queen answers at %s%s after %.0f s; still trying (apiary drones on the queen's machine, "
                    "or apiary up, prints its drone endpoint; give it with --queen)", endpoint, said,
                    SILENT_WARNING_AFTER)


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
            say(f"apiary {__version__} is up")
            say(f"  dashboard: {where.http}/")
            say(f"  API:       {where.api}")
            say(f"  drones:    {where.drones}    (add one: apiary drone --queen {where.drones})")
            say(f"  store:     {_store_text(config)}")
            say(f"  local drone {agent.id}: {agent.capacity} slots")
            say("Press Ctrl-C to stop.")
            await agent.run()


def _store_text(config: Config) -> str:
    if config.queen.mongodb_url == "embedded":
        return f"embedded (data in {config.queen.data_path / 'store'})"
    return config.queen.mongodb_url
