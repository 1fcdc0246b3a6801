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
what it reads (kind, workspace, checksum, types, shapes, ranges, finite values) and refuses a
file that does not belong. How each is covered against damage:

* ``segments/*.npy`` are written with the data files, so the metadata records their size and
  SHA-256 (``store.workspace``); their headers are checked on read, and every row drawn is
  range-checked (``segment_row``).
* ``students.json`` and ``gram.npz`` are caches written later, when the workspace is first
  opened; each carries the SHA-256 of its own content. A cache made for another workspace or
  split is stale (``None``: rebuild it); a damaged one raises ``WorkspaceError`` so the caller
  can say so, then rebuild it.
* ``sessions/*.json`` are the tuning session format's, which checks them when they are read.

The core files (metadata, manifest, vocabulary, concept matrix, teacher logits) are
``store.workspace``'s.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..defaults import MAX_SEGMENTS, SEGMENT_MAP_SIZE, TOP_CONCEPTS_PER_SEGMENT
from .atomic_io import atomic_write_bytes, atomic_write_json
from .metadata import DATA_FILES, SCHEMA_VERSION, SUPPORTED_SCHEMA_VERSIONS
from .strict_json import StrictJSONError, canonical_sha256, loads_strict
from .validation import META_FILE, SEGMENT_ARRAYS, SEGMENT_FILES, SEGMENTS_DIR, UPLOADS_DIR, check
from .workspace import Workspace, WorkspaceError, verify_recorded_file

STUDENTS_FILE = "students.json"
STUDENTS_KIND = "conceptkd.students"
GRAM_FILE = "gram.npz"
GRAM_FIELDS = ("n_samples", "x_mean", "y_mean", "gram", "xty", "yty", "lipschitz")
SESSIONS_DIR = "sessions"
REPORT_FILE = "extraction_report.json"
MAX_SIDE_JSON_BYTES = 64 * 2**20
SEGMENT_DTYPES = {"segment_maps": "uint8", "top_concepts": "int16", "top_scores": "float16", "best_segment": "uint8"}


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
        f"made for classes {str(document.get('classes'))[:200]}, not this workspace's {list(workspace.classes)!r}",
    )
    return document


def read_json(path: str | os.PathLike, max_bytes: int = MAX_SIDE_JSON_BYTES) -> Any:
    """A side file's JSON, strictly parsed (no NaN or Infinity, at most ``max_bytes``)."""
    path = Path(path)
    try:
        return loads_strict(path.read_bytes(), max_bytes)
    except FileNotFoundError:
        raise WorkspaceError(path, "missing file") from None
    except StrictJSONError as exc:
        raise WorkspaceError(path, f"not valid: {exc}") from None
    except OSError as exc:
        raise WorkspaceError(path, f"cannot read ({exc.strerror or exc})") from None


# ----------------------------------------------------------------------------- students.json
def write_students(workspace: Workspace, students: Mapping[str, Any], split_digest: str) -> Path:
    """Save the base students (``StudentBank.to_dict()``) stamped with their workspace, the digest
    of the images they were fit on (``students.split.Split.digest``) and their own checksum."""
    document = stamp(workspace, STUDENTS_KIND, {"split_digest": split_digest, "students": dict(students)})
    return atomic_write_json(workspace.root / STUDENTS_FILE, document | {"sha256": canonical_sha256(document)})


def read_students(workspace: Workspace, split_digest: str) -> dict | None:
    """The saved students' parameters (for ``StudentBank.from_dict``), None if none were saved or
    they are stale (made for another workspace in this folder, or fit on other images than
    ``split_digest`` names).

    Raises ``WorkspaceError`` for a damaged file: not strict JSON, checksum mismatch, another
    vocabulary or classes, or no students object.
    """
    path = workspace.root / STUDENTS_FILE
    if not path.is_file():
        return None
    document = read_json(path)
    check(isinstance(document, dict), path, "expected a JSON object")
    claimed = document.pop("sha256", None)
    check(
        claimed == canonical_sha256(document),
        path,
        "content does not match its checksum: it was changed or damaged",
    )
    document = check_stamp(workspace, document, STUDENTS_KIND, path)
    if document.get("workspace_id") != workspace.workspace_id or document.get("split_digest") != split_digest:
        return None
    students = document.get("students")
    check(isinstance(students, dict), path, "no 'students' object")
    return students


# ----------------------------------------------------------------------------- gram.npz
def _gram_checksum(workspace_id: str, split_digest: str, fields: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the owner, the split and every field's dtype, shape and bytes, in order."""
    digest = hashlib.sha256(f"{workspace_id}\n{split_digest}\n".encode())
    for name in GRAM_FIELDS:
        value = np.ascontiguousarray(fields[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape}\n".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def write_gram(workspace: Workspace, fields: Mapping[str, Any], split_digest: str) -> Path | None:
    """Cache Gram statistics (``GRAM_FIELDS``) of this very workspace's fit images (``split_digest``)
    with their checksum; None if the workspace is read-only."""
    arrays = {name: np.asarray(fields[name]) for name in GRAM_FIELDS}
    buffer = io.BytesIO()
    np.savez(
        buffer,
        workspace_id=np.asarray(workspace.workspace_id),
        split_digest=np.asarray(split_digest),
        sha256=np.asarray(_gram_checksum(workspace.workspace_id, split_digest, arrays)),
        **arrays,
    )
    try:
        return atomic_write_bytes(workspace.root / GRAM_FILE, buffer.getvalue())
    except OSError:
        return None


def read_gram(workspace: Workspace, split_digest: str, n_fit: int) -> dict | None:
    """The cached Gram statistics' fields; None when absent or stale (made for another workspace,
    split or number of fit images: rebuild them).

    Raises ``WorkspaceError`` when the file is damaged: unreadable, checksum mismatch, a field
    missing, of the wrong shape, not finite, or statistics no data could give (an asymmetric
    Gram matrix, a negative variance).
    """
    path = workspace.root / GRAM_FILE
    if not path.is_file():
        return None
    m, k = workspace.n_concepts, workspace.n_classes
    shapes = {"n_samples": (), "x_mean": (m,), "y_mean": (k,), "gram": (m, m), "xty": (m, k), "yty": (k,)}
    shapes["lipschitz"] = ()
    try:
        with np.load(path, allow_pickle=False) as saved:
            owner = {name: str(saved[name]) for name in ("workspace_id", "split_digest", "sha256")}
            fields = {name: saved[name] for name in GRAM_FIELDS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise WorkspaceError(path, f"not a readable Gram cache ({reason})") from None
    if owner["workspace_id"] != workspace.workspace_id or owner["split_digest"] != split_digest:
        return None
    check(
        owner["sha256"] == _gram_checksum(owner["workspace_id"], owner["split_digest"], fields),
        path,
        "content does not match its checksum: it was changed or damaged",
    )
    for name, shape in shapes.items():
        value = fields[name]
        check(
            value.shape == shape and value.dtype.kind in "fiu" and bool(np.isfinite(value).all()),
            path,
            f"{name} must be finite numbers of shape {shape}; got {value.dtype} of shape {value.shape}",
        )
    if int(fields["n_samples"]) != n_fit:
        return None
    gram, lipschitz = fields["gram"], float(fields["lipschitz"])
    scale = max(float(np.abs(gram).max()), float(np.abs(fields["yty"]).max()), 1e-300)
    check(
        bool(np.allclose(gram, gram.T, rtol=0, atol=1e-9 * scale))
        and bool((np.diag(gram) >= -1e-9 * scale).all())
        and bool((fields["yty"] >= -1e-9 * scale).all()),
        path,
        "not statistics any data could give (asymmetric Gram matrix or a negative variance)",
    )
    check(
        lipschitz > 0 and lipschitz >= float(np.diag(gram).max()) * (1 - 1e-6),
        path,
        f"lipschitz {lipschitz!r} must be positive and at least the Gram matrix's largest diagonal entry",
    )
    return {name: fields[name] for name in ("x_mean", "y_mean", "gram", "xty", "yty")} | {
        "n_samples": n_fit,
        "lipschitz": lipschitz,
    }


# ----------------------------------------------------------------------------- segments/
def segment_file(root: str | os.PathLike, name: str) -> Path:
    """Where the segment array ``name`` (one of ``SEGMENT_ARRAYS``) of the workspace in ``root`` lives."""
    if name not in SEGMENT_ARRAYS:
        raise ValueError(f"unknown segment array {name!r}; expected one of {', '.join(SEGMENT_ARRAYS)}")
    return Path(root) / SEGMENTS_DIR / f"{name}.npy"


def _segment_row_shape(name: str, n_concepts: int) -> tuple[int, ...]:
    return {
        "segment_maps": (SEGMENT_MAP_SIZE, SEGMENT_MAP_SIZE),
        "top_concepts": (MAX_SEGMENTS, TOP_CONCEPTS_PER_SEGMENT),
        "top_scores": (MAX_SEGMENTS, TOP_CONCEPTS_PER_SEGMENT),
        "best_segment": (n_concepts,),
    }[name]


def read_segments(workspace: Workspace) -> dict[str, np.ndarray] | None:
    """The compact segment data of a workspace (memory-mapped), or None if it has none.

    Raises ``WorkspaceError`` naming the file when the data is damaged: some arrays missing, a
    size or checksum that differs from the metadata's record, or a dtype or shape that does not
    fit the workspace. Values are range-checked row by row as rows are drawn (``segment_row``).
    """
    paths = {name: segment_file(workspace.root, name) for name in SEGMENT_ARRAYS}
    present = [name for name, path in paths.items() if path.is_file()]
    if not present:
        return None
    missing = [name for name in SEGMENT_ARRAYS if name not in present]
    check(not missing, workspace.root / SEGMENTS_DIR, f"incomplete: {', '.join(missing)} missing")
    records = workspace.meta.get("files", {})
    data = {}
    for name, relative in zip(SEGMENT_ARRAYS, SEGMENT_FILES, strict=True):
        if relative in records:
            verify_recorded_file(workspace.root, relative, records[relative])
        try:
            array = np.load(paths[name], mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise WorkspaceError(paths[name], f"not a plain .npy array ({str(exc).splitlines()[0][:200]})") from None
        shape = (workspace.n_images, *_segment_row_shape(name, workspace.n_concepts))
        check(
            array.shape == shape and str(array.dtype) == SEGMENT_DTYPES[name],
            paths[name],
            f"holds {array.dtype} of shape {array.shape}; expected {SEGMENT_DTYPES[name]} of shape {shape}",
        )
        data[name] = array
    return data


def segment_row(segments: Mapping[str, np.ndarray], workspace: Workspace, row: int) -> dict[str, np.ndarray]:
    """One image's segment data, range-checked: segment ids below ``MAX_SEGMENTS``, concept indices
    within the vocabulary (or -1 for none), finite scores. Raises ``WorkspaceError`` naming the file."""
    values = {name: np.asarray(segments[name][row]) for name in SEGMENT_ARRAYS}
    image = str(workspace.image_ids[row])
    problems = {
        "segment_maps": (values["segment_maps"] >= MAX_SEGMENTS).any(),
        "best_segment": (values["best_segment"] >= MAX_SEGMENTS).any(),
        "top_concepts": ((values["top_concepts"] < -1) | (values["top_concepts"] >= workspace.n_concepts)).any(),
        "top_scores": not np.isfinite(values["top_scores"]).all(),
    }
    for name, bad in problems.items():
        check(
            not bad,
            segment_file(workspace.root, name),
            f"the row of image {image!r} holds values out of range (segment ids 0..{MAX_SEGMENTS - 1}, "
            f"concepts -1..{workspace.n_concepts - 1}, finite scores)",
        )
    return values


# ----------------------------------------------------------------------------- sessions/
def session_file(workspace: Workspace, session_id: str) -> Path:
    """Where the tuning session ``session_id`` of this workspace is autosaved."""
    if not session_id or len(session_id) > 64 or not all(ch.isalnum() or ch in "-_" for ch in session_id):
        raise ValueError(f"session id {session_id[:80]!r} must be 1-64 letters, digits, '-' or '_'")
    return workspace.root / SESSIONS_DIR / f"{session_id}.json"


def session_files(workspace: Workspace) -> list[Path]:
    """This workspace's autosaved tuning sessions, newest first."""
    folder = workspace.root / SESSIONS_DIR
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("*.json") if p.is_file()), key=lambda p: p.stat().st_mtime, reverse=True)


# ----------------------------------------------------------------------------- replacing a workspace
def foreign_entries(root: str | os.PathLike) -> list[str]:
    """The names in folder ``root`` that neither a workspace nor its extraction writes, sorted.
    Names starting with "." are ours too: the shards' folder, a job's folder, temporary files of
    atomic writes. An extraction starts only in a folder without them; a job is discarded only so."""
    ours = {META_FILE, *DATA_FILES, SEGMENTS_DIR, STUDENTS_FILE, GRAM_FILE, REPORT_FILE, SESSIONS_DIR, UPLOADS_DIR}
    names = [p.name for p in Path(root).iterdir()] if Path(root).is_dir() else []
    return sorted(name for name in names if name not in ours and not name.startswith("."))


def clear_workspace(root: str | os.PathLike) -> None:
    """Remove the workspace in ``root`` before it is rebuilt in place: the metadata first (so a
    crash part-way leaves no loadable half), then the data files, segments and caches. Tuning
    sessions are the analyst's work and are kept (they are refused by the new workspace, whose
    id differs, and can still be read by hand)."""
    root = Path(root)
    for name in (META_FILE, *DATA_FILES, *SEGMENT_FILES, STUDENTS_FILE, GRAM_FILE, REPORT_FILE):
        (root / name).unlink(missing_ok=True)
    segments = root / SEGMENTS_DIR
    if segments.is_dir() and not any(segments.iterdir()):
        shutil.rmtree(segments)
