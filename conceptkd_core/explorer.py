"""What the app's views need from a workspace, computed without Streamlit (and unit-tested).

``open_explorer`` loads a workspace read-only, builds the Gram statistics once and fits (or
loads) the base students; every browser session then tunes its own copy through
``new_session``. Nothing here imports torch: browsing never loads CLIP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic_io import atomic_write_json
from .gram import GramStats
from .metrics import class_metrics, disagreements, summary
from .segments import load_segments
from .students import StudentBank
from .tuning import TuningSession
from .workspace import SESSIONS_DIR, STUDENTS_FILE, Workspace, WorkspaceError, check_stamp, load_workspace, read_json, stamp

DEFAULT_ALPHA = 1e-3
STUDENTS_KIND = "conceptkd.students"


@dataclass(frozen=True)
class Explorer:
    workspace: Workspace
    stats: GramStats
    base_bank: StudentBank
    segments: dict | None

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


def open_explorer(root: str | os.PathLike, alpha: float = DEFAULT_ALPHA) -> Explorer:
    """Load a workspace and its base students (fitted and saved beside it on first open)."""
    workspace = load_workspace(root)
    stats = GramStats.from_arrays(workspace.concept_matrix, workspace.teacher_logits)
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
    return Explorer(workspace, stats, bank, load_segments(workspace))


def new_session(explorer: Explorer, user: str | None = None, autosave: bool = True) -> TuningSession:
    """A private tuning session over a copy of the base students, autosaved under sessions/."""
    ws = explorer.workspace
    session = TuningSession(explorer.base_bank.copy(), ws.concept_matrix, ws.teacher_logits, ws.labels,
                            ws.classes, ws.vocabulary, user=user,
                            stamp={"workspace_id": ws.workspace_id, "vocabulary_sha256": ws.vocabulary_sha256})
    if autosave:
        session.autosave_path = ws.root / SESSIONS_DIR / f"{session.session_id}.json"
    return session


def metrics_table(session: TuningSession) -> pd.DataFrame:
    return class_metrics(session.labels, session.teacher_logits, session.student_scores, session.student_probs(),
                         session.classes)


def metrics_summary(session: TuningSession) -> dict:
    return summary(metrics_table(session))


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
    table = disagreements(session.teacher_logits, session.student_probs(), class_index, top)
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
                                      stamp={"workspace_id": ws.workspace_id, "vocabulary_sha256": ws.vocabulary_sha256})
    session.autosave_path = Path(path)
    return session
