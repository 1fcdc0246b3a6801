"""The shipped demo: it loads, matches its own checkpoint, and the real path runs on it in seconds."""

import json

import numpy as np
import pytest

from conceptkd_core.datasets import load_folder
from conceptkd_core.extract.clip_backend import load_clip
from conceptkd_core.extract.pipeline import extract
from conceptkd_core.extract.teacher_registry import create_teacher
from conceptkd_core.store.atomic_io import sha256_file
from conceptkd_core.store.workspace import load_workspace
from conceptkd_core.students.bank import StudentBank
from conceptkd_core.students.session import TuningSession
from conceptkd_core.vocabulary import load_vocabulary
from conceptkd_tools.demo import DEMO_DIR, DEMO_SEGMENTS, MODEL_NAME, TEACHER_PREPROCESSING, evaluate

CONFIG = DEMO_DIR / f"{MODEL_NAME}.json"
WEIGHTS = DEMO_DIR / f"{MODEL_NAME}.safetensors"


@pytest.fixture(scope="module")
def shipped():
    return load_workspace(DEMO_DIR / "workspace")


def test_shipped_workspace_matches_its_checkpoint_and_vocabulary(shipped):
    assert shipped.meta["model"]["checkpoint_sha256"] == sha256_file(WEIGHTS)
    assert shipped.meta["model"]["name"] == MODEL_NAME
    assert list(shipped.vocabulary) == load_vocabulary(DEMO_DIR / "vocabulary.txt")
    assert shipped.meta["extra"]["demo"] == "Clipart Scenes"
    assert shipped.n_images >= 500 and shipped.n_classes == 20
    assert (DEMO_DIR / "LICENSES.md").is_file()


def test_real_path_end_to_end_on_three_shipped_scenes(shipped, tmp_path):
    clip = load_clip(str(CONFIG), checkpoint=WEIGHTS)
    images = load_folder(DEMO_DIR / "images", DEMO_DIR / "labels.csv")
    rows = [images.image_ids.index(i) for i in shipped.image_ids[:3]]
    subset = images.subset(rows)
    teacher = create_teacher(DEMO_DIR / "teacher.pt", subset.classes, preprocessing=TEACHER_PREPROCESSING)
    ws = extract(
        subset, tmp_path / "ws", clip, teacher, list(shipped.vocabulary), batch_size=2, n_segments=DEMO_SEGMENTS
    ).workspace
    # the same code on the same images reproduces the shipped rows
    np.testing.assert_allclose(
        np.asarray(ws.concept_matrix, np.float32), np.asarray(shipped.concept_matrix[:3], np.float32), atol=2e-3
    )
    np.testing.assert_allclose(ws.teacher_logits, shipped.teacher_logits[:3], atol=1e-3)
    # fit, tune, undo on the shipped workspace
    bank = StudentBank().fit(shipped.concept_matrix, shipped.teacher_logits)
    session = TuningSession(
        bank, shipped.concept_matrix, shipped.teacher_logits, shipped.labels, shipped.classes, shipped.vocabulary
    )
    before = bank.coef_.copy()
    j = int(np.argmax(np.abs(bank.coef_[0])))
    session.set_weight(0, j, 0.0)
    assert bank.coef_[0, j] == 0
    session.undo()
    np.testing.assert_array_equal(bank.coef_, before)


def test_demo_eval_reproduces_the_committed_figures():
    recorded = json.loads((DEMO_DIR / "eval.json").read_text())
    measured = evaluate(DEMO_DIR)
    for key in (
        "clip_zero_shot_top1",
        "teacher_map",
        "student_map",
        "student_teacher_gap",
        "balanced_agreement",
        "plain_agreement",
        "pointing_game",
    ):
        assert measured[key] == pytest.approx(recorded[key], abs=0.01), key
