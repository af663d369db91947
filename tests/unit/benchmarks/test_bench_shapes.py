"""The shapes report: one row per window, and only the shapes it knows."""

from __future__ import annotations

import pytest

from bench import shapes


def test_each_window_is_a_row_under_the_command_that_made_it() -> None:
    """A window whose steady marks failed shows dashes, not a figure it does not have."""
    steady = {"shape": "L", "rps": 812.5, "cpu_us_per_request": 1230.4, "errors": 0, "load": 0.4}
    missed = {"shape": "S", "errors": 3, "load": 1.2}
    table = shapes._table([("LS", [steady, missed])], pollers=True).splitlines()
    assert table[0] == (
        "Shapes (`python -m bench.shapes LS --pollers`): steady req/s and CPU µs per answer, "
        "per window."
    )
    assert table[-2:] == [
        "| LS | 1 | L | 812.5 | 1230.4 | 0 | 0.4 |",
        "| LS | 2 | S | - | - | 3 | 1.2 |",
    ]


def test_a_sequence_of_other_letters_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Exit 2 with argparse's usage line: no signer or gateway is started for a typo."""
    with pytest.raises(SystemExit) as stopped:
        shapes.main(["LSX"])
    assert stopped.value.code == 2
    assert "sequences are made of L, S" in capsys.readouterr().err
