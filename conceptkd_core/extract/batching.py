"""The batched dense pipeline: images prepared in worker processes while the model runs.

Per image, a worker decodes the file, squares it to the model's input size and, with the ``slic``
segmenter (the default and the reference), cuts it into SLIC superpixels (the CPU-heavy part:
~8 ms an image at the default ``SUPERPIXEL_SIZE``, 33 ms at 224 px) and measures how much of each
patch every segment covers; it works a shard or two ahead of the model. With ``torch-slic`` the
workers only decode, resize and shrink to the superpixel size, and the model's device segments the
whole batch (``torch_slic``): on a GPU the CPUs could not keep up with the model.
The model then runs on the whole batch, and segment pooling, scoring against the concept
embeddings, the concept vector and each segment's top concepts are batched tensor operations on
the model's device: nothing is done one image at a time in the main process.
``segments.concepts_for_image`` is the per-image reference this is tested against (same segments,
scores equal within float16 rounding).

Float32 throughout: half precision would change the stored scores by more than their float16
rounding unless measured otherwise, and no GPU was at hand to measure it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets import ImageSet
from ..defaults import DEFAULT_SEGMENTER, MAX_SEGMENTS, N_SEGMENTS, SEGMENTERS, TOP_CONCEPTS_PER_SEGMENT
from ..images import load_rgb, square_resize
from . import torch_slic
from .clip_backend import ClipModel, dense_patch_features, to_model_input
from .segments import patch_weights, shrink, small_segment_map, superpixels
from .teachers import ClipZeroShotTeacher, Teacher

SHARDS_AHEAD = 2  # shards prepared ahead of the one the model works on


@dataclass(frozen=True)
class PreparedImage:
    """One image made ready for the model by a worker (or its failure to load)."""

    row: int
    pixels: np.ndarray | None = None  # (S, S, 3) uint8, squared to the model's input size
    small: np.ndarray | None = None  # (C, C, 3) uint8 torch-slic cuts: shrunk, or pixels itself when C = S
    coverage: np.ndarray | None = None  # (K, grid * grid) float32: share of each patch each segment covers
    segment_map: np.ndarray | None = None  # (SEGMENT_MAP_SIZE, SEGMENT_MAP_SIZE) uint8
    original: np.ndarray | None = None  # (H, W, 3) uint8 as decoded, for a teacher that reads pixels
    failure: dict | None = None


@dataclass(frozen=True)
class Preparation:
    """What a worker needs to prepare images; picklable, sent once to each worker process."""

    images: ImageSet
    image_size: int
    grid: int
    n_segments: int
    keep_original: bool
    segmenter: str = DEFAULT_SEGMENTER  # "torch-slic": segments are cut on the model's device, not here
    superpixel_size: int | None = None  # the side superpixels are cut at (None: the model's input size)

    @classmethod
    def of(
        cls,
        images: ImageSet,
        clip: ClipModel,
        teacher: Teacher,
        n_segments: int,
        segmenter: str = DEFAULT_SEGMENTER,
        superpixel_size: int | None = None,
    ) -> Preparation:
        check_segmenter(segmenter)
        reads = _teacher_reads_pixels(clip, teacher)
        return cls(images, clip.image_size, clip.grid_size, n_segments, reads, segmenter, superpixel_size)

    def prepare(self, row: int) -> PreparedImage:
        try:
            image = load_rgb(self.images.absolute_path(row))
        except Exception as exc:  # any unreadable image (ImageError, a path outside the root, …) is skipped
            failure = {"image_id": self.images.image_ids[row], "path": self.images.paths[row], "error": str(exc)}
            return PreparedImage(row, failure=failure)
        pixels = square_resize(image, self.image_size)
        original = np.asarray(image) if self.keep_original else None
        if self.segmenter != "slic":
            return PreparedImage(row, pixels, shrink(pixels, self.superpixel_size), original=original)
        labels = superpixels(pixels, self.n_segments, cut_size=self.superpixel_size)
        return PreparedImage(
            row,
            pixels,
            coverage=patch_weights(labels, self.grid).astype(np.float32),
            segment_map=small_segment_map(labels),
            original=original,
        )


def check_segmenter(segmenter: str) -> None:
    if segmenter not in SEGMENTERS:
        raise ValueError(f"segmenter must be one of {', '.join(SEGMENTERS)}; got {segmenter!r}")


def _same_pass(clip: ClipModel, teacher: Teacher) -> bool:
    """CLIP zero-shot on the extraction's own CLIP: its logits come from the same forward pass."""
    return isinstance(teacher, ClipZeroShotTeacher) and teacher.clip is clip


def _teacher_reads_pixels(clip: ClipModel, teacher: Teacher) -> bool:
    """Whether the teacher needs the decoded images (not for precomputed logits, nor in the same pass)."""
    return teacher.preprocessing is not None and not _same_pass(clip, teacher)


def default_workers(device: str, cpus: int | None = None) -> int:
    """Worker processes for preparing images. With an accelerator the model is fast and the CPUs
    prepare: all but one. On CPU the model needs the cores too; one worker per four (at least one
    on two cores or more) overlaps the superpixels with the model without starving it."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpus < 2:
        return 0
    return min(cpus - 1, 16) if not str(device).startswith("cpu") else max(1, min(cpus // 4, 4))


_PREPARATION: Preparation | None = None  # set in each worker process by ``_start_worker``


def _start_worker(preparation: Preparation) -> None:
    global _PREPARATION
    _PREPARATION = preparation


def _prepare_rows(rows: Sequence[int]) -> list[PreparedImage]:
    return [_PREPARATION.prepare(r) for r in rows]


class Preparer:
    """Prepares the images of whole shards, ``workers`` processes at a time, ahead of the model.

    With 0 workers everything runs in this process (small jobs, tests, a one-CPU Ray actor). The
    pool starts on first use and lives until ``close`` (a Ray actor keeps one for all its shards).
    Workers are forked where the platform can (as torch's DataLoader does): a spawned or fork-server
    worker first re-runs the ``__main__`` script, which under Streamlit is the app itself. They
    touch neither torch nor the accelerator, so what this process holds (torch's threads, a CUDA
    context) does not matter to them.
    """

    def __init__(self, preparation: Preparation, workers: int = 0):
        if workers < 0:
            raise ValueError(f"workers must be >= 0; got {workers}")
        self.preparation, self.workers = preparation, int(workers)
        self._pool: ProcessPoolExecutor | None = None

    def _submit(self, rows: range) -> list[Future]:
        if self._pool is None:
            context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_start_worker, initargs=(self.preparation,)
            )
        pieces = np.array_split(np.asarray(rows), min(self.workers, len(rows)))
        return [self._pool.submit(_prepare_rows, piece.tolist()) for piece in pieces]

    def shards(self, starts: Iterable[int], rows_of) -> Iterator[tuple[int, list[PreparedImage]]]:
        """(start, prepared images of ``rows_of(start)``) for each start, in order."""
        if self.workers == 0:
            for start in starts:
                yield start, [self.preparation.prepare(r) for r in rows_of(start)]
            return
        starts = iter(starts)
        pending: deque = deque()
        for start in starts:
            pending.append((start, self._submit(rows_of(start))))
            if len(pending) > SHARDS_AHEAD:
                break
        while pending:
            start, futures = pending.popleft()
            following = next(starts, None)
            if following is not None:
                pending.append((following, self._submit(rows_of(following))))
            yield start, [item for future in futures for item in future.result()]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def stacked_coverages(coverages: Sequence[np.ndarray], device) -> tuple[torch.Tensor, torch.Tensor]:
    """B arrays (K_i, grid * grid) as one zero-padded tensor (B, max K_i, grid * grid) and the K_i (B,)."""
    counts = torch.tensor([c.shape[0] for c in coverages], device=device)
    weights = np.zeros((len(coverages), int(counts.max()), coverages[0].shape[1]), dtype=np.float32)
    for i, coverage in enumerate(coverages):
        weights[i, : coverage.shape[0]] = coverage
    return torch.from_numpy(weights).to(device), counts


@torch.inference_mode()
def segment_tensors(patches: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor, text: torch.Tensor) -> dict:
    """``segment_concepts``' work on the device: its results as tensors on ``patches``' device,
    unpadded (top_concepts and top_scores are (B, K, TOP))."""
    device, (batch, grid, _, dim) = patches.device, patches.shape
    pooled = torch.bmm(weights, patches.reshape(batch, grid * grid, dim))
    pooled = pooled / weights.sum(dim=2, keepdim=True).clamp_min(1e-12)  # the coverage-weighted mean
    sims = F.normalize(pooled, dim=-1, eps=1e-12) @ text.T  # (B, K, m) cosine similarities
    valid = torch.arange(weights.shape[1], device=device)[None, :] < counts[:, None]  # (B, K)
    best_scores, best = sims.masked_fill(~valid[:, :, None], -torch.inf).max(dim=1)
    top_scores, top_concepts = sims.topk(min(TOP_CONCEPTS_PER_SEGMENT, sims.shape[2]), dim=2)
    return {
        "concepts": best_scores.clamp_min(0.0).float(),
        "best_segment": best.to(torch.uint8),
        "top_concepts": torch.where(valid[:, :, None], top_concepts, -1),
        "top_scores": torch.where(valid[:, :, None], top_scores, 0.0),
    }


def segment_arrays(found: dict[str, np.ndarray]) -> dict:
    """``segment_tensors``' results, on the host, as a shard stores them: top concepts and scores
    padded to MAX_SEGMENTS segments (-1 and 0) and cast to int16 and float16."""
    batch, segments, top = found["top_concepts"].shape
    padded_concepts = np.full((batch, MAX_SEGMENTS, TOP_CONCEPTS_PER_SEGMENT), -1, dtype=np.int16)
    padded_scores = np.zeros((batch, MAX_SEGMENTS, TOP_CONCEPTS_PER_SEGMENT), dtype=np.float16)
    padded_concepts[:, :segments, :top] = found["top_concepts"]
    padded_scores[:, :segments, :top] = found["top_scores"]
    return {
        "concepts": found["concepts"],
        "best_segment": found["best_segment"],
        "top_concepts": padded_concepts,
        "top_scores": padded_scores,
    }


def segment_concepts(patches: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor, text: torch.Tensor) -> dict:
    """Concept vectors and compact segment data of a batch, as tensor operations on ``patches``' device.

    patches : (B, grid, grid, D) normalised dense features; weights : (B, K, grid * grid), each
    segment's share of each patch (zero rows past an image's ``counts`` (B,) segments); text : (m, D)
    normalised concept embeddings; all on the same device.
    Returns numpy arrays: concepts (B, m) float32, the max over segments of the clipped cosine;
    best_segment (B, m) uint8; top_concepts (B, MAX_SEGMENTS, TOP) int16, -1 padded; top_scores
    (B, MAX_SEGMENTS, TOP) float16.
    """
    return segment_arrays(HostCopies(segment_tensors(patches, weights, counts, text)).arrays())


class HostCopies:
    """Device tensors on their way to the host. On a CUDA device the copies go into pinned memory
    without waiting, and an event marks their end: the caller can queue the next batch's work
    before it waits, so the device is not idle while this process does the shard's NumPy work."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self._event = None
        if any(t.device.type == "cuda" for t in tensors.values()):
            self._host = {}
            for name, tensor in tensors.items():
                self._host[name] = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
                self._host[name].copy_(tensor, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._host = {name: tensor.cpu() for name, tensor in tensors.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        """The tensors as numpy arrays, once their copies are done."""
        if self._event is not None:
            self._event.synchronize()
        return {name: tensor.numpy() for name, tensor in self._host.items()}


def launch_shard(
    clip: ClipModel,
    teacher: Teacher,
    text: torch.Tensor,
    images: ImageSet,
    prepared: list[PreparedImage],
    segmenter: str = DEFAULT_SEGMENTER,
    n_segments: int = N_SEGMENTS,
) -> Callable[[], dict]:
    """Queue the device work of a batch of prepared images and start copying its results to the
    host; returns the function that waits for them and gives the batch's shard: rows, failures
    (JSON lines), concepts (n_ok, m), logits (n_ok, k), and the segment arrays of
    ``store.side_files.SEGMENT_ARRAYS``. With the ``torch-slic`` segmenter the batch is cut into
    ``n_segments`` superpixels here, on the model's device, at the size the workers shrank it to."""
    ok = [p for p in prepared if p.failure is None]
    result = {
        "rows": np.asarray([p.row for p in ok], dtype=np.int64),
        "failures": np.asarray([json.dumps(p.failure) for p in prepared if p.failure is not None], dtype=str),
    }
    if not ok:
        empty = result | {
            "concepts": np.zeros((0, text.shape[0]), np.float32),
            "logits": np.zeros((0, len(teacher.classes)), np.float32),
        }
        return lambda: empty
    on_device, logits, segment_maps = {}, None, None
    if segmenter == "slic":
        weights, counts = stacked_coverages([p.coverage for p in ok], clip.device)
        segment_maps = np.stack([p.segment_map for p in ok])
    else:
        small = torch.from_numpy(np.stack([p.small for p in ok])).to(clip.device)
        weights, counts, on_device["segment_maps"] = torch_slic.segment_batch(
            small, clip.grid_size, n_segments, clip.image_size
        )
    batch = to_model_input(clip, [p.pixels for p in ok])
    if _same_pass(clip, teacher):
        patches, on_device["global_embedding"] = dense_patch_features(clip, batch, with_global=True)
    else:
        patches = dense_patch_features(clip, batch)
        logits = teacher.logits([p.original for p in ok], [images.image_ids[p.row] for p in ok])
    copies = HostCopies(on_device | segment_tensors(patches, weights, counts, text))

    def finish() -> dict:
        found = copies.arrays()
        embedding = found.pop("global_embedding", None)
        maps = found.pop("segment_maps", segment_maps)
        shard_logits = teacher.logits_from_embeddings(embedding) if embedding is not None else logits
        return (
            result
            | segment_arrays(found)
            | {"logits": np.asarray(shard_logits, dtype=np.float32), "segment_maps": maps}
        )

    return finish
