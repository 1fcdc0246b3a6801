"""``bench extract``: the dense extraction pipeline against the model alone, on one device.

A randomly initialised open_clip model (speed does not depend on trained weights) and synthetic
scenes written as PNG files of PASCAL VOC's usual size (500 x 375), so decoding and resizing cost
what they cost on real data. Three figures, all in images per second:

* ``encode_image_images_per_s``: plain ``encode_image`` on a batch already decoded and squared
  (the model alone: the ceiling);
* ``dense_images_per_s``: the pipeline's shards from the files (decode, resize and superpixels in
  ``workers`` processes, or with ``segmenter`` torch-slic the superpixels on the device; the dense
  forward pass, segment pooling, concept vectors, top concepts);
  ``ratio`` is this over the ceiling;
* ``end_to_end_images_per_s``: ``extract`` of the same files into a fresh workspace (worker start-up,
  shard writes, assembly and the workspace's files included), with the CLIP zero-shot teacher;
* ``worker_start_s``: starting the pipeline's workers and its first batch, once per extraction.

Concept text embeddings are random unit vectors put in ``extract``'s text cache: encoding 584
words with a ViT-B/16 text tower takes minutes on a CPU, and real runs cache them per vocabulary.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

SCENE_SIZE = (500, 375)  # width, height: PASCAL VOC's most common image size


def children_cpu_s() -> float:
    """CPU seconds of this process's children: those ended and reaped (``getrusage``), and those
    alive, read from /proc (Linux; elsewhere only the reaped). The pipeline's workers live through
    all the rounds: ``getrusage`` alone would not count them until the pool closes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = children.ru_utime + children.ru_stime
    for child in multiprocessing.active_children():
        try:  # fields after the command's closing parenthesis: state is field 3, utime 14, stime 15
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue
    return total


class _Clock:
    """Wall seconds of a block, and CPU seconds of this process (all its threads) and of its children."""

    def __enter__(self) -> _Clock:
        self.wall, self.main, self.children = time.perf_counter(), time.process_time(), children_cpu_s()
        return self

    def __exit__(self, *exc_info) -> None:
        self.wall = time.perf_counter() - self.wall
        self.main, self.children = time.process_time() - self.main, children_cpu_s() - self.children

    @property
    def cpu(self) -> float:
        return self.main + self.children


def _random_clip(model_name: str, device: str, seed: int):
    import torch

    from conceptkd_core.extract.clip_backend import ClipModel
    from conceptkd_core.extract.torch_compat import import_open_clip

    open_clip = import_open_clip()
    torch.manual_seed(seed)
    model = open_clip.create_model(model_name, pretrained=None, device=device).eval()
    visual = model.visual
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    patch = visual.patch_size[0] if isinstance(visual.patch_size, (tuple, list)) else visual.patch_size
    mean, std = open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD
    return ClipModel(model, open_clip.get_tokenizer(model_name), model_name, None, None, size, patch, mean, std, device)


def _write_scenes(folder: Path, count: int, rng: np.random.Generator):
    """Blocky scenes (superpixels have real edges to follow) as PNG files, and their ImageSet."""
    from PIL import Image

    from conceptkd_core.datasets import load_folder

    (folder / "images").mkdir(parents=True)
    lines = ["image,labels"]
    width, height = SCENE_SIZE
    for i in range(count):
        blocks = rng.integers(0, 255, (height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
        pixels = np.kron(blocks, np.ones((25, 25, 1), dtype=np.uint8))[:height, :width]
        Image.fromarray(pixels).save(folder / "images" / f"{i:05d}.png")
        lines.append(f"{i:05d}.png,{'scene' if i % 2 else 'other'}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return load_folder(folder / "images", folder / "labels.csv")


def bench_extract(
    model_name: str = "ViT-B-16",
    batch_size: int = 8,
    batches: int = 4,
    device: str = "cpu",
    n_concepts: int = 584,
    workers: int | None = None,
    segmenter: str = "slic",
    superpixel_size: int | None = None,
    rounds: int = 3,
    seed: int = 0,
) -> dict:
    """Images per second of the model alone, of the dense pipeline and of ``extract`` end to end.

    The model alone and the pipeline take turns, ``rounds`` times ``batches`` batches each (the
    pipeline on new images each round, its first batch's preparation included), and each figure is
    the median over rounds, so a machine whose load drifts weighs on both alike. The pipeline's
    workers start once, before the rounds, as they do once for a whole extraction: their start-up
    (with the first batch) is reported on its own, ``worker_start_s``, and is part of the cold
    ``end_to_end`` figure: ``extract`` once on ``batches + 1`` batches, workers started anew.
    ``workers``: processes preparing images (default ``batching.default_workers`` for ``device``);
    ``segmenter``: who cuts the superpixels (``defaults.SEGMENTERS``); ``superpixel_size``: on the
    image shrunk to how many pixels (None: ``defaults.SUPERPIXEL_SIZE``, at most the model's size).
    """
    import torch

    from conceptkd_core.defaults import N_SEGMENTS
    from conceptkd_core.extract.batching import default_workers
    from conceptkd_core.extract.clip_backend import encode_image, text_cache_path, to_model_input
    from conceptkd_core.extract.pipeline import ExtractionJob, extract, local_engine
    from conceptkd_core.extract.segments import superpixel_size as cut_size
    from conceptkd_core.extract.teachers import ClipZeroShotTeacher
    from conceptkd_core.images import load_rgb, square_resize
    from conceptkd_core.store.atomic_io import atomic_write_npy

    clip = _random_clip(model_name, device, seed)
    cut = cut_size(clip.image_size, superpixel_size)
    workers = default_workers(device) if workers is None else workers
    rng = np.random.default_rng(seed)
    dim = clip.model.text_projection.shape[1] if clip.model.text_projection is not None else 512
    text = rng.standard_normal((n_concepts, dim))
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    vocabulary = [f"concept {j:04d}" for j in range(n_concepts)]

    def synchronize():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory(prefix="conceptkd-bench-extract-") as tmp:
        folder = Path(tmp)
        images = _write_scenes(folder, (rounds * batches + 1) * batch_size, rng)
        teacher = ClipZeroShotTeacher(clip, images.classes)
        ready = [square_resize(load_rgb(images.absolute_path(r)), clip.image_size) for r in range(batch_size)]
        job = ExtractionJob(images, text, batch_size, N_SEGMENTS, segmenter, cut)
        encode_image(clip, to_model_input(clip, ready))  # warm-up, not timed
        preparer = job.preparer(clip, teacher, workers)
        plain, dense = [], []
        try:
            with _Clock() as start_up:  # the workers' start and the model's first batch
                list(job.shards(clip, teacher, [0], preparer))
                synchronize()
            for round_ in range(rounds):
                with _Clock() as clock:
                    for _ in range(batches):
                        encode_image(clip, to_model_input(clip, ready))
                    synchronize()
                plain.append(clock)
                first = (1 + round_ * batches) * batch_size
                starts = range(first, first + batches * batch_size, batch_size)
                with _Clock() as clock:
                    for _ in job.shards(clip, teacher, starts, preparer):
                        pass
                    synchronize()
                dense.append(clock)
        finally:
            preparer.close()

        subset = images.subset(range((batches + 1) * batch_size))
        atomic_write_npy(text_cache_path(clip, vocabulary, folder / "text"), text)
        t0 = time.perf_counter()
        extract(
            subset,
            folder / "workspace",
            clip,
            teacher,
            vocabulary,
            batch_size=batch_size,
            segmenter=segmenter,
            superpixel_size=cut,
            text_cache=folder / "text",
            engine=local_engine(clip, teacher, workers=workers),
        )
        end_to_end = len(subset) / (time.perf_counter() - t0)
    timed = batches * batch_size
    plain_rate, dense_rate = (float(np.median([timed / c.wall for c in clocks])) for clocks in (plain, dense))
    plain_cpu, dense_cpu = (float(np.median([c.cpu / timed for c in clocks])) for clocks in (plain, dense))
    dense_main = float(np.median([c.main / timed for c in dense]))
    dense_workers = float(np.median([c.children / timed for c in dense]))
    return {
        "bench": "extract",
        "model": model_name,
        "image_size": clip.image_size,
        "scene_size": list(SCENE_SIZE),
        "batch_size": batch_size,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "workers": workers,
        "segmenter": segmenter,
        "superpixel_size": cut,
        "n_concepts": n_concepts,
        "rounds": rounds,
        "worker_start_s": round(start_up.wall, 3),
        "encode_image_images_per_s": round(plain_rate, 2),
        "dense_images_per_s": round(dense_rate, 2),
        "ratio": round(dense_rate / plain_rate, 3),
        "ratio_per_round": [round(p.wall / d.wall, 3) for d, p in zip(dense, plain, strict=True)],
        # CPU seconds per image (this process and its workers): on a machine others load too, the
        # model alone over the pipeline in CPU is what ``ratio`` would be on an idle one.
        "encode_image_cpu_s_per_image": round(plain_cpu, 3),
        "dense_cpu_s_per_image": round(dense_cpu, 3),
        # … of which this process (the model's host side: batching, copies, NumPy work, its threads)
        # and the workers (decoding, resizing, superpixels)
        "dense_main_cpu_s_per_image": round(dense_main, 4),
        "dense_workers_cpu_s_per_image": round(dense_workers, 4),
        "cpu_ratio": round(plain_cpu / dense_cpu, 3),
        "end_to_end_images_per_s": round(end_to_end, 2),
        "end_to_end_images": len(subset),
    }
