"""``demo ablate``: the student design choices issue 14 asked to test, each measured on the demo.

Every figure is on the held-out test scenes; every choice is made on the fit (val) scenes alone:
* ``l1_path``: α chosen by 5-fold cross-validation on the fit scenes along a warm-started
  regularisation path (largest α first), against the default α;
* ``loss``: the interactive squared loss on teacher logits against the paper's logistic loss on the
  teacher's probabilities (``StudentBank.refine``), α for the latter chosen the same way;
* ``whole_image``: the concept vector as shipped (max over superpixels) against the same with the
  whole image as one more segment (all patches pooled), and with the global CLIP embedding's
  concept scores as extra columns beside the segments'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ALPHAS = (3e-2, 1e-2, 5e-3, 3e-3, 2e-3, 1e-3, 5e-4, 3e-4, 1e-4)


def _scores(ws, test, fit, X, alpha: float, logistic: bool = False):
    from conceptkd_core.students.bank import StudentBank

    bank = StudentBank(alpha=1e-3 if logistic else alpha).fit(X[fit], ws.teacher_logits[fit])
    if logistic:
        bank.refine(X[fit].astype(np.float64), ws.teacher_logits[fit], alpha=alpha)
    return bank, bank.decision_function(X[test])


def _figures(ws, test, scores, bank) -> dict:
    from conceptkd_core.students.metrics import average_precision, balanced_agreement, mean_ap
    from conceptkd_core.students.solver import sigmoid

    teacher = sigmoid(ws.teacher_logits[test].astype(np.float64))
    return {
        "student_map": round(mean_ap(average_precision(ws.labels[test], scores)), 4),
        "balanced_agreement": round(float(np.nanmean(balanced_agreement(teacher, sigmoid(scores)))), 4),
        "concepts_per_class_median": float(np.median((bank.coef_ != 0).sum(axis=1))),
    }


def _cv_alpha(ws, fit_rows: np.ndarray, X, logistic: bool, folds: int = 5, seed: int = 0) -> float:
    """The α of the path with the best mean fold balanced agreement (ties: the larger α, sparser)."""
    from conceptkd_core.students.bank import StudentBank
    from conceptkd_core.students.metrics import balanced_agreement
    from conceptkd_core.students.solver import sigmoid

    order = np.random.default_rng(seed).permutation(fit_rows)
    parts = np.array_split(order, folds)
    means = []
    for alpha in ALPHAS:
        values = []
        for k in range(folds):
            held = parts[k]
            train = np.concatenate([p for i, p in enumerate(parts) if i != k])
            bank = StudentBank(alpha=1e-3 if logistic else alpha).fit(X[train], ws.teacher_logits[train])
            if logistic:
                bank.refine(X[train].astype(np.float64), ws.teacher_logits[train], alpha=alpha)
            teacher = sigmoid(ws.teacher_logits[held].astype(np.float64))
            values.append(np.nanmean(balanced_agreement(teacher, sigmoid(bank.decision_function(X[held])))))
        means.append(float(np.mean(values)))
    return ALPHAS[int(np.argmax(means))]


def _whole_image_columns(demo: Path, ws) -> tuple[np.ndarray, np.ndarray]:
    """Per image: concept scores of the whole image as one segment (all patches pooled, as a
    superpixel is), and of the global CLIP embedding. Both clipped at 0 like the shipped scores."""
    import torch

    from conceptkd_core.extract.clip_backend import (
        concept_embeddings,
        dense_patch_features,
        encode_image,
        load_clip,
        register_model_config,
        to_model_input,
    )
    from conceptkd_core.images import load_rgb

    from .demo import MODEL_NAME

    register_model_config(demo / f"{MODEL_NAME}.json")
    clip = load_clip(str(demo / f"{MODEL_NAME}.json"), checkpoint=demo / f"{MODEL_NAME}.safetensors")
    text = concept_embeddings(clip, list(ws.vocabulary))
    pooled_rows, global_rows = [], []
    for start in range(0, ws.n_images, 64):
        rows = range(start, min(start + 64, ws.n_images))
        batch = to_model_input(clip, [load_rgb(ws.image_path(r)) for r in rows])
        with torch.inference_mode():
            patches = dense_patch_features(clip, batch)  # (B, g, g, D), normalised
            pooled = patches.flatten(1, 2).mean(dim=1)
            pooled = pooled / pooled.norm(dim=-1, keepdim=True)
            pooled_rows.append(pooled.numpy() @ text.T)
            global_rows.append(encode_image(clip, batch).numpy() @ text.T)
    return np.clip(np.concatenate(pooled_rows), 0, None), np.clip(np.concatenate(global_rows), 0, None)


def ablate(demo: Path) -> dict:
    from conceptkd_core.defaults import DEFAULT_ALPHA
    from conceptkd_core.store.split import workspace_split
    from conceptkd_core.store.workspace import load_workspace

    demo = Path(demo)
    ws = load_workspace(demo / "workspace")
    test = ws.split_mask("test")
    fit = workspace_split(ws.splits, ws.labels).fit
    X = np.asarray(ws.concept_matrix, dtype=np.float32)
    result: dict = {"fit_images": int(fit.sum()), "test_images": int(test.sum())}

    bank, scores = _scores(ws, test, fit, X, DEFAULT_ALPHA)
    result["default"] = {"alpha": DEFAULT_ALPHA, **_figures(ws, test, scores, bank)}
    alpha = _cv_alpha(ws, np.flatnonzero(fit), X, logistic=False)
    bank, scores = _scores(ws, test, fit, X, alpha)
    result["l1_path"] = {"alpha_by_cv": alpha, **_figures(ws, test, scores, bank)}
    alpha = _cv_alpha(ws, np.flatnonzero(fit), X, logistic=True)
    bank, scores = _scores(ws, test, fit, X, alpha, logistic=True)
    result["logistic_loss"] = {"alpha_by_cv": alpha, **_figures(ws, test, scores, bank)}

    pooled, global_ = _whole_image_columns(demo, ws)
    for name, matrix in (
        ("whole_image_segment", np.maximum(X, pooled.astype(np.float32))),
        ("global_columns_beside", np.concatenate([X, global_.astype(np.float32)], axis=1)),
    ):
        bank, scores = _scores(ws, test, fit, matrix, DEFAULT_ALPHA)
        result[name] = {"alpha": DEFAULT_ALPHA, **_figures(ws, test, scores, bank)}
    return result
