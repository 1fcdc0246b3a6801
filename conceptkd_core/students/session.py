"""Steering students by hand, with every step recorded (provenance), undoable and exportable.

Each operation on a (class, concept) pair becomes a box constraint on that weight, then the
class is re-fitted so the other weights compensate:

=============  ======================================================================
operation      bounds on the weight w (its current value)
=============  ======================================================================
upweight x     at least x·|w| in w's direction (x >= 1): [x·w, +inf) if w > 0; a concept
               the class does not use (w = 0) comes in with a positive floor
               [ZERO_UPTUNE_SHARE·x·max|w_class|, +inf)
downweight x   at most x·|w| in w's direction (0 < x <= 1): [0, x·w] if w > 0
lock           [w, w] at its current value
remove         [0, 0]
set v          [v, v] (the slider)
bound lo hi    [lo, hi]
release        (-inf, +inf)
refine         no bound changes; exact BCE fit of the selected classes (``StudentBank.refine``)
=============  ======================================================================

``apply_batch`` applies one operation to several (class, concept) pairs as one event (one undo).

The session keeps an ordered list of events (``students.events``) and a cursor: undo/redo move
the cursor, revert jumps it, and a new edit after an undo drops the undone tail (as editors do).
Any point in the history is rebuilt from the events without re-solving; an append-only ``audit``
list records undo/redo/revert too. The scores and metrics after a move are ``students.scores``';
the file a session exports, autosaves and imports is ``students.session_file``'s.
"""

from __future__ import annotations

import getpass
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import session_file
from .bank import StudentBank
from .events import OPERATIONS, BankState, TuningError, TuningEvent, replay, sparse_row
from .scores import SessionScores, SharedScores

# A concept the class does not use is up-tuned to this share of its largest weight, times the factor.
ZERO_UPTUNE_SHARE = 0.1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _default_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "analyst"


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

    def __init__(
        self,
        bank: StudentBank,
        X: np.ndarray,
        teacher_logits: np.ndarray,
        labels: np.ndarray,
        classes: Sequence[str],
        vocabulary: Sequence[str],
        *,
        user: str | None = None,
        autosave_path: str | os.PathLike | None = None,
        stamp: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        shared: SharedScores | None = None,
    ):
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
        self.name = ""  # a readable name the analyst may give (the app lists sessions by it)
        self.owner = ""  # who may list this session: a digest of a browser's key ("" for none)
        self.base = BankState.of(bank)  # the students before any event
        self.events: list[TuningEvent] = []
        self.cursor = 0
        self.audit: list[dict] = []
        self.autosave_error: str | None = None
        self.scores = SessionScores(bank, X, self.labels, self.teacher_logits, shared)

    # ------------------------------------------------------------------ lookup
    def class_index(self, name_or_index: str | int) -> int:
        return _lookup(name_or_index, self._class_index, "Class", f"classes are {', '.join(self.classes)}")

    def concept_index(self, name_or_index: str | int) -> int:
        return _lookup(name_or_index, self._concept_index, "Concept", "it is not in this workspace's vocabulary")

    # ------------------------------------------------------------------ scores (``SessionScores``)
    @property
    def student_scores(self) -> np.ndarray:
        """Current student scores, shape (n_images, n_classes); read-only view."""
        return self.scores.view

    def student_probs(self) -> np.ndarray:
        return self.scores.probs()

    def class_probs(self, c: int) -> np.ndarray:
        return self.scores.class_probs(c)

    def class_metrics(self, c: int, part: str = "held_out") -> dict:
        """The figures of class ``c`` now, on held-out images by default (``SessionScores.class_metrics``)."""
        return self.scores.class_metrics(c, part)

    # ------------------------------------------------------------------ operations
    def upweight(self, class_: str | int, concept: str | int, factor: float = 2.0) -> TuningEvent:
        return self.apply("upweight", class_, concept, factor=factor)

    def downweight(self, class_: str | int, concept: str | int, factor: float = 0.5) -> TuningEvent:
        return self.apply("downweight", class_, concept, factor=factor)

    def lock(self, class_: str | int, concept: str | int) -> TuningEvent:
        return self.apply("lock", class_, concept)

    def remove(self, class_: str | int, concept: str | int) -> TuningEvent:
        return self.apply("remove", class_, concept)

    def set_weight(self, class_: str | int, concept: str | int, value: float) -> TuningEvent:
        return self.apply("set", class_, concept, value=value)

    def set_bounds(self, class_: str | int, concept: str | int, lower: float, upper: float) -> TuningEvent:
        return self.apply("bound", class_, concept, lower=lower, upper=upper)

    def release(self, class_: str | int, concept: str | int) -> TuningEvent:
        return self.apply("release", class_, concept)

    def refine(self, classes: Sequence[str | int] | None = None, alpha: float = 1e-4) -> TuningEvent:
        """Exact BCE fit of ``classes`` (default: all) under their current bounds; slower than a move."""
        cols = list(range(len(self.classes))) if classes is None else [self.class_index(c) for c in classes]
        if not cols:
            raise TuningError("refine needs at least one class")
        fit = self.shared.fit_rows  # like the base fit: never the held-out images
        return self._commit(
            "refine",
            cols,
            None,
            {"alpha": float(alpha)},
            [],
            lambda: self.bank.refine(self.X[fit], self.teacher_logits[fit], alpha=alpha, classes=cols),
        )

    def bounds_for(self, op: str, c: int, j: int, args: dict) -> tuple[float, float]:
        """The (lower, upper) bounds ``op`` would set on weight (c, j) now; TuningError if it cannot."""
        w = float(self.bank.coef_[c, j])
        if op in ("upweight", "downweight"):
            x = args.get("factor")
            if not isinstance(x, (int, float)) or isinstance(x, bool) or not np.isfinite(x) or x <= 0:
                raise TuningError(f"factor must be a number > 0; got {x!r}")
            if op == "upweight" and x < 1:
                raise TuningError(f"up-tuning needs a factor >= 1; got {x!r} (use downweight to shrink a weight)")
            if op == "downweight" and x > 1:
                raise TuningError(f"down-tuning needs a factor in (0, 1]; got {x!r} (use upweight to grow a weight)")
            if w == 0:
                if op == "downweight":
                    raise TuningError(
                        f"{self.vocabulary[j]!r} has weight 0 for {self.classes[c]!r}: there is nothing to "
                        "down-tune (remove it to keep it at 0)"
                    )
                return self.zero_uptune_floor(c, x), np.inf
            target = x * w
            if op == "upweight":
                return (target, np.inf) if w > 0 else (-np.inf, target)
            return (0.0, target) if w > 0 else (target, 0.0)
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

    def zero_uptune_floor(self, c: int, factor: float) -> float:
        """Up-tuning a concept the class does not use brings it in with a positive floor:
        ``ZERO_UPTUNE_SHARE × factor`` of the class's largest |weight| (of 1 if it uses none)."""
        largest = float(np.abs(self.bank.coef_[c]).max())
        return ZERO_UPTUNE_SHARE * float(factor) * (largest if largest > 0 else 1.0)

    def apply(self, op: str, class_: str | int, concept: str | int, **args: Any) -> TuningEvent:
        """Apply one operation (see the module docstring) and re-fit the class. Raises TuningError."""
        if op not in OPERATIONS or op == "refine":
            edits = ", ".join(o for o in OPERATIONS if o != "refine")
            raise TuningError(f"Unknown operation {op!r}; expected one of {edits}")
        c, j = self.class_index(class_), self.concept_index(concept)
        lo, hi = self.bounds_for(op, c, j, args)
        args = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in args.items()}

        def refit():
            self.bank.lower_[c, j], self.bank.upper_[c, j] = lo, hi
            self.bank.refit([c])

        return self._commit(op, [c], j, args, [[c, j, lo, hi]], refit)

    def apply_batch(self, op: str, pairs: Sequence[tuple[str | int, str | int]], **args: Any) -> TuningEvent:
        """Apply ``op`` to every (class, concept) pair and re-fit the classes involved, as ONE event
        (one undo step): e.g. remove a concept from every class, or lock five concepts."""
        if op not in OPERATIONS or op == "refine":
            edits = ", ".join(o for o in OPERATIONS if o != "refine")
            raise TuningError(f"Unknown operation {op!r}; expected one of {edits}")
        resolved = list(dict.fromkeys((self.class_index(c), self.concept_index(j)) for c, j in pairs))
        if not resolved:
            raise TuningError("a batch edit needs at least one (class, concept) pair")
        bounds = [[c, j, *self.bounds_for(op, c, j, args)] for c, j in resolved]
        cols = sorted({c for c, _ in resolved})
        args = {k: (float(v) if isinstance(v, (int, float)) else v) for k, v in args.items()}
        args["pairs"] = [[c, j] for c, j in resolved]
        concepts = {j for _, j in resolved}

        def refit():
            for c, j, lo, hi in bounds:
                self.bank.lower_[c, j], self.bank.upper_[c, j] = lo, hi
            self.bank.refit(cols)

        return self._commit(op, cols, concepts.pop() if len(concepts) == 1 else None, args, bounds, refit)

    def _commit(
        self, op: str, cols: list[int], j: int | None, args: dict, bounds: list, change: Callable[[], Any]
    ) -> TuningEvent:
        """Run ``change`` (which re-fits the classes ``cols`` of the bank in place) and record it as an
        event; if it raises, the bank is put back as it was and nothing is recorded."""
        before = self.scores.figures(cols)
        saved = BankState.of(self.bank)
        try:
            change()
        except Exception:
            saved.load_into(self.bank)
            raise
        for c in cols:
            self.scores.refresh(c)
        after = self.scores.figures(cols)
        event = TuningEvent(
            op=op,
            classes=cols,
            concept=j,
            args=args,
            bounds=bounds,
            coef={c: sparse_row(self.bank.coef_[c]) for c in cols},
            intercept={c: float(self.bank.intercept_[c]) for c in cols},
            metrics_before=before.metrics,
            metrics_after=after.metrics,
            flipped=after.flipped_since(before),
            time=_now(),
            user=self.user,
        )
        del self.events[self.cursor :]
        self.events.append(event)
        self.cursor = len(self.events)
        self._log("edit", event=event.id, op=op)
        return event

    # ------------------------------------------------------------------ history
    def state_at(self, cursor: int) -> BankState:
        """(coef, intercept, lower, upper) after the first ``cursor`` events, rebuilt exactly."""
        return replay(self.base, self.events, cursor)

    @property
    def last_event(self) -> TuningEvent | None:
        """The edit the current state ends with (None before any edit or after undoing them all)."""
        return self.events[self.cursor - 1] if self.cursor else None

    def _go_to(self, cursor: int, state: BankState) -> None:
        """Put the bank in ``state`` (the state at ``cursor``); only the classes it changes are re-scored."""
        changed = (state.coef != self.bank.coef_).any(axis=1) | (state.intercept != self.bank.intercept_)
        state.load_into(self.bank)
        for c in np.flatnonzero(changed):
            self.scores.refresh(int(c))
        self.cursor = cursor

    def _move_to(self, cursor: int, action: str) -> None:
        self._go_to(cursor, self.state_at(cursor))
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

    # ------------------------------------------------------------------ the session file (``session_file``)
    def to_dict(self) -> dict:
        return session_file.to_dict(self)

    def export_json(self) -> str:
        return session_file.to_json(self)

    def autosave(self) -> None:
        """Write the session to ``autosave_path``; a failure (disk full, read-only) is kept, not raised,
        so the analyst keeps tuning in memory and the page can say that saving stopped."""
        if self.autosave_path is None:
            return
        try:
            session_file.write(self, self.autosave_path)
            self.autosave_error = None
        except OSError as exc:
            self.autosave_error = f"Could not autosave to {self.autosave_path}: {exc.strerror or exc}"

    @classmethod
    def from_json(
        cls,
        text: str | bytes,
        bank: StudentBank,
        X: np.ndarray,
        teacher_logits: np.ndarray,
        labels: np.ndarray,
        classes: Sequence[str],
        vocabulary: Sequence[str],
        *,
        stamp: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> TuningSession:
        """Rebuild a session exported with ``export_json`` over the same workspace; refuse anything else.
        The file is untrusted: its history is verified by applying every edit again
        (``session_file.parse`` and ``session_file.replay_into`` say what is checked). Raises TuningError.

        ``bank`` supplies the workspace's statistics and solver settings: the weights are the
        document's, once verified. ``kwargs`` go to the constructor (``shared`` spares recomputing
        the base scores).
        """
        document = session_file.parse(text, bank.stats_, classes, vocabulary, stamp)
        session = cls(
            document.base.copy(),
            X,
            teacher_logits,
            labels,
            classes,
            vocabulary,
            stamp=stamp,
            session_id=document.session_id,
            **kwargs,
        )
        session_file.replay_into(session, document, bank)
        return session


def _lookup(name_or_index: str | int, index: dict, kind: str, unknown_hint: str) -> int:
    """The position of a class or concept given by name or by index; TuningError names the bad value."""
    if isinstance(name_or_index, (int, np.integer)) and not isinstance(name_or_index, bool):
        if 0 <= int(name_or_index) < len(index):
            return int(name_or_index)
        raise TuningError(f"{kind} index {name_or_index} is out of range 0..{len(index) - 1}")
    try:
        return index[name_or_index]
    except (KeyError, TypeError):
        raise TuningError(f"Unknown {kind.lower()} {name_or_index!r}; {unknown_hint}") from None
