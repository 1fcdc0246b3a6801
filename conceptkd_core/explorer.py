"""What the app's views need from a workspace, computed without Streamlit (and unit-tested).

``open_explorer`` loads a workspace read-only, builds the Gram statistics once and fits (or
loads) the base students; every browser session then tunes its own copy through
``new_session``. Nothing here imports torch: browsing never loads CLIP.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from .defaults import DEFAULT_ALPHA
from .store import side_files
from .store.split import Split, workspace_split
from .store.workspace import Workspace, WorkspaceError, load_workspace
from .students import session_file
from .students.bank import StudentBank
from .students.budget import budget_bank
from .students.events import TuningError
from .students.gram import GramStats
from .students.metrics import DECISION_THRESHOLD, average_precision, disagreements, mean_ap, summary
from .students.scores import SharedScores
from .students.session import TuningSession
from .students.session_file import session_summary
from .waterfall import Waterfall, contribution_waterfall


@dataclass(frozen=True)
class Explorer:
    """One workspace opened for browsing: read-only, shared by every browser session."""

    workspace: Workspace
    stats: GramStats
    base_bank: StudentBank
    segments: dict | None
    shared: SharedScores  # base scores, teacher probabilities, metric cache, fit / held-out rows
    teacher_ap: np.ndarray  # (n_classes,) AP of the teacher's logits against the labels, held-out images
    held_out_positives: np.ndarray  # (n_classes,) labelled images per class among the held-out ones
    teacher_yes_share: np.ndarray  # (n_classes,) share of the held-out images the teacher says yes to
    split: Split  # which images the students are fit on and which measure them
    notices: tuple[str, ...] = ()  # damaged caches found on opening (and rebuilt), for the pages to show
    segments_problem: str | None = None  # why the segment data cannot be used (the Images page says it)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.workspace.classes

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self.workspace.vocabulary


def fit_split(workspace: Workspace) -> Split:
    """The workspace's fit / held-out split (``store.split``)."""
    return workspace_split(workspace.splits, workspace.labels)


def workspace_stats(
    workspace: Workspace,
    rebuild: bool = False,
    build: Callable[[], GramStats] | None = None,
    notices: list[str] | None = None,
) -> GramStats:
    """The Gram statistics of the workspace's fit images: read from its cache when that was made
    for this very workspace and split, else built (``build``, default ``GramStats.from_arrays`` over
    the fit rows) and cached. A read-only workspace still works: the statistics are then not cached.
    A damaged cache is rebuilt, and what was wrong with it appended to ``notices``."""
    split = fit_split(workspace)
    try:
        cached = None if rebuild else side_files.read_gram(workspace, split.digest, split.n_fit)
    except WorkspaceError as exc:
        cached = None
        if notices is not None:
            notices.append(f"{exc.path.name}: {exc.problem}; rebuilt from the concept matrix")
    if cached is not None:
        return GramStats(**cached)
    if build is None:
        stats = GramStats.from_arrays(workspace.concept_matrix, workspace.teacher_logits, rows=split.fit)
    else:
        stats = build()
    side_files.write_gram(workspace, {f.name: getattr(stats, f.name) for f in fields(GramStats)}, split.digest)
    return stats


def base_students(
    workspace: Workspace, stats: GramStats, alpha: float = DEFAULT_ALPHA, notices: list[str] | None = None
) -> StudentBank:
    """The saved base students of the workspace, or (none saved, stale or damaged) a fresh fit on
    the split's fit images, saved for the next open when the workspace is writable. What was wrong
    with a damaged file is appended to ``notices``."""
    digest = fit_split(workspace).digest
    try:
        saved = side_files.read_students(workspace, digest)
        if saved is not None:
            return StudentBank.from_dict(saved, stats)
    except (WorkspaceError, KeyError, TypeError, ValueError) as exc:
        problem = exc.problem if isinstance(exc, WorkspaceError) else f"unusable students ({exc})"
        if notices is not None:
            notices.append(f"{side_files.STUDENTS_FILE}: {problem}; the students were fitted again")
    bank = StudentBank(alpha=alpha).fit_stats(stats)
    try:
        side_files.write_students(workspace, bank.to_dict(), digest)
    except OSError:
        pass  # a read-only workspace still browses; students are re-fitted on each open
    return bank


def open_explorer(root: str | os.PathLike, alpha: float = DEFAULT_ALPHA) -> Explorer:
    """Load a workspace and its base students (fitted and saved beside it on first open)."""
    workspace = load_workspace(root)
    split = fit_split(workspace)
    notices: list[str] = []
    stats = workspace_stats(workspace, notices=notices)
    bank = base_students(workspace, stats, alpha, notices=notices)
    shared = SharedScores.build(bank, workspace.concept_matrix, workspace.teacher_logits, held_out=split.held_out)
    rows = shared.held_out_rows
    teacher_ap = np.atleast_1d(average_precision(workspace.labels[rows], workspace.teacher_logits[rows]))
    # Fixed for the workspace (labels and teacher do not tune): counted once, not after every move
    # (a gather of 400,000 rows costs ~45 ms at 1M images).
    positives = workspace.labels[rows].sum(axis=0).astype(int)
    yes_share = (
        (shared.teacher_probs[rows] > DECISION_THRESHOLD).mean(axis=0) if rows.size else np.zeros(len(positives))
    )
    for fixed in (teacher_ap, positives, yes_share):
        fixed.setflags(write=False)
    try:  # damaged segment data costs the overlays only: every other view still works
        segments, segments_problem = side_files.read_segments(workspace), None
    except WorkspaceError as exc:
        segments, segments_problem = None, f"{exc.path.parent.name}/{exc.path.name}: {exc.problem}"
    return Explorer(
        workspace,
        stats,
        bank,
        segments,
        shared,
        teacher_ap,
        held_out_positives=positives,
        teacher_yes_share=yes_share,
        split=split,
        notices=tuple(notices),
        segments_problem=segments_problem,
    )


def _stamp(workspace: Workspace) -> dict:
    """What a tuning session records of its workspace, so that its file is refused by any other."""
    return {"workspace_id": workspace.workspace_id, "vocabulary_sha256": workspace.vocabulary_sha256}


def _session_data(explorer: Explorer) -> tuple:
    """What every session of the workspace tunes: a private copy of the base students, and the
    shared, read-only concept matrix, teacher logits, labels, classes and vocabulary."""
    ws = explorer.workspace
    return explorer.base_bank.copy(), ws.concept_matrix, ws.teacher_logits, ws.labels, ws.classes, ws.vocabulary


def new_session(explorer: Explorer, user: str | None = None, autosave: bool = True) -> TuningSession:
    """A private tuning session over a copy of the base students, autosaved under sessions/."""
    ws = explorer.workspace
    session = TuningSession(
        *_session_data(explorer),
        user=user,
        shared=explorer.shared,
        stamp=_stamp(ws),
    )
    if autosave:
        session.autosave_path = side_files.session_file(ws, session.session_id)
    return session


STUDENT_COLUMNS = ("student_ap", "fidelity_ap", "balanced_agreement", "decision_f1", "agreement", "logit_corr")


def metrics_table(explorer: Explorer, session: TuningSession) -> pd.DataFrame:
    """One row per class, measured on the held-out images (the students never saw them).

    Columns: class; positives and chance_ap (the AP of a random ranking: the share of positives)
    among the held-out images; teacher_yes_share (the same chance for fidelity_ap); teacher_ap; the
    students' figures (``STUDENT_COLUMNS``, see ``students.metrics``), from the session's cache so
    only classes changed since are recomputed;
    student_ap_in_sample (on the images the students were fit on, for comparison only) and
    concepts_used (non-zero weights).
    """
    rows = explorer.shared.held_out_rows
    positives = explorer.held_out_positives
    held_out = [session.class_metrics(c) for c in range(len(session.classes))]
    in_sample = [session.class_metrics(c, "in_sample")["student_ap"] for c in range(len(session.classes))]
    return pd.DataFrame(
        {
            "class": session.classes,
            "positives": positives,
            "chance_ap": positives / max(rows.size, 1),
            # the chance of "Student AP vs teacher": the share of held-out images the teacher says yes to
            "teacher_yes_share": explorer.teacher_yes_share,
            "teacher_ap": explorer.teacher_ap,
            **{
                name: np.array([np.nan if r[name] is None else r[name] for r in held_out], dtype=np.float64)
                for name in STUDENT_COLUMNS
            },
            "student_ap_in_sample": np.array([np.nan if v is None else v for v in in_sample], dtype=np.float64),
            "concepts_used": (session.bank.coef_ != 0).sum(axis=1),
        }
    )


def metrics_summary(explorer: Explorer, session: TuningSession) -> dict:
    """Bank-level held-out figures (``students.metrics.summary``) plus the split sizes and chance mAP."""
    table = metrics_table(explorer, session)
    return summary(table) | {
        # no held-out image labelled (a workspace made from class names only): AP against labels is
        # undefined, and the page measures the students against the teacher instead
        "labelled": bool(table["positives"].sum() > 0),
        "chance_map": float(np.nanmean(table["chance_ap"].where(table["positives"] > 0)))
        if (table["positives"] > 0).any()
        else float("nan"),
        "fidelity_chance": float(table["teacher_yes_share"].where(table["teacher_yes_share"] > 0).mean()),
        "student_map_in_sample": mean_ap(table["student_ap_in_sample"]),
        "concepts_per_class_median": float(np.median(table["concepts_used"])),
        "n_fit": explorer.split.n_fit,
        "n_held_out": explorer.split.n_held_out,
        "split_rule": explorer.split.rule,
    }


BUDGETS = (5, 20)


def budget_table(explorer: Explorer, session: TuningSession, budgets: tuple[int, ...] = BUDGETS) -> pd.DataFrame:
    """Held-out student AP per class when each class may use only ``budgets`` concepts
    (``students.budget``), beside the AP with every concept the session's students use."""
    rows = explorer.shared.held_out_rows
    X, labels = np.asarray(session.X[rows], dtype=np.float32), session.labels[rows]
    table = pd.DataFrame({"class": session.classes, "concepts_used": (session.bank.coef_ != 0).sum(axis=1)})
    for budget in budgets:
        table[f"ap_at_{budget}"] = np.atleast_1d(
            average_precision(labels, budget_bank(session.bank, budget).decision_function(X))
        )
    table["ap_all"] = np.atleast_1d(average_precision(labels, session.student_scores[rows]))
    return table


def top_concepts(session: TuningSession, class_index: int, n: int = 15) -> pd.DataFrame:
    """The class's concepts with the largest |weight|: weight, mean contribution (weight × mean score)."""
    w = session.bank.coef_[class_index]
    mean_x = session.bank.stats_.x_mean
    order = [j for j in np.argsort(-np.abs(w)) if w[j] != 0][:n]
    return pd.DataFrame(
        {
            "concept": [session.vocabulary[j] for j in order],
            "concept_index": order,
            "weight": w[order],
            "mean_contribution": w[order] * mean_x[order],
            "lower": session.bank.lower_[class_index, order],
            "upper": session.bank.upper_[class_index, order],
        }
    )


def heatmap_table(session: TuningSession, per_class: int = 4) -> pd.DataFrame:
    """Long table (class, concept, weight) over the union of each class's top concepts."""
    W = session.bank.coef_
    chosen = sorted({int(j) for c in range(W.shape[0]) for j in np.argsort(-np.abs(W[c]))[:per_class] if W[c, j] != 0})
    rows = [(session.classes[c], session.vocabulary[j], float(W[c, j])) for c in range(W.shape[0]) for j in chosen]
    return pd.DataFrame(rows, columns=["class", "concept", "weight"])


def image_waterfall(session: TuningSession, row: int, class_index: int, top: int = 8) -> Waterfall:
    """Why the student says yes or no for one image: its score for the class as bias + each
    concept's weight × score (``waterfall.contribution_waterfall``), against the score at which the
    student's probability crosses ``DECISION_THRESHOLD``."""
    bank, c = session.bank, int(class_index)
    p = DECISION_THRESHOLD
    threshold = float(np.log(p / (1 - p))) if bank.target == "logits" else p
    contributions = concept_contributions(session, row, c)
    return contribution_waterfall(float(bank.intercept_[c]), contributions, session.vocabulary, threshold, top)


def concept_contributions(session: TuningSession, row: int, class_index: int) -> np.ndarray:
    """Weight × concept score of every concept for one image and class, shape (n_concepts,)."""
    return session.bank.coef_[int(class_index)] * np.asarray(session.X[row], dtype=np.float64)


def rows_where_concept_fires(X: np.ndarray, concept_index: int, top: int = 24) -> np.ndarray:
    column = np.asarray(X[:, concept_index], dtype=np.float32)
    top = min(top, column.size)
    rows = np.argpartition(-column, top - 1)[:top]
    return rows[np.argsort(-column[rows], kind="stable")]


def disagreement_table(session: TuningSession, class_index: int | None, top: int = 12) -> pd.DataFrame:
    """The held-out images where teacher and student differ most (``students.metrics.disagreements``);
    ``row`` is the workspace row."""
    rows = session.shared.held_out_rows
    if class_index is None:
        teacher = session.teacher_probs[rows]
        table = disagreements(teacher, session.student_probs()[rows], None, top, probabilities=True)
    else:
        c = int(class_index)  # one class: take its column before the rows, not every class's
        teacher = session.teacher_probs[rows, c][:, None]
        table = disagreements(teacher, session.class_probs(c)[rows, None], 0, top, probabilities=True)
        table["class_index"] = c
    table["row"] = rows[table["row"].to_numpy()]
    table.insert(1, "class", [session.classes[c] for c in table["class_index"]])
    return table


def owner_of(browser_key: str) -> str:
    """The owner a session file records for a browser: a digest of the browser's random key, so
    that a file read by someone else does not give away the key that lists its sessions."""
    return hashlib.sha256(f"conceptkd-browser:{browser_key}".encode()).hexdigest()[:32]


def readable_time(iso: str) -> str:
    """An ISO time as a reader takes it in: "4 Dec 2026, 17:25 UTC" ('' if it is not a time)."""
    try:
        return pd.Timestamp(iso).tz_convert("UTC").strftime("%-d %b %Y, %H:%M UTC")
    except (ValueError, TypeError):
        return ""


def saved_sessions(explorer: Explorer, owner: str | None = None) -> pd.DataFrame:
    """Autosaved tuning sessions of this workspace, newest first: path, session_id, name (the one
    given, else when it started), modified, edits, applied, and problem: why a damaged one cannot be
    resumed ('' for the others; a damaged file is listed, not hidden, so the analyst learns that it
    exists). With ``owner`` (``owner_of``), only that browser's sessions (damaged ones are nobody's,
    and listed to everyone)."""
    rows = []
    for path in side_files.session_files(explorer.workspace):
        try:
            modified = pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")
        except OSError:
            continue  # removed since it was listed
        row = {"path": str(path), "session_id": path.stem, "name": path.stem, "modified": modified}
        row |= {"edits": 0, "applied": 0}
        try:
            summary = session_summary(path.read_bytes())
        except (TuningError, OSError) as exc:
            rows.append(row | {"problem": str(exc)})
            continue
        if owner is not None and summary.owner != owner:
            continue
        started = readable_time(summary.created)
        name = summary.name or (f"Started {started}" if started else summary.session_id)
        rows.append(row | {"name": name, "edits": summary.edits, "applied": summary.cursor, "problem": ""})
    return pd.DataFrame(rows, columns=["path", "session_id", "name", "modified", "edits", "applied", "problem"])


def own_session_id(owner: str, nonce: str | None = None) -> str:
    """A new session id for the browser of ``owner`` (``owner_of``): 10 random hex digits, then 6 of
    a digest of them with the owner. A session is saved from its first edit on, so before it the id
    in the address names no file: the digest tells a reload of this browser's own unsaved session
    (nothing to restore, nothing to say) from an id this workspace never saved (said so)."""
    nonce = nonce or uuid.uuid4().hex[:10]
    return nonce + hashlib.sha256(f"conceptkd-session:{owner}:{nonce}".encode()).hexdigest()[:6]


def is_own_session_id(session_id: str, owner: str) -> bool:
    """Whether ``own_session_id`` made ``session_id`` for the browser of ``owner``."""
    return len(session_id) == 16 and own_session_id(owner, session_id[:10]) == session_id


def session_for_link(explorer: Explorer, session_id: str | None, owner: str) -> tuple[TuningSession, str | None]:
    """The session a page address names (``?session=<id>``), for the browser of ``owner``, and what
    went wrong if it could not be opened, in one line (None if nothing did).

    An autosaved session of this browser is resumed (its next edits are saved to the same file);
    another browser's (a shared link) is copied into a new session of this browser, so that two
    visitors never write one file; this browser's own session not saved yet (a reload before the
    first edit) starts again under its id; an unknown or damaged one gives a new session and says
    why."""

    def fresh(session_id: str | None = None) -> TuningSession:
        return _owned_by(explorer, new_session(explorer), owner, session_id)

    if not session_id:
        return fresh(), None
    try:
        path = side_files.session_file(explorer.workspace, session_id)
    except ValueError as exc:
        return fresh(), f"The address names no session ({exc}); a new one was started"
    if not path.is_file():
        if is_own_session_id(session_id, owner):
            return fresh(session_id), None
        return fresh(), f"No saved session {session_id!r} in this workspace; a new one was started"
    try:
        session = resume_session(explorer, path)
    except (TuningError, ValueError, OSError) as exc:
        return fresh(), f"Session {session_id} could not be restored ({exc}); a new one was started"
    if session.owner != owner:
        session.name = f"Copy of {session.name or session_id}"[: session_file.MAX_TEXT]
        _owned_by(explorer, session, owner)
        session.autosave()  # the copy exists from now on: a reload of its address restores it
    return session, None


def _owned_by(explorer: Explorer, session: TuningSession, owner: str, session_id: str | None = None) -> TuningSession:
    """``session`` made the browser of ``owner``'s, under ``session_id`` or a new id of its own."""
    session.owner, session.session_id = owner, session_id or own_session_id(owner)
    session.autosave_path = side_files.session_file(explorer.workspace, session.session_id)
    return session


def import_session(
    explorer: Explorer, data: str | bytes, autosave_path: str | os.PathLike | None = None
) -> TuningSession:
    """A session rebuilt from an exported or autosaved file, refused (TuningError) unless it was
    made over this workspace. It shares the explorer's base scores and metric cache, as a new
    session does, and autosaves to ``autosave_path`` from its next change on."""
    ws = explorer.workspace
    session = TuningSession.from_json(
        data,
        *_session_data(explorer),
        stamp=_stamp(ws),
        shared=explorer.shared,
    )
    session.autosave_path = Path(autosave_path) if autosave_path else None
    return session


def import_log(explorer: Explorer, data: str | bytes, into: TuningSession) -> TuningSession:
    """An exported log imported in place of this browser's session ``into``: it takes that session's
    id, owner and autosave file and is saved at once. The page address names ``into``'s id, so a
    reload finds the imported edits; saved only from the next edit on, a reload reopened the session
    as it was before the import (and a log from another session put that session's id in the address)."""
    session = import_session(explorer, data)
    session.session_id, session.owner, session.autosave_path = into.session_id, into.owner, into.autosave_path
    session.autosave()
    return session


def resume_session(explorer: Explorer, path: str | os.PathLike) -> TuningSession:
    """Reopen an autosaved session (validated like an import); it keeps autosaving to the same file."""
    return import_session(explorer, Path(path).read_bytes(), path)
