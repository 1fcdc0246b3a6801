"""Adding uploaded images to a workspace: refused files say why, accepted ones are extracted and merged."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conceptkd_core.datasets import load_folder
from conceptkd_core.extract.add_images import (
    add_images,
    check_uploads,
    needs_uploaded_logits,
    skip_duplicates,
    upload_id,
    uploaded_logits_teacher,
)
from conceptkd_core.extract.clip_backend import load_clip
from conceptkd_core.extract.pipeline import extract
from conceptkd_core.extract.rescore import find_checkpoint
from conceptkd_core.extract.teacher_registry import (
    create_teacher,
    find_teacher,
    recorded_teacher_spec,
    teacher_from_workspace,
)
from conceptkd_core.extract.teachers import TeacherError
from conceptkd_core.store.side_files import read_segments
from conceptkd_core.store.workspace import load_workspace
from conceptkd_tools.demo import DEMO_DIR, MODEL_NAME

from tiny_clip import make_tiny_checkpoint, write_labelled_scenes, write_scene


@pytest.fixture(scope="module")
def demo_copy(tmp_path_factory):
    copy = tmp_path_factory.mktemp("demo") / "demo"
    shutil.copytree(DEMO_DIR, copy, ignore=shutil.ignore_patterns("sessions"))
    return copy


def test_uploads_are_checked(tmp_path):
    write_scene(tmp_path / "a.png", 1)
    good = (tmp_path / "a.png").read_bytes()
    result = check_uploads(
        [("a.png", good), ("b.png", b"junk"), ("c.gif", good), ("a again.png", good), ("big.png", b"0" * (21 * 2**20))]
    )
    assert len(result.accepted) == 1  # the same content under two names is one image, and said so
    assert result.accepted[0][0].endswith("-a.png") and result.uploaded_as[result.accepted[0][0]] == "a.png"
    assert result.duplicates == [("a again.png", "the upload a.png")]
    reasons = dict(result.refused)
    assert "not an image" in reasons["b.png"]
    assert "type .gif is not one of" in reasons["c.gif"]
    assert "over the 20 MiB limit" in reasons["big.png"]


def test_add_images_extends_the_workspace(demo_copy, tmp_path):
    ws = load_workspace(demo_copy / "workspace")
    model, checkpoint = find_checkpoint(ws)
    teacher_path = Path(recorded_teacher_spec(ws))
    assert Path(checkpoint).name == f"{MODEL_NAME}.safetensors" and teacher_path.name == "teacher.pt"
    teacher = teacher_from_workspace(ws)
    write_scene(tmp_path / "new.png", 7, size=(128, 128))
    checked = check_uploads([("new.png", (tmp_path / "new.png").read_bytes())])
    merged = add_images(
        ws, checked.accepted, ["dog"], load_clip(model, checkpoint=checkpoint), teacher, demo_copy / "workspace-plus"
    )
    assert merged.n_images == ws.n_images + 1
    np.testing.assert_array_equal(np.asarray(merged.concept_matrix[:-1]), np.asarray(ws.concept_matrix))
    assert merged.labels[-1, list(ws.classes).index("dog")] == 1 and merged.labels[-1].sum() == 1
    assert merged.splits[-1] == "uploaded" and merged.image_path(merged.n_images - 1).is_file()
    assert read_segments(merged)["segment_maps"].shape[0] == merged.n_images
    assert not (demo_copy / "workspace-plus" / ".added").exists()
    with pytest.raises(ValueError, match="already in the workspace"):
        add_images(merged, checked.accepted, [], None, None, demo_copy / "again")
    with pytest.raises(ValueError, match="Unknown classes \\['unicorn'\\]"):
        add_images(ws, checked.accepted, ["unicorn"], None, None, demo_copy / "again")


@pytest.fixture(scope="module")
def zero_shot(tmp_path_factory):
    """A tiny workspace whose teacher is CLIP zero-shot, its images in a read-only folder."""
    folder = tmp_path_factory.mktemp("zero-shot")
    csv = write_labelled_scenes(
        folder, {f"img{i}": ("train" if i < 4 else "test", "cat" if i % 2 else "dog") for i in range(6)}
    )
    config, weights = make_tiny_checkpoint(folder / "model")
    clip = load_clip(str(config), checkpoint=weights)
    images = load_folder(folder / "images", csv)
    teacher = create_teacher("clip-zero-shot", images.classes, clip=clip)
    ws = extract(images, folder / "ws", clip, teacher, ["red square", "grass", "sky"], n_segments=8).workspace
    for path in (folder / "images").iterdir():
        path.chmod(0o444)
    (folder / "images").chmod(0o555)  # the user's image folder: nothing may be written there
    return ws, clip, folder


def test_uploads_go_into_the_new_workspace_and_duplicates_are_skipped_for_a_zero_shot_teacher(zero_shot, tmp_path):
    ws, clip, folder = zero_shot
    before = sorted(p.name for p in (folder / "images").iterdir())
    write_scene(tmp_path / "new.png", 99)
    copy_of_img2 = ws.image_path(2).read_bytes()
    checked = skip_duplicates(
        ws, check_uploads([("new.png", (tmp_path / "new.png").read_bytes()), ("again.png", copy_of_img2)])
    )
    assert checked.duplicates == [("again.png", "image img2")] and len(checked.accepted) == 1
    assert find_teacher(ws) == "clip-zero-shot"
    merged = add_images(ws, checked.accepted, ["cat"], clip, teacher_from_workspace(ws, clip=clip), tmp_path / "plus")
    assert merged.n_images == 7 and sorted(p.name for p in (folder / "images").iterdir()) == before
    new_file = merged.image_path(6)
    assert (
        new_file.parent == (tmp_path / "plus" / "uploads").resolve()
        and new_file.read_bytes() == (tmp_path / "new.png").read_bytes()
    )
    assert merged.image_path(0) == ws.image_path(0)  # the original images stay where they are
    assert str(tmp_path) not in (tmp_path / "plus" / "manifest.parquet").read_bytes().decode("latin-1")
    # Adding to the merged workspace: its uploads come along (the new workspace is self-contained),
    # and the earlier upload, sent again, is a duplicate.
    write_scene(tmp_path / "third.png", 100)
    again = skip_duplicates(
        merged, check_uploads([("n.png", new_file.read_bytes()), ("third.png", (tmp_path / "third.png").read_bytes())])
    )
    assert again.duplicates == [("n.png", f"image {merged.image_ids[6]}")]
    third = add_images(merged, again.accepted, [], clip, teacher_from_workspace(merged, clip=clip), tmp_path / "plus2")
    assert third.n_images == 8 and third.image_path(6).parent == (tmp_path / "plus2" / "uploads").resolve()
    assert third.image_path(6).read_bytes() == new_file.read_bytes()
    np.testing.assert_array_equal(np.asarray(third.concept_matrix[:7]), np.asarray(merged.concept_matrix))


@pytest.fixture(scope="module")
def logits_ws(tmp_path_factory):
    """A tiny workspace whose teacher is a logits file (CSV keyed by image id)."""
    folder = tmp_path_factory.mktemp("logits")
    csv = write_labelled_scenes(
        folder, {f"img{i}": ("train" if i < 3 else "test", "cat" if i % 2 else "dog") for i in range(4)}
    )
    config, weights = make_tiny_checkpoint(folder / "model")
    clip = load_clip(str(config), checkpoint=weights)
    images = load_folder(folder / "images", csv)
    logits = folder / "logits.csv"
    rows = [f"img{i},{i}.5,{-i}" for i in range(4)]
    logits.write_text(f"image_id,{images.classes[0]},{images.classes[1]}\n" + "\n".join(rows) + "\n")
    teacher = create_teacher(logits, images.classes)
    ws = extract(images, folder / "ws", clip, teacher, ["red square", "grass"], n_segments=4).workspace
    return ws, clip


def logits_table(classes, rows: dict[str, tuple[float, float]]) -> bytes:
    return (f"image_id,{classes[0]},{classes[1]}\n" + "".join(f"{k},{a},{b}\n" for k, (a, b) in rows.items())).encode()


def test_a_logits_file_workspace_adds_images_with_uploaded_logits(logits_ws, tmp_path):
    ws, clip = logits_ws
    assert needs_uploaded_logits(ws) and find_teacher(ws) is None  # the file has no logits for new images
    write_scene(tmp_path / "a.png", 50)
    write_scene(tmp_path / "b.png", 51)
    checked = skip_duplicates(
        ws,
        check_uploads(
            [(n, (tmp_path / n).read_bytes()) for n in ("a.png", "b.png")]
            + [("old.png", ws.image_path(1).read_bytes())]
        ),
    )
    assert checked.duplicates == [("old.png", "image img1")] and len(checked.accepted) == 2
    # rows by uploaded file name, a row for the skipped duplicate and one for an image not sent: both ignored
    table = logits_table(ws.classes, {"b.png": (2.0, -2.0), "a.png": (1.0, 3.0), "old.png": (0, 0), "zz.png": (9, 9)})
    teacher = uploaded_logits_teacher(ws, checked, "mine.csv", table)
    merged = add_images(ws, checked.accepted, ["dog"], clip, teacher, tmp_path / "plus")
    assert merged.n_images == 6
    np.testing.assert_array_equal(merged.teacher_logits[:4], ws.teacher_logits)
    np.testing.assert_array_equal(merged.teacher_logits[4:], [[1.0, 3.0], [2.0, -2.0]])
    assert merged.meta["teacher"] == ws.meta["teacher"]  # the workspace's own teacher stays recorded
    added = merged.meta["extra"]["added_teachers"]
    assert added[0]["source"] == "mine.csv" and added[0]["sha256"] == hashlib.sha256(table).hexdigest()
    # the same as Parquet, keyed by the ids the uploads get
    frame = pd.DataFrame(
        {"image_id": [upload_id(n) for n, _ in checked.accepted], ws.classes[0]: [1.0, 2.0], ws.classes[1]: [3.0, -2.0]}
    )
    frame.to_parquet(tmp_path / "l.parquet")
    again = uploaded_logits_teacher(ws, checked, "l.parquet", (tmp_path / "l.parquet").read_bytes())
    assert again.table.keys() == teacher.table.keys()
    np.testing.assert_array_equal(np.stack(list(again.table.values())), np.stack(list(teacher.table.values())))


def test_uploaded_logits_must_cover_the_uploads_with_the_classes_and_finite_values(logits_ws, tmp_path):
    ws, _ = logits_ws
    write_scene(tmp_path / "a.png", 60)
    write_scene(tmp_path / "b.png", 61)
    checked = check_uploads([(n, (tmp_path / n).read_bytes()) for n in ("a.png", "b.png")])
    a, b = ws.classes
    for table, name, message in (
        (logits_table(ws.classes, {"a.png": (1, 2)}), "l.csv", r"l.csv: no logits for 1 uploaded images \(b.png\); "),
        (f"image_id,{a},horse\na.png,1,2\nb.png,1,2\n".encode(), "l.csv", rf"no logits column for classes \['{b}'\]"),
        (f"image_id,{a},{b}\na.png,1,inf\nb.png,1,2\n".encode(), "l.csv", "logits contain NaN or inf"),
        (f"image_id,{a},{b}\na.png,1,2\na.png,1,2\n".encode(), "l.csv", "duplicate image ids, e.g. 'a.png'"),
        (b"1,2\n", "l.npy", r"l.npy: type .npy is not one of .csv, .parquet"),
    ):
        with pytest.raises(TeacherError, match=message):
            uploaded_logits_teacher(ws, checked, name, table)
    # two uploads named alike (from two folders): the name does not say which is which
    write_scene(tmp_path / "c.png", 62)
    twins = check_uploads([("x.png", (tmp_path / "a.png").read_bytes()), ("x.png", (tmp_path / "c.png").read_bytes())])
    with pytest.raises(TeacherError, match=r"no logits for 2 uploaded images \(x.png, x.png\)"):
        uploaded_logits_teacher(ws, twins, "l.csv", logits_table(ws.classes, {"x.png": (1, 2)}))
