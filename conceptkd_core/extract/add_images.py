"""Adding uploaded images to a workspace, from the app: validated, extracted, merged.

The merged workspace is written beside the original (which stays as it was). Uploaded files
are checked (type, size, decodable, not a decompression bomb) before anything is written;
those that pass are stored under ``<image root>/uploads/`` with content-hash names, so the
same file uploaded twice is added once.
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

from ..datasets import ImageSet
from ..images import ImageError, load_rgb
from ..store.atomic_io import atomic_write_bytes, atomic_write_npy
from ..store.side_files import SEGMENT_ARRAYS, read_segments, segment_file
from ..store.workspace import Workspace, write_workspace

ALLOWED_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_UPLOAD_BYTES = 20 * 2**20
UPLOAD_DIR = "uploads"


@dataclass
class UploadCheck:
    accepted: list[tuple[str, bytes]] = field(default_factory=list)  # (stored file name, content)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (uploaded name, reason)


def check_uploads(files: Sequence[tuple[str, bytes]]) -> UploadCheck:
    """Keep the files that are images of an allowed type and size; say why the others are refused."""
    result = UploadCheck()
    seen = set()
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
        digest = hashlib.sha256(data).hexdigest()[:16]
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(name).stem)[:40] or "image"
        if digest not in seen:  # the same content twice is one image
            seen.add(digest)
            result.accepted.append((f"{digest}-{stem}{suffix}", data))
    return result


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
    from .segments import recorded_n_segments, recorded_segmenter

    unknown = [c for c in present_classes if c not in workspace.classes]
    if unknown:
        raise ValueError(f"Unknown classes {unknown}; this workspace has {list(workspace.classes)}")
    existing = set(str(i) for i in workspace.image_ids)
    new = [(name, data) for name, data in accepted if f"upload-{name}" not in existing]
    if not new:
        raise ValueError("All of these images are already in the workspace")
    root = workspace.image_root
    for name, data in new:
        atomic_write_bytes(root / UPLOAD_DIR / name, data)
    label_row = np.array([int(c in present_classes) for c in workspace.classes], dtype=np.uint8)
    images = ImageSet(
        root,
        [f"upload-{n}" for n, _ in new],
        [f"{UPLOAD_DIR}/{n}" for n, _ in new],
        ["uploaded"] * len(new),
        np.tile(label_row, (len(new), 1)),
        workspace.classes,
    )
    out = Path(out)
    extra = workspace.meta.get("extra", {})
    added = extract(
        images,
        out / ".added",
        clip,
        teacher,
        list(workspace.vocabulary),
        n_segments=recorded_n_segments(workspace),
        segmenter=recorded_segmenter(workspace),
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
        paths=both(workspace.paths, added.paths),
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
        image_root=os.path.relpath(root, out.resolve()),
        concept_dtype=workspace.meta.get("concept_dtype", "float16"),
        extra={k: v for k, v in extra.items() if k not in ("image_root_absolute", "extraction")}
        | {"added_images": len(new) + int(extra.get("added_images", 0))},
    )
    shutil.rmtree(out / ".added", ignore_errors=True)
    return merged
