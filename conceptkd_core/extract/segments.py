"""Image segments, their CLIP embeddings, the concept vector, and overlays for the app.

Segments are SLIC superpixels of the model-sized image. A segment's embedding is the mean of
the dense patch features under it, weighted by how much of each patch it covers. The image's
concept vector is, per concept, the largest cosine similarity over its segments, clipped at 0
(the InFiConD definition). What the app needs to draw overlays without CLIP is kept compactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from skimage.segmentation import slic

MAX_SEGMENTS = 64  # segment ids fit uint8 maps; SLIC is asked for fewer
TOP_CONCEPTS_PER_SEGMENT = 8
SEGMENT_MAP_SIZE = 56
# Files under a workspace's segments/ folder, one row per image.
SEGMENT_FILES = ("segment_maps.npy", "top_concepts.npy", "top_scores.npy", "best_segment.npy")


def superpixels(image: np.ndarray, n_segments: int = 24, compactness: float = 12.0) -> np.ndarray:
    """SLIC label map of shape (H, W), labels 0..K-1 with K <= MAX_SEGMENTS."""
    labels = slic(image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
    _, labels = np.unique(labels, return_inverse=True)
    labels = labels.reshape(image.shape[:2])
    if labels.max() >= MAX_SEGMENTS:  # SLIC may overshoot: merge the extra labels into the last one
        labels = np.minimum(labels, MAX_SEGMENTS - 1)
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
    """Concept vector and compact segment data for one image.

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
    small = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((SEGMENT_MAP_SIZE, SEGMENT_MAP_SIZE), Image.Resampling.NEAREST))
    return ImageConcepts(vector, small.astype(np.uint8), top_concepts, top_scores, best.astype(np.uint8))


# ----------------------------------------------------------------------------- overlays
def _upsample_map(segment_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(segment_map).resize(size, Image.Resampling.NEAREST))


def segment_scores_for_concept(concept: int, concept_score: float, best_segment: int,
                               top_concepts: np.ndarray, top_scores: np.ndarray) -> np.ndarray:
    """Per segment score for one concept: known where the concept is in a segment's top list,
    and always for the segment that gave the image its score; 0 elsewhere. Shape (MAX_SEGMENTS,)."""
    scores = np.where(top_concepts == concept, top_scores.astype(np.float32), 0.0).max(axis=1)
    scores[best_segment] = max(scores[best_segment], concept_score)
    return np.clip(scores, 0.0, None)


def concept_overlay(image: np.ndarray, segment_map: np.ndarray, segment_scores: np.ndarray,
                    color: tuple[int, int, int] = (255, 64, 0), dim: float = 0.55) -> np.ndarray:
    """The image with segments tinted by their score for one concept (others dimmed), uint8 (H, W, 3)."""
    h, w = image.shape[:2]
    labels = _upsample_map(segment_map, (w, h))
    top = segment_scores.max()
    strength = (segment_scores / top if top > 0 else np.zeros_like(segment_scores))[labels][..., None]
    base = image.astype(np.float32) * (1 - dim + dim * strength)
    tinted = base * (1 - 0.45 * strength) + np.array(color, np.float32) * 0.45 * strength
    edges = _edges(labels)
    tinted[edges] = 255
    return tinted.clip(0, 255).astype(np.uint8)


def _edges(labels: np.ndarray) -> np.ndarray:
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:-1] |= labels[:-1] != labels[1:]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edges


def label_overlay(image: np.ndarray, segment_map: np.ndarray, top_concepts: np.ndarray,
                  vocabulary: list[str] | tuple[str, ...], alpha: float = 0.45) -> tuple[np.ndarray, dict]:
    """The image with each segment coloured by its top concept; returns (uint8 image, {concept: rgb})."""
    h, w = image.shape[:2]
    labels = _upsample_map(segment_map, (w, h))
    present = np.unique(labels)
    top = {int(s): int(top_concepts[s, 0]) for s in present if top_concepts[s, 0] >= 0}
    palette = _palette(len(set(top.values())))
    colours = {c: palette[i] for i, c in enumerate(sorted(set(top.values())))}
    lut = np.zeros((MAX_SEGMENTS, 3), np.float32)
    for s, c in top.items():
        lut[s] = colours[c]
    out = image.astype(np.float32) * (1 - alpha) + lut[labels] * alpha
    out[_edges(labels)] = 255
    return out.clip(0, 255).astype(np.uint8), {vocabulary[c]: tuple(int(v) for v in colours[c]) for c in colours}


def _palette(n: int) -> np.ndarray:
    hues = np.linspace(0, 1, max(n, 1), endpoint=False)
    hsv = np.stack([hues, np.full_like(hues, 0.75), np.full_like(hues, 0.95)], axis=1)
    return np.asarray(Image.fromarray((hsv[None] * 255).astype(np.uint8), "HSV").convert("RGB"))[0].astype(np.float32)


def load_segments(workspace) -> dict[str, np.ndarray] | None:
    """The compact segment data of a workspace (memory-mapped), or None if it has none."""
    from ..store.workspace import SEGMENTS_DIR

    folder = workspace.root / SEGMENTS_DIR
    if not all((folder / name).is_file() for name in SEGMENT_FILES):
        return None
    data = {name[:-4]: np.load(folder / name, mmap_mode="r", allow_pickle=False) for name in SEGMENT_FILES}
    if any(len(v) != workspace.n_images for v in data.values()):
        return None
    return data
