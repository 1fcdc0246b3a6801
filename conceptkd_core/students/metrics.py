"""How well students explain the teacher: average precision, fidelity, disagreement.

All functions take column-per-class arrays of shape (n_images, n_classes) and are
vectorised over classes; ``average_precision`` matches scikit-learn's definition
(step-wise, no interpolation, ties grouped) and is checked against it in the tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .solver import sigmoid

DECISION_THRESHOLD = 0.5


def average_precision(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class AP: ``Σ_n (R_n - R_{n-1}) P_n`` over distinct score thresholds.

    labels, scores : ndarray of shape (n_images, n_classes), or (n_images,) for one class
    Returns ndarray of shape (n_classes,) (a float for 1-D input); NaN for a class with no positives.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    one_class = labels.ndim == 1
    if one_class:
        labels, scores = labels[:, None], scores[:, None]
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must have the same shape")
    result = np.full(labels.shape[1], np.nan)
    for c in range(labels.shape[1]):
        yes = labels[:, c] != 0
        positives, negatives = np.sort(scores[yes, c]), np.sort(scores[~yes, c])
        result[c] = ap_of_positives(positives, (positives, negatives))
    return float(result[0]) if one_class else result


def ap_of_positives(positives: np.ndarray, ranked: tuple[np.ndarray, ...]) -> float:
    """Exact AP of one class from its positives' scores and every image's score, all sorted ascending.

    positives : the positives' scores, sorted
    ranked : every image's score, split in any way into sorted arrays (e.g. positives, negatives)

    Recall only steps at a score some positive has, so the sum runs over the distinct positive
    scores t: ``Σ_t (#positives at t / P) · (#positives >= t) / (#images >= t)``, ties grouped as in
    scikit-learn. No arg-sort of the images is needed: value sorts, which are cheaper, of a split
    of the scores (positives and negatives: n values in all) serve every set of positives of the
    same scores (the labels', the teacher's decisions'), each at the cost of sorting its own.
    """
    total = positives.size
    if total == 0:
        return float("nan")
    first_of_tie = np.flatnonzero(np.r_[True, positives[1:] != positives[:-1]])
    thresholds = positives[first_of_tie]
    at_or_above = sum(part.size - np.searchsorted(part, thresholds, side="left") for part in ranked)
    at_threshold = np.diff(np.r_[first_of_tie, total])
    return float(np.sum(at_threshold * ((total - first_of_tie) / at_or_above)) / total)


def mean_ap(ap: np.ndarray) -> float:
    """Mean over the classes that have an AP (classes without positives are skipped)."""
    ap = np.asarray(ap, dtype=np.float64)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def decisions(probabilities: np.ndarray) -> np.ndarray:
    return np.asarray(probabilities) > DECISION_THRESHOLD


def agreement(teacher_probs: np.ndarray, student_probs: np.ndarray) -> np.ndarray:
    """Per class, the fraction of images where teacher and student make the same decision."""
    return (decisions(teacher_probs) == decisions(student_probs)).mean(axis=0)


def balanced_agreement(teacher_probs: np.ndarray, student_probs: np.ndarray) -> np.ndarray:
    """Per class, the mean of the student's agreement on the teacher's yes images and on its no images.

    Plain agreement rewards a student that always says no when the teacher rarely says yes (5 %
    positives: 0.95); this one gives that student 0.5. A rate without images (the teacher never
    says yes) is left out of the mean; NaN when neither exists.
    """
    teacher = np.atleast_2d(decisions(teacher_probs).T).T
    student = np.atleast_2d(decisions(student_probs).T).T
    yes, no = teacher.sum(axis=0), (~teacher).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.stack([(teacher & student).sum(axis=0) / yes, (~teacher & ~student).sum(axis=0) / no])
    rates[0, yes == 0] = np.nan
    rates[1, no == 0] = np.nan
    defined = np.isfinite(rates).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined > 0, np.nansum(rates, axis=0) / np.maximum(defined, 1), np.nan)


def decision_f1(teacher_probs: np.ndarray, student_probs: np.ndarray) -> np.ndarray:
    """Per class, F1 of the student's yes/no decisions against the teacher's (NaN if neither says yes)."""
    teacher = np.atleast_2d(decisions(teacher_probs).T).T
    student = np.atleast_2d(decisions(student_probs).T).T
    tp = (teacher & student).sum(axis=0)
    wrong = (teacher != student).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(2 * tp + wrong > 0, 2 * tp / (2 * tp + wrong), np.nan)


def logit_correlation(teacher_logits: np.ndarray, student_scores: np.ndarray) -> np.ndarray:
    """Per-class Pearson correlation of teacher logits and student scores (NaN if either is constant)."""
    t = teacher_logits - teacher_logits.mean(axis=0)
    s = student_scores - student_scores.mean(axis=0)
    denom = np.sqrt((t * t).sum(axis=0) * (s * s).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (t * s).sum(axis=0) / denom, np.nan)


def class_metrics(
    labels: np.ndarray,
    teacher_logits: np.ndarray,
    student_scores: np.ndarray,
    student_probs: np.ndarray,
    classes: list[str] | tuple[str, ...],
) -> pd.DataFrame:
    """One row per class: AP of teacher and student against labels, and the student's fidelity.

    Columns: class, positives, teacher_ap, student_ap, agreement (same decision as the teacher),
    balanced_agreement, decision_f1, logit_corr, fidelity_ap (AP of the student's scores against
    the teacher's decisions). All array arguments have shape (n_images, n_classes).
    """
    teacher_logits = np.asarray(teacher_logits, dtype=np.float64)
    teacher_probs = sigmoid(teacher_logits)
    return pd.DataFrame(
        {
            "class": list(classes),
            "positives": np.asarray(labels).sum(axis=0).astype(int),
            "teacher_ap": np.atleast_1d(average_precision(labels, teacher_logits)),
            "student_ap": np.atleast_1d(average_precision(labels, student_scores)),
            "agreement": agreement(teacher_probs, student_probs),
            "balanced_agreement": balanced_agreement(teacher_probs, student_probs),
            "decision_f1": decision_f1(teacher_probs, student_probs),
            "logit_corr": logit_correlation(teacher_logits, np.asarray(student_scores, dtype=np.float64)),
            "fidelity_ap": np.atleast_1d(average_precision(decisions(teacher_probs).astype(np.uint8), student_scores)),
        }
    )


def student_class_metrics(
    labels: np.ndarray,
    teacher_logits: np.ndarray,
    teacher_probs: np.ndarray,
    student_scores: np.ndarray,
    student_probs: np.ndarray,
) -> dict:
    """The student's columns of ``class_metrics`` for one class; every argument of shape (n_images,).

    Returns floats (NaN where undefined): student_ap, agreement, balanced_agreement, decision_f1,
    logit_corr, fidelity_ap.
    """
    scores = np.asarray(student_scores, dtype=np.float64)
    yes, teacher_yes = np.asarray(labels) != 0, decisions(teacher_probs)
    positives, negatives = np.sort(scores[yes]), np.sort(scores[~yes])  # n values sorted serve both APs
    teacher_probs, student_probs = np.asarray(teacher_probs)[:, None], np.asarray(student_probs)[:, None]
    return {
        "student_ap": ap_of_positives(positives, (positives, negatives)),
        "agreement": float(agreement(teacher_probs, student_probs)[0]),
        "balanced_agreement": float(balanced_agreement(teacher_probs, student_probs)[0]),
        "decision_f1": float(decision_f1(teacher_probs, student_probs)[0]),
        "logit_corr": float(logit_correlation(np.asarray(teacher_logits, dtype=np.float64), scores)),
        "fidelity_ap": ap_of_positives(np.sort(scores[teacher_yes]), (positives, negatives)),
    }


def summary(table: pd.DataFrame) -> dict:
    """Bank-level figures from a ``class_metrics`` table."""
    return {
        "teacher_map": mean_ap(table["teacher_ap"]),
        "student_map": mean_ap(table["student_ap"]),
        "fidelity": float(table["agreement"].mean()),
        "balanced_agreement": float(np.nanmean(table["balanced_agreement"]))
        if table["balanced_agreement"].notna().any()
        else float("nan"),
        "fidelity_ap": mean_ap(table["fidelity_ap"]),
    }


def disagreements(
    teacher_logits: np.ndarray,
    student_probs: np.ndarray,
    class_index: int | None = None,
    top: int = 20,
    probabilities: bool = False,
) -> pd.DataFrame:
    """Images where teacher and student differ most, largest gap first.

    The gap is ``|p_teacher - p_student|`` for ``class_index``, or the largest gap over all
    classes when it is None. ``probabilities``: the first argument already holds the teacher's
    probabilities (saves a sigmoid over every image). Columns: row, class_index, teacher_prob,
    student_prob, gap.
    """
    teacher = np.asarray(teacher_logits, dtype=np.float64)
    teacher_probs = teacher if probabilities else sigmoid(teacher)
    student_probs = np.asarray(student_probs, dtype=np.float64)
    gaps = np.abs(teacher_probs - student_probs)
    if class_index is None:
        cls = gaps.argmax(axis=1)
    else:
        cls = np.full(gaps.shape[0], int(class_index))
    rows = np.arange(gaps.shape[0])
    gap = gaps[rows, cls]
    top = min(int(top), gap.size)
    pick = np.argpartition(-gap, top - 1)[:top] if top else np.empty(0, dtype=int)
    pick = pick[np.lexsort((pick, -gap[pick]))]
    return pd.DataFrame(
        {
            "row": pick,
            "class_index": cls[pick],
            "teacher_prob": teacher_probs[pick, cls[pick]],
            "student_prob": student_probs[pick, cls[pick]],
            "gap": gap[pick],
        }
    )
