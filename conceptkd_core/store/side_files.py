"""The workspace's side files: everything in a workspace folder besides its core data files.

==================  ==========================================================  ===============
file                what                                                        written by
==================  ==========================================================  ===============
``students.json``   the base students, stamped with the workspace they fit      ``write_students``
``gram.npz``        cached Gram statistics (a 1M-image build takes seconds)     ``write_gram``
``segments/*.npy``  compact segment maps for overlays, one row per image        ``segment_file``
``sessions/*.json`` autosaved tuning sessions (content: ``students.session_file``)  ``session_file``
==================  ==========================================================  ===============

This module is the only one that knows these names and layouts; each reader here validates
what it reads (kind, workspace, shapes, finite values) and refuses a file that does not belong.
The core files (metadata, manifest, vocabulary, concept matrix, teacher logits) are
``store.workspace``'s.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .atomic_io import atomic_write_bytes, atomic_write_json
from .validation import check
from .workspace import SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS, Workspace, WorkspaceError

STUDENTS_FILE = "students.json"
STUDENTS_KIND = "conceptkd.students"
GRAM_FILE = "gram.npz"
GRAM_FIELDS = ("n_samples", "x_mean", "y_mean", "gram", "xty", "yty", "lipschitz")
SEGMENTS_DIR = "segments"
# One .npy per array, one row per image, in manifest order (made by extract.segments).
SEGMENT_ARRAYS = ("segment_maps", "top_concepts", "top_scores", "best_segment")
SESSIONS_DIR = "sessions"


# ----------------------------------------------------------------------------- stamped JSON
def stamp(workspace: Workspace, kind: str, payload: Mapping[str, Any]) -> dict:
    """Wrap a JSON payload with what it belongs to, so a mismatched file is refused on load."""
    return {
        "kind": kind,
        "schema_version": SCHEMA_VERSION,
        "workspace_id": workspace.workspace_id,
        "vocabulary_sha256": workspace.vocabulary_sha256,
        "model": workspace.meta["model"],
        "classes": list(workspace.classes),
        **payload,
    }


def check_stamp(workspace: Workspace, document: Any, kind: str, path: str | os.PathLike) -> dict:
    """Validate a stamped JSON document against ``workspace``; raise ``WorkspaceError`` if it does not belong."""
    path = Path(path)
    check(isinstance(document, dict), path, "expected a JSON object")
    check(document.get("kind") == kind, path, f"expected a {kind!r} document; got kind {document.get('kind')!r}")
    version = document.get("schema_version")
    check(
        version in SUPPORTED_SCHEMA_VERSIONS,
        path,
        f"unknown schema version {version!r}; this ConceptKD reads {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}",
    )
    check(
        document.get("vocabulary_sha256") == workspace.vocabulary_sha256,
        path,
        "made with a different vocabulary than this workspace (vocabulary hash mismatch)",
    )
    check(
        document.get("classes") == list(workspace.classes),
        path,
        f"made for classes {document.get('classes')!r}, not this workspace's {list(workspace.classes)!r}",
    )
    return document


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkspaceError(path, "missing file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WorkspaceError(path, f"not valid JSON ({exc}); the file may be truncated") from None


# ----------------------------------------------------------------------------- students.json
def write_students(workspace: Workspace, students: Mapping[str, Any], split_digest: str) -> Path:
    """Save the base students (``StudentBank.to_dict()``) stamped with their workspace and the
    digest of the images they were fit on (``students.split.Split.digest``)."""
    path = workspace.root / STUDENTS_FILE
    payload = {"split_digest": split_digest, "students": dict(students)}
    return atomic_write_json(path, stamp(workspace, STUDENTS_KIND, payload))


def read_students(workspace: Workspace, split_digest: str) -> dict | None:
    """The saved students' parameters (for ``StudentBank.from_dict``), None if none were saved.

    Raises ``WorkspaceError`` for a damaged file, or one made for another workspace or fit on
    other images than ``split_digest`` names.
    """
    path = workspace.root / STUDENTS_FILE
    if not path.is_file():
        return None
    document = check_stamp(workspace, read_json(path), STUDENTS_KIND, path)
    check(document.get("split_digest") == split_digest, path, "fit on other images than this workspace's split")
    students = document.get("students")
    check(isinstance(students, dict), path, "no 'students' object")
    return students


# ----------------------------------------------------------------------------- gram.npz
def write_gram(workspace: Workspace, fields: Mapping[str, Any], split_digest: str) -> Path | None:
    """Cache Gram statistics (``GRAM_FIELDS``) of this very workspace's fit images (``split_digest``);
    None if the workspace is read-only."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        workspace_id=np.asarray(workspace.workspace_id),
        split_digest=np.asarray(split_digest),
        **{name: np.asarray(fields[name]) for name in GRAM_FIELDS},
    )
    try:
        return atomic_write_bytes(workspace.root / GRAM_FILE, buffer.getvalue())
    except OSError:
        return None


def read_gram(workspace: Workspace, split_digest: str, n_fit: int) -> dict | None:
    """The cached Gram statistics' fields when they were made for this very workspace and its
    ``n_fit`` fit images (same id, split, shapes, finite values); None when absent, foreign or
    damaged (rebuild them)."""
    path = workspace.root / GRAM_FILE
    if not path.is_file():
        return None
    m, k = workspace.n_concepts, workspace.n_classes
    shapes = {"x_mean": (m,), "y_mean": (k,), "gram": (m, m), "xty": (m, k), "yty": (k,)}
    try:
        with np.load(path, allow_pickle=False) as saved:
            if (
                str(saved["workspace_id"]) != workspace.workspace_id
                or int(saved["n_samples"]) != n_fit
                or str(saved["split_digest"]) != split_digest
            ):
                return None
            fields = {name: saved[name] for name in shapes}
            if any(
                fields[name].shape != shape or not np.isfinite(fields[name]).all() for name, shape in shapes.items()
            ):
                return None
            lipschitz = float(saved["lipschitz"])
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if not (np.isfinite(lipschitz) and lipschitz > 0):
        return None
    return fields | {"n_samples": n_fit, "lipschitz": lipschitz}


# ----------------------------------------------------------------------------- segments/
def segment_file(root: str | os.PathLike, name: str) -> Path:
    """Where the segment array ``name`` (one of ``SEGMENT_ARRAYS``) of the workspace in ``root`` lives."""
    if name not in SEGMENT_ARRAYS:
        raise ValueError(f"unknown segment array {name!r}; expected one of {', '.join(SEGMENT_ARRAYS)}")
    return Path(root) / SEGMENTS_DIR / f"{name}.npy"


def read_segments(workspace: Workspace) -> dict[str, np.ndarray] | None:
    """The compact segment data of a workspace (memory-mapped), or None if it has none or it does
    not fit the workspace (another row count)."""
    paths = {name: segment_file(workspace.root, name) for name in SEGMENT_ARRAYS}
    if not all(path.is_file() for path in paths.values()):
        return None
    try:
        data = {name: np.load(path, mmap_mode="r", allow_pickle=False) for name, path in paths.items()}
    except (OSError, ValueError):
        return None
    if any(len(v) != workspace.n_images for v in data.values()):
        return None
    return data


# ----------------------------------------------------------------------------- sessions/
def session_file(workspace: Workspace, session_id: str) -> Path:
    """Where the tuning session ``session_id`` of this workspace is autosaved."""
    if not session_id or not all(ch.isalnum() or ch in "-_" for ch in session_id):
        raise ValueError(f"session id {session_id!r} must be letters, digits, '-' or '_'")
    return workspace.root / SESSIONS_DIR / f"{session_id}.json"


def session_files(workspace: Workspace) -> list[Path]:
    """This workspace's autosaved tuning sessions, newest first."""
    folder = workspace.root / SESSIONS_DIR
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
