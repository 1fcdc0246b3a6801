"""Steering students by hand, with every step recorded (provenance), undoable and exportable.

Each operation on a (class, concept) pair becomes a box constraint on that weight, then the
class is re-fitted so the other weights compensate:

=============  ======================================================================
operation      bounds on the weight w (w0: its weight before any tuning)
=============  ======================================================================
upweight x     at least x·|w0| in w0's direction (x >= 1): [x·w0, +inf) if w0 > 0
downweight x   at most x·|w0| in w0's direction (0 < x <= 1): [0, x·w0] if w0 > 0
lock           [w, w] at its current value
remove         [0, 0]
set v          [v, v] (the slider)
bound lo hi    [lo, hi]
release        (-inf, +inf)
refine         no bound changes; exact BCE fit of the selected classes (``StudentBank.refine``)
=============  ======================================================================

The session keeps an ordered list of events and a cursor: undo/redo move the cursor, revert
jumps it, and a new edit after an undo drops the undone tail (as editors do). Every event
stores the bounds it set and the exact weights it produced, so any point in the history is
rebuilt without re-solving; an append-only ``audit`` list records undo/redo/revert too.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..store.atomic_io import atomic_write_text
from .metrics import decisions, student_class_metrics
from .scores import SharedScores, class_scores, state_key
from .bank import StudentBank, bounds_to_json
from .solver import check_bounds

FORMAT = "conceptkd.tuning"
FORMAT_VERSION = 1
OPERATIONS = ("upweight", "downweight", "lock", "remove", "set", "bound", "release", "refine")


class TuningError(ValueError):
    """A request that cannot be carried out; nothing was changed."""


@dataclass
class TuningEvent:
    op: str
    classes: list[int]  # the classes whose weights this event changed
    concept: int | None
    args: dict
    bounds: list[list[float]]  # [[class, concept, lower, upper]] set by this event (inf as strings)
    coef: dict  # {class: [[concept indices], [weights]]} after the event, non-zero weights only
    intercept: dict  # {class: intercept} after the event
    metrics_before: dict  # {class: {"student_ap": .., "agreement": ..}}
    metrics_after: dict
    flipped: dict  # {class: number of images whose student decision changed}
    time: str = ""
    user: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "analyst"


def _json_float(value: float) -> float | str:
    return value if np.isfinite(value) else ("inf" if value > 0 else "-inf")


def _from_json_float(value: Any) -> float:
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TuningError(f"expected a number; got {value!r}")
    return float(value)


class TuningSession:
    """Interactive tuning of a ``StudentBank`` over one workspace's data.

    X : ndarray of shape (n_images, n_concepts), concept scores (memory map is fine)
    teacher_logits, labels : ndarray of shape (n_images, n_classes)
    classes, vocabulary : names of the classes and concepts
    autosave_path : if given, the session is written there (atomically) after every change
    shared : base scores, teacher probabilities and metric cache shared by every session of one
        workspace (``SharedScores.build``); built for this session alone when not given or when
        it was built for other base weights
    """

    def __init__(self, bank: StudentBank, X: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray,
                 classes: Sequence[str], vocabulary: Sequence[str], *, user: str | None = None,
                 autosave_path: str | os.PathLike | None = None, stamp: Mapping[str, Any] | None = None,
                 session_id: str | None = None, shared: SharedScores | None = None):
        self.bank = bank
        self.X = X
        self.teacher_logits = np.asarray(teacher_logits)
        if shared is None or not shared.matches(bank):
            shared = SharedScores.build(bank, X, teacher_logits)
        self.shared = shared
        self.teacher_probs = shared.teacher_probs
        self.labels = np.asarray(labels)
        self.classes = list(classes)
        self.vocabulary = list(vocabulary)
        self._class_index = {c: i for i, c in enumerate(self.classes)}
        self._concept_index = {w: j for j, w in enumerate(self.vocabulary)}
        self.user = user or _default_user()
        self.autosave_path = Path(autosave_path) if autosave_path else None
        self.stamp = dict(stamp or {})
        self.session_id = session_id or uuid.uuid4().hex[:16]
        self.created = _now()
        self.base_coef = bank.coef_.copy()
        self.base_intercept = bank.intercept_.copy()
        self.base_lower = bank.lower_.copy()
        self.base_upper = bank.upper_.copy()
        self.events: list[TuningEvent] = []
        self.cursor = 0
        self.audit: list[dict] = []
        self.autosave_error: str | None = None
        self._scores = shared.base_scores.copy()

    # ------------------------------------------------------------------ lookup
    def class_index(self, name_or_index: str | int) -> int:
        if isinstance(name_or_index, (int, np.integer)) and not isinstance(name_or_index, bool):
            if 0 <= int(name_or_index) < len(self.classes):
                return int(name_or_index)
            raise TuningError(f"Class index {name_or_index} is out of range 0..{len(self.classes) - 1}")
        try:
            return self._class_index[name_or_index]
        except (KeyError, TypeError):
            raise TuningError(f"Unknown class {name_or_index!r}; classes are {', '.join(self.classes)}") from None

    def concept_index(self, name_or_index: str | int) -> int:
        if isinstance(name_or_index, (int, np.integer)) and not isinstance(name_or_index, bool):
            if 0 <= int(name_or_index) < len(self.vocabulary):
                return int(name_or_index)
            raise TuningError(f"Concept index {name_or_index} is out of range 0..{len(self.vocabulary) - 1}")
        try:
            return self._concept_index[name_or_index]
        except (KeyError, TypeError):
            raise TuningError(f"Unknown concept {name_or_index!r}: it is not in this workspace's vocabulary") from None

    # ------------------------------------------------------------------ metrics
    @property
    def student_scores(self) -> np.ndarray:
        """Current student scores, shape (n_images, n_classes); read-only view."""
        view = self._scores.view()
        view.setflags(write=False)
        return view

    def student_probs(self) -> np.ndarray:
        return self.bank.predict_proba_from_scores(self._scores)

    def class_probs(self, c: int) -> np.ndarray:
        return self.bank.predict_proba_from_scores(self._scores[:, c])

    def class_metrics(self, c: int) -> dict:
        """student_ap, agreement, logit_corr, fidelity_ap of class ``c`` now (None where undefined),
        cached by the class's exact weights."""
        key = state_key(c, self.bank.coef_[c], self.bank.intercept_[c])
        metrics = self.shared.metric_cache.get(key)
        if metrics is None:
            raw = student_class_metrics(self.labels[:, c], self.teacher_logits[:, c], self.teacher_probs[:, c],
                                        self._scores[:, c], self.class_probs(c))
            metrics = {name: _nan_to_none(value) for name, value in raw.items()}
            self.shared.metric_cache.put(key, metrics)
        return metrics

    def _event_metrics(self, c: int) -> dict:
        metrics = self.class_metrics(c)
        return {"student_ap": metrics["student_ap"], "agreement": metrics["agreement"]}

    def _decisions(self, c: int) -> np.ndarray:
        return decisions(self.class_probs(c))

    # ------------------------------------------------------------------ operations
    def upweight(self, class_, concept, factor: float = 2.0) -> TuningEvent:
        return self.apply("upweight", class_, concept, factor=factor)

    def downweight(self, class_, concept, factor: float = 0.5) -> TuningEvent:
        return self.apply("downweight", class_, concept, factor=factor)

    def lock(self, class_, concept) -> TuningEvent:
        return self.apply("lock", class_, concept)

    def remove(self, class_, concept) -> TuningEvent:
        return self.apply("remove", class_, concept)

    def set_weight(self, class_, concept, value: float) -> TuningEvent:
        return self.apply("set", class_, concept, value=value)

    def set_bounds(self, class_, concept, lower: float, upper: float) -> TuningEvent:
        return self.apply("bound", class_, concept, lower=lower, upper=upper)

    def release(self, class_, concept) -> TuningEvent:
        return self.apply("release", class_, concept)

    def refine(self, classes: Sequence[str | int] | None = None, alpha: float = 1e-4) -> TuningEvent:
        cols = list(range(len(self.classes))) if classes is None else [self.class_index(c) for c in classes]
        if not cols:
            raise TuningError("refine needs at least one class")
        return self._commit("refine", cols, None, {"alpha": float(alpha)}, [],
                            lambda: self.bank.refine(self.X, self.teacher_logits, alpha=alpha, classes=cols))

    def _new_bounds(self, op: str, c: int, j: int, args: dict) -> tuple[float, float]:
        w0 = float(self.base_coef[c, j])
        w = float(self.bank.coef_[c, j])
        if op in ("upweight", "downweight"):
            x = args.get("factor")
            if not isinstance(x, (int, float)) or isinstance(x, bool) or not np.isfinite(x) or x <= 0:
                raise TuningError(f"factor must be a number > 0; got {x!r}")
            if op == "upweight" and x < 1:
                raise TuningError(f"up-tuning needs a factor >= 1; got {x!r} (use downweight to shrink a weight)")
            if op == "downweight" and x > 1:
                raise TuningError(f"down-tuning needs a factor in (0, 1]; got {x!r} (use upweight to grow a weight)")
            if w0 == 0:
                raise TuningError(
                    f"{self.vocabulary[j]!r} has weight 0 for {self.classes[c]!r} before tuning, so there is nothing "
                    "to scale; use set_weight or set_bounds to give it a weight")
            target = x * w0
            if op == "upweight":
                return (target, np.inf) if w0 > 0 else (-np.inf, target)
            return (0.0, target) if w0 > 0 else (target, 0.0)
        if op == "lock":
            return w, w
        if op == "remove":
            return 0.0, 0.0
        if op == "set":
            v = args.get("value")
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
                raise TuningError(f"value must be a finite number; got {v!r}")
            return float(v), float(v)
        if op == "bound":
            lo, hi = args.get("lower"), args.get("upper")
            for name, v in (("lower", lo), ("upper", hi)):
                if not isinstance(v, (int, float)) or isinstance(v, bool) or np.isnan(v):
                    raise TuningError(f"{name} must be a number (±inf allowed); got {v!r}")
            if lo > hi:
                raise TuningError(f"lower bound {lo:g} is above upper bound {hi:g}")
            return float(lo), float(hi)
        if op == "release":
            return -np.inf, np.inf
        raise TuningError(f"Unknown operation {op!r}; expected one of {', '.join(OPERATIONS)}")

    def apply(self, op: str, class_, concept, **args) -> TuningEvent:
        """Apply one operation (see the module docstring) and re-fit the class. Raises TuningError."""
        if op not in OPERATIONS or op == "refine":
            raise TuningError(f"Unknown operation {op!r}; expected one of {', '.join(o for o in OPERATIONS if o != 'refine')}")
        c, j = self.class_index(class_), self.concept_index(concept)
        lo, hi = self._new_bounds(op, c, j, args)
        args = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in args.items()}

        def refit():
            self.bank.lower_[c, j], self.bank.upper_[c, j] = lo, hi
            self.bank.refit([c])

        return self._commit(op, [c], j, args, [[c, j, lo, hi]], refit)

    def _commit(self, op: str, cols: list[int], j: int | None, args: dict, bounds: list,
                change: Callable[[], Any]) -> TuningEvent:
        before = {c: self._event_metrics(c) for c in cols}
        old_decisions = {c: self._decisions(c) for c in cols}
        saved = (self.bank.coef_.copy(), self.bank.intercept_.copy(), self.bank.lower_.copy(), self.bank.upper_.copy())
        try:
            change()
        except Exception:
            self.bank.coef_, self.bank.intercept_, self.bank.lower_, self.bank.upper_ = saved
            raise
        for c in cols:
            self._refresh_class(c)
        event = TuningEvent(
            op=op, classes=cols, concept=j, args=args,
            bounds=[[c_, j_, _json_float(lo), _json_float(hi)] for c_, j_, lo, hi in bounds],
            coef={c: _sparse(self.bank.coef_[c]) for c in cols},
            intercept={c: float(self.bank.intercept_[c]) for c in cols},
            metrics_before=before, metrics_after={c: self._event_metrics(c) for c in cols},
            flipped={c: int((self._decisions(c) != old_decisions[c]).sum()) for c in cols},
            time=_now(), user=self.user,
        )
        del self.events[self.cursor:]
        self.events.append(event)
        self.cursor = len(self.events)
        self._log("edit", event=event.id, op=op)
        return event

    def _refresh_class(self, c: int) -> None:
        self._scores[:, c] = class_scores(self.X, self.shared, c, self.bank.coef_[c], self.bank.intercept_[c])

    # ------------------------------------------------------------------ history
    def state_at(self, cursor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(coef, intercept, lower, upper) after the first ``cursor`` events, rebuilt exactly."""
        coef, intercept = self.base_coef.copy(), self.base_intercept.copy()
        lower, upper = self.base_lower.copy(), self.base_upper.copy()
        for event in self.events[:cursor]:
            for c, j, lo, hi in event.bounds:
                lower[c, j], upper[c, j] = _from_json_float(lo), _from_json_float(hi)
            for c, (idx, vals) in event.coef.items():
                coef[int(c)] = 0.0
                coef[int(c), idx] = vals
            for c, b in event.intercept.items():
                intercept[int(c)] = b
        return coef, intercept, lower, upper

    def _move_to(self, cursor: int, action: str) -> None:
        coef, intercept, lower, upper = self.state_at(cursor)
        changed = np.flatnonzero((coef != self.bank.coef_).any(axis=1) | (intercept != self.bank.intercept_))
        self.bank.coef_, self.bank.intercept_, self.bank.lower_, self.bank.upper_ = coef, intercept, lower, upper
        for c in changed:
            self._refresh_class(int(c))
        self.cursor = cursor
        self._log(action, cursor=cursor)

    def can_undo(self) -> bool:
        return self.cursor > 0

    def can_redo(self) -> bool:
        return self.cursor < len(self.events)

    def undo(self) -> None:
        if not self.can_undo():
            raise TuningError("Nothing to undo")
        self._move_to(self.cursor - 1, "undo")

    def redo(self) -> None:
        if not self.can_redo():
            raise TuningError("Nothing to redo")
        self._move_to(self.cursor + 1, "redo")

    def revert(self, cursor: int) -> None:
        """Go to the state after the first ``cursor`` events (0: before any tuning)."""
        if not isinstance(cursor, (int, np.integer)) or not 0 <= cursor <= len(self.events):
            raise TuningError(f"Can only revert to a point 0..{len(self.events)}; got {cursor!r}")
        self._move_to(int(cursor), "revert")

    def _log(self, action: str, **details) -> None:
        self.audit.append({"time": _now(), "user": self.user, "action": action, **details})
        self.autosave()

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        payload = {
            "format": FORMAT, "version": FORMAT_VERSION, "session_id": self.session_id, "created": self.created,
            "stamp": self.stamp, "classes": self.classes, "vocabulary_size": len(self.vocabulary),
            "students": self.bank.to_dict(),
            "base": {"coef": self.base_coef.tolist(), "intercept": self.base_intercept.tolist(),
                     "lower": bounds_to_json(self.base_lower), "upper": bounds_to_json(self.base_upper)},
            "events": [_event_to_json(e) for e in self.events], "cursor": self.cursor, "audit": self.audit,
        }
        payload["sha256"] = _digest(payload)
        return payload

    def export_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False, allow_nan=False)

    def autosave(self) -> None:
        """Write the session to ``autosave_path``; a failure (disk full, read-only) is kept, not raised."""
        if self.autosave_path is None:
            return
        try:
            atomic_write_text(self.autosave_path, self.export_json())
            self.autosave_error = None
        except OSError as exc:
            self.autosave_error = f"Could not autosave to {self.autosave_path}: {exc.strerror or exc}"

    @classmethod
    def from_json(cls, text: str | bytes, bank: StudentBank, X: np.ndarray, teacher_logits: np.ndarray,
                  labels: np.ndarray, classes: Sequence[str], vocabulary: Sequence[str], *,
                  stamp: Mapping[str, Any] | None = None, **kwargs) -> "TuningSession":
        """Rebuild a session exported with ``export_json`` over the same workspace; refuse anything else.

        ``bank`` supplies the statistics; its weights are replaced by the document's. Raises TuningError.
        """
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TuningError(f"Not a valid tuning file: the JSON is malformed or truncated ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise TuningError(f"Not a ConceptKD tuning file (expected format {FORMAT!r})")
        if doc.get("version") != FORMAT_VERSION:
            raise TuningError(f"Unsupported tuning file version {doc.get('version')!r}; this ConceptKD reads {FORMAT_VERSION}")
        claimed = doc.pop("sha256", None)
        if claimed != _digest(doc):
            raise TuningError("The tuning file's checksum does not match its content: it was edited or corrupted")
        if list(doc.get("classes", [])) != list(classes) or doc.get("vocabulary_size") != len(vocabulary):
            raise TuningError("This tuning file was made for different classes or vocabulary than this workspace")
        for key in ("vocabulary_sha256", "workspace_id"):
            if stamp and key in stamp and doc.get("stamp", {}).get(key) != stamp[key]:
                raise TuningError(f"This tuning file belongs to another workspace ({key} differs)")
        try:
            restored = StudentBank.from_dict(doc["base"] | {k: doc["students"][k] for k in ("alpha", "target", "tol", "max_iter")},
                                             bank.stats_)
            session = cls(restored, X, teacher_logits, labels, classes, vocabulary, stamp=stamp,
                          session_id=doc["session_id"], **kwargs)
            session.created = doc["created"]
            session.events = [_event_from_json(e, len(classes), len(vocabulary)) for e in doc["events"]]
            session.audit = list(doc["audit"])
            cursor = doc["cursor"]
            if not isinstance(cursor, int) or not 0 <= cursor <= len(session.events):
                raise TuningError(f"cursor {cursor!r} is outside the history 0..{len(session.events)}")
            coef, intercept, lower, upper = session.state_at(cursor)
            check_bounds(lower, upper)
            if (coef < lower - 1e-9).any() or (coef > upper + 1e-9).any():
                raise TuningError("the weights in the history violate their own bounds")
            saved = StudentBank.from_dict(doc["students"], bank.stats_)
            if not (np.array_equal(saved.coef_, coef) and np.array_equal(saved.intercept_, intercept)):
                raise TuningError("the saved students do not match the end of the history")
        except TuningError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise TuningError(f"The tuning file is malformed: {exc}") from None
        session.cursor = cursor
        session.bank.coef_, session.bank.intercept_, session.bank.lower_, session.bank.upper_ = coef, intercept, lower, upper
        for c in range(len(classes)):
            session._refresh_class(c)
        return session


def _nan_to_none(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)


def _sparse(row: np.ndarray) -> list:
    idx = np.flatnonzero(row)
    return [idx.tolist(), row[idx].tolist()]


def _digest(payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _event_to_json(event: TuningEvent) -> dict:
    data = asdict(event)
    for key in ("coef", "intercept", "metrics_before", "metrics_after", "flipped"):
        data[key] = {str(c): v for c, v in data[key].items()}
    return data


def _event_from_json(data: Mapping[str, Any], n_classes: int, n_concepts: int) -> TuningEvent:
    if data.get("op") not in OPERATIONS:
        raise TuningError(f"unknown operation {data.get('op')!r} in the history")
    classes = [int(c) for c in data["classes"]]
    if any(not 0 <= c < n_classes for c in classes):
        raise TuningError(f"class index out of range in the history: {classes}")
    coef = {}
    for c, (idx, vals) in data["coef"].items():
        idx = [int(j) for j in idx]
        vals = [_from_json_float(v) for v in vals]
        if len(idx) != len(vals) or any(not 0 <= j < n_concepts for j in idx) or not np.isfinite(vals).all():
            raise TuningError("weights in the history are malformed or out of range")
        coef[int(c)] = [idx, vals]
    for c, j, lo, hi in data["bounds"]:
        if not (0 <= int(c) < n_classes and 0 <= int(j) < n_concepts) or _from_json_float(lo) > _from_json_float(hi):
            raise TuningError(f"bounds in the history are malformed: {[c, j, lo, hi]}")
    return TuningEvent(
        op=data["op"], classes=classes, concept=data["concept"], args=dict(data["args"]),
        bounds=[list(b) for b in data["bounds"]], coef=coef,
        intercept={int(c): _from_json_float(b) for c, b in data["intercept"].items()},
        metrics_before={int(c): v for c, v in data["metrics_before"].items()},
        metrics_after={int(c): v for c, v in data["metrics_after"].items()},
        flipped={int(c): int(v) for c, v in data["flipped"].items()},
        time=str(data["time"]), user=str(data["user"]), id=str(data["id"]),
    )
