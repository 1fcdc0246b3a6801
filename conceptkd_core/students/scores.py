"""Student scores over every image, kept current after a slider move at a cost that stays small
on a million-image workspace, and per-class metrics cached per tuning state.

After a move only one class's weights change. Its scores are the base scores (computed once per
workspace and shared by every session) plus ``X[:, D] @ (w - w0)[D]`` over the concepts D whose
weights differ from the base, read from a column-by-column copy of the concepts the students use
(``columns.ConceptColumns``, filled in the same streaming pass as the base scores) instead of
converting and multiplying all m columns of every row. The result is a function of the weights
alone, so undo/redo land on exactly the same scores.

Metrics are exact (AP from a value sort of the part's scores, ``metrics.ap_of_positives``) and
cached by (class, exact weights, part): undo, redo and a revisited state cost nothing, and sessions
over one workspace share the cache. ``SessionScores`` keeps one tuning session's scores current
(one contiguous column per class) and measures what a move did (``MoveFigures``).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..store.rows import row_chunks
from .bank import StudentBank
from .columns import ConceptColumns, exact_float32
from .metrics import decisions, student_class_metrics
from .solver import sigmoid

CHUNK_ROWS = 65536  # rows per step of the base-score pass (as ``StudentBank.decision_function``)
MOVE_CHUNK_ROWS = 16384  # rows per step of a move's update: its blocks of changed columns stay in cache
PARTS = ("held_out", "in_sample")
EVENT_METRICS = ("student_ap", "agreement", "balanced_agreement")  # what a tuning event records, held-out


class MetricCache:
    """A thread-safe LRU map (class, weights digest) -> metrics dict; shared across sessions."""

    def __init__(self, max_entries: int = 4096):
        self.max_entries = max_entries
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def state_key(c: int, coef: np.ndarray, intercept: float) -> tuple:
    """Identifies one class's exact student: its index, weights and intercept."""
    digest = hashlib.blake2b(np.ascontiguousarray(coef, dtype=np.float64).tobytes(), digest_size=16)
    digest.update(np.float64(intercept).tobytes())
    return int(c), digest.hexdigest()


@dataclass(frozen=True)
class SharedScores:
    """What every tuning session over one workspace shares, read-only: the base students' weights
    and scores, the teacher's probabilities, the columns of the concepts in use, and the metric cache.

    base_coef : (n_classes, n_concepts); base_intercept : (n_classes,)
    base_scores : (n_images, n_classes) float64, column-major (one class's scores are contiguous)
    teacher_probs : (n_images, n_classes) float64, column-major
    fit_rows, held_out_rows : int arrays, the images the students are fit on and the ones every
        figure is measured on (``store.split``); all images in both when no split is given
    columns : the concept matrix's columns that moves read, column by column
    """

    base_coef: np.ndarray
    base_intercept: np.ndarray
    base_scores: np.ndarray
    teacher_probs: np.ndarray
    fit_rows: np.ndarray
    held_out_rows: np.ndarray
    columns: ConceptColumns
    metric_cache: MetricCache = field(default_factory=MetricCache)

    @classmethod
    def build(
        cls, bank: StudentBank, X: np.ndarray, teacher_logits: np.ndarray, held_out: np.ndarray | None = None
    ) -> SharedScores:
        """``held_out`` : bool mask of shape (n_images,); the students were fit on the other images.

        One streaming pass over ``X`` computes the base scores (as ``bank.decision_function``) and
        copies out the columns of the concepts some base student uses (as far as the budget goes);
        a concept a move brings in is added when it first moves."""
        n = X.shape[0]
        held_out = np.ones(n, dtype=bool) if held_out is None else np.asarray(held_out, dtype=bool)
        fit = ~held_out if held_out.any() and not held_out.all() else np.ones(n, dtype=bool)
        columns = ConceptColumns(X)
        take, done = columns.collector(np.flatnonzero((bank.coef_ != 0).any(axis=0)))
        base = np.empty((n, bank.coef_.shape[0]), dtype=np.float64, order="F")
        W = bank.coef_.T.astype(np.float32)
        for start, rows in row_chunks(X, CHUNK_ROWS):
            base[start : start + len(rows)] = exact_float32(rows) @ W
            take(start, rows)
        done()
        base += bank.intercept_
        arrays = (
            bank.coef_.copy(),
            bank.intercept_.copy(),
            base,
            np.asfortranarray(sigmoid(np.asarray(teacher_logits, dtype=np.float64))),
            np.flatnonzero(fit),
            np.flatnonzero(held_out),
        )
        for array in arrays:
            array.setflags(write=False)
        return cls(*arrays, columns)

    def rows(self, part: str) -> np.ndarray:
        """The image rows of ``part``: "held_out" (what every figure is measured on) or "in_sample"."""
        if part not in PARTS:
            raise ValueError(f"part must be one of {', '.join(PARTS)}; got {part!r}")
        return self.held_out_rows if part == "held_out" else self.fit_rows

    def matches(self, bank: StudentBank) -> bool:
        return np.array_equal(bank.coef_, self.base_coef) and np.array_equal(bank.intercept_, self.base_intercept)


def class_scores(
    shared: SharedScores, c: int, coef: np.ndarray, intercept: float, chunk_rows: int = MOVE_CHUNK_ROWS
) -> np.ndarray:
    """Scores of class ``c`` with weights ``coef`` (n_concepts,) and ``intercept``, shape (n_images,):
    the base scores plus the changed concepts' columns times their change, exactly the same for the
    same weights whichever way the columns are read."""
    delta = coef - shared.base_coef[c]
    changed = np.flatnonzero(delta)
    out = shared.base_scores[:, c] + (intercept - shared.base_intercept[c])
    if changed.size == 0:
        return out
    shared.columns.keep(changed)
    step = delta[changed].astype(np.float32)
    for start in range(0, out.size, chunk_rows):
        # einsum, not BLAS: a product this small is not worth BLAS's threads, whose wake-ups on a
        # busy machine cost milliseconds; and one thread always sums in the same order.
        out[start : start + chunk_rows] += np.einsum(
            "d,dr->r", step, shared.columns.block(changed, start, start + chunk_rows)
        )
    return out


@dataclass(frozen=True)
class MoveFigures:
    """What a tuning event records of each class it moves, taken before and again after the move.

    metrics : {class: {name: value for name in EVENT_METRICS}} on the held-out images (None where undefined)
    decisions : {class: ndarray of shape (n_held_out,), the student's yes/no per held-out image}
    """

    metrics: dict[int, dict]
    decisions: dict[int, np.ndarray]

    def flipped_since(self, before: MoveFigures) -> dict[int, int]:
        """Per class, how many images changed side between ``before`` and these figures."""
        return {c: int((now != before.decisions[c]).sum()) for c, now in self.decisions.items()}


class SessionScores:
    """One tuning session's student scores over every image, kept current class by class.

    The session re-fits ``bank`` in place and calls ``refresh`` for each class it changed; the
    scores start as (a copy of) the shared base scores and never need a full product.
    labels, teacher_logits : ndarray of shape (n_images, n_classes)
    """

    def __init__(
        self, bank: StudentBank, X: np.ndarray, labels: np.ndarray, teacher_logits: np.ndarray, shared: SharedScores
    ):
        self.bank, self.X, self.labels, self.teacher_logits, self.shared = bank, X, labels, teacher_logits, shared
        self._scores = np.array(shared.base_scores, order="F")  # one contiguous column per class

    @property
    def view(self) -> np.ndarray:
        """The scores, shape (n_images, n_classes); read-only, so only ``refresh`` changes them."""
        view = self._scores.view()
        view.setflags(write=False)
        return view

    def refresh(self, c: int) -> None:
        """Bring class ``c``'s scores up to the bank's current weights."""
        self._scores[:, c] = class_scores(self.shared, c, self.bank.coef_[c], self.bank.intercept_[c])

    def probs(self) -> np.ndarray:
        return self.bank.predict_proba_from_scores(self._scores)

    def class_probs(self, c: int) -> np.ndarray:
        return self.bank.predict_proba_from_scores(self._scores[:, c])

    def class_metrics(self, c: int, part: str = "held_out") -> dict:
        """student_ap, agreement, balanced_agreement, decision_f1, logit_corr, fidelity_ap of class ``c``
        now (None where undefined), on the held-out images (or, labelled so, the images the students
        were fit on); cached by the class's exact weights in the cache every session shares."""
        rows = self.shared.rows(part)
        key = (*state_key(c, self.bank.coef_[c], self.bank.intercept_[c]), part)
        metrics = self.shared.metric_cache.get(key)
        if metrics is None:
            scores = self._scores[:, c].take(rows)
            raw = student_class_metrics(
                self.labels[rows, c],
                self.teacher_logits[rows, c],
                self.shared.teacher_probs[:, c].take(rows),
                scores,
                self.bank.predict_proba_from_scores(scores),
            )
            metrics = {name: None if not np.isfinite(value) else float(value) for name, value in raw.items()}
            self.shared.metric_cache.put(key, metrics)
        return metrics

    def figures(self, classes: list[int]) -> MoveFigures:
        """The figures an event records of ``classes``, as they stand now."""
        metrics = {c: self.class_metrics(c) for c in classes}
        held_out = self.shared.held_out_rows
        return MoveFigures(
            {c: {name: m[name] for name in EVENT_METRICS} for c, m in metrics.items()},
            {c: decisions(self.bank.predict_proba_from_scores(self._scores[:, c].take(held_out))) for c in classes},
        )
