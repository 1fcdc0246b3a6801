"""A student's score for one image as a waterfall: the bias, then each concept's contribution
(weight × concept score), landing on the score, which is compared with the decision threshold.

A linear student's score is exactly ``bias + Σ_j weight_j · score_j``, so the steps add up to it
to the last digit; the picture hides nothing but the order of the small terms, which it sums
into one "other concepts" step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

BIAS_LABEL = "bias"
SCORE_LABEL = "= score"


@dataclass(frozen=True)
class Waterfall:
    """``steps`` has one row per bar, in drawing order, with columns

    * ``label``: "bias", a concept word, "N other concepts", or "= score";
    * ``kind``: "bias", "concept", "other" or "score";
    * ``value``: the step's signed size (the score itself for the last row);
    * ``start``, ``end``: where the bar begins and ends (``end = start + value``; the score's
      bar runs from 0).

    ``score`` is the student's score, ``threshold`` the score above which the student says "yes".
    """

    steps: pd.DataFrame
    score: float
    threshold: float

    @property
    def says_yes(self) -> bool:
        return self.score > self.threshold


def contribution_waterfall(
    bias: float, contributions: np.ndarray, names: Sequence[str], threshold: float, top: int = 8
) -> Waterfall:
    """The waterfall of ``bias + Σ contributions``.

    Parameters
    ----------
    bias : the student's intercept for the class.
    contributions : array of shape (n_concepts,), weight × concept score per concept.
    names : the n_concepts concept words.
    threshold : the decision threshold, in the same units as the score.
    top : how many concepts get a bar of their own (largest |contribution| first); the other
        non-zero contributions share one bar.
    """
    contributions = np.asarray(contributions, dtype=np.float64)
    if contributions.ndim != 1 or contributions.size != len(names):
        raise ValueError(
            f"contributions must have shape ({len(names)},), one per concept name; got {contributions.shape}"
        )
    if top < 0:
        raise ValueError(f"top must be >= 0; got {top!r}")
    nonzero = np.flatnonzero(contributions)
    order = nonzero[np.argsort(-np.abs(contributions[nonzero]), kind="stable")]
    shown, rest = order[:top], order[top:]
    labels = [BIAS_LABEL, *(names[j] for j in shown)]
    kinds = ["bias", *["concept"] * len(shown)]
    values = [float(bias), *contributions[shown]]
    if rest.size:
        labels.append(f"{rest.size} other concept{'s' if rest.size > 1 else ''}")
        kinds.append("other")
        values.append(float(contributions[rest].sum()))
    ends = np.cumsum(values)
    score = float(bias + contributions.sum())
    steps = pd.DataFrame(
        {
            "label": [*labels, SCORE_LABEL],
            "kind": [*kinds, "score"],
            "value": [*values, score],
            "start": [*(ends - values), 0.0],
            "end": [*ends, score],
        }
    )
    return Waterfall(steps, score, float(threshold))
