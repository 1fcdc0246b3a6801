"""Synthetic workspaces at realistic scale, for benchmarks and tests.

Concept scores are built like the real ones: cosine similarities between unit-norm image
(segment) embeddings and concept embeddings, maxed over a few segments and clipped at 0, so
they are non-negative, correlated across related concepts, and sparse-ish. Teacher logits
come from a hidden sparse linear model plus noise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conceptkd_core.store.atomic_io import atomic_write_npy_rows
from conceptkd_core.store.workspace import Workspace, write_workspace


@dataclass(frozen=True)
class SyntheticProblem:
    concept_matrix: np.ndarray  # (n, m) float32
    teacher_logits: np.ndarray  # (n, k) float32
    labels: np.ndarray  # (n, k) uint8
    true_coef: np.ndarray  # (k, m)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def _generate(
    n_images: int,
    n_concepts: int,
    n_classes: int,
    rows_out: Callable[[int, np.ndarray], None],
    *,
    dim: int,
    segments: int,
    active_per_class: int,
    noise: float,
    seed: int,
    chunk_rows: int,
):
    """Draw a problem chunk by chunk: concept rows go to ``rows_out(start, rows)``; returns
    (teacher_logits, labels, true_coef), which are small (n x k)."""
    rng = np.random.default_rng(seed)
    # Like CLIP: every embedding shares a common direction (cosines mostly positive) and
    # concepts come in related groups, so concept scores are strongly correlated.
    common = _unit(rng.standard_normal(dim))
    groups = _unit(rng.standard_normal((max(n_concepts // 12, 1), dim)))
    concepts = _unit(
        common
        + 0.8 * groups[rng.integers(0, len(groups), n_concepts)]
        + 0.6 * _unit(rng.standard_normal((n_concepts, dim)))
    )
    topics = _unit(rng.standard_normal((n_classes, dim)))
    true_coef = np.zeros((n_classes, n_concepts))
    for c in range(n_classes):
        idx = rng.choice(n_concepts, active_per_class, replace=False)
        true_coef[c, idx] = rng.normal(0, 8, active_per_class)
    bias = rng.normal(-2, 0.5, n_classes)
    coef32 = true_coef.T.astype(np.float32)
    logits = np.empty((n_images, n_classes), dtype=np.float32)
    for start in range(0, n_images, chunk_rows):
        rows = min(chunk_rows, n_images - start)
        # Each image is a mix of 1-3 class topics plus noise; its segments perturb that mix.
        mix = (rng.random((rows, n_classes)) < 2.0 / n_classes).astype(np.float64)
        base = 1.5 * common + mix @ topics + 0.8 * rng.standard_normal((rows, dim))
        seg = _unit(base[:, None, :] + 0.6 * rng.standard_normal((rows, segments, dim)))
        X = np.clip((seg @ concepts.T).max(axis=1), 0, None).astype(np.float32)
        rows_out(start, X)
        logits[start : start + rows] = X @ coef32 + bias
    logits = logits - logits.mean(axis=0) + bias + noise * rng.standard_normal(logits.shape)
    labels = (logits + noise * rng.standard_normal(logits.shape) > 0).astype(np.uint8)
    return logits.astype(np.float32), labels, true_coef


def make_problem(
    n_images: int = 11540,
    n_concepts: int = 584,
    n_classes: int = 20,
    *,
    dim: int = 64,
    segments: int = 4,
    active_per_class: int = 12,
    noise: float = 0.3,
    seed: int = 0,
    chunk_rows: int = 65536,
) -> SyntheticProblem:
    """A problem of the given size, in memory; deterministic for a given seed (built in row chunks)."""
    X = np.empty((n_images, n_concepts), dtype=np.float32)

    def keep(start: int, rows: np.ndarray) -> None:
        X[start : start + len(rows)] = rows

    logits, labels, true_coef = _generate(
        n_images,
        n_concepts,
        n_classes,
        keep,
        dim=dim,
        segments=segments,
        active_per_class=active_per_class,
        noise=noise,
        seed=seed,
        chunk_rows=chunk_rows,
    )
    return SyntheticProblem(X, logits, labels, true_coef)


def write_synthetic_workspace(
    root: str | os.PathLike,
    n_images: int,
    n_concepts: int = 584,
    n_classes: int = 20,
    *,
    seed: int = 0,
    chunk_rows: int = 8192,
) -> Workspace:
    """A synthetic problem written as a real workspace (float16 concept matrix), streamed to disk
    chunk by chunk so a million rows need no more memory than one chunk. Images do not exist:
    the workspace is for the solver, the metrics and the app's tables, not for overlays."""
    root = Path(root)
    staging = root / ".synthetic-concepts.npy"
    box: dict = {}

    def fill(target: np.ndarray) -> None:
        def write(start: int, rows: np.ndarray) -> None:
            target[start : start + len(rows)] = rows

        box["result"] = _generate(
            n_images,
            n_concepts,
            n_classes,
            write,
            dim=64,
            segments=4,
            active_per_class=12,
            noise=0.3,
            seed=seed,
            chunk_rows=chunk_rows,
        )

    atomic_write_npy_rows(staging, (n_images, n_concepts), np.float16, fill)
    logits, labels, _ = box["result"]
    digits = len(str(n_images))
    ids = [f"syn{i:0{digits}d}" for i in range(n_images)]
    splits = np.where(np.arange(n_images) % 10 < 6, "train", np.where(np.arange(n_images) % 10 < 8, "val", "test"))
    try:
        return write_workspace(
            root,
            image_ids=ids,
            paths=[f"{i}.png" for i in ids],
            splits=splits.tolist(),
            labels=labels,
            classes=[f"class {c:02d}" for c in range(n_classes)],
            vocabulary=[f"concept {j:04d}" for j in range(n_concepts)],
            concept_matrix=np.load(staging, mmap_mode="r"),
            teacher_logits=logits,
            model={"name": "synthetic", "seed": seed},
            teacher={"kind": "synthetic", "seed": seed},
            extra={"synthetic": True},
        )
    finally:
        staging.unlink(missing_ok=True)
