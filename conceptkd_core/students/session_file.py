"""The tuning session file: what an export and every autosave write, and what an import reads back.

One JSON document holds the students now, the base students, every event, the cursor and the
audit trail, the session's readable name and its owner (a digest of the key of the browser that
made it, so that the app lists a visitor's own sessions only), with a SHA-256 of its canonical
form. This module alone writes the format and reads it. JSON has no infinity: unbounded limits
(in bounds and in a ``bound`` edit's arguments) are written as the strings ``"inf"`` and ``"-inf"``.

A file that comes back is untrusted (an upload, or an autosave anyone with access to the folder
could have edited), so reading it takes three steps, each refusing with one line saying why:

1. ``parse``: strict JSON (no NaN, Infinity or out-of-range numbers), at most
   ``MAX_SESSION_BYTES`` and ``MAX_EVENTS`` edits, the checksum (which catches damage), this
   workspace's classes, vocabulary and stamp, and the type and range of every field.
2. ``replay_into``: the base students must be the optimum of the interactive objective on this
   workspace's statistics (checked by its optimality conditions, not by trust), and every edit
   is applied again, in order, through a real tuning session: the bounds it sets and the weights
   it gives must be the file's (to ``REPLAY_RTOL``). A crafted file with a recomputed checksum
   therefore passes only if it is the history of real edits; the weights and metrics the
   session keeps are the replayed ones, never the file's.
3. The end of the history must be the students the file saved.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..store.atomic_io import atomic_write_text
from ..store.strict_json import StrictJSONError, canonical_sha256, loads_strict
from .bank import StudentBank, bounds_to_json
from .events import OPERATIONS, TuningError, TuningEvent
from .gram import GramStats

if TYPE_CHECKING:
    from .session import TuningSession

FORMAT = "conceptkd.tuning"
FORMAT_VERSION = 1
MAX_SESSION_BYTES = 16 * 2**20
MAX_EVENTS = 2000
MAX_AUDIT_ENTRIES = 20000
MAX_TEXT = 200  # user names, times, ids
# A replayed weight may differ from the file's by this much (relative to the class's largest
# weight): floating-point noise between machines, never an edit anyone could see.
REPLAY_RTOL = 1e-5
# The base students must satisfy the optimality conditions to this (the solver stops at its ``tol``).
BASE_KKT_FACTOR = 100.0
# The solver settings a file's base students are rebuilt with (the weights come from "base").
_BANK_SETTINGS = ("alpha", "target", "tol", "max_iter")
# The arguments each operation takes (what ``TuningSession.apply`` / ``refine`` record).
_ARGUMENTS = {
    "upweight": ("factor",),
    "downweight": ("factor",),
    "lock": (),
    "remove": (),
    "set": ("value",),
    "bound": ("lower", "upper"),
    "release": (),
    "refine": ("alpha",),
}


@dataclass(frozen=True)
class SessionDocument:
    """A session file that passed ``parse``, decoded; ``replay_into`` still has to verify it.

    base : the students before any event, as the file states them
    events : the edits as the file states them (their weights are checked by the replay)
    students : the students at ``cursor`` as the file saved them
    """

    session_id: str
    created: str
    name: str
    owner: str
    base: StudentBank
    events: list[TuningEvent]
    cursor: int
    audit: list[dict]
    students: StudentBank


class SessionSummary(NamedTuple):
    session_id: str
    edits: int
    cursor: int
    name: str = ""
    owner: str = ""
    created: str = ""


# ----------------------------------------------------------------------------- write
def to_dict(session: TuningSession) -> dict:
    """The session as a JSON-ready document, its checksum included."""
    base = session.base
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "session_id": session.session_id,
        "created": session.created,
        "name": session.name,
        "owner": session.owner,
        "stamp": session.stamp,
        "classes": session.classes,
        "vocabulary_size": len(session.vocabulary),
        "students": session.bank.to_dict(),
        "base": {
            "coef": base.coef.tolist(),
            "intercept": base.intercept.tolist(),
            "lower": bounds_to_json(base.lower),
            "upper": bounds_to_json(base.upper),
        },
        "events": [_event_to_json(e) for e in session.events],
        "cursor": session.cursor,
        "audit": session.audit,
    }
    payload["sha256"] = canonical_sha256(payload)
    return payload


def to_json(session: TuningSession) -> str:
    return json.dumps(to_dict(session), indent=1, ensure_ascii=False, allow_nan=False)


def write(session: TuningSession, path: str | os.PathLike) -> None:
    """Write the session to ``path`` atomically: a crash mid-write leaves the previous file whole."""
    atomic_write_text(path, to_json(session))


# ----------------------------------------------------------------------------- read
def _checked_document(text: str | bytes) -> dict:
    """Steps shared by ``parse`` and ``session_summary``: strict JSON, size, format, version, checksum."""
    try:
        doc = loads_strict(text, MAX_SESSION_BYTES)
    except StrictJSONError as exc:
        raise TuningError(f"Not a valid tuning file: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TuningError(f"Not a ConceptKD tuning file (expected format {FORMAT!r})")
    if doc.get("version") != FORMAT_VERSION or isinstance(doc.get("version"), bool):
        raise TuningError(
            f"Unsupported tuning file version {str(doc.get('version'))[:40]}; this ConceptKD reads {FORMAT_VERSION}"
        )
    claimed = doc.pop("sha256", None)
    if claimed != canonical_sha256(doc):
        raise TuningError("The tuning file's checksum does not match its content: it was edited or corrupted")
    events = doc.get("events")
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise TuningError(f"The tuning file must hold a list of at most {MAX_EVENTS:,} edits")
    cursor = doc.get("cursor")
    if not _is_index(cursor, len(events) + 1):
        raise TuningError(f"cursor {str(cursor)[:40]} is outside the history 0..{len(events)}")
    return doc


def session_summary(text: str | bytes) -> SessionSummary:
    """Who a session file is and how long its history is, after the checks that need no workspace."""
    doc = _checked_document(text)
    return SessionSummary(
        _text(doc.get("session_id"), "session_id"),
        len(doc["events"]),
        doc["cursor"],
        _text(doc.get("name", ""), "name"),
        _text(doc.get("owner", ""), "owner"),
        _text(doc.get("created", ""), "created"),
    )


def parse(
    text: str | bytes,
    stats: GramStats,
    classes: Sequence[str],
    vocabulary: Sequence[str],
    stamp: Mapping[str, Any] | None = None,
) -> SessionDocument:
    """Read and check a session file written by ``to_json`` for the workspace of ``stats``,
    ``classes`` and ``vocabulary`` (and, where ``stamp`` names them, its workspace id and
    vocabulary hash). Raises TuningError, saying what is wrong, for anything else.
    The history itself is verified by ``replay_into``."""
    doc = _checked_document(text)
    if doc.get("classes") != list(classes) or doc.get("vocabulary_size") != len(vocabulary):
        raise TuningError("This tuning file was made for different classes or vocabulary than this workspace")
    file_stamp = doc.get("stamp")
    if not isinstance(file_stamp, dict):
        raise TuningError("The tuning file is malformed: 'stamp' must be an object")
    for key in ("vocabulary_sha256", "workspace_id"):
        if stamp and key in stamp and file_stamp.get(key) != stamp[key]:
            raise TuningError(f"This tuning file belongs to another workspace ({key} differs)")
    try:
        return _decode(doc, stats, len(classes), len(vocabulary))
    except TuningError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise TuningError(f"The tuning file is malformed: {str(exc).splitlines()[0][:300]}") from None


def _decode(doc: Mapping[str, Any], stats: GramStats, n_classes: int, n_concepts: int) -> SessionDocument:
    students = doc["students"]
    if not isinstance(students, dict) or not isinstance(doc["base"], dict):
        raise TuningError("The tuning file is malformed: 'students' and 'base' must be objects")
    settings = {k: students[k] for k in _BANK_SETTINGS}
    if not isinstance(settings["max_iter"], int) or not 1 <= settings["max_iter"] <= 10**6:
        raise TuningError(f"max_iter {str(settings['max_iter'])[:40]} must be a whole number from 1 to 1,000,000")
    base = StudentBank.from_dict(doc["base"] | settings, stats)
    events = [_event_from_json(e, n, n_classes, n_concepts) for n, e in enumerate(doc["events"], start=1)]
    audit = doc["audit"]
    if not isinstance(audit, list) or len(audit) > MAX_AUDIT_ENTRIES or not all(_is_audit_entry(a) for a in audit):
        raise TuningError(
            f"The audit must be a list of at most {MAX_AUDIT_ENTRIES:,} objects of short texts and numbers"
        )
    return SessionDocument(
        _text(doc["session_id"], "session_id"),
        _text(doc["created"], "created"),
        _text(doc.get("name", ""), "name"),  # name and owner came later: older files have neither
        _text(doc.get("owner", ""), "owner"),
        base,
        events,
        doc["cursor"],
        list(audit),
        StudentBank.from_dict(students, stats),
    )


# ----------------------------------------------------------------------------- verify by replaying
def replay_into(session: TuningSession, document: SessionDocument, reference: StudentBank) -> None:
    """Rebuild ``document``'s history in ``session`` (a fresh session over ``document.base``) by
    applying every edit again, and refuse the file unless each step gives the file's bounds and
    weights. ``reference`` is the workspace's own students: the file must use their solver settings.
    Leaves the session at the file's cursor, with the file's provenance (time, user, id of each
    edit, the audit trail) and the replayed weights and metrics."""
    base = document.base
    theirs = {name: getattr(base, name) for name in _BANK_SETTINGS}
    ours = {name: getattr(reference, name) for name in _BANK_SETTINGS}
    if theirs != ours:
        raise TuningError(f"the tuning file's solver settings {theirs} differ from this workspace's {ours}")
    if np.isfinite(base.lower_).any() or np.isfinite(base.upper_).any():
        raise TuningError("the base students in the tuning file carry bounds; base students are never constrained")
    violation = float(base.kkt_violation().max())
    intercept = base.stats_.y_mean - base.coef_ @ base.stats_.x_mean
    if violation > BASE_KKT_FACTOR * base.tol or not _close(base.intercept_, intercept):
        raise TuningError(
            "the base students in the tuning file are not the fit of this workspace's data "
            f"(optimality violated by {violation:.3g}); the file was made elsewhere or edited"
        )
    replayed = []
    for n, event in enumerate(document.events, start=1):
        try:
            if event.op == "refine":
                again = session.refine(event.classes, alpha=event.args["alpha"])
            elif "pairs" in event.args:
                arguments = {name: value for name, value in event.args.items() if name != "pairs"}
                again = session.apply_batch(event.op, [tuple(p) for p in event.args["pairs"]], **arguments)
            else:
                again = session.apply(event.op, event.classes[0], event.concept, **event.args)
        except (TuningError, ValueError) as exc:
            raise TuningError(f"edit {n} ({event.op}) cannot be applied on this workspace: {exc}") from None
        problem = _difference(event, again, len(session.vocabulary))
        if problem:
            raise TuningError(
                f"edit {n} ({event.op}) does not replay on this workspace: {problem}; the file was edited"
            )
        again.time, again.user, again.id = event.time, event.user, event.id
        replayed.append(again)
    session.events = replayed
    state = session.state_at(document.cursor)
    saved = document.students
    for name, mine, file_value in (
        ("weights", state.coef, saved.coef_),
        ("intercepts", state.intercept, saved.intercept_),
        ("bounds", state.lower, saved.lower_),
        ("bounds", state.upper, saved.upper_),
    ):
        if not _close(mine, file_value):
            raise TuningError(f"the saved students' {name} are not the end of the history in the tuning file")
    session._go_to(document.cursor, state)
    session.created, session.audit = document.created, document.audit
    session.name, session.owner = document.name, document.owner


def _close(mine: np.ndarray, theirs: np.ndarray) -> bool:
    """Equal up to floating-point noise: infinities must match exactly, finite values to ``REPLAY_RTOL``
    of the largest finite magnitude (at least 1)."""
    mine, theirs = np.asarray(mine, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if mine.shape != theirs.shape:
        return False
    finite = np.isfinite(mine)
    if not np.array_equal(finite, np.isfinite(theirs)) or not np.array_equal(mine[~finite], theirs[~finite]):
        return False
    scale = max(float(np.abs(mine[finite]).max(initial=0.0)), 1.0)
    return bool(np.all(np.abs(mine[finite] - theirs[finite]) <= REPLAY_RTOL * scale))


def _difference(recorded: TuningEvent, again: TuningEvent, n_concepts: int) -> str | None:
    """How edit ``recorded`` differs from the same edit applied again (None: it does not)."""
    if sorted(recorded.classes) != sorted(again.classes) or recorded.concept != again.concept:
        return "it names other classes or concepts than it changes"
    if not _close(_bound_rows(recorded.bounds), _bound_rows(again.bounds)):
        return "the bounds it records are not the ones it sets"
    if set(recorded.coef) != set(again.coef) or set(recorded.intercept) != set(again.intercept):
        return "it records weights of other classes than it changes"
    for c in again.coef:
        row_recorded, row_again = np.zeros(n_concepts), np.zeros(n_concepts)
        row_recorded[recorded.coef[c][0]] = recorded.coef[c][1]
        row_again[again.coef[c][0]] = again.coef[c][1]
        if not _close(row_again, row_recorded) or not _close(again.intercept[c], recorded.intercept[c]):
            return "the weights it records are not the ones it gives"
    return None


def _bound_rows(bounds: list) -> np.ndarray:
    return np.array(sorted((float(c), float(j), lo, hi) for c, j, lo, hi in bounds), dtype=np.float64).reshape(-1, 4)


# ----------------------------------------------------------------------------- encoding
def _is_index(value: Any, size: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < size


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise TuningError(f"{name} must be a text of at most {MAX_TEXT} characters; got {str(value)[:40]!r}")
    return value


def _is_audit_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and all(
        isinstance(key, str)
        and len(key) <= MAX_TEXT
        and (value is None or isinstance(value, (int, float)) or (isinstance(value, str) and len(value) <= MAX_TEXT))
        for key, value in entry.items()
    )


def _json_float(value: float) -> float | str:
    return value if np.isfinite(value) else ("inf" if value > 0 else "-inf")


def _from_json_float(value: Any) -> float:
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TuningError(f"expected a number; got {str(value)[:40]!r}")
    return float(value)


def _event_to_json(event: TuningEvent) -> dict:
    data = asdict(event)
    data["args"] = {name: _json_float(v) if isinstance(v, float) else v for name, v in event.args.items()}
    data["bounds"] = [[c, j, _json_float(lo), _json_float(hi)] for c, j, lo, hi in event.bounds]
    for key in ("coef", "intercept", "metrics_before", "metrics_after", "flipped"):
        data[key] = {str(c): v for c, v in data[key].items()}
    return data


def _class_key(key: Any, n_classes: int) -> int:
    if not isinstance(key, str) or not key.isdigit() or not _is_index(int(key), n_classes):
        raise TuningError(f"class {str(key)[:20]!r} in the history is not one of 0..{n_classes - 1}")
    return int(key)


def _batch_pairs(pairs: Any, n: int, op: str, n_classes: int, n_concepts: int) -> list[list[int]]:
    """The (class, concept) pairs of a batch edit (``TuningSession.apply_batch``), checked."""
    if (
        op == "refine"
        or not isinstance(pairs, list)
        or not 0 < len(pairs) <= n_classes * n_concepts
        or not all(
            isinstance(p, list) and len(p) == 2 and _is_index(p[0], n_classes) and _is_index(p[1], n_concepts)
            for p in pairs
        )
    ):
        raise TuningError(f"edit {n} ({op}): its pairs must be a list of [class, concept] indices")
    return [list(p) for p in pairs]


def _event_from_json(data: Any, n: int, n_classes: int, n_concepts: int) -> TuningEvent:
    """Edit ``n`` of the file, with every field's type and range checked (its weights are not
    trusted: ``replay_into`` compares them with the edit applied again)."""
    op = data.get("op") if isinstance(data, dict) else None
    if op not in OPERATIONS:
        raise TuningError(f"edit {n}: unknown operation {str(op)[:40]!r}; expected one of {', '.join(OPERATIONS)}")
    raw_args = data["args"]
    if not isinstance(raw_args, dict):
        raise TuningError(f"edit {n} ({op}): arguments must be an object")
    pairs = _batch_pairs(raw_args.get("pairs"), n, op, n_classes, n_concepts) if "pairs" in raw_args else None
    classes, concept = data["classes"], data["concept"]
    if (
        not isinstance(classes, list)
        or not classes
        or not all(_is_index(c, n_classes) for c in classes)
        or len(set(classes)) != len(classes)
        or (op != "refine" and pairs is None and len(classes) != 1)
        or (pairs is not None and classes != sorted({c for c, _ in pairs}))
    ):
        raise TuningError(f"edit {n} ({op}): classes {str(classes)[:80]} are not distinct indices 0..{n_classes - 1}")
    if pairs is not None:
        concepts = {j for _, j in pairs}
        concept_ok = concept == (next(iter(concepts)) if len(concepts) == 1 else None)
    else:
        concept_ok = concept is None if op == "refine" else _is_index(concept, n_concepts)
    if not concept_ok:
        raise TuningError(f"edit {n} ({op}): concept {str(concept)[:40]} is not an index 0..{n_concepts - 1}")
    named = {name: value for name, value in raw_args.items() if name != "pairs"}
    if sorted(named) != sorted(_ARGUMENTS[op]):
        raise TuningError(f"edit {n} ({op}): arguments must be {', '.join(_ARGUMENTS[op]) or 'none'}")
    args = {name: _from_json_float(value) for name, value in named.items()}
    if op != "bound" and not all(np.isfinite(v) for v in args.values()):
        raise TuningError(f"edit {n} ({op}): its arguments must be finite numbers")
    if op == "refine" and not args["alpha"] > 0:
        raise TuningError(f"edit {n} (refine): alpha must be > 0; got {args['alpha']!r}")
    if pairs is not None:
        args["pairs"] = pairs
    coef = {}
    for key, pair in data["coef"].items():
        idx, vals = pair
        if not all(_is_index(j, n_concepts) for j in idx) or len(idx) != len(vals):
            raise TuningError(f"edit {n} ({op}): its weights are malformed or out of range")
        coef[_class_key(key, n_classes)] = [list(idx), [_from_json_float(v) for v in vals]]
    bounds = []
    for c, j, lo, hi in data["bounds"]:
        if not (_is_index(c, n_classes) and _is_index(j, n_concepts)):
            raise TuningError(f"edit {n} ({op}): its bounds name a class or concept out of range")
        bounds.append([c, j, _from_json_float(lo), _from_json_float(hi)])
    return TuningEvent(
        op=op,
        classes=list(classes),
        concept=concept,
        bounds=bounds,
        coef=coef,
        args=args,
        intercept={_class_key(c, n_classes): _from_json_float(b) for c, b in data["intercept"].items()},
        metrics_before={},  # recomputed by the replay: the file's figures are not trusted
        metrics_after={},
        flipped={},
        time=_text(data["time"], "time"),
        user=_text(data["user"], "user"),
        id=_text(data["id"], "id"),
    )
