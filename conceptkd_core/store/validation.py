"""Validation of a workspace's arrays and paths, shared by the writer and the reader of every file.

Raises ``WorkspaceError``, which names the offending file and the problem in one line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .rows import row_chunks

CONCEPT_DTYPES = ("float16", "float32")
SPLITS_ALLOWED_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")
MANIFEST_FILE = "manifest.parquet"
CONCEPTS_FILE = "concepts.npy"
TEACHER_LOGITS_FILE = "teacher_logits.npy"
META_FILE = "conceptkd.json"
# The compact segment data for overlays: one .npy per array, one row per image, in manifest order
# (made by extract.segments, read by store.side_files).
SEGMENTS_DIR = "segments"
SEGMENT_ARRAYS = ("segment_maps", "top_concepts", "top_scores", "best_segment")
SEGMENT_FILES = tuple(f"{SEGMENTS_DIR}/{name}.npy" for name in SEGMENT_ARRAYS)
# A manifest path is refused when it is empty, absolute (also Windows-style), holds a backslash,
# a ".." component or a control character: image paths stay under their image root.
_BAD_RELATIVE_PATH = r"^$|^/|^[A-Za-z]:|\\|(^|/)\.\.(/|$)|[\x00-\x1f\x7f]"
_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")


class WorkspaceError(ValueError):
    """A workspace file is missing, malformed or inconsistent with the rest of the workspace."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def safe_join(root: Path, relative: str) -> Path:
    """Resolve ``relative`` under ``root``; refuse paths that escape it (``..``, absolute, symlinks out)."""
    root = Path(root).resolve()
    if os.path.isabs(relative):
        raise WorkspaceError(root, f"image path {relative!r} is absolute; paths must be relative to the image root")
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise WorkspaceError(root, f"image path {relative!r} escapes the image root")
    return candidate


# Images added from the app live in the workspace's own folder (``uploads/``), never in the
# user's image folder; their manifest paths carry this prefix and resolve against the workspace.
IN_WORKSPACE = "@workspace/"
UPLOADS_DIR = "uploads"


def image_file(image_root: Path, workspace_root: Path | None, relative: str) -> Path:
    """Where a manifest path points: under ``workspace_root`` for ``IN_WORKSPACE`` paths, else under
    ``image_root``; never outside either (``safe_join``)."""
    if relative.startswith(IN_WORKSPACE) and workspace_root is not None:
        return safe_join(workspace_root, relative[len(IN_WORKSPACE) :])
    return safe_join(image_root, relative)


def is_absolute_path(text: str) -> bool:
    """Whether ``text`` reads as an absolute path on POSIX or Windows (what workspace data must not hold)."""
    return text.startswith(("/", "\\")) or bool(_WINDOWS_ABSOLUTE.match(text))


def check_relative_paths(paths: Sequence[str] | pa.Array, manifest: Path) -> None:
    """Refuse manifest image paths that are not plain paths below the image root (see ``_BAD_RELATIVE_PATH``)."""
    column = paths if isinstance(paths, (pa.Array, pa.ChunkedArray)) else pa.array(list(paths), type=pa.string())
    if pc.any(pc.is_null(column)).as_py():
        raise WorkspaceError(manifest, "an image path is missing (null)")
    bad = pc.match_substring_regex(column, _BAD_RELATIVE_PATH)
    if pc.any(bad).as_py():
        first = pc.index(bad, True).as_py()
        raise WorkspaceError(
            manifest,
            f"image path {str(column[first].as_py())[:200]!r} (row {first}) is not allowed; "
            "expected a path relative to the image root, without '..', backslashes or control characters",
        )


def check(condition: bool, path: Path, problem: str) -> None:
    if not condition:
        raise WorkspaceError(path, problem)


def validate_arrays(
    root: Path,
    image_ids: np.ndarray,
    splits: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    vocabulary: Sequence[str],
    concept_matrix: np.ndarray,
    teacher_logits: np.ndarray,
) -> None:
    manifest, concepts, logits = root / MANIFEST_FILE, root / CONCEPTS_FILE, root / TEACHER_LOGITS_FILE
    n, k, m = len(image_ids), len(classes), len(vocabulary)
    check(n > 0, manifest, "the manifest has no images")
    check(k > 0, root / META_FILE, "no classes are defined")
    check(len(set(classes)) == k, root / META_FILE, f"duplicate class names in {list(classes)}")
    ids, counts = np.unique(image_ids, return_counts=True)
    dupes = ids[counts > 1]
    check(dupes.size == 0, manifest, f"duplicate image ids, e.g. {[str(d) for d in dupes[:5]]}")
    check(bool((np.char.str_len(image_ids.astype(str)) > 0).all()), manifest, "empty image id")
    bad_splits = sorted({str(s) for s in np.unique(splits)} - {""})
    bad_splits = [s for s in bad_splits if not set(s) <= SPLITS_ALLOWED_CHARS]
    check(not bad_splits, manifest, f"split names must be lower-case words; got {bad_splits[:5]}")
    check(
        labels.shape == (n, k),
        manifest,
        f"labels have shape {labels.shape}; expected ({n}, {k}) for {n} images and {k} classes",
    )
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise WorkspaceError(
            manifest,
            f"labels must be 0 or 1; image {str(image_ids[r])!r} has {labels[r, c].item()!r} for class {classes[c]!r}",
        )
    check(concept_matrix.ndim == 2, concepts, f"concept matrix must be 2-D; got shape {concept_matrix.shape}")
    check(
        concept_matrix.shape == (n, m),
        concepts,
        f"concept matrix has shape {concept_matrix.shape}; expected ({n}, {m}) for {n} images and {m} vocabulary words",
    )
    check(
        str(concept_matrix.dtype) in CONCEPT_DTYPES,
        concepts,
        f"concept matrix dtype is {concept_matrix.dtype}; expected one of {', '.join(CONCEPT_DTYPES)}",
    )
    check(
        teacher_logits.shape == (n, k),
        logits,
        f"teacher logits have shape {teacher_logits.shape}; expected ({n}, {k}) for {n} images and {k} classes",
    )
    check(
        np.issubdtype(teacher_logits.dtype, np.floating),
        logits,
        f"teacher logits dtype is {teacher_logits.dtype}; expected float",
    )
    for path, array, what in ((concepts, concept_matrix, "concept scores"), (logits, teacher_logits, "teacher logits")):
        bad_rows = non_finite_rows(array)
        if bad_rows.size:
            raise WorkspaceError(
                path,
                f"{what} contain NaN or inf "
                f"(e.g. image {str(image_ids[bad_rows[0]])!r}, {bad_rows.size} images in all)",
            )


def non_finite_rows(array: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Rows with NaN/inf, scanned in chunks so a memory-mapped matrix is never copied whole."""
    bad = [start + np.flatnonzero(~np.isfinite(rows).all(axis=1)) for start, rows in row_chunks(array, chunk)]
    return np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)
