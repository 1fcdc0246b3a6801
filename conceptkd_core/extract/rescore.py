"""Re-scoring a workspace with another vocabulary, from the app, when its CLIP can be found.

Concept scores need CLIP (segment embeddings are not stored), so a vocabulary edit re-runs the
extraction over the workspace's own images into a new workspace beside it; the teacher's
logits are reused as they are, so no teacher model is needed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from ..datasets import ImageSet
from ..store.atomic_io import find_by_sha256
from ..store.validation import UPLOADS_DIR
from ..store.workspace import META_FILE, TEACHER_LOGITS_FILE, Workspace, WorkspaceError, load_workspace
from ..vocabulary import normalise_words, vocabulary_hash

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def find_checkpoint(workspace: Workspace, search: Sequence[str | os.PathLike] = ()) -> tuple[str, Path] | None:
    """(model name or config path, checkpoint file) whose SHA-256 is the one the workspace records.

    Looks in ``search`` folders, the workspace's folder and its parent (where the demo keeps its
    mini CLIP). Returns None when the workspace was made from a pretrained tag or nothing matches.
    """
    model = workspace.meta.get("model", {})
    if not model.get("checkpoint_sha256"):
        return None
    folders = [Path(p) for p in search] + [workspace.root, workspace.root.parent]
    found = find_by_sha256(model["checkpoint_sha256"], folders, CHECKPOINT_SUFFIXES)
    if found is None:
        return None
    config = found.with_name(f"{model.get('name')}.json")
    return (str(config) if config.is_file() else str(model.get("name"))), found


def workspace_images(workspace: Workspace) -> ImageSet:
    return ImageSet(
        workspace.image_root,
        [str(i) for i in workspace.image_ids],
        [str(p) for p in workspace.paths],
        [str(s) for s in workspace.splits],
        workspace.labels,
        workspace.classes,
        workspace.root,
    )


def copy_uploads(workspace: Workspace, out: Path) -> None:
    """The images added to ``workspace`` from the app live in its folder: a workspace made from it gets a copy."""
    source = workspace.root / UPLOADS_DIR
    if source.is_dir():
        shutil.copytree(source, out / UPLOADS_DIR, dirs_exist_ok=True)


def rescored_folder(workspace: Workspace, words: Sequence[str]) -> Path:
    return workspace.root.with_name(f"{workspace.root.name}-vocab-{vocabulary_hash(words)[:8]}")


def rescored_already(workspace: Workspace, words: Sequence[str]) -> Workspace | None:
    """The finished workspace ``rescore`` made of ``workspace`` with ``words`` before, if there is one."""
    folder = rescored_folder(workspace, words)
    if not (folder / META_FILE).is_file():
        return None
    try:
        done = load_workspace(folder)
    except WorkspaceError:
        return None
    source = done.meta.get("extra", {}).get("rescored_from")
    return done if list(done.vocabulary) == normalise_words(words) and source == workspace.workspace_id else None


def rescore(
    workspace: Workspace,
    words: Sequence[str],
    clip,
    progress: Callable | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int = 16,
):
    """Extract the workspace's images again with ``words`` into ``out`` (default ``rescored_folder``);
    returns the result. Its images, labels, split, segments and teacher logits are the workspace's."""
    from .pipeline import extract
    from .segments import recorded_n_segments, recorded_segmenter, recorded_superpixel_size
    from .teacher_registry import create_teacher

    words = normalise_words(words)
    teacher = create_teacher(
        workspace.root / TEACHER_LOGITS_FILE, workspace.classes, image_ids=list(workspace.image_ids)
    )
    extra = {k: v for k, v in workspace.meta.get("extra", {}).items() if k in ("demo",)}
    out = Path(out) if out is not None else rescored_folder(workspace, words)
    copy_uploads(workspace, out)
    return extract(
        workspace_images(workspace),
        out,
        clip,
        teacher,
        words,
        batch_size=batch_size,
        n_segments=recorded_n_segments(workspace),
        segmenter=recorded_segmenter(workspace),
        superpixel_size=recorded_superpixel_size(workspace, clip.image_size),
        progress=progress,
        extra_meta=extra | {"rescored_from": workspace.workspace_id},
    )
