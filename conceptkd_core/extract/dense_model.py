"""The dense path as one torch module: image + segment map -> concept scores -> class scores.

``ConceptModel`` is what extraction computes for one image (``batching.launch_shard``: MaskCLIP
patch features, each segment the coverage-weighted mean of the patches under it, a concept's
score the best segment's cosine with the concept's text embedding, clipped at 0), followed by the
students' linear heads. The Predict page runs it on a new image; ``export`` traces it into a
TorchScript file that needs only torch. The segment map is an input, not computed inside: SLIC
superpixels (``segments.superpixels``) are scikit-image code, not a torch operation.

Concept scores are rounded to float16 before the heads, as the workspace stores them: the students
were fit on the stored scores, so a new image is scored on the same grid of values.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..defaults import MAX_SEGMENTS
from .clip_backend import ClipModel, _check_dense_support, dense_and_global


class ConceptModel(torch.nn.Module):
    """pixels (B, 3, S, S) normalised as CLIP wants, segments (B, S, S) int64 ids 0..K-1 (K <= 64)
    -> (concept scores (B, m) float32, class scores (B, k) float32, best segment (B, m) int64).

    visual : CLIP's vision tower (an open_clip VisionTransformer); grid : patches per side
    text : (m, D) normalised concept text embeddings; weights : (k, m); intercepts : (k,)
    """

    def __init__(self, visual: torch.nn.Module, grid: int, text, weights, intercepts):
        super().__init__()
        self.visual = visual
        self.grid = int(grid)
        as_tensor = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
        self.register_buffer("text", as_tensor(text))
        self.register_buffer("weights", as_tensor(weights))
        self.register_buffer("intercepts", as_tensor(intercepts))

    def forward(self, pixels: torch.Tensor, segments: torch.Tensor):
        batch, size = pixels.shape[0], pixels.shape[-1]
        dense, _ = dense_and_global(self.visual, pixels, with_global=False)
        patches = F.normalize(dense, dim=-1)  # (B, grid * grid, D)
        patch = size // self.grid
        cut = segments[:, : self.grid * patch, : self.grid * patch]
        onehot = F.one_hot(cut, MAX_SEGMENTS).to(patches.dtype)  # (B, S', S', 64)
        cells = onehot.reshape(batch, self.grid, patch, self.grid, patch, MAX_SEGMENTS).sum(dim=(2, 4))
        coverage = cells.reshape(batch, self.grid * self.grid, MAX_SEGMENTS).transpose(1, 2) / (patch * patch)
        pooled = torch.bmm(coverage, patches) / coverage.sum(dim=2, keepdim=True).clamp_min(1e-12)
        sims = F.normalize(pooled, dim=-1, eps=1e-12) @ self.text.T  # (B, 64, m)
        count = segments.reshape(batch, -1).amax(dim=1) + 1
        valid = torch.arange(MAX_SEGMENTS, device=pixels.device)[None, :] < count[:, None]
        best_scores, best = sims.masked_fill(~valid[:, :, None], -torch.inf).max(dim=1)
        concepts = best_scores.clamp_min(0.0).half().float()  # the workspace's float16 grid
        return concepts, concepts @ self.weights.T + self.intercepts, best


def concept_model(clip: ClipModel, text, weights, intercepts) -> ConceptModel:
    """A ``ConceptModel`` on ``clip``'s vision tower (shared, not copied), in eval mode."""
    _check_dense_support(clip)
    return ConceptModel(clip.model.visual, clip.grid_size, text, weights, intercepts).to(clip.device).eval()
