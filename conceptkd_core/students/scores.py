"""Student scores over every image, kept current after a slider move at a cost that stays small
on a million-image workspace, and per-class metrics cached per tuning state.

After a move only one class's weights change. Its scores are the base scores (computed once per
workspace and shared by every session) plus ``X[:, D] @ (w - w0)[D]`` over the concepts D whose
weights differ from the base: one pass gathering a few columns of the memory-mapped concept
matrix (in row chunks), instead of converting and multiplying all m columns. The result is a
function of the weights alone, so undo/redo land on exactly the same scores.

Metrics (AP needs a sort of all n scores) are cached by (class, exact weights): undo, redo and
a revisited state cost nothing, and sessions over one workspace share the cache.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .bank import StudentBank
from .solver import sigmoid

CHUNK_ROWS = 65536
# Above this share of changed concepts, a full product is no slower than gathering columns.
GATHER_MAX_SHARE = 0.25


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
    and scores, the teacher's probabilities, and the metric cache.

    base_coef : (n_classes, n_concepts); base_intercept : (n_classes,)
    base_scores, teacher_probs : (n_images, n_classes) float64
    """

    base_coef: np.ndarray
    base_intercept: np.ndarray
    base_scores: np.ndarray
    teacher_probs: np.ndarray
    metric_cache: MetricCache = field(default_factory=MetricCache)

    @classmethod
    def build(cls, bank: StudentBank, X: np.ndarray, teacher_logits: np.ndarray) -> "SharedScores":
        arrays = (bank.coef_.copy(), bank.intercept_.copy(), bank.decision_function(X),
                  sigmoid(np.asarray(teacher_logits, dtype=np.float64)))
        for array in arrays:
            array.setflags(write=False)
        return cls(*arrays)

    def matches(self, bank: StudentBank) -> bool:
        return np.array_equal(bank.coef_, self.base_coef) and np.array_equal(bank.intercept_, self.base_intercept)


def class_scores(X: np.ndarray, shared: SharedScores, c: int, coef: np.ndarray, intercept: float,
                 chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Scores of class ``c`` with weights ``coef`` (n_concepts,) and ``intercept``, shape (n_images,)."""
    delta = coef - shared.base_coef[c]
    changed = np.flatnonzero(delta)
    out = shared.base_scores[:, c] + (intercept - shared.base_intercept[c])
    if changed.size == 0:
        return out
    if changed.size > GATHER_MAX_SHARE * coef.size:
        changed = np.arange(coef.size)
    step = delta[changed].astype(np.float32)
    for start in range(0, X.shape[0], chunk_rows):
        block = np.asarray(X[start:start + chunk_rows, changed], dtype=np.float32)
        out[start:start + chunk_rows] += block @ step
    return out
