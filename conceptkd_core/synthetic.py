"""Synthetic workspaces at realistic scale, for benchmarks and tests.

Concept scores are built like the real ones: cosine similarities between unit-norm image
(segment) embeddings and concept embeddings, maxed over a few segments and clipped at 0, so
they are non-negative, correlated across related concepts, and sparse-ish. Teacher logits
come from a hidden sparse linear model plus noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticProblem:
    concept_matrix: np.ndarray  # (n, m) float32
    teacher_logits: np.ndarray  # (n, k) float32
    labels: np.ndarray  # (n, k) uint8
    true_coef: np.ndarray  # (k, m)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def make_problem(n_images: int = 11540, n_concepts: int = 584, n_classes: int = 20, *, dim: int = 64,
                 segments: int = 4, active_per_class: int = 12, noise: float = 0.3, seed: int = 0,
                 chunk_rows: int = 65536) -> SyntheticProblem:
    """A problem of the given size; deterministic for a given seed (built in row chunks)."""
    rng = np.random.default_rng(seed)
    # Like CLIP: every embedding shares a common direction (cosines mostly positive) and
    # concepts come in related groups, so concept scores are strongly correlated.
    common = _unit(rng.standard_normal(dim))
    groups = _unit(rng.standard_normal((max(n_concepts // 12, 1), dim)))
    concepts = _unit(common + 0.8 * groups[rng.integers(0, len(groups), n_concepts)]
                     + 0.6 * _unit(rng.standard_normal((n_concepts, dim))))
    topics = _unit(rng.standard_normal((n_classes, dim)))
    true_coef = np.zeros((n_classes, n_concepts))
    for c in range(n_classes):
        idx = rng.choice(n_concepts, active_per_class, replace=False)
        true_coef[c, idx] = rng.normal(0, 8, active_per_class)
    bias = rng.normal(-2, 0.5, n_classes)
    X = np.empty((n_images, n_concepts), dtype=np.float32)
    for start in range(0, n_images, chunk_rows):
        rows = min(chunk_rows, n_images - start)
        # Each image is a mix of 1-3 class topics plus noise; its segments perturb that mix.
        mix = (rng.random((rows, n_classes)) < 2.0 / n_classes).astype(np.float64)
        base = 1.5 * common + mix @ topics + 0.8 * rng.standard_normal((rows, dim))
        seg = _unit(base[:, None, :] + 0.6 * rng.standard_normal((rows, segments, dim)))
        X[start:start + rows] = np.clip((seg @ concepts.T).max(axis=1), 0, None)
    logits = X @ true_coef.T.astype(np.float32) + bias
    logits = logits - logits.mean(axis=0) + bias + noise * rng.standard_normal(logits.shape)
    labels = (logits + noise * rng.standard_normal(logits.shape) > 0).astype(np.uint8)
    return SyntheticProblem(X, logits.astype(np.float32), labels, true_coef)
