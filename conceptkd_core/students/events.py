"""One tuning edit as the history keeps it, and the students at any point of that history.

An event stores the bounds it set and the exact weights it produced, so any point in the
history is rebuilt by laying the events over the base students (``replay``) instead of
re-solving: undo, redo, revert and reading a session file all land on the very same weights.
The session (``students.session``) makes events; the session file (``students.session_file``)
writes and reads them; both use this module, which depends on neither.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .bank import StudentBank

OPERATIONS = ("upweight", "downweight", "lock", "remove", "set", "bound", "release", "refine")


class TuningError(ValueError):
    """A request that cannot be carried out; nothing was changed."""


@dataclass
class TuningEvent:
    op: str
    classes: list[int]  # the classes whose weights this event changed
    concept: int | None
    args: dict
    bounds: list[list]  # [[class, concept, lower, upper]] set by this event (lower/upper may be ±inf)
    coef: dict  # {class: [[concept indices], [weights]]} after the event, non-zero weights only
    intercept: dict  # {class: intercept} after the event
    metrics_before: dict  # {class: {"student_ap": .., "agreement": ..}}
    metrics_after: dict
    flipped: dict  # {class: number of images whose student decision changed}
    time: str = ""
    user: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


class BankState(NamedTuple):
    """A bank's weights and bounds: coef, lower, upper of shape (n_classes, n_concepts), intercept
    of shape (n_classes,). Taken and put back whole, so a history step can never half-apply."""

    coef: np.ndarray
    intercept: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def of(cls, bank: StudentBank) -> BankState:
        """A copy of the bank's current state (later edits of the bank do not reach it)."""
        return cls(bank.coef_.copy(), bank.intercept_.copy(), bank.lower_.copy(), bank.upper_.copy())

    def load_into(self, bank: StudentBank) -> None:
        bank.coef_, bank.intercept_, bank.lower_, bank.upper_ = self


def sparse_row(row: np.ndarray) -> list:
    """One class's weights as ``[[concept indices], [weights]]``: tuned students are sparse (L1)."""
    idx = np.flatnonzero(row)
    return [idx.tolist(), row[idx].tolist()]


def replay(base: BankState, events: Sequence[TuningEvent], cursor: int) -> BankState:
    """The state after the first ``cursor`` events, laid over ``base`` (which is not changed)."""
    coef, intercept, lower, upper = (array.copy() for array in base)
    for event in events[:cursor]:
        for c, j, lo, hi in event.bounds:
            lower[c, j], upper[c, j] = lo, hi
        for c, (idx, vals) in event.coef.items():
            coef[c] = 0.0
            coef[c, idx] = vals
        for c, b in event.intercept.items():
            intercept[c] = b
    return BankState(coef, intercept, lower, upper)
