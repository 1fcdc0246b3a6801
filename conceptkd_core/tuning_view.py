"""What the Tune page shows of a tuning session, computed without Streamlit (and unit-tested):
the stable list of sliders, each weight's constraint in words, what ⬆ / ⬇ would do, plain
reasons for an edit that cannot or need not be made, batch edits, and the held-out figures since
the session started.

Why a stable list: the sliders keep the order of the weights at the start of the session (plus
the concepts edited or picked since, in that order), so the control under the pointer never
changes when an edit re-fits the other weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .students.events import TuningError
from .students.metrics import student_class_metrics
from .students.scores import class_scores, state_key
from .students.session import TuningSession
from .students.suggest import suggest

DEFAULT_SLIDERS = 8
TRACKED = {"student_ap": "student AP", "balanced_agreement": "balanced agreement"}
SCOPES = ("this class", "mean of all classes")


def slider_concepts(session: TuningSession, c: int, picked: Iterable[int] = (), n: int = DEFAULT_SLIDERS) -> list[int]:
    """The concepts of class ``c`` that get a slider, in a fixed order: the ``n`` largest |weight|
    at the start of the session, then every concept an edit of the session touched for the class
    (first edit first, undone ones too: a slider never vanishes under the pointer), then ``picked``."""
    start = session.base.coef[c]
    order = [int(j) for j in np.argsort(-np.abs(start), kind="stable")[:n] if start[j] != 0]
    for event in session.events:
        for cc, j, _, _ in event.bounds:
            if int(cc) == c:
                order.append(int(j))
    order += [int(j) for j in picked]
    return list(dict.fromkeys(order))


MAX_PICKED = 200


def picked_text(picked: dict[int, Sequence[int]]) -> str:
    """The concepts picked for a slider (never edited yet), per class, as a page-address value:
    ``"0:21.45,3:7"`` (class:concept.concept, classes by comma). A reload reads it back."""
    return ",".join(f"{c}:{'.'.join(str(j) for j in js)}" for c, js in sorted(picked.items()) if js)


def picked_from_text(text: str | None, n_classes: int, n_concepts: int) -> dict[int, list[int]]:
    """``picked_text``'s value read back; the address can be edited by hand, so anything else is a
    TuningError naming the bad part (a class or concept out of range, not a number, too many)."""
    if not text:
        return {}
    if len(text) > 10 * MAX_PICKED:
        raise TuningError(f"The picked concepts in the address are too long ({len(text)} characters)")
    picked: dict[int, list[int]] = {}
    for part in text.split(","):
        c_text, _, js_text = part.partition(":")
        try:
            c, js = int(c_text), [int(j) for j in js_text.split(".")]
        except ValueError:
            raise TuningError(f"Picked concepts {part!r} in the address: expected class:concept.concept") from None
        if not 0 <= c < n_classes or not all(0 <= j < n_concepts for j in js):
            raise TuningError(f"Picked concepts {part!r}: classes go 0..{n_classes - 1}, concepts 0..{n_concepts - 1}")
        picked.setdefault(c, []).extend(j for j in js if j not in picked.get(c, []))
    if sum(map(len, picked.values())) > MAX_PICKED:
        raise TuningError(f"More than {MAX_PICKED} picked concepts in the address")
    return picked


def constraint_words(lower: float, upper: float) -> str:
    """A weight's bounds as the analyst set them, in words ('' when it is free)."""
    if lower == upper:
        return "removed" if lower == 0 else f"locked at {lower:+.2f}"
    low, high = np.isfinite(lower), np.isfinite(upper)
    if low and high:
        return f"kept between {lower:+.2f} and {upper:+.2f}"
    if low:
        return f"floor ≥ {lower:+.2f}"
    if high:
        return f"ceiling ≤ {upper:+.2f}"
    return ""


def weight_state(session: TuningSession, c: int, j: int) -> str:
    return constraint_words(float(session.bank.lower_[c, j]), float(session.bank.upper_[c, j]))


def action_help(session: TuningSession, op: str, c: int, j: int, factor: float) -> str:
    """What ⬆ (``upweight``) or ⬇ (``downweight``) would do to weight (c, j) now, in words."""
    w = float(session.bank.coef_[c, j])
    x = factor if op == "upweight" else 1 / factor
    if w == 0:
        if op == "downweight":
            return "Down-tune: not possible, the weight is 0"
        floor = session.zero_uptune_floor(c, factor)
        return f"Up-tune: bring the concept in with weight ≥ {floor:+.2f} (0.1 × {factor:g} × the largest weight)"
    lower, upper = session.bounds_for(op, c, j, {"factor": x})
    limit = lower if np.isfinite(lower) and lower != 0 else upper
    verb = "at least" if op == "upweight" else "at most"
    return f"{'Up' if op == 'upweight' else 'Down'}-tune: |weight| {verb} × {x:.2g} of now ({w:+.2f} → {limit:+.2f})"


def refusal(session: TuningSession, op: str, c: int, j: int, args: dict) -> str | None:
    """Why edit ``op`` of weight (c, j) cannot or need not be made, in plain words; None if it can.
    An edit that would set the bounds the weight already has changes nothing, and is refused so
    (no silent no-op in the history)."""
    concept, name = session.vocabulary[j], session.classes[c]
    try:
        lower, upper = session.bounds_for(op, c, j, args)
    except TuningError as exc:
        return str(exc)
    if lower == session.bank.lower_[c, j] and upper == session.bank.upper_[c, j]:
        state = weight_state(session, c, j) or "free"
        return f"“{concept}” is already {state} for “{name}”: this would change nothing"
    return None


def batch_pairs(session: TuningSession, op: str, concepts: Sequence[int], classes: Sequence[int], args: dict):
    """The (class, concept) pairs a batch edit changes, and a plain-words line for the ones it skips
    (cannot be made or would change nothing; None when none is skipped). TuningError, in plain
    words, when nothing would change at all."""
    pairs, skipped = [], []
    for c in classes:
        for j in concepts:
            problem = refusal(session, op, int(c), int(j), args)
            (skipped if problem else pairs).append((int(c), int(j)))
    if not pairs:
        words = {"remove": "removed", "lock": "locked", "release": "free"}.get(op, "changed")
        raise TuningError(f"Nothing to change: every chosen weight is already {words} (or cannot be)")
    if not skipped:
        return pairs, None
    return pairs, f"{len(skipped)} of {len(skipped) + len(pairs)} weights were left as they were (no change)"


def start_metrics(session: TuningSession) -> list[dict]:
    """Each class's held-out figures at the start of the session (before any edit), from the metric
    cache every session shares when it has them."""
    shared, base = session.shared, session.base
    rows = shared.held_out_rows
    out = []
    for c in range(len(session.classes)):
        key = (*state_key(c, base.coef[c], base.intercept[c]), "held_out")
        metrics = shared.metric_cache.get(key)
        if metrics is None:
            scores = class_scores(shared, c, base.coef[c], float(base.intercept[c])).take(rows)
            raw = student_class_metrics(
                session.labels[rows, c],
                session.teacher_logits[rows, c],
                shared.teacher_probs[:, c].take(rows),
                scores,
                session.bank.predict_proba_from_scores(scores),
            )
            metrics = {name: None if not np.isfinite(v) else float(v) for name, v in raw.items()}
            shared.metric_cache.put(key, metrics)
        out.append(metrics)
    return out


def _value(metrics: dict, name: str) -> float:
    value = metrics.get(name) if isinstance(metrics, dict) else None
    return np.nan if value is None else float(value)


def metric_track(session: TuningSession, c: int) -> pd.DataFrame:
    """The held-out figures (``TRACKED``) of class ``c`` and their mean over all classes, after each
    applied edit since the session started (edit 0: the start). Long table: edit, scope, metric, value.
    Each edit records the figures of the classes it changed; the others keep theirs."""
    now = {name: np.array([_value(m, name) for m in start_metrics(session)]) for name in TRACKED}
    rows = []

    def record(edit: int) -> None:
        for name, label in TRACKED.items():
            values = now[name]
            mean = float(np.nanmean(values)) if np.isfinite(values).any() else np.nan
            rows.extend([(edit, SCOPES[0], label, float(values[c])), (edit, SCOPES[1], label, mean)])

    record(0)
    for edit, event in enumerate(session.events[: session.cursor], start=1):
        for cc, metrics in event.metrics_after.items():
            for name in TRACKED:
                now[name][int(cc)] = _value(metrics, name)
        record(edit)
    return pd.DataFrame(rows, columns=["edit", "scope", "metric", "value"])


def metric_summary(track: pd.DataFrame) -> pd.DataFrame:
    """Per scope and metric of a ``metric_track``: at start, now, since start, last edit (its change)."""
    out = []
    for (scope, metric), part in track.groupby(["scope", "metric"], sort=False):
        values = part.sort_values("edit")["value"].to_numpy()
        last = values[-1] - values[-2] if values.size > 1 else np.nan
        out.append((scope, metric, values[0], values[-1], values[-1] - values[0], last))
    return pd.DataFrame(out, columns=["scope", "metric", "at_start", "now", "since_start", "last_edit"])


def chance_levels(session: TuningSession, c: int) -> dict[str, dict[str, float]]:
    """The chance line of each tracked figure: AP of a random ranking (the share of positives
    among the held-out images; the mean of it over classes) and 0.5 for balanced agreement."""
    rows = session.shared.held_out_rows
    share = session.labels[rows].mean(axis=0) if rows.size else np.zeros(len(session.classes))
    has = session.labels[rows].sum(axis=0) > 0 if rows.size else np.zeros(len(session.classes), bool)
    mean_share = float(share[has].mean()) if has.any() else np.nan
    return {
        SCOPES[0]: {"student AP": float(share[c]), "balanced agreement": 0.5},
        SCOPES[1]: {"student AP": mean_share, "balanced agreement": 0.5},
    }


EDIT_WORDS = {"upweight": "up-tune", "downweight": "down-tune", "remove": "remove"}


def suggestions(
    session: TuningSession,
    classes: Sequence[int],
    factor: float,
    top: int = 10,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """The best ``top`` edits of each class in ``classes`` (``students.suggest``: every candidate
    re-fit exactly, held-out gain with a bootstrap interval, an overfit flag), best first over all
    of them; with ``class_index``, ``class`` and ``edit`` (the edit in words). ``progress(done, total)``
    is called after each class."""
    parts = []
    for done, c in enumerate(classes, start=1):
        table = suggest(session, int(c), factor=factor, top=top).head(top)
        parts.append(table.assign(class_index=int(c), **{"class": session.classes[int(c)]}))
        if progress:
            progress(done, len(classes))
    table = pd.concat(parts, ignore_index=True).sort_values("held_out_gain", ascending=False, kind="stable")
    table["edit"] = [
        f"{EDIT_WORDS[op]} “{concept}”" + ("" if np.isnan(x) else f" × {x:.2g}")
        for op, concept, x in zip(table["op"], table["concept"], table["factor"], strict=True)
    ]
    return table.reset_index(drop=True)


def gain_words(gain: float) -> str:
    """A suggestion's held-out gain as the panel writes it: signed, or "not measurable" (NaN: AP
    against the teacher is undefined when it says yes on no held-out image of the class)."""
    return "not measurable" if np.isnan(gain) else f"{gain:+.3f}"


def unmeasured_note(table: pd.DataFrame, shown: int = 3) -> str | None:
    """Why some classes of a ``suggestions`` table have no held-out gain, in one line (None when all have one)."""
    unmeasured = table.groupby("class", sort=False)["held_out_gain"].apply(lambda g: bool(g.isna().all()))
    names = [str(name) for name in unmeasured.index[unmeasured.to_numpy()]]
    if not names:
        return None
    listed = ", ".join(f"“{name}”" for name in names[:shown]) + (
        f" and {len(names) - shown:,} more" if len(names) > shown else ""
    )
    rows, them = int(table["scored_rows"].iloc[0]), "it" if len(names) == 1 else "any of them"
    return (
        f"No held-out gain for {listed}: the teacher says yes for {them} on none of the {rows:,} held-out images, "
        "so AP against its decisions is undefined; those candidates come last, unranked."
    )
