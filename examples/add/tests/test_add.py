import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "app"))

from server import add, parse_add_path


def test_add() -> None:
    assert add(2, 3) == 5
    assert add(-1.5, 1) == -0.5


def test_parse_add_path() -> None:
    assert parse_add_path("/add/2/3") == (2.0, 3.0)
    assert parse_add_path("/add/x/3") is None
    assert parse_add_path("/sub/2/3") is None
