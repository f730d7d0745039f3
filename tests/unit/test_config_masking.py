"""apiary config hides the password of every URL in every setting's value (a pure function, a table), and shows
the rest as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from apiary.cli.settings import as_toml, hide_password, hide_passwords, load_config, origins
from apiary.core.errors import ConfigError


def test_a_url_password_is_hidden_wherever_it_stands_in_a_value() -> None:
    table = [
        ("--index-url https://user:TOKEN@pypi.example/simple", "--index-url https://user:***@pypi.example/simple"),
        ("--index-url=https://user:TOKEN@pypi.example/simple --extra-index-url https://a:b@x.example",
         "--index-url=https://user:***@pypi.example/simple --extra-index-url https://a:***@x.example"),
        ("mongodb://ci:hunter2@db:27017/apiary", "mongodb://ci:***@db:27017/apiary"),
        ("mongodb://ci:p@ss:w0rd@db/x?authSource=admin", "mongodb://ci:***@db/x?authSource=admin"),  # an @ in it
        ("git+https://bot:ghp_x1@github.com/o/r.git@v1", "git+https://bot:***@github.com/o/r.git@v1"),
        ("'https://u:secret@h'", "'https://u:***@h'"),
        ("https://user@queen.example.com", "https://user@queen.example.com"),  # a user alone
        ("git@github.com:team/app.git", "git@github.com:team/app.git"),  # no password
        ("http://127.0.0.1:8420/x@y", "http://127.0.0.1:8420/x@y"),  # a port, an @ in the path
        ("embedded", "embedded"),
        ("", ""),
    ]
    for given, shown in table:
        assert hide_password(given) == shown, given


def test_lists_and_tables_are_hidden_item_by_item() -> None:
    assert hide_passwords(["https://a:b@h", 3, ("x", "s3://k:v@bucket")]) == ["https://a:***@h", 3,
                                                                              ["x", "s3://k:***@bucket"]]
    assert hide_passwords({"u": "https://a:b@h"}) == {"u": "https://a:***@h"}
    assert hide_passwords(8420) == 8420 and hide_passwords(None) is None


def test_apiary_config_hides_a_password_in_any_setting(tmp_path: Path) -> None:
    path = tmp_path / "apiary.toml"
    path.write_text('[drone]\npip_args = "--index-url https://user:TOKEN@pypi.example/simple"\n')
    text = as_toml(load_config(path, env={}), origins(path, {}))
    assert "TOKEN" not in text
    assert 'pip_args = "--index-url https://user:***@pypi.example/simple"  # ' + f"{path} [drone]" in text


@pytest.mark.parametrize(("section", "key", "value"), [
    ("drone", "queen", "tcp://u:DronePass@127.0.0.1:9312"),
    ("queen", "mongodb_url", "postgres://ci:DronePass@db/apiary"),
    ("client", "url", "ftp://ci:DronePass@queen:8420"),
])
def test_a_refused_setting_is_named_without_its_password(tmp_path: Path, section: str, key: str, value: str) -> None:
    config = tmp_path / "apiary.toml"
    config.write_text(f'[{section}]\n{key} = "{value}"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert "DronePass" not in str(refused.value) and f"{key}" in str(refused.value), str(refused.value)
