"""Adding uploaded images to a workspace: refused files say why, accepted ones are extracted and merged."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from conceptkd_core.extract.add_images import add_images, check_uploads
from conceptkd_core.extract.clip_backend import load_clip
from conceptkd_core.extract.rescore import find_checkpoint
from conceptkd_core.extract.teacher_registry import recorded_teacher_spec, teacher_from_workspace
from conceptkd_core.store.side_files import read_segments
from conceptkd_core.store.workspace import load_workspace
from conceptkd_tools.demo import DEMO_DIR, MODEL_NAME

from tiny_clip import write_scene


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
    assert len(result.accepted) == 1  # the same content under two names is one image
    assert result.accepted[0][0].endswith("-a.png")
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
