"""The demo's mini CLIP training: a build killed mid-training resumes from its last checkpoint,
carries its steps and scenes over, retrains nothing, and ends where an uninterrupted run ends."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conceptkd_core.datasets import VOC_CLASSES
from conceptkd_tools import demo_scenes
from conceptkd_tools.demo import CHECKPOINT_FOLDER, MODEL_NAME, class_words, register_demo_model
from conceptkd_tools.demo_training import (
    CHECKPOINT_NAME,
    ClipTrainingPlan,
    SceneBatches,
    TrainingError,
    load_checkpoint,
    train_clip,
)

pytestmark = pytest.mark.skipif(not demo_scenes.EMOJI_FONT.is_file(), reason="the demo build needs the emoji font")
ROOT = Path(__file__).resolve().parent.parent
PLAN = ClipTrainingPlan(scenes=48, batch_size=8, seed=3)  # 6 steps


@pytest.fixture(scope="module")
def sprites():
    return demo_scenes.load_sprites(VOC_CLASSES, 0)


def _train_command(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "conceptkd_core",
        "demo",
        "train-clip",
        "--out",
        str(out),
        "--clip-scenes",
        str(PLAN.scenes),
        "--batch-size",
        str(PLAN.batch_size),
        "--seed",
        str(PLAN.seed),
        "--workers",
        "0",
        "--checkpoint-minutes",
        "0",
    ]


def _steps_in(checkpoint: Path) -> int:
    try:
        return load_checkpoint(checkpoint, PLAN)["progress"]["steps"]
    except (FileNotFoundError, RuntimeError, EOFError):
        return 0


def test_killed_training_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(tmp_path, sprites):
    out = tmp_path / "demo"
    checkpoint = out / CHECKPOINT_FOLDER / CHECKPOINT_NAME
    process = subprocess.Popen(_train_command(out), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while _steps_in(checkpoint) < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # no chance to save anything on the way out
    process.wait()
    killed_at = _steps_in(checkpoint)
    assert 2 <= killed_at < PLAN.total_steps, f"killed after {killed_at} of {PLAN.total_steps} steps"
    assert not (out / f"{MODEL_NAME}.safetensors").exists()

    resumed = subprocess.run(_train_command(out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert record["done"] and record["steps"] == PLAN.total_steps
    assert record["scenes_seen"] == PLAN.total_steps * PLAN.batch_size
    # The second run started where the checkpoint stopped: no step was done twice.
    assert [run["steps"] for run in record["runs"]] == [killed_at, PLAN.total_steps - killed_at]
    assert json.loads((out / "eval.json").read_text())["clip_training"] == record

    # The resumed model is the uninterrupted one: same batches, same optimiser state.
    register_demo_model(tmp_path / "config")
    whole, progress = train_clip(sprites, PLAN, tmp_path / "whole", workers=0, log=lambda _: None)
    assert progress["done"] and progress["runs"][0]["steps"] == PLAN.total_steps
    from safetensors.torch import load_file

    saved = load_file(str(out / f"{MODEL_NAME}.safetensors"))
    for name, value in whole.state_dict().items():
        np.testing.assert_allclose(saved[name].float().numpy(), value.half().float().numpy(), atol=2e-3, err_msg=name)


def test_batches_do_not_depend_on_the_number_of_workers(sprites):
    from conceptkd_core.extract.torch_compat import import_open_clip

    open_clip = import_open_clip()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")

    def first(workers: int, start: int) -> list[dict]:
        stream = SceneBatches(sprites, class_words(), tokenizer, 4, 7, start, 32)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers)
        batches = []
        for batch in loader:
            batches.append(batch)
            if len(batches) == 3:
                return batches
        return batches

    for a, b in zip(first(0, 5), first(2, 5), strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert not torch.equal(first(0, 5)[0]["images"], first(0, 6)[0]["images"])


def test_a_checkpoint_of_another_plan_is_refused_in_one_line(tmp_path, sprites):
    register_demo_model(tmp_path / "config")
    train_clip(sprites, ClipTrainingPlan(scenes=8, batch_size=8, seed=1), tmp_path, workers=0, log=lambda _: None)
    with pytest.raises(TrainingError, match="use the same --clip-scenes"):
        train_clip(sprites, ClipTrainingPlan(scenes=16, batch_size=8, seed=1), tmp_path, workers=0, log=lambda _: None)
