"""Segment overlays for the views, drawn from a workspace's compact segment data (no CLIP needed).

The segment data (``store.side_files.read_segments``) keeps, per image, a small segment map,
each segment's top concepts with their scores, and which segment gave each concept its score.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .defaults import MAX_SEGMENTS


def _upsample_map(segment_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(segment_map).resize(size, Image.Resampling.NEAREST))


def segment_scores_for_concept(
    concept: int, concept_score: float, best_segment: int, top_concepts: np.ndarray, top_scores: np.ndarray
) -> np.ndarray:
    """Per segment score for one concept: known where the concept is in a segment's top list,
    and always for the segment that gave the image its score; 0 elsewhere. Shape (MAX_SEGMENTS,)."""
    scores = np.where(top_concepts == concept, top_scores.astype(np.float32), 0.0).max(axis=1)
    scores[best_segment] = max(scores[best_segment], concept_score)
    return np.clip(scores, 0.0, None)


def concept_overlay(
    image: np.ndarray,
    segment_map: np.ndarray,
    segment_scores: np.ndarray,
    color: tuple[int, int, int] = (255, 64, 0),
    dim: float = 0.55,
) -> np.ndarray:
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


def label_overlay(
    image: np.ndarray,
    segment_map: np.ndarray,
    top_concepts: np.ndarray,
    vocabulary: list[str] | tuple[str, ...],
    alpha: float = 0.45,
) -> tuple[np.ndarray, dict]:
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
