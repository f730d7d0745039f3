"""Configuration: defaults, file, environment, and clear errors for bad values (no processes; the CLI's
exits and a port in use: tests/e2e/test_config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from apiary.cli.settings import load_config
from apiary.core.config import parse_config
from apiary.core.errors import ConfigError


def test_defaults_file_and_environment_in_that_order(tmp_path: Path) -> None:
    assert load_config(env={}).queen.http_port == 8420
    path = tmp_path / "apiary.toml"
    path.write_text('[queen]\nhttp_port = 9000\nmongodb_url = "mongodb://db:27017"\n[drone]\ncapacity = 4\n')
    config = load_config(path, env={"APIARY_QUEEN_HTTP_PORT": "9100", "APIARY_DRONE_SPEED": "2.5"})
    assert config.queen.http_port == 9100
    assert config.queen.mongodb_url == "mongodb://db:27017"
    assert config.drone.capacity == 4 and config.drone.speed == 2.5


def test_the_example_config_is_valid_and_documents_every_setting() -> None:
    example = Path(__file__).parent.parent.parent / "config.example.toml"
    config = load_config(example, env={})
    assert config == load_config(env={})  # it states the defaults
    text = example.read_text()
    for table in ("queen", "drone", "client"):
        for name in type(getattr(config, table)).__dataclass_fields__:
            assert f"\n{name} = " in text, f"config.example.toml does not document [{table}] {name}"


@pytest.mark.parametrize(("text", "env", "words"), [
    ("[queen]\nhttp_port = 70000\n", {}, "[queen] http_port: must be a port number"),
    ('[queen]\nhttp_port = "eighty"\n', {}, "[queen] http_port: expected int"),
    ("[queen]\nhttp_prot = 80\n", {}, "[queen] http_prot: unknown key"),
    ("[hive]\nx = 1\n", {}, "unknown table [hive]"),
    ("[queen\nhttp_port = 1\n", {}, "not valid TOML"),
    ('[queen]\nmongodb_url = "postgres://x"\n', {}, "[queen] mongodb_url: must be"),
    ('[drone]\nqueen = "localhost:8421"\n', {}, "[drone] queen: must look like tcp://HOST:PORT"),
    ('[queen]\nmetrics_bind = "9464"\n', {}, "[queen] metrics_bind: must look like HOST:PORT"),
    ("", {"APIARY_QUEEN_METRICS_BIND": "127.0.0.1:99999"}, "[queen] metrics_bind: must look like HOST:PORT"),
    ("", {"APIARY_DRONE_CAPACITY": "many"}, "APIARY_DRONE_CAPACITY: [drone] capacity: expected int"),
    ("", {"APIARY_QUEEN_COLOUR": "red"}, "APIARY_QUEEN_COLOUR: unknown setting"),
])
def test_bad_settings_name_the_key_and_the_fault(tmp_path: Path, text: str, env: dict[str, str], words: str) -> None:
    path = tmp_path / "apiary.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env=env)
    assert words in str(err.value)


def test_the_core_parses_what_it_is_given_and_names_where_it_came_from() -> None:
    # apiary.core.config reads no file and no environment: the caller passes both in.
    config = parse_config({"queen": {"http_port": 9000}}, {"APIARY_DRONE_SPEED": "2.5"}, "given.toml")
    assert config.queen.http_port == 9000 and config.drone.speed == 2.5
    with pytest.raises(ConfigError) as err:
        parse_config({"queen": {"http_port": 70000}}, {}, "given.toml")
    assert str(err.value).startswith("given.toml: [queen] http_port: must be a port number")
    with pytest.raises(ConfigError, match=r"^APIARY_QUEEN_HTTP_PORT: \[queen\] http_port: expected int"):
        parse_config({}, {"APIARY_QUEEN_HTTP_PORT": "x"}, "defaults")


@pytest.mark.parametrize(("key", "value", "words"), [
    ("capacity", -5, "capacity"), ("speed", 1e9, "speed"), ("id", "bad id!", "id"),
    ("output_chunk_bytes", 1, "output_chunk_bytes"), ("heartbeat_interval", 0, "heartbeat_interval"),
])
def test_every_drone_setting_is_checked(key: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config({"drone": {key: value}}, {}, "apiary.toml")
