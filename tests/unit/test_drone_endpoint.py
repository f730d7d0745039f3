"""Which queen `apiary drone` connects to, and where that came from (apiary.cli.address.choose_endpoint): a table.
As a user runs it: tests/e2e/test_cli_newcomer.py."""

from __future__ import annotations

from pathlib import Path

from apiary.cli.address import QueenAddress, choose_endpoint, recorded_endpoint

FILE = ("tcp://127.0.0.1:9124", "/h/.apiary/queen/queen.endpoint")
SET = ("tcp://ci:8421", "APIARY_DRONE_QUEEN")


def test_the_flag_then_the_setting_then_the_local_queens_record_then_the_default() -> None:
    table = [
        (("tcp://q:1", SET, FILE), QueenAddress("tcp://q:1", "--queen")),
        ((None, SET, FILE), QueenAddress(*SET)),
        ((None, None, FILE), QueenAddress(*FILE)),
        ((None, None, None), QueenAddress("tcp://127.0.0.1:8421", "default")),
        ((None, ("", "x"), ("", "y")), QueenAddress("tcp://127.0.0.1:8421", "default")),
    ]
    for given, chosen in table:
        assert choose_endpoint(*given) == chosen, given


def test_the_record_is_read_from_the_data_dir(tmp_path: Path) -> None:
    assert recorded_endpoint(tmp_path) is None
    (tmp_path / "queen.endpoint").write_text("tcp://127.0.0.1:9124\n")
    assert recorded_endpoint(tmp_path) == ("tcp://127.0.0.1:9124", str(tmp_path / "queen.endpoint"))
