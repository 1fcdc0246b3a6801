"""Where a dense extraction batch spends its time on a device, and what reduced precision does to
the scores: ``python -m conceptkd_tools.extract_stages --device cuda``.

One JSON line per model. For a batch of demo scenes already decoded and squared (what the CPU
workers hand over), the median milliseconds of each stage of ``batching.launch_shard`` timed alone
(device-synchronised): the copy to the device, ``torch-slic`` at the model's size and at the
superpixel size extraction uses (``segments.superpixel_size``), the model's dense pass (float32,
TF32 matmuls, bf16 autocast), segment pooling + concept scores + top concepts with the copies
back. Then the concept vectors computed with TF32 and with bf16 against float32 on the same
segments: the largest difference, and the share of scores that differ by more than the float16
rounding step the workspace stores them at.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def _median_ms(run, device: str, repeats: int) -> float:
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    run()  # warm-up: kernels, caches, allocator
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1000, 2)


def _precision_effect(reference: np.ndarray, other: np.ndarray) -> dict:
    """How far ``other`` concept scores are from float32's, against float16's rounding step there."""
    step = np.spacing(np.abs(reference).astype(np.float16)).astype(np.float32)
    difference = np.abs(other - reference)
    return {"max_abs_diff": float(difference.max()), "share_beyond_f16_step": float((difference > step).mean())}


def profile(clip, images: list[np.ndarray], n_segments: int, text: torch.Tensor, repeats: int = 5) -> dict:
    """Stage timings and precision effects for one batch of ``images`` (uint8, squared to the model)."""
    from conceptkd_core.extract import torch_slic
    from conceptkd_core.extract.batching import segment_concepts
    from conceptkd_core.extract.clip_backend import dense_patch_features, to_model_input
    from conceptkd_core.extract.segments import shrink, superpixel_size

    device = str(clip.device)
    cuda = device.startswith("cuda")
    stacked = np.stack(images)
    pixels = torch.from_numpy(stacked).to(device)
    cut = superpixel_size(clip.image_size)
    small = torch.from_numpy(np.stack([shrink(image, cut) for image in images])).to(device)
    weights, counts, _ = torch_slic.segment_batch(pixels, clip.grid_size, n_segments)
    batch = to_model_input(clip, images)

    def dense(tf32: bool = False, bf16: bool = False) -> torch.Tensor:
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            with torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=bf16):
                return dense_patch_features(clip, batch).float()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous

    patches = dense()
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "model": clip.name,
        "batch": len(images),
        "n_segments": n_segments,
        "ms_copy_to_device": _median_ms(lambda: torch.from_numpy(stacked).to(device), device, repeats),
        "ms_torch_slic": _median_ms(
            lambda: torch_slic.segment_batch(pixels, clip.grid_size, n_segments), device, repeats
        ),
        "superpixel_size": cut,
        "ms_torch_slic_at_superpixel_size": _median_ms(
            lambda: torch_slic.segment_batch(small, clip.grid_size, n_segments, clip.image_size), device, repeats
        ),
        "ms_model_input": _median_ms(lambda: to_model_input(clip, images), device, repeats),
        "ms_dense_fp32": _median_ms(dense, device, repeats),
        "ms_dense_tf32": _median_ms(lambda: dense(tf32=True), device, repeats) if cuda else None,
        "ms_dense_bf16": _median_ms(lambda: dense(bf16=True), device, repeats),
        "ms_segment_concepts": _median_ms(lambda: segment_concepts(patches, weights, counts, text), device, repeats),
    }
    reference = segment_concepts(patches, weights, counts, text)["concepts"]
    variants = {"tf32": dense(tf32=True)} if cuda else {}
    variants["bf16"] = dense(bf16=True)
    for name, other in variants.items():
        scores = segment_concepts(other, weights, counts, text)["concepts"]
        result[f"{name}_vs_fp32"] = _precision_effect(reference, scores)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conceptkd_tools.extract_stages", description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--models", default="demo,ViT-B-16", help="'demo' (the shipped mini CLIP) and open_clip names")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from conceptkd_core.extract.clip_backend import concept_embeddings, load_clip, register_model_config
    from conceptkd_core.images import load_rgb, square_resize
    from conceptkd_core.vocabulary import load_vocabulary
    from conceptkd_tools.bench_extract import _random_clip
    from conceptkd_tools.demo import DEMO_DIR, DEMO_SEGMENTS, MODEL_NAME

    files = sorted((DEMO_DIR / "images").glob("*.png"))[: args.batch_size]
    for name in args.models.split(","):
        if name == "demo":
            config = DEMO_DIR / f"{MODEL_NAME}.json"
            register_model_config(config)
            clip = load_clip(str(config), checkpoint=DEMO_DIR / f"{MODEL_NAME}.safetensors", device=args.device)
            text = torch.from_numpy(concept_embeddings(clip, load_vocabulary(DEMO_DIR / "vocabulary.txt")))
            n_segments = DEMO_SEGMENTS
        else:
            clip = _random_clip(name, args.device, seed=0)
            rng = np.random.default_rng(0)
            text = torch.from_numpy(rng.standard_normal((584, clip.model.text_projection.shape[1]), dtype=np.float32))
            text = torch.nn.functional.normalize(text, dim=-1)
            n_segments = 24
        images = [square_resize(load_rgb(Path(f)), clip.image_size) for f in files]
        print(json.dumps(profile(clip, images, n_segments, text.to(args.device), args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
