"""A small copy of the embedded demo for tests that change workspaces: the first images of each
split with their concept scores, logits and segments, the demo's mini CLIP checkpoint and
teacher beside it (so adding images and re-scoring work), written by the normal store code."""

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from conceptkd_core.store.atomic_io import atomic_write_npy
from conceptkd_core.store.side_files import SEGMENT_ARRAYS, read_segments, segment_file
from conceptkd_core.store.workspace import load_workspace, write_workspace
from conceptkd_tools.demo import DEMO_DIR, MODEL_NAME


def make_demo_subset(
    folder: Path,
    per_split: int = 20,
    word: Callable[[str], str] = str,
    workspace: str = "workspace",
    teacher=None,
    class_name: Callable[[str], str] = str,
    image_id: Callable[[str], str] = str,
) -> Path:
    """``folder``/``workspace`` holding ``per_split`` val and ``per_split`` test scenes of the demo,
    each vocabulary word written as ``word(w)``, each class name as ``class_name(c)`` and each image
    id as ``image_id(i)`` (each called in the workspace's order); returns the workspace folder. ``teacher``: a
    function of the subset's (image ids, classes, logits) giving the teacher to record (default: the demo's)."""
    demo = load_workspace(DEMO_DIR / "workspace")
    rows = np.concatenate([np.flatnonzero(demo.splits == split)[:per_split] for split in ("val", "test")])
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for r in rows:
        shutil.copy(demo.image_path(r), folder / "images" / demo.paths[r])
    for file in (f"{MODEL_NAME}.json", f"{MODEL_NAME}.safetensors", "teacher.pt"):
        shutil.copy(DEMO_DIR / file, folder / file)
    root = folder / workspace
    classes = [class_name(c) for c in demo.classes]
    segments = read_segments(demo)
    for array in SEGMENT_ARRAYS:
        atomic_write_npy(segment_file(root, array), np.asarray(segments[array][rows]))
    write_workspace(
        root,
        image_ids=[image_id(str(i)) for i in demo.image_ids[rows]],
        paths=demo.paths[rows],
        splits=demo.splits[rows],
        labels=demo.labels[rows],
        classes=classes,
        vocabulary=[word(w) for w in demo.vocabulary],
        concept_matrix=np.asarray(demo.concept_matrix[rows]),
        teacher_logits=demo.teacher_logits[rows],
        model=demo.meta["model"],
        teacher={**demo.meta["teacher"], "classes": classes}
        if teacher is None
        else teacher(demo.image_ids[rows], demo.classes, demo.teacher_logits[rows]).identity,
        image_root="../images",
        extra={k: v for k, v in demo.meta["extra"].items() if k in ("demo", "n_segments")},
    )
    return root


def copy_demo_workspace(folder: Path, with_images: bool = False) -> Path:
    """``folder``/workspace: the whole shipped demo workspace, without the sessions saved beside it;
    ``with_images``: its images too, in ``folder``/images, where the copy looks for them."""
    if with_images:
        shutil.copytree(DEMO_DIR / "images", folder / "images")
    copy = folder / "workspace"
    shutil.copytree(DEMO_DIR / "workspace", copy, ignore=shutil.ignore_patterns("sessions"))
    return copy


def copy_demo_subset(root: Path, folder: Path) -> Path:
    """A copy, in ``folder``/demo, of everything ``make_demo_subset`` wrote beside the workspace
    ``root`` (images, model, teacher) and of the workspace itself; returns the copy's workspace.
    Copying a built subset costs milliseconds; opening a new one fits its students (seconds)."""
    shutil.copytree(root.parent, folder / "demo")
    return folder / "demo" / root.name
