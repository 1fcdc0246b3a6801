"""Edit suggestions: try every candidate edit of a class exactly and rank them by what they do
to the held-out images.

The candidates of a class are: up-tune each concept it does not use, down-tune and remove each
concept it uses (at least one candidate per concept). Each is the box constraint the session
would set for that edit (``TuningSession.bounds_for``), and each is re-fit exactly: all of a
class's candidates go to ``solver.solve_edits`` at once, each warm-started from the class's
current weights and held to the solver's own stopping rule, so every candidate is the optimum
the edit itself would reach (to the solver's tolerance).

A candidate is measured like the session measures an edit, on the held-out images (the student
AP against the teacher's decisions, and against the labels where there are labels) and, to
catch overfitting, also on the fit images: a gain on the fit images that is not a gain on the
held-out ones is flagged. The best candidates get a bootstrap interval over the held-out images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .metrics import decisions
from .solver import solve_edits

DEFAULT_FACTOR = 2.0
# Scoring every candidate on a million held-out images would take minutes; above this many rows a
# seeded, fixed sample of the part is used (stated in the result), the re-fits stay exact.
MAX_SCORED_ROWS = 50_000


@dataclass(frozen=True)
class Candidates:
    """The edits tried for one class: ``ops[i]`` on concept ``concepts[i]`` with bounds ``lower[:, i]``,
    ``upper[:, i]`` (each of shape (n_concepts, n_candidates))."""

    concepts: np.ndarray
    ops: list[str]
    factors: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def candidates(session, c: int, factor: float = DEFAULT_FACTOR) -> Candidates:
    """Up-tune each unused concept, down-tune and remove each used one, as ``session`` would."""
    w = session.bank.coef_[c]
    concepts, ops, factors = [], [], []
    for j in range(w.size):
        for op, x in (("upweight", factor),) if w[j] == 0 else (("downweight", 1 / factor), ("remove", None)):
            concepts.append(j)
            ops.append(op)
            factors.append(np.nan if x is None else x)
    lower = np.repeat(session.bank.lower_[c][:, None], len(ops), axis=1)
    upper = np.repeat(session.bank.upper_[c][:, None], len(ops), axis=1)
    for i, (j, op, x) in enumerate(zip(concepts, ops, factors, strict=True)):
        lower[j, i], upper[j, i] = session.bounds_for(op, c, j, {} if np.isnan(x) else {"factor": float(x)})
    return Candidates(np.asarray(concepts), ops, np.asarray(factors), lower, upper)


def _rows(rows: np.ndarray, seed: int) -> np.ndarray:
    if rows.size <= MAX_SCORED_ROWS:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, MAX_SCORED_ROWS, replace=False))


def _ap_columns(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AP of each column of ``scores`` (n, k) against the 0/1 vector ``truth`` (n,); NaN without positives.

    ``metrics.average_precision`` column by column, vectorised: AP is the mean over the positives
    of the precision at each one's score, ``#positives >= s / #images >= s`` (ties grouped as in
    scikit-learn); one sort of every column's positives and negatives serves all columns.
    """
    truth = np.asarray(truth, dtype=bool)
    scores = np.asarray(scores)
    n_pos = int(truth.sum())
    if n_pos == 0:
        return np.full(scores.shape[1], np.nan)
    positives = np.sort(scores[truth].T, axis=1)  # (k, P), ascending
    negatives = np.sort(scores[~truth].T, axis=1)  # (k, N)
    index = np.arange(n_pos)
    new = np.ones(positives.shape, dtype=bool)
    new[:, 1:] = positives[:, 1:] != positives[:, :-1]
    first_of_tie = np.maximum.accumulate(np.where(new, index, 0), axis=1)
    pos_above = n_pos - first_of_tie
    neg_above = np.empty(positives.shape, dtype=np.int64)
    for i in range(positives.shape[0]):
        neg_above[i] = negatives.shape[1] - np.searchsorted(negatives[i], positives[i], side="left")
    return (pos_above / (pos_above + neg_above)).mean(axis=1)


def _part(
    session, c: int, rows: np.ndarray, change: np.ndarray, intercept_change: np.ndarray, labels: bool = True
) -> dict:
    """Per candidate gain in AP vs the teacher's decisions (and vs the labels if ``labels``) on ``rows``.

    A candidate's scores are the current scores plus its change, ``X[:, moved] @ change[moved]``:
    only the concepts some candidate moves are read.
    """
    moved = np.flatnonzero(np.any(change != 0, axis=1))
    base = np.asarray(session.student_scores[rows, c], dtype=np.float32)
    X = np.asarray(session.X[rows][:, moved], dtype=np.float32)
    scores = X @ change[moved].astype(np.float32) + (base[:, None] + intercept_change.astype(np.float32))
    teacher = decisions(session.teacher_probs[rows, c])
    truth = np.asarray(session.labels[rows, c]).astype(bool)
    return {
        "teacher": _ap_columns(teacher, scores) - _ap_columns(teacher, base[:, None])[0],
        "labels": _ap_columns(truth, scores) - _ap_columns(truth, base[:, None])[0] if labels else None,
        "scores": scores,
        "base": base,
        "truth": teacher,
    }


def _ap_resampled(truth: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AP of each column of ``scores`` (n, k) against ``truth`` (n,) in each resample, of shape (b, k).

    A resample is a column of ``counts`` (n, b): how often each image was drawn. Its AP is
    ``_ap_columns`` of the drawn rows: the mean over the drawn positives of the precision at each
    one's score, ties grouped. Each column of ``scores`` is sorted once for every resample; "drawn
    images with a score >= s" is then a cumulative count down to the end of s's run of ties.
    NaN for a resample that drew no positive. (Images run down the rows so that the cumulative
    sums add whole rows of resamples at a time, which is several times faster than along them.)
    """
    truth = np.asarray(truth, dtype=bool)
    out = np.empty((counts.shape[1], scores.shape[1]))
    for j in range(scores.shape[1]):
        order = np.argsort(-scores[:, j], kind="stable")
        ranked = scores[order, j]
        ends = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), ranked.size - 1]  # the last of each tie run
        positive = np.flatnonzero(truth[order])
        last = ends[np.searchsorted(ends, positive)]  # every image at or above this positive's score: [0, last]
        drawn = counts[order]
        at_or_above = np.cumsum(drawn, axis=0, dtype=counts.dtype)[last]
        drawn_positives = drawn[positive]
        # positives at or above = the positives ranked at or before ``last`` (its ties included)
        positive_prefix = np.cumsum(drawn_positives, axis=0, dtype=counts.dtype)
        positives_at_or_above = positive_prefix[np.searchsorted(positive, last, side="right") - 1]
        precision = positives_at_or_above / np.maximum(at_or_above, 1)  # 0 / 0 only where none was drawn
        with np.errstate(invalid="ignore"):
            out[:, j] = (drawn_positives * precision).sum(axis=0) / drawn_positives.sum(axis=0)
    return out


# Resamples are drawn in chunks of about this many counts, so memory stays bounded at MAX_SCORED_ROWS.
_BOOTSTRAP_CHUNK = 4_000_000


def _bootstrap(held: dict, picks: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """5 % and 95 % quantiles of each picked candidate's held-out gain (vs the teacher) over resamples.

    The resamples are drawn as a loop drawing one after another would draw them (one generator, n
    indices each, in order) and scored all at once as counts per image (``_ap_resampled``).
    """
    rng = np.random.default_rng(seed)
    n = held["base"].size
    columns = np.column_stack([held["base"], held["scores"][:, picks]])  # the base, then the picks
    per_chunk = max(1, _BOOTSTRAP_CHUNK // max(n, 1))
    gains = []
    for start in range(0, n_resamples, per_chunk):
        size = min(per_chunk, n_resamples - start)
        drawn = rng.integers(0, n, (size, n)) * size + np.arange(size)[:, None]  # image i of resample b: i size + b
        counts = np.bincount(drawn.ravel(), minlength=n * size).reshape(n, size).astype(np.int32)  # n <= 2**31
        ap = _ap_resampled(held["truth"], columns, counts)
        gains.append(ap[:, 1:] - ap[:, :1])
    return np.nanquantile(np.concatenate(gains), [0.05, 0.95], axis=0).T


def suggest(
    session, c: int, factor: float = DEFAULT_FACTOR, top: int = 10, n_resamples: int = 200, seed: int = 0
) -> pd.DataFrame:
    """Every candidate edit of class ``c``, best first by held-out gain in student-vs-teacher AP.

    Columns: concept_index, concept, op, factor, held_out_gain (AP vs the teacher's decisions on
    held-out images), held_out_gain_labels (AP vs the labels), fit_gain (on the fit images),
    overfit (gains on the fit images but not on held-out ones), low / high (bootstrap 5–95 %
    interval of the held-out gain; the ``top`` rows only), scored_rows (held-out rows scored),
    kkt_violation (the re-fit's gradient-mapping norm: at most the bank's ``tol``, the proof it is exact).
    """
    if not isinstance(factor, (int, float)) or not np.isfinite(factor) or factor <= 1:
        raise ValueError(f"factor must be a number > 1; got {factor!r}")
    found = candidates(session, c, factor)
    k = len(found.ops)
    bank = session.bank
    w = bank.coef_[c]
    result = solve_edits(bank.stats_, bank.alpha, c, w, found.lower, found.upper, tol=bank.tol, max_iter=bank.max_iter)
    change = result.coef - w[:, None]
    intercept_change = result.intercept - bank.intercept_[c]
    held_rows = _rows(session.shared.held_out_rows, seed)
    held = _part(session, c, held_rows, change, intercept_change)
    fit = _part(session, c, _rows(session.shared.fit_rows, seed), change, intercept_change, labels=False)
    table = pd.DataFrame(
        {
            "concept_index": found.concepts,
            "concept": [session.vocabulary[j] for j in found.concepts],
            "op": found.ops,
            "factor": found.factors,
            "held_out_gain": held["teacher"],
            "held_out_gain_labels": held["labels"],
            "fit_gain": fit["teacher"],
            "kkt_violation": result.kkt_violation,
        }
    )
    table["overfit"] = (table["fit_gain"] > 1e-9) & (table["held_out_gain"] <= 0)
    order = table.sort_values(["held_out_gain", "held_out_gain_labels"], ascending=False, na_position="last").index
    table = table.loc[order].reset_index(drop=True)
    table["low"], table["high"] = np.nan, np.nan
    best = min(top, k)
    if best and n_resamples and held["truth"].any():  # no interval without a held-out yes (AP undefined)
        interval = _bootstrap(held, order.to_numpy()[:best], n_resamples, seed)
        table.loc[: best - 1, ["low", "high"]] = interval
    table["scored_rows"] = held_rows.size
    return table


def apply_suggestion(session, c: int, row: pd.Series):
    """Carry out one row of ``suggest`` as an ordinary, undoable edit of the session."""
    args = {} if np.isnan(row["factor"]) else {"factor": float(row["factor"])}
    return session.apply(str(row["op"]), c, int(row["concept_index"]), **args)
