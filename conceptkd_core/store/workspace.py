"""The on-disk workspace: the contract between extraction and everything after it.

Layout of a workspace folder (schema version 1)::

    conceptkd.json        metadata: schema version, id, model, teacher, vocabulary hash,
                          classes, shapes, and size + SHA-256 of every data file below
    manifest.parquet      one row per image: image_id, path, split, labels (multi-hot, k)
    vocabulary.txt        the m concept words, one per line
    concepts.npy          concept matrix, shape (n_images, n_concepts), float16 or float32
    teacher_logits.npy    teacher logits, shape (n_images, n_classes), float32

Optional side files (``students.json``, ``gram.npz``, ``segments/``, ``sessions/``) are
``store.side_files``'s: this module and that one are the only code that reads or writes a
workspace's files. The segment arrays, written before the metadata, are recorded in it like
the data files; the caches written later carry their own checksum (``side_files``).

Every write is atomic, and ``conceptkd.json`` is written last: it names the exact bytes of
each data file, so a workspace caught half-rewritten by a crash is reported, never loaded.
Loading validates everything (the metadata's field types included) and raises
``WorkspaceError`` naming the file and the problem.

Paths in a workspace are relative: the image root and a teacher file are recorded relative to
the workspace folder, manifest paths relative to the image root, and ``write_workspace``
refuses metadata that holds an absolute path (it would leak the building machine's layout and
break when the workspace moves).
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..vocabulary import VocabularyError, parse_vocabulary, vocabulary_hash, vocabulary_text
from .atomic_io import atomic_write, atomic_write_json, atomic_write_npy, atomic_write_text, sha256_file
from .metadata import (
    DATA_FILES,
    SCHEMA_VERSION,
    VOCABULARY_FILE,
    _refuse_absolute_paths,
    read_meta,
)
from .validation import (
    CONCEPT_DTYPES,
    CONCEPTS_FILE,
    MANIFEST_FILE,
    META_FILE,
    SEGMENT_FILES,
    TEACHER_LOGITS_FILE,
    WorkspaceError,
    check,
    check_relative_paths,
    image_file,
    is_absolute_path,
    safe_join,  # noqa: F401 - part of this module's interface (datasets, tests)
    validate_arrays,
)

# Hash-check data files up to this size on load; larger ones are checked by size only
# (hashing a 1M-image concept matrix would cost seconds on every load).
FULL_VERIFY_MAX_BYTES = 512 * 2**20
MANIFEST_BATCH_ROWS = 65536


@dataclass(frozen=True)
class Workspace:
    """A loaded workspace. Arrays are read-only; the concept matrix is memory-mapped."""

    root: Path
    meta: dict
    image_ids: np.ndarray  # (n_images,) str
    paths: np.ndarray  # (n_images,) str, relative to the image root recorded in meta
    splits: np.ndarray  # (n_images,) str
    labels: np.ndarray  # (n_images, n_classes) uint8 in {0, 1}
    classes: tuple[str, ...]
    vocabulary: tuple[str, ...]
    concept_matrix: np.ndarray  # (n_images, n_concepts) float16/float32
    teacher_logits: np.ndarray  # (n_images, n_classes) float32
    _index: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_images(self) -> int:
        return int(self.concept_matrix.shape[0])

    @property
    def n_concepts(self) -> int:
        return int(self.concept_matrix.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def workspace_id(self) -> str:
        return self.meta["workspace_id"]

    @property
    def vocabulary_sha256(self) -> str:
        return self.meta["vocabulary_sha256"]

    def row_of(self, image_id: str) -> int:
        if not self._index:
            self._index.update({str(i): r for r, i in enumerate(self.image_ids)})
        try:
            return self._index[image_id]
        except KeyError:
            raise KeyError(f"Unknown image id {image_id!r}") from None

    def split_mask(self, split: str) -> np.ndarray:
        return self.splits == split

    @property
    def image_root(self) -> Path:
        """Where the images are: the recorded root, relative to the workspace, so a workspace moved
        together with its images still finds them."""
        return (self.root / (self.meta.get("image_root") or ".")).resolve()

    def image_path(self, row: int) -> Path:
        """Absolute path of the image in ``row``, resolved under the image root (never outside it), or
        under the workspace's own folder for an image added from the app (``validation.IN_WORKSPACE``)."""
        return image_file(self.image_root, self.root, str(self.paths[row]))


# ----------------------------------------------------------------------------- writing
def _manifest_bytes(image_ids, paths, splits, labels, workspace_id: str) -> bytes:
    n, k = labels.shape
    label_list = pa.FixedSizeListArray.from_arrays(pa.array(labels.reshape(-1), type=pa.uint8()), k)
    table = pa.table(
        {
            "image_id": pa.array(image_ids, type=pa.string()),
            "path": pa.array(paths, type=pa.string()),
            "split": pa.array(splits, type=pa.string()),
            "labels": label_list,
        },
        metadata={"conceptkd_schema_version": str(SCHEMA_VERSION), "conceptkd_workspace_id": workspace_id},
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=MANIFEST_BATCH_ROWS)
    return sink.getvalue()


def write_workspace(
    root: str | os.PathLike,
    *,
    image_ids: Sequence[str],
    paths: Sequence[str],
    splits: Sequence[str],
    labels: np.ndarray,
    classes: Sequence[str],
    vocabulary: Sequence[str],
    concept_matrix: np.ndarray,
    teacher_logits: np.ndarray,
    model: Mapping[str, Any],
    teacher: Mapping[str, Any],
    image_root: str | None = None,
    concept_dtype: str = "float16",
    extra: Mapping[str, Any] | None = None,
) -> Workspace:
    """Validate and write a complete workspace to ``root``; return it loaded back.

    ``model`` describes the CLIP that made the concept scores (e.g. ``{"name": "ViT-B-16",
    "pretrained": "openai"}``), ``teacher`` the classifier that made the logits.
    """
    root = Path(root)
    if concept_dtype not in CONCEPT_DTYPES:
        raise ValueError(f"concept_dtype must be one of {', '.join(CONCEPT_DTYPES)}; got {concept_dtype!r}")
    if image_root is not None and (not isinstance(image_root, str) or is_absolute_path(image_root)):
        raise WorkspaceError(
            root / META_FILE, f"image_root {image_root!r} must be a path relative to the workspace folder"
        )
    teacher = _relative_teacher_source(dict(teacher), root)
    for section, value in (("model", model), ("teacher", teacher), ("extra", extra or {})):
        _refuse_absolute_paths(value, root / META_FILE, section)
    vocabulary = list(vocabulary)
    try:
        normalised = parse_vocabulary(vocabulary_text(vocabulary))
    except VocabularyError as exc:
        raise WorkspaceError(root / VOCABULARY_FILE, str(exc)) from None
    if normalised != vocabulary:
        raise WorkspaceError(
            root / VOCABULARY_FILE,
            "vocabulary must be normalised (lower-case, single spaces, no duplicates); use vocabulary.normalise_words",
        )
    image_ids = np.asarray([str(i) for i in image_ids], dtype=object)
    paths = np.asarray([str(p) for p in paths], dtype=object)
    splits = np.asarray([str(s) for s in splits], dtype=object)
    if not (len(paths) == len(splits) == len(image_ids)):
        raise WorkspaceError(
            root / MANIFEST_FILE,
            f"image_ids, paths and splits differ in length: {len(image_ids)}, {len(paths)}, {len(splits)}",
        )
    labels = np.asarray(labels)
    teacher_logits = np.asarray(teacher_logits)
    if not isinstance(concept_matrix, np.ndarray):
        concept_matrix = np.asarray(concept_matrix)
    if concept_matrix.dtype.kind == "f":
        # No copy when it already has the stored dtype (a memory map of a million rows stays on disk);
        # a value too large for float16 becomes inf here and is refused by the check below.
        concept_matrix = concept_matrix.astype(concept_dtype, copy=False)
    validate_arrays(
        root, image_ids.astype(str), splits.astype(str), labels, classes, vocabulary, concept_matrix, teacher_logits
    )
    check_relative_paths(paths.astype(str), root / MANIFEST_FILE)
    labels = labels.astype(np.uint8)
    teacher_logits = teacher_logits.astype(np.float32)

    workspace_id = uuid.uuid4().hex
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_npy(root / CONCEPTS_FILE, concept_matrix)
    atomic_write_npy(root / TEACHER_LOGITS_FILE, teacher_logits)
    atomic_write_text(root / VOCABULARY_FILE, vocabulary_text(vocabulary))
    manifest = _manifest_bytes(image_ids, paths, splits, labels, workspace_id)
    atomic_write(root / MANIFEST_FILE, lambda handle: handle.write(manifest))
    meta = {
        "schema_version": SCHEMA_VERSION,
        "workspace_id": workspace_id,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": dict(model),
        "teacher": dict(teacher),
        "vocabulary_sha256": vocabulary_hash(vocabulary),
        "classes": list(classes),
        "n_images": int(len(image_ids)),
        "n_concepts": len(vocabulary),
        "n_classes": len(classes),
        "concept_dtype": concept_dtype,
        "image_root": image_root,
        # The segment arrays the extraction wrote beside the data files are covered too.
        "files": {
            name: {"bytes": (root / name).stat().st_size, "sha256": sha256_file(root / name)}
            for name in DATA_FILES + tuple(f for f in SEGMENT_FILES if (root / f).is_file())
        },
        "extra": dict(extra or {}),
    }
    atomic_write_json(root / META_FILE, meta)
    return load_workspace(root)


def _relative_teacher_source(teacher: dict, root: Path) -> dict:
    """The teacher's record with its file (``source``) relative to the workspace folder."""
    source = teacher.get("source")
    if isinstance(source, str) and is_absolute_path(source):
        teacher["source"] = os.path.relpath(source, root.resolve())
    return teacher


# ----------------------------------------------------------------------------- loading
def verify_recorded_file(root: Path, name: str, record: Mapping[str, Any], verify: str = "full") -> None:
    """Check a workspace file against its record in the metadata: size always, SHA-256 when
    ``verify`` is "full" and the file is at most ``FULL_VERIFY_MAX_BYTES``."""
    path = root / name
    check(path.is_file(), path, "missing file")
    size = path.stat().st_size
    check(
        size == record.get("bytes"),
        path,
        f"file is {size} bytes but the workspace metadata records {record.get('bytes')}: "
        "it was changed or only partly written",
    )
    if verify == "full" and size <= FULL_VERIFY_MAX_BYTES:
        check(
            sha256_file(path) == record.get("sha256"),
            path,
            "file content does not match the checksum in the workspace metadata: it was changed or only partly written",
        )


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        raise WorkspaceError(path, f"not a plain numeric .npy array ({exc})") from None
    except OSError as exc:
        raise WorkspaceError(path, f"cannot read ({exc})") from None


def load_workspace(root: str | os.PathLike, *, mmap: bool = True, verify: str = "full") -> Workspace:
    """Load and validate the workspace in ``root``.

    verify : "full" (checksums of files up to 512 MiB, sizes of larger ones) or "size".
    Raises ``WorkspaceError`` naming the offending file and the problem.
    """
    if verify not in ("full", "size"):
        raise ValueError(f"verify must be 'full' or 'size'; got {verify!r}")
    root = Path(root).resolve()
    meta = read_meta(root)
    for name in DATA_FILES:
        record = meta["files"].get(name)
        check(isinstance(record, dict), root / META_FILE, f"no record of {name}")
        verify_recorded_file(root, name, record, verify)

    vocab_path = root / VOCABULARY_FILE
    try:
        vocabulary = parse_vocabulary(vocab_path.read_text(encoding="utf-8"))
    except (VocabularyError, UnicodeDecodeError) as exc:
        raise WorkspaceError(vocab_path, str(exc)) from None
    check(
        len(vocabulary) == meta["n_concepts"],
        vocab_path,
        f"vocabulary has {len(vocabulary)} words; the workspace was built with {meta['n_concepts']}",
    )
    check(
        vocabulary_hash(vocabulary) == meta["vocabulary_sha256"],
        vocab_path,
        "vocabulary differs from the one the workspace was built with (hash mismatch)",
    )

    manifest_path = root / MANIFEST_FILE
    try:
        # In batches: decoding the nested labels column of a million rows at once peaks at ~300 MB.
        manifest = pq.ParquetFile(manifest_path)
        table = pa.Table.from_batches(
            list(manifest.iter_batches(batch_size=MANIFEST_BATCH_ROWS)), manifest.schema_arrow
        )
    except (pa.ArrowException, OSError) as exc:
        raise WorkspaceError(manifest_path, f"not a readable Parquet file ({exc})") from None
    missing = [c for c in ("image_id", "path", "split", "labels") if c not in table.column_names]
    check(not missing, manifest_path, f"missing columns {missing}; has {table.column_names}")
    file_meta = manifest.schema_arrow.metadata or {}
    check(
        file_meta.get(b"conceptkd_workspace_id", b"").decode() == meta["workspace_id"],
        manifest_path,
        "manifest belongs to a different workspace (workspace id mismatch)",
    )
    k = len(meta["classes"])
    label_column = table.column("labels").combine_chunks()
    try:
        flat = label_column.flatten().to_numpy(zero_copy_only=False)
        labels = flat.reshape(len(table), k) if flat.size == len(table) * k else flat
    except (pa.ArrowException, AttributeError) as exc:
        raise WorkspaceError(manifest_path, f"labels column is not a list of 0/1 per class ({exc})") from None
    try:
        check_relative_paths(table.column("path"), manifest_path)
    except (pa.ArrowException, TypeError) as exc:
        raise WorkspaceError(manifest_path, f"the path column is not text ({exc})") from None
    image_ids = np.asarray(table.column("image_id").to_pylist(), dtype=str)
    paths = np.asarray(table.column("path").to_pylist(), dtype=str)
    splits = np.asarray(table.column("split").to_pylist(), dtype=str)

    concept_matrix = _load_npy(root / CONCEPTS_FILE, mmap)
    teacher_logits = _load_npy(root / TEACHER_LOGITS_FILE, mmap=False)
    validate_arrays(root, image_ids, splits, labels, meta["classes"], vocabulary, concept_matrix, teacher_logits)
    labels = labels.astype(np.uint8)
    for array in (labels, teacher_logits, image_ids, paths, splits):
        array.setflags(write=False)
    return Workspace(
        root=root,
        meta=meta,
        image_ids=image_ids,
        paths=paths,
        splits=splits,
        labels=labels,
        classes=tuple(meta["classes"]),
        vocabulary=tuple(vocabulary),
        concept_matrix=concept_matrix,
        teacher_logits=teacher_logits,
    )
