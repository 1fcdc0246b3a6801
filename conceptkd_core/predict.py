"""Scoring a new image with a workspace's CLIP, teacher and (tuned) students, for the Predict page.

The image is prepared exactly as extraction prepared the workspace's images (squared to CLIP's
size, SLIC segments, ``extract.dense_model``), so an image already in the workspace gets the
students' scores it has there. Torch is imported only when a predictor is built.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .students.metrics import DECISION_THRESHOLD
from .waterfall import Waterfall, contribution_waterfall


class PredictError(ValueError):
    """A prediction that cannot be made here; one line saying what is missing."""


def clip_source(workspace, search: Sequence[str | os.PathLike] = ()) -> tuple[str, str, str]:
    """``load_clip``'s (model, checkpoint, pretrained) for the CLIP that made ``workspace``'s concept
    scores: its pretrained tag, or the checkpoint whose SHA-256 it records (``rescore.find_checkpoint``:
    beside it or in ``search``); "" where a part does not apply. Raises ``PredictError`` if neither."""
    from .extract.rescore import find_checkpoint

    model = workspace.meta.get("model", {})
    if model.get("pretrained"):
        return str(model.get("name")), "", str(model["pretrained"])
    found = find_checkpoint(workspace, search)
    if found is None:
        raise PredictError(
            f"{workspace.root.name}: its CLIP checkpoint (SHA-256 {str(model.get('checkpoint_sha256'))[:12]}…) "
            "is not in the workspace's folder or its parent; put it there to score new images"
        )
    return str(found[0]), str(found[1]), ""


def workspace_clip(workspace, search: Sequence[str | os.PathLike] = ()):
    """The CLIP that made ``workspace``'s concept scores, loaded (``clip_source``)."""
    from .extract.clip_backend import load_clip

    model, checkpoint, pretrained = clip_source(workspace, search)
    return load_clip(model, pretrained=pretrained or None, checkpoint=checkpoint or None)


@dataclass(frozen=True)
class Prediction:
    """One image scored. Shapes: m concepts of the vocabulary, k classes."""

    concept_scores: np.ndarray  # (m,) float32 on the workspace's float16 grid
    student_scores: np.ndarray  # (k,) the students' scores (logits or probabilities: the bank's target)
    student_probs: np.ndarray  # (k,)
    teacher_probs: np.ndarray | None  # (k,) None when the teacher cannot score new images here
    best_segment: np.ndarray  # (m,) the segment that gives each concept its score
    segment_map: np.ndarray  # (SEGMENT_MAP_SIZE, SEGMENT_MAP_SIZE) uint8, for overlays
    pixels: np.ndarray  # (H, W, 3) uint8, the image as decoded


class Predictor:
    """A workspace's CLIP with its vocabulary's text embeddings (built once, shared by sessions)."""

    def __init__(self, workspace, clip):
        from .extract.clip_backend import encode_text_prompts
        from .extract.segments import recorded_n_segments, recorded_superpixel_size

        self.clip = clip
        self.text = encode_text_prompts(clip, list(workspace.vocabulary))
        self.n_segments = recorded_n_segments(workspace)
        self.superpixel_size = recorded_superpixel_size(workspace, clip.image_size)

    def predict(self, image, bank, teacher=None) -> Prediction:
        """Score a PIL image with ``bank`` (a ``StudentBank``) and ``teacher`` (None: not scored)."""
        import torch

        from .extract.clip_backend import to_model_input
        from .extract.dense_model import concept_model
        from .extract.segments import small_segment_map, superpixels
        from .images import square_resize

        pixels = square_resize(image, self.clip.image_size)
        segments = superpixels(pixels, self.n_segments, cut_size=self.superpixel_size)
        model = concept_model(self.clip, self.text, bank.coef_, bank.intercept_)
        with torch.inference_mode():
            concepts, _, best = model(to_model_input(self.clip, [pixels]), torch.from_numpy(segments)[None])
        x = concepts[0].numpy()
        scores = bank.decision_function(x[None])[0]
        teacher_probs = None
        if teacher is not None:
            logits = np.asarray(teacher.logits([image], ["new image"]), dtype=np.float64)[0]
            teacher_probs = 1 / (1 + np.exp(-logits))
        return Prediction(
            x,
            scores,
            bank.predict_proba_from_scores(scores),
            teacher_probs,
            best[0].numpy(),
            small_segment_map(segments),
            np.asarray(image),
        )


def score_table(prediction: Prediction, classes: Sequence[str]) -> pd.DataFrame:
    """Long table (class, model, probability) of the students' and the teacher's probabilities."""
    rows = [(c, "student", float(p)) for c, p in zip(classes, prediction.student_probs, strict=True)]
    if prediction.teacher_probs is not None:
        rows += [(c, "teacher", float(p)) for c, p in zip(classes, prediction.teacher_probs, strict=True)]
    return pd.DataFrame(rows, columns=["class", "model", "probability"])


def prediction_waterfall(
    prediction: Prediction, bank, vocabulary: Sequence[str], class_index: int, top: int = 8
) -> Waterfall:
    """The student's score for one class as bias + each concept's weight × score, against the
    score at which its probability crosses ``DECISION_THRESHOLD`` (as ``explorer.image_waterfall``)."""
    c, p = int(class_index), DECISION_THRESHOLD
    threshold = float(np.log(p / (1 - p))) if bank.target == "logits" else p
    contributions = bank.coef_[c] * prediction.concept_scores.astype(np.float64)
    return contribution_waterfall(float(bank.intercept_[c]), contributions, vocabulary, threshold, top)


def segment_shares(prediction: Prediction, bank, class_index: int) -> np.ndarray:
    """Each segment's share of the class's score (``overlays.segment_contributions``), (MAX_SEGMENTS,)."""
    from .overlays import segment_contributions

    contributions = bank.coef_[int(class_index)] * prediction.concept_scores.astype(np.float64)
    return segment_contributions(contributions, prediction.best_segment)
