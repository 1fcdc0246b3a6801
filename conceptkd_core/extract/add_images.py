"""Adding uploaded images to a workspace, from the app: validated, deduplicated, extracted, merged.

The merged workspace is written beside the original (which stays as it was). Uploaded files
are checked (type, size, decodable, not a decompression bomb) before anything is written; an
upload whose bytes equal an image already in the workspace, or another upload, is reported and
skipped. Those that pass are stored in the new workspace's own folder (``uploads/``, content-hash
names; ``store.validation.IN_WORKSPACE``), never in the user's image folder, which may be
read-only or shared. The teacher that scores them is the workspace's own, found by the path and
SHA-256 the workspace recorded (``teacher_registry.teacher_for_workspace``); a workspace whose
teacher is a logits file has no logits for new images, so the analyst uploads them too
(``uploaded_logits_teacher``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..datasets import IMAGE_SUFFIXES, ImageSet
from ..images import ImageError, load_rgb
from ..store.atomic_io import atomic_write_bytes, atomic_write_npy
from ..store.side_files import SEGMENT_ARRAYS, read_segments, segment_file
from ..store.validation import IN_WORKSPACE, UPLOADS_DIR, WorkspaceError
from ..store.workspace import Workspace, write_workspace
from .teachers import LogitsFileTeacher, TeacherError

ALLOWED_SUFFIXES = IMAGE_SUFFIXES
MAX_UPLOAD_BYTES = 20 * 2**20
UPLOAD_DIR = UPLOADS_DIR
LOGITS_UPLOAD_SUFFIXES = (".csv", ".parquet")  # keyed by image: an .npy's rows have no names to match uploads by


@dataclass
class UploadCheck:
    accepted: list[tuple[str, bytes]] = field(default_factory=list)  # (stored file name, content)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (uploaded name, reason)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (uploaded name, the image it repeats)
    uploaded_as: dict[str, str] = field(default_factory=dict)  # {stored file name: uploaded name}


def check_uploads(files: Sequence[tuple[str, bytes]]) -> UploadCheck:
    """Keep the files that are images of an allowed type and size; say why the others are refused,
    and which repeat an earlier upload byte for byte."""
    result = UploadCheck()
    seen: dict[str, str] = {}
    for name, data in files:
        suffix = Path(name).suffix.lower()
        if suffix not in ALLOWED_SUFFIXES:
            result.refused.append((name, f"type {suffix or '(none)'} is not one of {', '.join(ALLOWED_SUFFIXES)}"))
            continue
        if len(data) > MAX_UPLOAD_BYTES:
            result.refused.append(
                (name, f"{len(data) / 2**20:.1f} MiB is over the {MAX_UPLOAD_BYTES // 2**20} MiB limit")
            )
            continue
        with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
            handle.write(data)
            handle.flush()
            try:
                load_rgb(handle.name)
            except ImageError as exc:
                result.refused.append((name, str(exc).split(": ", 1)[-1]))
                continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:  # the same content twice is one image
            result.duplicates.append((name, f"the upload {seen[digest]}"))
            continue
        seen[digest] = name
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem)[:40] or "image"
        result.accepted.append((f"{digest[:16]}-{stem}{suffix}", data))
        result.uploaded_as[result.accepted[-1][0]] = name
    return result


def skip_duplicates(workspace: Workspace, checked: UploadCheck) -> UploadCheck:
    """``checked`` without the uploads whose bytes equal an image of ``workspace`` (moved to ``duplicates``).

    Only images of the same file size are hashed, so a large workspace costs one ``stat`` per image.
    """
    sizes = {len(data) for _, data in checked.accepted}
    by_hash: dict[str, str] = {}
    for row in range(workspace.n_images):
        try:
            path = workspace.image_path(row)
            if path.stat().st_size in sizes:
                by_hash.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), str(workspace.image_ids[row]))
        except (OSError, WorkspaceError):
            continue  # a missing image repeats nothing
    result = UploadCheck(refused=list(checked.refused), duplicates=list(checked.duplicates))
    result.uploaded_as = dict(checked.uploaded_as)
    for name, data in checked.accepted:
        existing = by_hash.get(hashlib.sha256(data).hexdigest())
        if existing is None:
            result.accepted.append((name, data))
        else:
            result.duplicates.append((checked.uploaded_as.get(name, name), f"image {existing}"))
    return result


def upload_id(stored_name: str) -> str:
    """The image id an accepted upload gets in the workspace."""
    return f"upload-{stored_name}"


def needs_uploaded_logits(workspace: Workspace) -> bool:
    return workspace.meta.get("teacher", {}).get("kind") == "logits-file"


def uploaded_logits_teacher(workspace: Workspace, checked: UploadCheck, name: str, data: bytes) -> LogitsFileTeacher:
    """The teacher of ``checked.accepted`` for a workspace whose teacher is a logits file: the
    analyst's logits for them in an uploaded CSV / Parquet table (``name``, ``data``), read and
    validated by the logits-file reader (``LogitsFileTeacher``: one column per class, finite numbers).
    Its ``image_id`` column names each image by its uploaded file name (or the id it gets here);
    rows for other images are ignored. Raises TeacherError, one line, when a row is missing."""
    suffix = Path(name).suffix.lower()
    if suffix not in LOGITS_UPLOAD_SUFFIXES:
        raise TeacherError(f"{name}: type {suffix or '(none)'} is not one of {', '.join(LOGITS_UPLOAD_SUFFIXES)}")
    if len(data) > MAX_UPLOAD_BYTES:
        raise TeacherError(f"{name}: {len(data) / 2**20:.1f} MiB is over the {MAX_UPLOAD_BYTES // 2**20} MiB limit")
    with tempfile.TemporaryDirectory() as folder:  # the reader reads files; messages name the upload
        path = Path(folder) / f"logits{suffix}"
        path.write_bytes(data)
        teacher = LogitsFileTeacher(path, workspace.classes, name=name)
    names = [checked.uploaded_as.get(stored, stored) for stored, _ in checked.accepted]
    table, missing = {}, []
    for (stored, _), uploaded in zip(checked.accepted, names, strict=True):
        # a name two different uploads share does not say which is which: only the id does
        keys = [upload_id(stored)] + ([uploaded] if names.count(uploaded) == 1 else [])
        row = next((teacher.table[k] for k in keys if k in teacher.table), None)
        if row is None:
            missing.append(uploaded)
        else:
            table[upload_id(stored)] = row
    if missing:
        raise TeacherError(
            f"{name}: no logits for {len(missing)} uploaded images ({', '.join(missing[:5])}"
            f"{'…' if len(missing) > 5 else ''}); expected a row per image, its image_id the uploaded file name"
        )
    teacher.table = table  # keyed by the ids the uploads get, as extraction asks for them
    return teacher


def add_images(
    workspace: Workspace,
    accepted: Sequence[tuple[str, bytes]],
    present_classes: Sequence[str],
    clip,
    teacher,
    out: str | os.PathLike,
    progress: Callable | None = None,
) -> Workspace:
    """Store ``accepted`` uploads, extract them, and write workspace + new images to ``out``.

    ``present_classes`` are the labels given to every uploaded image (the analyst says what they show).
    """
    from .pipeline import extract
    from .rescore import copy_uploads
    from .segments import recorded_n_segments, recorded_segmenter, recorded_superpixel_size

    unknown = [c for c in present_classes if c not in workspace.classes]
    if unknown:
        raise ValueError(f"Unknown classes {unknown}; this workspace has {list(workspace.classes)}")
    existing = set(str(i) for i in workspace.image_ids)
    new = [(name, data) for name, data in accepted if upload_id(name) not in existing]
    if not new:
        raise ValueError("All of these images are already in the workspace")
    out = Path(out)
    copy_uploads(workspace, out)  # earlier uploads live in the old workspace's folder: the new one gets a copy
    for name, data in new:
        atomic_write_bytes(out / UPLOADS_DIR / name, data)
    label_row = np.array([int(c in present_classes) for c in workspace.classes], dtype=np.uint8)
    images = ImageSet(
        out / UPLOADS_DIR,
        [upload_id(n) for n, _ in new],
        [n for n, _ in new],
        ["uploaded"] * len(new),
        np.tile(label_row, (len(new), 1)),
        workspace.classes,
    )
    extra = workspace.meta.get("extra", {})
    added = extract(
        images,
        out / ".added",
        clip,
        teacher,
        list(workspace.vocabulary),
        n_segments=recorded_n_segments(workspace),
        segmenter=recorded_segmenter(workspace),
        superpixel_size=recorded_superpixel_size(workspace, clip.image_size),
        progress=progress,
    ).workspace
    old_segments, new_segments = read_segments(workspace), read_segments(added)
    if old_segments is not None and new_segments is not None:
        for name in SEGMENT_ARRAYS:
            atomic_write_npy(segment_file(out, name), np.concatenate([old_segments[name], new_segments[name]]))

    def both(a, b):
        return np.concatenate([np.asarray(a), np.asarray(b)])

    merged = write_workspace(
        out,
        image_ids=both(workspace.image_ids, added.image_ids),
        paths=both(workspace.paths, [f"{IN_WORKSPACE}{UPLOADS_DIR}/{p}" for p in added.paths]),
        splits=both(workspace.splits, added.splits),
        labels=both(workspace.labels, added.labels),
        classes=workspace.classes,
        vocabulary=list(workspace.vocabulary),
        concept_matrix=both(
            np.asarray(workspace.concept_matrix, np.float32), np.asarray(added.concept_matrix, np.float32)
        ),
        teacher_logits=both(workspace.teacher_logits, added.teacher_logits),
        model=workspace.meta["model"],
        teacher=workspace.meta["teacher"],
        image_root=os.path.relpath(workspace.image_root, out.resolve()),
        concept_dtype=workspace.meta.get("concept_dtype", "float16"),
        extra={k: v for k, v in extra.items() if k not in ("image_root_absolute", "extraction")}
        | {"added_images": len(new) + int(extra.get("added_images", 0))}
        | _added_teacher(workspace, added),
    )
    shutil.rmtree(out / ".added", ignore_errors=True)
    return merged


def _added_teacher(workspace: Workspace, added: Workspace) -> dict:
    """The record of the teachers that scored added images, when not the workspace's own (uploaded logits)."""

    def without_source(teacher: dict) -> dict:  # a file's path is relative to each workspace's folder
        return {k: v for k, v in teacher.items() if k != "source"}

    if without_source(added.meta["teacher"]) == without_source(workspace.meta["teacher"]):
        return {}
    return {"added_teachers": [*workspace.meta.get("extra", {}).get("added_teachers", []), added.meta["teacher"]]}
