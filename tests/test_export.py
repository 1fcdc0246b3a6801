"""Export and predict: an exported student scores a workspace image as the workspace's students do
(to 1e-4), through the JSON heads and the TorchScript file alike; the folder checks itself; the
Predict page's scorer agrees with both."""

import hashlib
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conceptkd_core.datasets import load_folder
from conceptkd_core.explorer import new_session, open_explorer
from conceptkd_core.export import DENSE_FILE, MODEL_FILE, ExportError, export_students, export_zip, load_export
from conceptkd_core.extract.clip_backend import load_clip
from conceptkd_core.extract.pipeline import extract
from conceptkd_core.extract.teacher_registry import create_teacher
from conceptkd_core.images import load_rgb
from conceptkd_core.predict import Predictor, prediction_waterfall, score_table, segment_shares, workspace_clip
from conceptkd_core.vocabulary import load_vocabulary
from conceptkd_tools.demo import DEMO_DIR, DEMO_SEGMENTS, MODEL_NAME, TEACHER_PREPROCESSING

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_copy(tmp_path_factory):
    """40 demo scenes (20 val, 20 test) extracted here with the demo's mini CLIP and teacher: the
    exported model must reproduce what this machine's extraction stored."""
    folder = tmp_path_factory.mktemp("demo")
    for name in (f"{MODEL_NAME}.json", f"{MODEL_NAME}.safetensors", "teacher.pt"):
        shutil.copy(DEMO_DIR / name, folder / name)
    full = load_folder(DEMO_DIR / "images", DEMO_DIR / "labels.csv")
    rows = [i for i, s in enumerate(full.splits) if s == "val"][:20] + [
        i for i, s in enumerate(full.splits) if s == "test"
    ][:20]
    images = full.subset(rows)
    clip = load_clip(str(folder / f"{MODEL_NAME}.json"), checkpoint=folder / f"{MODEL_NAME}.safetensors")
    teacher = create_teacher(folder / "teacher.pt", images.classes, preprocessing=TEACHER_PREPROCESSING)
    extract(
        images,
        folder / "workspace",
        clip,
        teacher,
        load_vocabulary(DEMO_DIR / "vocabulary.txt"),
        n_segments=DEMO_SEGMENTS,
    )
    return folder / "workspace"


@pytest.fixture(scope="module")
def exported(demo_copy, tmp_path_factory):
    explorer = open_explorer(demo_copy)
    session = new_session(explorer, autosave=False)
    session.upweight(0, int(np.flatnonzero(session.bank.coef_[0])[0]))  # a tuned student is exported as tuned
    out = tmp_path_factory.mktemp("export") / "model"
    summary = export_students(explorer, session, workspace_clip(explorer.workspace), out, tuning_log=b"log")
    return explorer, session, out, summary


def test_exported_students_score_workspace_images_as_the_workspace_does(exported):
    explorer, session, out, summary = exported
    ws = explorer.workspace
    model = load_export(out)
    used = np.flatnonzero((session.bank.coef_ != 0).any(axis=0))
    assert model.concepts == [ws.vocabulary[j] for j in used] and summary.concepts_used == used.size < ws.n_concepts
    assert np.load(out / "concept_embeddings.npy").shape[0] == used.size  # non-zero concepts only
    expected = session.bank.decision_function(np.asarray(ws.concept_matrix, np.float32))
    explained = 0
    for row in range(ws.n_images):
        got = model.predict(load_rgb(ws.image_path(row)))
        scores = np.array([got["scores"][c] for c in ws.classes])
        dense = np.array([got["dense_scores"][c] for c in ws.classes])
        np.testing.assert_allclose(scores, expected[row], atol=1e-4)
        np.testing.assert_allclose(dense, expected[row], atol=1e-4)  # the TorchScript file's own heads
        top = got["top_concepts"][ws.classes[0]]  # empty where none of the class's concepts fires
        assert all(abs(a["contribution"]) >= abs(b["contribution"]) for a, b in zip(top, top[1:], strict=False))
        assert {t["concept"] for t in top} <= set(model.concepts)
        explained += bool(top)
    assert explained >= ws.n_images // 2


def test_the_torchscript_file_runs_with_torch_alone(exported):
    explorer, session, out, _ = exported
    model = load_export(out)
    inputs = model.model_inputs(load_rgb(explorer.workspace.image_path(3)))
    torch.save(inputs, out.parent / "inputs.pt")
    code = (
        "import sys, torch; sys.modules['conceptkd_core'] = None; m = torch.jit.load(sys.argv[1]); "
        "x, s = torch.load(sys.argv[2]); c, y, b = m(torch.cat([x, x]), torch.cat([s, s])); "
        "print(y.shape[0], y.shape[1], float((y[0] - y[1]).abs().max()))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(out / DENSE_FILE), str(out.parent / "inputs.pt")],
        cwd=out.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.split() == [str(2), str(len(explorer.classes)), "0.0"]
    assert b"/work" not in (out / DENSE_FILE).read_bytes() and str(ROOT).encode() not in (out / DENSE_FILE).read_bytes()


def test_the_model_card_holds_held_out_figures_and_the_log_hash(exported):
    explorer, session, out, _ = exported
    document = json.loads((out / MODEL_FILE).read_text())
    card = document["card"]
    assert card["held_out_images"] == explorer.split.n_held_out == 20 and card["tuning_edits"] == 1
    assert card["tuning_log_sha256"] == hashlib.sha256(b"log").hexdigest()
    first = card["held_out_per_class"][0]
    assert {"chance_ap", "teacher_ap", "student_ap", "balanced_agreement"} <= set(first)
    assert set(card["concepts_per_class"][explorer.classes[0]]) <= set(document["concepts"])
    assert document["clip"]["image_size"] == 96 and document["segments"]["n_segments"] == DEMO_SEGMENTS
    text = (out / "MODEL_CARD.md").read_text()
    assert "held-out images the students were never fit on" in text and card["tuning_log_sha256"] in text
    names = {n.split("/")[-1] for n in zipfile.ZipFile(io.BytesIO(export_zip(out))).namelist()}
    assert names == {MODEL_FILE, DENSE_FILE, "concept_embeddings.npy", "vocabulary.txt", "MODEL_CARD.md"}


def test_a_changed_or_foreign_folder_is_refused(exported, tmp_path):
    _, _, out, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "concept_embeddings.npy", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ExportError, match="concept_embeddings.npy: missing or changed since export"):
        load_export(copy)
    with pytest.raises(ExportError, match="no readable model.json"):
        load_export(tmp_path)


def test_the_predict_page_scorer_agrees_with_the_workspace(exported):
    explorer, session, _, _ = exported
    ws = explorer.workspace
    predictor = Predictor(ws, workspace_clip(ws))
    teacher = create_teacher(ws.root.parent / "teacher.pt", ws.classes, preprocessing=TEACHER_PREPROCESSING)
    row = 5
    prediction = predictor.predict(load_rgb(ws.image_path(row)), session.bank, teacher)
    np.testing.assert_array_equal(prediction.concept_scores, np.asarray(ws.concept_matrix[row], np.float32))
    np.testing.assert_allclose(1 / (1 + np.exp(-ws.teacher_logits[row])), prediction.teacher_probs, atol=1e-4)
    waterfall = prediction_waterfall(prediction, session.bank, ws.vocabulary, 2)
    assert waterfall.score == pytest.approx(prediction.student_scores[2], abs=1e-5)  # float32 vs float64 sums
    shares = segment_shares(prediction, session.bank, 2)
    assert shares.sum() == pytest.approx(waterfall.score - session.bank.intercept_[2], abs=1e-9)
    table = score_table(prediction, ws.classes)
    assert set(table["model"]) == {"teacher", "student"} and len(table) == 2 * len(ws.classes)


def test_cli_export_then_predict(demo_copy, tmp_path):
    out = tmp_path / "cli-model"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "conceptkd_core",
            "student",
            "export",
            "--workspace",
            str(demo_copy),
            "--out",
            str(out),
            "--bench",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["export_bytes"] > 0 and summary["student_s_per_image"] > 0 and summary["teacher_s_per_image"] > 0
    explorer = open_explorer(demo_copy)
    image = explorer.workspace.image_path(7)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "conceptkd_core",
            "student",
            "predict",
            "--model",
            str(out),
            str(image),
            str(demo_copy / "conceptkd.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert run.returncode == 1 and len(lines) == 2 and "not an image file" in lines[1]["error"]
    expected = explorer.base_bank.decision_function(np.asarray(explorer.workspace.concept_matrix[[7]], np.float32))[0]
    np.testing.assert_allclose([lines[0]["scores"][c] for c in explorer.classes], expected, atol=1e-4)
    assert len(lines[0]["top_concepts"][explorer.classes[0]]) == 5
    bad = subprocess.run(
        [sys.executable, "-m", "conceptkd_core", "student", "predict", "--model", str(tmp_path), str(image)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "no readable model.json" in bad.stderr
