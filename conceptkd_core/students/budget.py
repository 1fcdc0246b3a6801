"""Students at a stated budget of concepts: how much of the AP the few strongest concepts carry.

Peers report sparse students by their number of effective concepts; a budget b keeps, per
class, the b concepts with the largest |weight|, pins every other weight at 0 and re-fits (the
other weights compensate, as in tuning). The result is then measured like any student.
"""

from __future__ import annotations

import numpy as np

from .bank import StudentBank


def budget_bank(bank: StudentBank, budget: int) -> StudentBank:
    """A copy of ``bank`` re-fit with at most ``budget`` non-zero weights per class."""
    if not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a whole number of concepts >= 1; got {budget!r}")
    small = bank.copy()
    order = np.argsort(-np.abs(bank.coef_), axis=1, kind="stable")
    dropped = np.zeros_like(bank.coef_, dtype=bool)
    np.put_along_axis(dropped, order[:, budget:], True, axis=1)
    small.lower_[dropped] = 0.0
    small.upper_[dropped] = 0.0
    small.coef_[dropped] = 0.0
    return small.refit()
