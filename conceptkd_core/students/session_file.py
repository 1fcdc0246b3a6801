"""The tuning session file: what an export and every autosave write, and what an import reads back.

One JSON document holds the students now, the base students, every event, the cursor and the
audit trail, with a SHA-256 of its canonical form. This module alone writes the format and reads
it, so what it writes is exactly what its reader accepts; the reader refuses a damaged or edited
file, another version, another workspace, and a history that does not lead to the saved students.
JSON has no infinity: unbounded limits (in bounds and in a ``bound`` edit's arguments) are
written as the strings ``"inf"`` and ``"-inf"``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..store.atomic_io import atomic_write_text
from .bank import StudentBank, bounds_to_json
from .events import OPERATIONS, BankState, TuningError, TuningEvent, replay
from .gram import GramStats
from .solver import check_bounds

if TYPE_CHECKING:
    from .session import TuningSession

FORMAT = "conceptkd.tuning"
FORMAT_VERSION = 1
# The solver settings a file's base students are rebuilt with (the weights come from "base").
_BANK_SETTINGS = ("alpha", "target", "tol", "max_iter")


@dataclass(frozen=True)
class SessionDocument:
    """A session file that passed every check, decoded: what a session is rebuilt from.

    base : the students before any event; state : the weights and bounds at ``cursor``
    """

    session_id: str
    created: str
    base: StudentBank
    events: list[TuningEvent]
    cursor: int
    audit: list[dict]
    state: BankState


# ----------------------------------------------------------------------------- write
def to_dict(session: TuningSession) -> dict:
    """The session as a JSON-ready document, its checksum included."""
    base = session.base
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "session_id": session.session_id,
        "created": session.created,
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
    payload["sha256"] = _digest(payload)
    return payload


def to_json(session: TuningSession) -> str:
    return json.dumps(to_dict(session), indent=1, ensure_ascii=False, allow_nan=False)


def write(session: TuningSession, path: str | os.PathLike) -> None:
    """Write the session to ``path`` atomically: a crash mid-write leaves the previous file whole."""
    atomic_write_text(path, to_json(session))


# ----------------------------------------------------------------------------- read
def parse(
    text: str | bytes,
    stats: GramStats,
    classes: Sequence[str],
    vocabulary: Sequence[str],
    stamp: Mapping[str, Any] | None = None,
) -> SessionDocument:
    """Read and check a session file written by ``to_json`` for the workspace of ``stats``,
    ``classes`` and ``vocabulary`` (and, where ``stamp`` names them, its workspace id and
    vocabulary hash). Raises TuningError, saying what is wrong, for anything else."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TuningError(f"Not a valid tuning file: the JSON is malformed or truncated ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TuningError(f"Not a ConceptKD tuning file (expected format {FORMAT!r})")
    if doc.get("version") != FORMAT_VERSION:
        raise TuningError(
            f"Unsupported tuning file version {doc.get('version')!r}; this ConceptKD reads {FORMAT_VERSION}"
        )
    claimed = doc.pop("sha256", None)
    if claimed != _digest(doc):
        raise TuningError("The tuning file's checksum does not match its content: it was edited or corrupted")
    if list(doc.get("classes", [])) != list(classes) or doc.get("vocabulary_size") != len(vocabulary):
        raise TuningError("This tuning file was made for different classes or vocabulary than this workspace")
    for key in ("vocabulary_sha256", "workspace_id"):
        if stamp and key in stamp and doc.get("stamp", {}).get(key) != stamp[key]:
            raise TuningError(f"This tuning file belongs to another workspace ({key} differs)")
    try:
        return _decode(doc, stats, len(classes), len(vocabulary))
    except TuningError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise TuningError(f"The tuning file is malformed: {exc}") from None


def _decode(doc: Mapping[str, Any], stats: GramStats, n_classes: int, n_concepts: int) -> SessionDocument:
    """The document's content, checked to be one consistent history over this workspace's students."""
    base = StudentBank.from_dict(doc["base"] | {k: doc["students"][k] for k in _BANK_SETTINGS}, stats)
    events = [_event_from_json(e, n_classes, n_concepts) for e in doc["events"]]
    cursor = doc["cursor"]
    if not isinstance(cursor, int) or not 0 <= cursor <= len(events):
        raise TuningError(f"cursor {cursor!r} is outside the history 0..{len(events)}")
    state = replay(BankState.of(base), events, cursor)
    check_bounds(state.lower, state.upper)
    if (state.coef < state.lower - 1e-9).any() or (state.coef > state.upper + 1e-9).any():
        raise TuningError("the weights in the history violate their own bounds")
    saved = StudentBank.from_dict(doc["students"], stats)
    if not (np.array_equal(saved.coef_, state.coef) and np.array_equal(saved.intercept_, state.intercept)):
        raise TuningError("the saved students do not match the end of the history")
    return SessionDocument(doc["session_id"], doc["created"], base, events, cursor, list(doc["audit"]), state)


# ----------------------------------------------------------------------------- encoding
def _digest(payload: Mapping[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _json_float(value: float) -> float | str:
    return value if np.isfinite(value) else ("inf" if value > 0 else "-inf")


def _from_json_float(value: Any) -> float:
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TuningError(f"expected a number; got {value!r}")
    return float(value)


def _event_to_json(event: TuningEvent) -> dict:
    data = asdict(event)
    data["args"] = {name: _json_float(v) if isinstance(v, float) else v for name, v in event.args.items()}
    data["bounds"] = [[c, j, _json_float(lo), _json_float(hi)] for c, j, lo, hi in event.bounds]
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
    bounds = []
    for c, j, lo, hi in data["bounds"]:
        bound = [int(c), int(j), _from_json_float(lo), _from_json_float(hi)]
        if not (0 <= bound[0] < n_classes and 0 <= bound[1] < n_concepts) or bound[2] > bound[3]:
            raise TuningError(f"bounds in the history are malformed: {[c, j, lo, hi]}")
        bounds.append(bound)
    return TuningEvent(
        op=data["op"],
        classes=classes,
        concept=data["concept"],
        bounds=bounds,
        coef=coef,
        args={name: float(v) if v in ("inf", "-inf") else v for name, v in data["args"].items()},
        intercept={int(c): _from_json_float(b) for c, b in data["intercept"].items()},
        metrics_before={int(c): v for c, v in data["metrics_before"].items()},
        metrics_after={int(c): v for c, v in data["metrics_after"].items()},
        flipped={int(c): int(v) for c, v in data["flipped"].items()},
        time=str(data["time"]),
        user=str(data["user"]),
        id=str(data["id"]),
    )
