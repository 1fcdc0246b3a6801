"""The stage profiler the GPU figures in README came from: it runs, and its precision check can fail."""

import numpy as np
import torch

from conceptkd_core.extract.clip_backend import concept_embeddings, load_clip
from conceptkd_core.images import load_rgb, square_resize
from conceptkd_core.vocabulary import load_vocabulary
from conceptkd_tools.demo import DEMO_DIR, MODEL_NAME
from conceptkd_tools.extract_stages import _precision_effect, profile


def test_profile_times_every_stage_and_measures_bf16_against_fp32():
    clip = load_clip(str(DEMO_DIR / f"{MODEL_NAME}.json"), checkpoint=DEMO_DIR / f"{MODEL_NAME}.safetensors")
    text = torch.from_numpy(concept_embeddings(clip, load_vocabulary(DEMO_DIR / "vocabulary.txt")))
    files = sorted((DEMO_DIR / "images").glob("*.png"))[:2]
    images = [square_resize(load_rgb(f), clip.image_size) for f in files]
    result = profile(clip, images, 12, text, repeats=1)
    assert result["batch"] == 2 and result["device"] == "cpu"
    stages = (
        "ms_torch_slic",
        "ms_torch_slic_at_superpixel_size",
        "ms_dense_fp32",
        "ms_dense_bf16",
        "ms_segment_concepts",
    )
    assert all(result[k] > 0 for k in stages) and result["superpixel_size"] == 96  # the demo CLIP: cut at its size
    effect = result["bf16_vs_fp32"]
    assert 0 < effect["max_abs_diff"] < 0.05 and 0 <= effect["share_beyond_f16_step"] <= 1


def test_precision_effect_counts_differences_beyond_the_float16_step():
    reference = np.array([[0.25, 0.5, 0.0]], np.float32)
    step = float(np.spacing(np.float16(0.5)))
    assert _precision_effect(reference, reference)["share_beyond_f16_step"] == 0
    moved = reference + np.array([[0, 2 * step, 0]], np.float32)
    assert _precision_effect(reference, moved) == {"max_abs_diff": np.float32(2 * step), "share_beyond_f16_step": 1 / 3}


def start_gpu_bench(out, **env):
    """``gpu_bench.sh`` into ``out``, started (on the CPU, tiny unless ``env`` says otherwise)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    settings = os.environ | {"PYTHON": sys.executable, "BATCH_SIZE": "1", "BATCHES": "1", "MODEL": "ViT-S-32"} | env
    return subprocess.Popen(["bash", "conceptkd_tools/gpu_bench.sh", str(out)], cwd=root, env=settings)


def results_of(run, out) -> list[dict]:
    import json

    assert run.wait(timeout=600) == 0
    return [json.loads(line) for line in (out / "gpu_bench.jsonl").read_text().splitlines()]


def test_the_gpu_script_runs_every_benchmark_and_records_a_failed_one(tmp_path):
    """The one script a session lent a GPU runs (README "Performance"), here on the CPU, tiny. The
    failing pass (no such GPU: each run is refused at once) runs beside the real one, so that its
    Python start-ups use the core the real runs leave idle."""
    failing = start_gpu_bench(tmp_path / "failed", DEVICE="cuda:99")
    results = results_of(start_gpu_bench(tmp_path, DEVICE="cpu"), tmp_path)
    assert [(r["segmenter"], r["superpixel_size"]) for r in results[:4]] == [
        ("torch-slic", 112),
        ("slic", 112),
        ("torch-slic", 224),
        ("slic", 224),
    ]
    assert all(r["ratio"] > 0 and r["model"] == "ViT-S-32" for r in results[:4])
    assert results[4]["ms_torch_slic_at_superpixel_size"] > 0 and len(results) == 5
    import json

    profiled = json.loads((tmp_path / "profiled_run.json").read_text())  # the profiled run's own line
    assert profiled["segmenter"] == "torch-slic" and profiled["ratio"] > 0
    assert "function calls" in (tmp_path / "bench_extract_profile.txt").read_text()  # pstats' table
    failed = results_of(failing, tmp_path / "failed")  # each run says it failed
    assert len(failed) == 5 and all("failed" in r for r in failed)
