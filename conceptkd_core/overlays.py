"""Segment overlays for the views, drawn from a workspace's compact segment data (no CLIP needed).

The segment data (``store.side_files.read_segments``) keeps, per image, a small segment map,
each segment's top concepts with their scores, and which segment gave each concept its score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import palette
from .defaults import MAX_SEGMENTS
from .store.side_files import segment_row

# How strongly a segment takes its colour: the weakest non-zero segment, the strongest one.
MIN_TINT, MAX_TINT = 0.25, 0.75


def _upsample_map(segment_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(segment_map).resize(size, Image.Resampling.NEAREST))


@dataclass(frozen=True)
class ImageSegments:
    """One image's compact segment data: a row of ``store.side_files.read_segments``."""

    segment_map: np.ndarray  # (SEGMENT_MAP_SIZE, SEGMENT_MAP_SIZE) uint8 segment ids
    top_concepts: np.ndarray  # (MAX_SEGMENTS, TOP_CONCEPTS_PER_SEGMENT) concept ids, -1 padded
    top_scores: np.ndarray  # (MAX_SEGMENTS, TOP_CONCEPTS_PER_SEGMENT)
    best_segment: np.ndarray  # (n_concepts,) the segment that gives each concept its score

    @classmethod
    def of(cls, segments: dict, workspace, row: int) -> ImageSegments:
        """Row ``row`` of ``segments``, range-checked against ``workspace`` (``WorkspaceError`` if damaged)."""
        values = segment_row(segments, workspace, row)
        names = ("segment_maps", "top_concepts", "top_scores", "best_segment")
        return cls(*(values[name] for name in names))

    def concept_scores(self, concept: int, concept_score: float) -> np.ndarray:
        """``segment_scores_for_concept`` for this image."""
        best = int(self.best_segment[concept])
        return segment_scores_for_concept(concept, concept_score, best, self.top_concepts, self.top_scores)

    def shares(self, contributions: np.ndarray) -> np.ndarray:
        """``segment_contributions`` for this image."""
        return segment_contributions(contributions, self.best_segment)


def segment_scores_for_concept(
    concept: int, concept_score: float, best_segment: int, top_concepts: np.ndarray, top_scores: np.ndarray
) -> np.ndarray:
    """Per segment score for one concept: known where the concept is in a segment's top list,
    and always for the segment that gave the image its score; 0 elsewhere. Shape (MAX_SEGMENTS,)."""
    scores = np.where(top_concepts == concept, top_scores.astype(np.float32), 0.0).max(axis=1)
    scores[best_segment] = max(scores[best_segment], concept_score)
    return np.clip(scores, 0.0, None)


def segment_contributions(contributions: np.ndarray, best_segment: np.ndarray) -> np.ndarray:
    """Each segment's share of an image's score for a class, shape (MAX_SEGMENTS,).

    A concept's score is its best segment's score, so its whole contribution (weight × score,
    ``contributions`` of shape (n_concepts,)) belongs to that segment (``best_segment``, shape
    (n_concepts,)). The shares therefore sum to the score minus the bias, exactly."""
    return np.bincount(
        np.asarray(best_segment, dtype=np.intp), weights=np.asarray(contributions, np.float64), minlength=MAX_SEGMENTS
    )[:MAX_SEGMENTS]


def concept_overlay(
    image: np.ndarray,
    segment_map: np.ndarray,
    segment_scores: np.ndarray,
    color: str = palette.NEUTRAL,
    dim: float = 0.55,
) -> np.ndarray:
    """The image with the segments where one concept fires most tinted (others dimmed), uint8 (H, W, 3).
    ``color`` is ``#rrggbb``: the views pass the diverging colour of the concept's weight."""
    colours = np.tile(np.array(palette.rgb(color), np.float32), (MAX_SEGMENTS, 1))
    scores = np.clip(np.asarray(segment_scores, np.float32), 0.0, None)
    # Cosine scores bunch together; measured from the lowest non-zero one, the segments where the
    # concept fires most stand out (the lowest is then dimmed like a segment without the concept).
    fired = scores[scores > 0]
    floor = float(fired.min()) if fired.size > 1 else 0.0
    return _tint(image, segment_map, np.clip(scores - floor, 0.0, None), colours, dim)


def contribution_overlay(
    image: np.ndarray, segment_map: np.ndarray, shares: np.ndarray, dim: float = 0.55
) -> np.ndarray:
    """The image with each segment tinted by its signed share of the score (``segment_contributions``)
    in the diverging palette: ``POSITIVE`` where it pushes the score up, ``NEGATIVE`` where down,
    stronger for larger shares; segments with no share are dimmed. uint8 (H, W, 3)."""
    shares = np.asarray(shares, np.float64)
    colours = np.array([palette.rgb(palette.signed_colour(v)) for v in shares], np.float32)
    return _tint(image, segment_map, np.abs(shares), colours, dim)


def _tint(
    image: np.ndarray, segment_map: np.ndarray, strength: np.ndarray, colours: np.ndarray, dim: float
) -> np.ndarray:
    """Blend each segment towards its colour (rows of ``colours``): from a visible minimum for the
    weakest non-zero strength to ``MAX_TINT`` for the strongest; segments of strength 0 are darkened
    by ``dim``. White segment borders."""
    h, w = image.shape[:2]
    labels = _upsample_map(segment_map, (w, h))
    strength = np.asarray(strength, np.float32)
    top = float(strength.max()) if strength.size else 0.0
    tint = np.where(strength > 0, MIN_TINT + (MAX_TINT - MIN_TINT) * strength / (top or 1.0), 0.0)[labels][..., None]
    shade = np.where(strength > 0, 1.0, 1.0 - dim)[labels][..., None]
    out = image.astype(np.float32) * shade * (1 - tint) + colours[labels] * tint
    out[_edges(labels)] = 255
    return out.clip(0, 255).astype(np.uint8)


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
    cycle = [palette.rgb(c) for c in palette.CONCEPT_COLOURS]
    colours = {c: np.array(cycle[i % len(cycle)], np.float32) for i, c in enumerate(sorted(set(top.values())))}
    lut = np.zeros((MAX_SEGMENTS, 3), np.float32)
    for s, c in top.items():
        lut[s] = colours[c]
    out = image.astype(np.float32) * (1 - alpha) + lut[labels] * alpha
    out[_edges(labels)] = 255
    return out.clip(0, 255).astype(np.uint8), {vocabulary[c]: tuple(int(v) for v in colours[c]) for c in colours}
