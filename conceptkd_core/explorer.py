"""What the app's views need from a workspace, computed without Streamlit (and unit-tested).

``open_explorer`` loads a workspace read-only, builds the Gram statistics once and fits (or
loads) the base students; every browser session then tunes its own copy through
``new_session``. Nothing here imports torch: browsing never loads CLIP.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .store.atomic_io import atomic_write_bytes, atomic_write_json
from .students.gram import GramStats
from .students.metrics import average_precision, disagreements, summary
from .students.scores import SharedScores
from .extract.segments import load_segments
from .students.bank import StudentBank
from .students.session import TuningSession
from .store.workspace import SESSIONS_DIR, STUDENTS_FILE, Workspace, WorkspaceError, check_stamp, load_workspace, read_json, stamp

DEFAULT_ALPHA = 1e-3
STUDENTS_KIND = "conceptkd.students"
GRAM_FILE = "gram.npz"  # cached GramStats of the workspace (a 1M-image build takes tens of seconds)


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


def save_students(workspace: Workspace, bank: StudentBank) -> Path:
    path = workspace.root / STUDENTS_FILE
    atomic_write_json(path, stamp(workspace, STUDENTS_KIND, {"students": bank.to_dict()}))
    return path


def load_students(workspace: Workspace, stats: GramStats) -> StudentBank:
    path = workspace.root / STUDENTS_FILE
    document = check_stamp(workspace, read_json(path), STUDENTS_KIND, path)
    try:
        return StudentBank.from_dict(document["students"], stats)
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkspaceError(path, f"students are malformed: {exc}") from None


def workspace_stats(workspace: Workspace, rebuild: bool = False,
                    build: Callable[[], GramStats] | None = None) -> GramStats:
    """The workspace's Gram statistics: read from ``gram.npz`` when it was made for this very
    workspace (same id, same shapes), else built (``build``, default ``GramStats.from_arrays``)
    and saved there. A read-only workspace still works: the statistics are then not cached."""
    path = workspace.root / GRAM_FILE
    m, k = workspace.n_concepts, workspace.n_classes
    if not rebuild and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as saved:
                if str(saved["workspace_id"]) == workspace.workspace_id and saved["gram"].shape == (m, m) \
                        and saved["xty"].shape == (m, k) and int(saved["n_samples"]) == workspace.n_images:
                    return GramStats(**{f.name: saved[f.name] for f in fields(GramStats)
                                        if f.name not in ("n_samples", "lipschitz")},
                                     n_samples=int(saved["n_samples"]), lipschitz=float(saved["lipschitz"]))
        except (OSError, ValueError, KeyError, EOFError):
            pass  # damaged or foreign cache: rebuilt below
    stats = build() if build else GramStats.from_arrays(workspace.concept_matrix, workspace.teacher_logits)
    buffer = io.BytesIO()
    np.savez(buffer, workspace_id=np.asarray(workspace.workspace_id),
             **{f.name: np.asarray(getattr(stats, f.name)) for f in fields(GramStats)})
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError:
        pass
    return stats


def open_explorer(root: str | os.PathLike, alpha: float = DEFAULT_ALPHA) -> Explorer:
    """Load a workspace and its base students (fitted and saved beside it on first open)."""
    workspace = load_workspace(root)
    stats = workspace_stats(workspace)
    bank = None
    if (workspace.root / STUDENTS_FILE).is_file():
        try:
            bank = load_students(workspace, stats)
        except WorkspaceError:
            bank = None  # stale or damaged: re-fit below and replace it
    if bank is None:
        bank = StudentBank(alpha=alpha).fit_stats(stats)
        try:
            save_students(workspace, bank)
        except OSError:
            pass  # a read-only workspace still browses; students are re-fitted on each open
    shared = SharedScores.build(bank, workspace.concept_matrix, workspace.teacher_logits)
    teacher_ap = np.atleast_1d(average_precision(workspace.labels, workspace.teacher_logits))
    teacher_ap.setflags(write=False)
    return Explorer(workspace, stats, bank, load_segments(workspace), shared, teacher_ap)


def new_session(explorer: Explorer, user: str | None = None, autosave: bool = True) -> TuningSession:
    """A private tuning session over a copy of the base students, autosaved under sessions/."""
    ws = explorer.workspace
    session = TuningSession(explorer.base_bank.copy(), ws.concept_matrix, ws.teacher_logits, ws.labels,
                            ws.classes, ws.vocabulary, user=user, shared=explorer.shared,
                            stamp={"workspace_id": ws.workspace_id, "vocabulary_sha256": ws.vocabulary_sha256})
    if autosave:
        session.autosave_path = ws.root / SESSIONS_DIR / f"{session.session_id}.json"
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
    folder = explorer.workspace.root / SESSIONS_DIR
    rows = []
    for path in sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []:
        try:
            document = read_json(path)
            rows.append({"path": str(path), "session_id": document.get("session_id", path.stem),
                         "modified": pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S"),
                         "edits": len(document.get("events", [])), "applied": document.get("cursor", 0)})
        except (WorkspaceError, OSError, AttributeError):
            continue  # unreadable or truncated autosave: not offered
    return pd.DataFrame(rows, columns=["path", "session_id", "modified", "edits", "applied"])


def resume_session(explorer: Explorer, path: str | os.PathLike) -> TuningSession:
    """Reopen an autosaved session (validated like an import); it keeps autosaving to the same file."""
    ws = explorer.workspace
    session = TuningSession.from_json(Path(path).read_text(encoding="utf-8"), explorer.base_bank.copy(),
                                      ws.concept_matrix, ws.teacher_logits, ws.labels, ws.classes, ws.vocabulary,
                                      stamp={"workspace_id": ws.workspace_id, "vocabulary_sha256": ws.vocabulary_sha256},
                                      shared=explorer.shared)
    session.autosave_path = Path(path)
    return session
