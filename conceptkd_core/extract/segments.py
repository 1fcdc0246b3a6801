"""Image segments, their CLIP embeddings and the concept vector (overlays: ``conceptkd_core.overlays``).

Segments are SLIC superpixels of the model-sized image, cut on it shrunk to at most
``SUPERPIXEL_SIZE`` pixels a side and scaled back up (``superpixel_size``). A segment's embedding is the mean of
the dense patch features under it, weighted by how much of each patch it covers. The image's
concept vector is, per concept, the largest cosine similarity over its segments, clipped at 0
(the InFiConD definition). What the app needs to draw overlays without CLIP is kept compactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from skimage.segmentation import slic

from ..defaults import (
    DEFAULT_SEGMENTER,
    MAX_SEGMENTS,
    MIN_SUPERPIXEL_SIZE,
    N_SEGMENTS,
    SEGMENT_MAP_SIZE,
    SUPERPIXEL_SIZE,
    TOP_CONCEPTS_PER_SEGMENT,
)

if TYPE_CHECKING:
    from ..store.workspace import Workspace


def recorded_n_segments(workspace: Workspace) -> int:
    """The SLIC segment count ``workspace`` was extracted with, so images added to it or re-scored
    are cut the same way (workspaces from before it was recorded used the default)."""
    return int(workspace.meta.get("extra", {}).get("n_segments", N_SEGMENTS))


def recorded_segmenter(workspace: Workspace) -> str:
    """Who cut ``workspace``'s superpixels (``defaults.SEGMENTERS``), so images added to it or
    re-scored are cut the same way (workspaces from before it was recorded used skimage's SLIC)."""
    return str(workspace.meta.get("extra", {}).get("segmenter", DEFAULT_SEGMENTER))


def recorded_superpixel_size(workspace: Workspace, image_size: int) -> int:
    """The side the superpixels of ``workspace`` were cut at, so images added to it or scored
    against it are cut the same way; ``image_size`` is its CLIP's input size, at which workspaces
    from before it was recorded were cut."""
    return int(workspace.meta.get("extra", {}).get("superpixel_size", image_size))


def superpixel_size(image_size: int, requested: int | None = None) -> int:
    """The side (pixels) that superpixels of a model's ``image_size`` input are cut at: ``requested``
    (None: ``SUPERPIXEL_SIZE``), at most the model's own size. Raises ValueError naming a bad one."""
    size = SUPERPIXEL_SIZE if requested is None else requested
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < MIN_SUPERPIXEL_SIZE:
        raise ValueError(f"superpixel size must be a whole number of pixels >= {MIN_SUPERPIXEL_SIZE}; got {size!r}")
    return min(int(size), int(image_size))


def shrink(image: np.ndarray, size: int | None) -> np.ndarray:
    """A squared uint8 image (S, S, 3) averaged down to (size, size, 3) by PIL's box filter (each
    pixel the mean of the area it covers); the image itself when ``size`` is None or >= S."""
    if size is None or size >= image.shape[0]:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BOX))


def enlarge_index(small: int, size: int) -> np.ndarray:
    """The row (or column) of a ``small``-sided label map each of ``size`` rows takes when scaled up.
    Nearest, non-decreasing and onto: every label keeps a block of pixels and a connected segment
    stays connected."""
    return np.arange(size) * small // size


def superpixels(
    image: np.ndarray, n_segments: int = N_SEGMENTS, compactness: float = 12.0, cut_size: int | None = None
) -> np.ndarray:
    """SLIC label map of a squared image (S, S, 3), shape (S, S), labels 0..K-1 with K <= MAX_SEGMENTS;
    cut on the image shrunk to ``cut_size`` (None: as it is) and scaled back up to S."""
    small = shrink(image, cut_size)
    labels = slic(small, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
    _, labels = np.unique(labels, return_inverse=True)
    labels = labels.reshape(small.shape[:2])
    if labels.max() >= MAX_SEGMENTS:  # SLIC may overshoot: merge the extra labels into the last one
        labels = np.minimum(labels, MAX_SEGMENTS - 1)
    if small.shape[0] != image.shape[0]:
        index = enlarge_index(small.shape[0], image.shape[0])
        labels = labels[index][:, index]
    return labels.astype(np.int64)


def patch_weights(labels: np.ndarray, grid: int) -> np.ndarray:
    """Fraction of each patch covered by each segment, shape (K, grid*grid)."""
    size = labels.shape[0]
    patch = size // grid
    k = int(labels.max()) + 1
    cells = labels[: grid * patch, : grid * patch].reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3)
    cells = cells.reshape(grid * grid, patch * patch)
    # One bincount over (patch, segment) pairs counts every patch's pixels per segment at once.
    pairs = np.arange(grid * grid)[:, None] * k + cells
    counts = np.bincount(pairs.ravel(), minlength=grid * grid * k).reshape(grid * grid, k)
    return counts.T / (patch * patch)


def segment_embeddings(patch_features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Normalised segment embeddings (K, D) from patch features (grid, grid, D) and a label map."""
    grid = patch_features.shape[0]
    weights = patch_weights(labels, grid)
    pooled = weights @ patch_features.reshape(grid * grid, -1)
    pooled /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


@dataclass
class ImageConcepts:
    """Everything extraction keeps for one image."""

    concept_vector: np.ndarray  # (m,) float32, max over segments of clipped cosine
    segment_map: np.ndarray  # (SEGMENT_MAP_SIZE, SEGMENT_MAP_SIZE) uint8 segment ids
    top_concepts: np.ndarray  # (MAX_SEGMENTS, TOP) int16, -1 padded
    top_scores: np.ndarray  # (MAX_SEGMENTS, TOP) float16
    best_segment: np.ndarray  # (m,) uint8: the segment that gives each concept its score


def concepts_for_image(patch_features: np.ndarray, labels: np.ndarray, text_embeddings: np.ndarray) -> ImageConcepts:
    """Concept vector and compact segment data for one image: the per-image reference of the batched
    pipeline (``batching.segment_concepts``), which must agree with it.

    patch_features : (grid, grid, D), normalised; labels : (S, S) segment ids;
    text_embeddings : (m, D), normalised concept embeddings.
    """
    seg = segment_embeddings(patch_features, labels)
    sims = seg @ text_embeddings.T  # (K, m) cosine similarities
    best = sims.argmax(axis=0)
    vector = np.clip(sims[best, np.arange(sims.shape[1])], 0.0, None).astype(np.float32)
    k, m = sims.shape
    top = min(TOP_CONCEPTS_PER_SEGMENT, m)
    order = np.argsort(-sims, axis=1)[:, :top]
    top_concepts = np.full((MAX_SEGMENTS, TOP_CONCEPTS_PER_SEGMENT), -1, dtype=np.int16)
    top_scores = np.zeros((MAX_SEGMENTS, TOP_CONCEPTS_PER_SEGMENT), dtype=np.float16)
    top_concepts[:k, :top] = order
    top_scores[:k, :top] = np.take_along_axis(sims, order, axis=1)
    return ImageConcepts(vector, small_segment_map(labels), top_concepts, top_scores, best.astype(np.uint8))


def small_segment_map(labels: np.ndarray) -> np.ndarray:
    """The label map kept for overlays: (SEGMENT_MAP_SIZE, SEGMENT_MAP_SIZE) uint8, nearest neighbour."""
    size = (SEGMENT_MAP_SIZE, SEGMENT_MAP_SIZE)
    return np.asarray(Image.fromarray(labels.astype(np.uint8)).resize(size, Image.Resampling.NEAREST), dtype=np.uint8)
