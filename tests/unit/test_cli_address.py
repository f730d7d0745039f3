"""The client's decisions, as tables: which queen (and where that came from), --port's drone endpoint,
what `apiary config` hides, what `apiary repo add` sends, what `apiary drones` tells a new drone.
(The commands themselves against a real queen: tests/e2e/test_cli_address.py, test_cli_commands.py.)"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from apiary.cli.address import QueenAddress, choose, next_to, recorded_url
from apiary.cli.remote import REF_WIDTH, clipped, drone_endpoint, size_text, trigger_text
from apiary.cli.repos import repo_body
from apiary.cli.settings import as_toml, hide_password, load_config, origins, with_flags
from apiary.core.errors import ConfigError, InputError

FILE = ("http://file:1", "apiary.toml [client] url")
RECORDED = ("http://recorded:2", "/d/queen.url")


@pytest.mark.parametrize(("flag", "env", "configured", "recorded", "expected"), [
    ("http://flag:9", "http://env:8", FILE, RECORDED, QueenAddress("http://flag:9", "--url")),
    (None, "http://env:8", FILE, RECORDED, QueenAddress("http://env:8", "APIARY_CLIENT_URL")),
    (None, None, FILE, RECORDED, QueenAddress(*FILE)),
    (None, None, None, RECORDED, QueenAddress(*RECORDED)),
    (None, None, None, None, QueenAddress("http://127.0.0.1:8420", "default")),
    ("", "", None, None, QueenAddress("http://127.0.0.1:8420", "default")),  # empty says nothing
])
def test_which_queen_by_precedence(flag: str | None, env: str | None, configured: tuple[str, str] | None,
                                   recorded: tuple[str, str] | None, expected: QueenAddress) -> None:
    assert choose(flag, env, configured, recorded) == expected


def test_the_recorded_address_is_the_queen_url_file_in_the_data_dir(tmp_path: Path) -> None:
    assert recorded_url(tmp_path) is None
    (tmp_path / "queen.url").write_text("http://127.0.0.1:9000\n")
    assert recorded_url(tmp_path) == ("http://127.0.0.1:9000", str(tmp_path / "queen.url"))
    (tmp_path / "queen.url").write_text("")
    assert recorded_url(tmp_path) is None


@pytest.mark.parametrize(("bind", "port", "expected"), [
    ("tcp://127.0.0.1:8421", 9000, "tcp://127.0.0.1:9001"),
    ("tcp://0.0.0.0:8421", 18650, "tcp://0.0.0.0:18651"),
    ("tcp://[::1]:8421", 9000, "tcp://[::1]:9001"),
    ("tcp://127.0.0.1:*", 9000, "tcp://127.0.0.1:9001"),
    ("tcp://127.0.0.1:8421", 0, "tcp://127.0.0.1:*"),  # any free port, both
])
def test_port_puts_the_drones_next_to_it(bind: str, port: int, expected: str) -> None:
    assert next_to(bind, port) == expected


def test_port_65535_leaves_no_room_for_drones() -> None:
    with pytest.raises(ConfigError, match="--port: 65535 leaves no port after it"):
        next_to("tcp://127.0.0.1:8421", 65535)


def _flags(**given: object) -> argparse.Namespace:
    names = ("port", "http_port", "drone_bind", "http_host", "data_dir", "mongodb_url")
    return argparse.Namespace(**{n: given.get(n) for n in names})


def test_port_flag_sets_both_ports_unless_drone_bind_says() -> None:
    config = with_flags(load_config(env={}), _flags(port=9000))
    assert (config.queen.http_port, config.queen.drone_bind) == (9000, "tcp://127.0.0.1:9001")
    config = with_flags(load_config(env={}), _flags(port=9000, drone_bind="tcp://127.0.0.1:7000"))
    assert (config.queen.http_port, config.queen.drone_bind) == (9000, "tcp://127.0.0.1:7000")
    config = with_flags(load_config(env={}), _flags(http_port=9000))  # --http-port: the HTTP port alone
    assert (config.queen.http_port, config.queen.drone_bind) == (9000, "tcp://127.0.0.1:8421")
    with pytest.raises(ConfigError, match="--port and --http-port"):
        with_flags(load_config(env={}), _flags(port=9000, http_port=9001))


@pytest.mark.parametrize(("url", "shown"), [
    ("mongodb://ci:hunter2@db:27017/apiary", "mongodb://ci:***@db:27017/apiary"),
    ("https://user:tok@queen.example.com", "https://user:***@queen.example.com"),
    ("https://user@queen.example.com", "https://user@queen.example.com"),
    ("mongodb://db:27017", "mongodb://db:27017"),
    ("embedded", "embedded"),
])
def test_passwords_in_urls_are_hidden(url: str, shown: str) -> None:
    assert hide_password(url) == shown


def test_config_shows_secrets_as_stars_with_where_they_come_from(tmp_path: Path) -> None:
    path = tmp_path / "apiary.toml"
    path.write_text('[client]\ntoken = "apiary_in_the_file"\n[queen]\nmongodb_url = "mongodb://u:pw@db/x"\n')
    env = {"APIARY_CLIENT_TOKEN": "apiary_from_env"}
    text = as_toml(load_config(path, env=env), origins(path, env), "/d/queen.url")
    assert "apiary_from_env" not in text and "apiary_in_the_file" not in text and "pw@" not in text
    assert 'token = "***"  # set, not shown; from APIARY_CLIENT_TOKEN' in text
    assert 'mongodb_url = "mongodb://u:***@db/x"  # ' + str(path) + " [queen]" in text
    assert 'url = "http://127.0.0.1:8420"  # /d/queen.url' in text
    assert 'token = ""' in as_toml(load_config(env={}))  # none set: nothing to hide


@pytest.mark.parametrize(("given", "body"), [
    ({"url": "https://git.example.com/a.git"}, {"pipeline_source": "repo", "url": "https://git.example.com/a.git"}),
    ({"text": "stages: []\n"}, {"pipeline_source": "queen", "pipeline": "stages: []\n"}),
    ({"url": "/srv/a.git", "text": "x", "branch": "trunk", "provider": "github", "plugins": ["github"]},
     {"pipeline_source": "queen", "pipeline": "x", "url": "/srv/a.git", "default_branch": "trunk",
      "provider": "github", "plugins": ["github"]}),
    ({"url": "/srv/a.git", "file": "ci/p.yml"}, {"pipeline_source": "repo", "url": "/srv/a.git",
                                               "pipeline_file": "ci/p.yml"}),
])
def test_repo_add_sends_only_what_was_given(given: dict[str, object], body: dict[str, object]) -> None:
    made = repo_body("a", given.get("url"), given.get("text"), given.get("file"),  # type: ignore[arg-type]
                     given.get("branch"), given.get("provider"), given.get("plugins") or [])  # type: ignore[arg-type]
    assert made == {"name": "a", **body}


@pytest.mark.parametrize(("given", "words"), [
    ({}, "give --url"),
    ({"text": "x", "file": "p.yml"}, "give one of them"),
])
def test_repo_add_refuses_what_cannot_work(given: dict[str, object], words: str) -> None:
    with pytest.raises(InputError, match=words):
        repo_body("a", None, given.get("text"), given.get("file"), None, None, [])  # type: ignore[arg-type]


@pytest.mark.parametrize(("bound", "url", "shown"), [
    ("tcp://127.0.0.1:18651", "http://127.0.0.1:18650", "tcp://127.0.0.1:18651"),
    ("tcp://0.0.0.0:9001", "https://ci.example.com", "tcp://ci.example.com:9001"),
    ("tcp://10.0.0.5:9001", "https://ci.example.com", "tcp://10.0.0.5:9001"),
    (None, "http://ci:9000", "tcp://ci:PORT (the drones line apiary up or apiary queen prints)"),
])
def test_drones_hint_names_the_real_endpoint(bound: str | None, url: str, shown: str) -> None:
    assert drone_endpoint(bound, url) == shown


@pytest.mark.parametrize(("size", "text"), [(0, "0 B"), (1023, "1023 B"), (4300, "4.2 KiB"), (2**25, "32.0 MiB")])
def test_sizes_for_people(size: int, text: str) -> None:
    assert size_text(size) == text


@pytest.mark.parametrize(("job", "text"), [
    ({"trigger": {"source": {"type": "API"}, "author": {"login": "tester"}}, "triggered_by": {"kind": "setup"}},
     "API tester"),
    ({"trigger": {"source": {"type": "API"}, "author": {"name": "Ada L"}}}, "API Ada L"),
    ({"trigger": {"source": {"type": "UI"}}, "triggered_by": {"kind": "user", "name": "ada"}}, "UI ada"),
    ({"trigger": {"source": {"type": "API"}, "author": {"login": "root"}},
      "triggered_by": {"kind": "token", "name": "ada"}}, "API ada"),  # the token's user, not the client's word
    ({"trigger": {"type": "rerun", "author": {"login": "root"}}, "triggered_by": {"kind": "rerun", "name": ""}},
     "rerun root"),
    ({"trigger": {}, "triggered_by": {"kind": "webhook", "name": "github"}}, "webhook github"),
    ({"trigger": {}, "triggered_by": {"kind": "schedule", "name": "0 3 * * *"}}, "schedule 0 3 * * *"),
    ({}, "-"),
])
def test_ls_says_what_triggered_a_job(job: dict, text: str) -> None:
    assert trigger_text(job) == text


@pytest.mark.parametrize(("ref", "shown"), [
    ("main", "main"),
    ("x" * REF_WIDTH, "x" * REF_WIDTH),
    ("feature/" + "y" * 1000, "feature/" + "y" * (REF_WIDTH - 9) + "…"),
])
def test_apiary_ls_cuts_a_long_ref_so_the_column_stays_narrow(ref: str, shown: str) -> None:
    assert clipped(ref) == shown and len(clipped(ref)) <= REF_WIDTH
