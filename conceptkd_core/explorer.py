"""What the app's views need from a workspace, computed without Streamlit (and unit-tested).

``open_explorer`` loads a workspace read-only, builds the Gram statistics once and fits (or
loads) the base students; every browser session then tunes its own copy through
``new_session``. Nothing here imports torch: browsing never loads CLIP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .defaults import DEFAULT_ALPHA
from .store import side_files
from .store.workspace import Workspace, WorkspaceError, load_workspace
from .students.bank import StudentBank
from .students.gram import GramStats
from .students.metrics import average_precision, disagreements, summary
from .students.scores import SharedScores
from .students.session import TuningSession


@dataclass(frozen=True)
class Explorer:
    """One workspace opened for browsing: read-only, shared by every browser session."""

    workspace: Workspace
    stats: GramStats
    base_bank: StudentBank
    segments: dict | None
    shared: SharedScores  # base scores, teacher probabilities, metric cache
    teacher_ap: np.ndarray  # (n_classes,) AP of the teacher's logits against the labels

    @property
    def classes(self) -> tuple[str, ...]:
        return self.workspace.classes

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self.workspace.vocabulary


def workspace_stats(workspace: Workspace, rebuild: bool = False,
                    build: Callable[[], GramStats] | None = None) -> GramStats:
    """The workspace's Gram statistics: read from its cache when that was made for this very
    workspace, else built (``build``, default ``GramStats.from_arrays``) and cached. A read-only
    workspace still works: the statistics are then not cached."""
    cached = None if rebuild else side_files.read_gram(workspace)
    if cached is not None:
        return GramStats(**cached)
    stats = build() if build else GramStats.from_arrays(workspace.concept_matrix, workspace.teacher_logits)
    side_files.write_gram(workspace, {f.name: getattr(stats, f.name) for f in fields(GramStats)})
    return stats


def base_students(workspace: Workspace, stats: GramStats, alpha: float = DEFAULT_ALPHA) -> StudentBank:
    """The saved base students of the workspace, or (none saved, stale or damaged) a fresh fit,
    saved for the next open when the workspace is writable."""
    try:
        saved = side_files.read_students(workspace)
        if saved is not None:
            return StudentBank.from_dict(saved, stats)
    except (WorkspaceError, KeyError, TypeError, ValueError):
        pass  # stale or damaged: re-fit below and replace it
    bank = StudentBank(alpha=alpha).fit_stats(stats)
    try:
        side_files.write_students(workspace, bank.to_dict())
    except OSError:
        pass  # a read-only workspace still browses; students are re-fitted on each open
    return bank


def open_explorer(root: str | os.PathLike, alpha: float = DEFAULT_ALPHA) -> Explorer:
    """Load a workspace and its base students (fitted and saved beside it on first open)."""
    workspace = load_workspace(root)
    stats = workspace_stats(workspace)
    bank = base_students(workspace, stats, alpha)
    shared = SharedScores.build(bank, workspace.concept_matrix, workspace.teacher_logits)
    teacher_ap = np.atleast_1d(average_precision(workspace.labels, workspace.teacher_logits))
    teacher_ap.setflags(write=False)
    return Explorer(workspace, stats, bank, side_files.read_segments(workspace), shared, teacher_ap)


def _stamp(workspace: Workspace) -> dict:
    """What a tuning session records of its workspace, so that its file is refused by any other."""
    return {"workspace_id": workspace.workspace_id, "vocabulary_sha256": workspace.vocabulary_sha256}


def new_session(explorer: Explorer, user: str | None = None, autosave: bool = True) -> TuningSession:
    """A private tuning session over a copy of the base students, autosaved under sessions/."""
    ws = explorer.workspace
    session = TuningSession(explorer.base_bank.copy(), ws.concept_matrix, ws.teacher_logits, ws.labels,
                            ws.classes, ws.vocabulary, user=user, shared=explorer.shared, stamp=_stamp(ws))
    if autosave:
        session.autosave_path = side_files.session_file(ws, session.session_id)
    return session


def metrics_table(explorer: Explorer, session: TuningSession) -> pd.DataFrame:
    """One row per class, as ``metrics.class_metrics``: the teacher's AP from the explorer, the
    students' figures from the session's cache (only classes changed since are recomputed)."""
    rows = [session.class_metrics(c) for c in range(len(session.classes))]
    return pd.DataFrame({
        "class": session.classes, "positives": session.labels.sum(axis=0).astype(int),
        "teacher_ap": explorer.teacher_ap,
        **{name: np.array([np.nan if r[name] is None else r[name] for r in rows], dtype=np.float64)
           for name in ("student_ap", "agreement", "logit_corr", "fidelity_ap")},
    })


def metrics_summary(explorer: Explorer, session: TuningSession) -> dict:
    return summary(metrics_table(explorer, session))


def top_concepts(session: TuningSession, class_index: int, n: int = 15) -> pd.DataFrame:
    """The class's concepts with the largest |weight|: weight, mean contribution (weight × mean score)."""
    w = session.bank.coef_[class_index]
    mean_x = session.bank.stats_.x_mean
    order = [j for j in np.argsort(-np.abs(w)) if w[j] != 0][:n]
    return pd.DataFrame({
        "concept": [session.vocabulary[j] for j in order], "concept_index": order,
        "weight": w[order], "mean_contribution": w[order] * mean_x[order],
        "lower": session.bank.lower_[class_index, order], "upper": session.bank.upper_[class_index, order],
    })


def heatmap_table(session: TuningSession, per_class: int = 4) -> pd.DataFrame:
    """Long table (class, concept, weight) over the union of each class's top concepts."""
    W = session.bank.coef_
    chosen = sorted({int(j) for c in range(W.shape[0]) for j in np.argsort(-np.abs(W[c]))[:per_class] if W[c, j] != 0})
    rows = [(session.classes[c], session.vocabulary[j], float(W[c, j])) for c in range(W.shape[0]) for j in chosen]
    return pd.DataFrame(rows, columns=["class", "concept", "weight"])


def image_contributions(session: TuningSession, row: int, class_index: int, n: int = 10) -> pd.DataFrame:
    """Which concepts push one image's score for a class up or down (largest |contribution| first)."""
    x = np.asarray(session.X[row], dtype=np.float64)
    contrib = session.bank.coef_[class_index] * x
    order = [j for j in np.argsort(-np.abs(contrib)) if contrib[j] != 0][:n]
    return pd.DataFrame({"concept": [session.vocabulary[j] for j in order], "score": x[order],
                         "weight": session.bank.coef_[class_index, order], "contribution": contrib[order]})


def rows_where_concept_fires(X: np.ndarray, concept_index: int, top: int = 24) -> np.ndarray:
    column = np.asarray(X[:, concept_index], dtype=np.float32)
    top = min(top, column.size)
    rows = np.argpartition(-column, top - 1)[:top]
    return rows[np.argsort(-column[rows], kind="stable")]


def disagreement_table(session: TuningSession, class_index: int | None, top: int = 12) -> pd.DataFrame:
    if class_index is None:
        table = disagreements(session.teacher_probs, session.student_probs(), None, top, probabilities=True)
    else:
        c = int(class_index)
        table = disagreements(session.teacher_probs[:, [c]], session.class_probs(c)[:, None], 0, top, probabilities=True)
        table["class_index"] = c
    table.insert(1, "class", [session.classes[c] for c in table["class_index"]])
    return table


def saved_sessions(explorer: Explorer) -> pd.DataFrame:
    """Autosaved tuning sessions of this workspace, newest first: path, session_id, modified, edits."""
    rows = []
    for path in side_files.session_files(explorer.workspace):
        try:
            document = side_files.read_json(path)
            modified = pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")
            rows.append({"path": str(path), "session_id": document.get("session_id", path.stem), "modified": modified,
                         "edits": len(document.get("events", [])), "applied": document.get("cursor", 0)})
        except (WorkspaceError, OSError, AttributeError):
            continue  # unreadable or truncated autosave: not offered
    return pd.DataFrame(rows, columns=["path", "session_id", "modified", "edits", "applied"])


def import_session(explorer: Explorer, data: str | bytes,
                   autosave_path: str | os.PathLike | None = None) -> TuningSession:
    """A session rebuilt from an exported or autosaved file, refused (TuningError) unless it was
    made over this workspace. It shares the explorer's base scores and metric cache, as a new
    session does, and autosaves to ``autosave_path`` from its next change on."""
    ws = explorer.workspace
    session = TuningSession.from_json(data, explorer.base_bank.copy(), ws.concept_matrix, ws.teacher_logits,
                                      ws.labels, ws.classes, ws.vocabulary, stamp=_stamp(ws), shared=explorer.shared)
    session.autosave_path = Path(autosave_path) if autosave_path else None
    return session


def resume_session(explorer: Explorer, path: str | os.PathLike) -> TuningSession:
    """Reopen an autosaved session (validated like an import); it keeps autosaving to the same file."""
    return import_session(explorer, Path(path).read_text(encoding="utf-8"), path)
