"""The Tune board's "Weights now" chart has round ticks: its axis was -span..span with the span
taken from the largest weight, so the demo's aeroplane showed ticks at ±7.4 and ±14.8."""

import math
from decimal import Decimal

import pytest

from conceptkd_core.explorer import new_session, open_explorer
from conceptkd_core.tuning_board import board_data, nice_axis

from demo_subset import copy_demo_workspace


def is_round(step: float) -> bool:
    """1, 2 or 5 times a power of ten."""
    digits = Decimal(repr(step)).normalize().as_tuple().digits
    return digits in ((1,), (2,), (5,))


@pytest.mark.parametrize("largest", [1.0, 1.2, 3.0, 4.15, 7.4, 14.8, 0.3, 0.07, 99.0, 100.0, 12345.6])
def test_the_axis_holds_the_largest_weight_on_round_ticks(largest):
    span, ticks = nice_axis(largest)
    step = ticks[1] - ticks[0]
    assert is_round(round(step, 12)), ticks
    assert ticks[0] == -span and ticks[-1] == span and 0.0 in ticks and ticks == [-t for t in reversed(ticks)]
    assert all(math.isclose(b - a, step) for a, b in zip(ticks, ticks[1:], strict=False))
    assert largest <= span < largest + step + 1e-9  # holds it, with less than a step to spare
    assert 5 <= len(ticks) <= 9


def test_the_demo_board_sends_round_ticks(tmp_path):
    session = new_session(open_explorer(copy_demo_workspace(tmp_path)), autosave=False)
    for c in range(len(session.classes)):
        weights = board_data(session, c)["weights"]
        largest = max(abs(bar["weight"]) for bar in weights["bars"])
        ticks, step = weights["ticks"], weights["ticks"][1] - weights["ticks"][0]
        assert ticks[-1] == weights["span"] >= largest and is_round(round(step, 12)), ticks
        assert all(math.isclose(t / step, round(t / step), abs_tol=1e-9) for t in ticks), ticks
    assert 7.4 not in board_data(session, 0)["weights"]["ticks"]
