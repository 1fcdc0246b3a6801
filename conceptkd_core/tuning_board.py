"""The Tune page's board, without Streamlit (and unit-tested): the one document the browser draws
after every edit (sliders, their actions, the held-out figures, both charts) and the check of the
edit it sends back, which is input from a browser and trusted no further than any other.

Why one board: every edit changes every slider of the class (the other weights re-fit), the
figures and both charts. Drawn as ~40 Streamlit elements, the browser took ~170 ms to redraw them
on this 2-core machine (React renders each element again); one component that updates its own
page nodes from this document settles the whole edit in about 100 ms (``tests/test_browser_tune.py``
prints the figures; README, "Slider settle")."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from . import palette
from .explorer import top_concepts
from .students.events import TuningError
from .students.session import TuningSession
from .tuning_view import (
    SCOPES,
    TRACKED,
    action_help,
    chance_levels,
    metric_summary,
    metric_track,
    slider_concepts,
    weight_state,
)

SLIDER_STEP = 0.01
CONCEPT_OPS = ("set", "upweight", "downweight", "lock", "remove", "release")
HISTORY_OPS = ("undo", "redo")
TILES = (
    (SCOPES[0], "student AP", "Student AP"),
    (SCOPES[0], "balanced agreement", "Balanced agreement"),
    (SCOPES[1], "student AP", "Mean AP, all classes"),
    (SCOPES[1], "balanced agreement", "Mean balanced agreement, all classes"),
)


class BoardEdit(NamedTuple):
    """An edit sent by the board: ``op`` on concept ``j`` (None for undo / redo) with ``args``
    for ``TuningSession.apply``; ``drawn_at``: the length of the session's audit log when the
    board that sent it was drawn."""

    op: str
    j: int | None
    args: dict
    drawn_at: int


def _number(value: float) -> float | None:
    """JSON has no NaN: a figure that does not exist (a class without held-out positives) is null."""
    value = float(value)
    return value if math.isfinite(value) else None


def slider_span(session: TuningSession, c: int, concepts: list[int]) -> float:
    """One range for the class's sliders, -span..span, fixed at the session's start unless a
    weight outgrows it (a moving range would move every handle under the pointer)."""
    largest = max(np.abs(session.base.coef[c]).max(), np.abs(session.bank.coef_[c, concepts]).max(initial=0))
    return max(1.0, round(1.5 * float(largest), 1))


def nice_axis(largest: float, per_side: int = 3) -> tuple[float, list[float]]:
    """A symmetric axis -span..span that holds ``largest`` (> 0), and its ticks: multiples of a
    round step (1, 2 or 5 times a power of ten), about ``per_side`` on each side of 0. A span taken
    from the data (14.8) put ticks at odd values (±7.4, ±14.8); a reader compares bars against
    round ones (±5, ±10, ±15)."""
    rough = largest / per_side
    power = 10.0 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough * (1 - 1e-9))
    steps = math.ceil(largest / step - 1e-9)
    return round(steps * step, 10), [round(k * step, 10) for k in range(-steps, steps + 1)]


def board_data(session: TuningSession, c: int, picked=(), factor: float = 2.0) -> dict[str, Any]:
    """Everything the board draws for class ``c`` now, as plain JSON values."""
    concepts = slider_concepts(session, c, picked)
    rows = []
    for j in concepts:
        state = weight_state(session, c, j)
        rows.append(
            {
                "j": int(j),
                "concept": session.vocabulary[j],
                "weight": round(float(session.bank.coef_[c, j]), 2),
                "state": state,
                "kind": state.split()[0] if state else "",
                "up": action_help(session, "upweight", c, j, factor),
                "down": action_help(session, "downweight", c, j, factor),
            }
        )
    track = metric_track(session, c)
    summary = metric_summary(track).set_index(["scope", "metric"])
    tiles = []
    for scope, metric, label in TILES:
        row = summary.loc[(scope, metric)]
        tiles.append(
            {
                "label": label,
                "now": _number(row["now"]),
                "since": _number(row["since_start"]),
                "last": _number(row["last_edit"]),
            }
        )
    chance = chance_levels(session, c)
    scope_of, metric_of = {s: i for i, s in enumerate(SCOPES)}, {m: i for i, m in enumerate(TRACKED.values())}
    weights = top_concepts(session, c)
    bar_span, bar_ticks = nice_axis(
        max(1.0, float(np.abs(session.base.coef[c]).max()), float(np.abs(weights["weight"].to_numpy()).max(initial=0)))
    )
    return {
        "class": session.classes[c],
        "edits": int(session.cursor),
        "drawn_at": len(session.audit),
        "can_undo": session.can_undo(),
        "can_redo": session.can_redo(),
        "factor": float(factor),
        "span": slider_span(session, c, concepts),
        "step": SLIDER_STEP,
        "rows": rows,
        "tiles": tiles,
        "track": {
            "last": max(int(session.cursor), 1),
            "scopes": list(SCOPES),
            "metrics": list(TRACKED.values()),
            # [edit, scope index, metric index, value]
            "points": [
                [int(e), scope_of[s], metric_of[m], _number(v)]
                for e, s, m, v in track[["edit", "scope", "metric", "value"]].itertuples(index=False)
            ],
            "chance": [
                {"label": f"chance AP ({scope})", "value": _number(level["student AP"])}
                for scope, level in chance.items()
            ]
            + [{"label": "chance balanced agreement", "value": 0.5}],
        },
        "weights": {
            "span": bar_span,
            "ticks": bar_ticks,
            "bars": [
                {"concept": w, "weight": float(x), "lower": _number(lo), "upper": _number(hi)}
                for w, x, lo, hi in weights[["concept", "weight", "lower", "upper"]].itertuples(index=False)
            ],
        },
        "colours": {
            "scopes": [palette.STUDENT, palette.TEACHER],
            "up": palette.POSITIVE,
            "down": palette.NEGATIVE,
            "zero": palette.NEUTRAL,
        },
        "autosave_error": session.autosave_error,
    }


def read_edit(payload: Any, board: dict[str, Any]) -> BoardEdit:
    """The edit a board sent, checked against the board it was drawn from: a known operation, a
    concept that has a slider there, a finite value inside the slider's range. TuningError, one
    line naming the bad value, otherwise."""
    if not isinstance(payload, dict):
        raise TuningError(f"An edit must be an object, not {type(payload).__name__}")
    op = payload.get("op")
    if op not in CONCEPT_OPS + HISTORY_OPS:
        raise TuningError(f"Unknown edit {op!r}: allowed are {', '.join(CONCEPT_OPS + HISTORY_OPS)}")
    drawn_at = payload.get("drawn_at")
    if not isinstance(drawn_at, int) or isinstance(drawn_at, bool) or drawn_at < 0:
        raise TuningError(f"drawn_at must be a count of edits (an integer ≥ 0), not {drawn_at!r}")
    if op in HISTORY_OPS:
        return BoardEdit(op, None, {}, drawn_at)
    j = payload.get("j")
    shown = {row["j"] for row in board["rows"]}
    if not isinstance(j, int) or isinstance(j, bool) or j not in shown:
        raise TuningError(f"Concept {j!r} has no slider on this board")
    if op == "upweight":
        return BoardEdit(op, j, {"factor": board["factor"]}, drawn_at)
    if op == "downweight":
        return BoardEdit(op, j, {"factor": 1 / board["factor"]}, drawn_at)
    if op != "set":
        return BoardEdit(op, j, {}, drawn_at)
    value = payload.get("value")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise TuningError(f"A weight must be a finite number, not {value!r}")
    if abs(value) > board["span"] + 1e-9:
        raise TuningError(f"Weight {value:g} is outside the slider's range -{board['span']:g}..{board['span']:g}")
    return BoardEdit(op, j, {"value": float(value)}, drawn_at)


def is_stale_set(edit: BoardEdit, session: TuningSession, c: int) -> bool:
    """A slider value that is not an edit: sent by a board drawn before the last change, or equal
    (within half a step) to the weight it shows. Browsers re-send a slider's value when a redraw
    overtakes a drag; taken as edits, such values chained into phantom edits."""
    if edit.op != "set":
        return False
    if edit.drawn_at != len(session.audit):
        return True
    return abs(edit.args["value"] - float(session.bank.coef_[c, edit.j])) <= SLIDER_STEP / 2 + 1e-9
