"""Superpixels of a whole batch on the model's device: SLIC as tensor operations ("torch-slic").

Why: skimage's SLIC (``segments.superpixels``) costs ~10 ms an image on one CPU core, so on a GPU
that encodes ~1,000 images/s the CPU workers cannot keep up. This is the same algorithm, run on a
batch (B, H, W, 3) of uint8 images already squared to the model's size:

* k-means in (CIELAB colour / compactness, position / grid step), the distance skimage uses, from
  centres on a regular grid of about ``n_segments`` cells; a pixel may join only the centres of the
  3x3 grid cells around its own (as GPU SLICs do), ``ITERATIONS`` rounds; distances are one batched
  matmul against every centre, the others masked (K <= 64, so that is cheap and has no gathers);
* connectivity: the largest 4-connected piece of each segment keeps the label; its other pieces,
  and segments under ``MIN_SIZE_FACTOR`` of the average size, join, whole, the touching segment
  whose centre is nearest their mean colour and position. So every label is one connected region,
  labels are 0..K-1 per image and K <= the grid's cells <= MAX_SEGMENTS.

Segments are not pixel-identical to skimage's (its cleanup and tie-breaks differ); ``slic`` stays
the reference and the default. Loops run over iterations and cleanup rounds, never over pixels.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from ..defaults import MAX_SEGMENTS, N_SEGMENTS, SEGMENT_MAP_SIZE
from .segments import enlarge_index

ITERATIONS = 10  # skimage's default max_num_iter
MIN_SIZE_FACTOR = 0.25  # segments smaller than this share of the average size are merged away
COMPACTNESS = 12.0  # as ``segments.superpixels``

# sRGB (D65) -> XYZ and the D65 white point, as skimage.color.rgb2lab uses them.
_XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_WHITE = (0.95047, 1.0, 1.08883)


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """CIELAB (B, H, W, 3) float32 of uint8 sRGB images (B, H, W, 3), as ``skimage.color.rgb2lab``."""
    v = torch.arange(256, device=images.device, dtype=torch.float32) / 255
    linear = torch.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)[images.long()]  # 256-entry table
    matrix = torch.tensor(_XYZ_FROM_RGB, device=images.device) / torch.tensor(_WHITE, device=images.device)[:, None]
    xyz = linear @ matrix.T
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f.unbind(-1)
    return torch.stack((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)), dim=-1)


def grid_shape(height: int, width: int, n_segments: int) -> tuple[int, int]:
    """Rows and columns of the starting grid: about ``n_segments`` square cells, at most MAX_SEGMENTS."""
    step = math.sqrt(height * width / max(1, n_segments))
    rows, cols = max(1, round(height / step)), max(1, round(width / step))
    while rows * cols > MAX_SEGMENTS:
        rows, cols = (rows - 1, cols) if rows >= cols else (rows, cols - 1)
    return rows, cols


@lru_cache(maxsize=16)
def _reachable(height: int, width: int, rows: int, cols: int, device: str) -> torch.Tensor:
    """(H*W, K) additive mask: 0 for the centres of the 3x3 grid cells around each pixel's own, inf else."""
    cy = ((torch.arange(height, device=device) + 0.5) * rows / height).long()
    cx = ((torch.arange(width, device=device) + 0.5) * cols / width).long()
    gy, gx = torch.arange(rows, device=device), torch.arange(cols, device=device)
    near_y = (cy[:, None] - gy[None, :]).abs() <= 1  # (H, rows)
    near_x = (cx[:, None] - gx[None, :]).abs() <= 1  # (W, cols)
    near = near_y[:, None, :, None] & near_x[None, :, None, :]  # (H, W, rows, cols)
    return torch.zeros(near.shape, device=device).masked_fill(~near, torch.inf).reshape(height * width, rows * cols)


def _assign(features: torch.Tensor, centres: torch.Tensor, reachable: torch.Tensor) -> torch.Tensor:
    """Each pixel's nearest reachable centre (B, N): squared distance less the pixel's own squared norm
    (the same for all its centres), |c|^2 - 2 f.c, as one batched matmul. Ties go to the first centre."""
    bias = (centres * centres).sum(-1)[:, None, :] + reachable
    return torch.baddbmm(bias, features, centres.transpose(1, 2), alpha=-2).argmin(dim=2)


def _centres(features: torch.Tensor, labels: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Mean feature of each cluster (an empty one keeps its centre), as one batched matmul with the
    one-hot assignment: deterministic, unlike atomic scatter-adds on a GPU."""
    batch, k = previous.shape[:2]
    onehot = torch.zeros(batch, k, labels.shape[1], device=features.device)
    onehot.scatter_(1, labels[:, None, :], 1.0)
    ones = torch.ones(*features.shape[:2], 1, device=features.device)
    sums = torch.bmm(onehot, torch.cat((features, ones), dim=2))
    count = sums[..., -1:]
    return torch.where(count > 0, sums[..., :-1] / count.clamp_min(1), previous)


def _run_minimum(root: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each pixel's smallest ``root`` over its run of equal labels along the rows (B, H, W)."""
    batch = labels.shape[0]
    change = torch.ones_like(labels, dtype=torch.long)
    change[:, :, 1:] = (labels[:, :, 1:] != labels[:, :, :-1]).long()
    run = change.view(batch, -1).cumsum(1) - 1  # run ids, new at every row start and label change
    flat = root.reshape(batch, -1)
    least = torch.full_like(flat, flat.shape[1]).scatter_reduce_(1, run, flat, reduce="amin")
    return least.gather(1, run).view(labels.shape)


def _components(labels: torch.Tensor) -> torch.Tensor:
    """4-connected pieces of each label map (B, H, W): per pixel the smallest flat index of its piece.
    Minima over runs of equal labels along rows, then columns, then a jump to the root's root, until
    nothing changes (compact segments: a few rounds)."""
    batch, height, width = labels.shape
    root = torch.arange(height * width, device=labels.device).repeat(batch, 1).view(batch, height, width)
    columns = labels.transpose(1, 2).contiguous()
    while True:
        before = root
        root = _run_minimum(root, labels)
        root = _run_minimum(root.transpose(1, 2).contiguous(), columns).transpose(1, 2)
        flat = root.reshape(batch, -1)
        root = flat.gather(1, flat).view(batch, height, width)
        if torch.equal(root, before):
            return root


def _neighbours(labels: torch.Tensor) -> torch.Tensor:
    """The labels of each pixel's 4 neighbours (B, 4, H*W), -1 beyond the border."""
    batch, height, width = labels.shape
    padded = torch.nn.functional.pad(labels, (1, 1, 1, 1), value=-1)
    shifted = (padded[:, :-2, 1:-1], padded[:, 1:-1, :-2], padded[:, 2:, 1:-1], padded[:, 1:-1, 2:])
    return torch.stack(shifted, dim=1).reshape(batch, 4, height * width)


def _connect(labels: torch.Tensor, features: torch.Tensor, centres: torch.Tensor, min_size: int) -> torch.Tensor:
    """Each label keeps its largest piece unless tiny (the image's largest piece always stays); every
    other piece joins, whole, the neighbouring kept segment whose centre is nearest its mean feature.
    A piece that touches no kept one yet waits for the next round. Whole pieces joining a segment
    they touch keep every segment connected."""
    batch, height, width = labels.shape
    n = height * width
    root = _components(labels).view(batch, n)
    flat = labels.view(batch, n)
    size = torch.zeros(batch, n, dtype=torch.long, device=labels.device)
    size.scatter_add_(1, root, torch.ones_like(root))
    size = size.gather(1, root)  # per pixel, the size of its piece
    key = size * n + (n - 1 - root)  # one value per piece: larger pieces first, then the earlier one
    best = torch.full((batch, centres.shape[1]), -1, dtype=torch.long, device=labels.device)
    best.scatter_reduce_(1, flat, key, reduce="amax")
    main = key == best.gather(1, flat)
    keep = (main & (size >= min_size)) | (key == key.max(dim=1, keepdim=True).values)
    current = torch.where(keep, flat, -1)
    if bool(keep.all()):
        return current.view(batch, height, width)
    sums = torch.zeros_like(features).scatter_add_(1, root[..., None].expand_as(features), features)
    mean = (sums / size.gather(1, root)[..., None].clamp_min(1)).gather(1, root[..., None].expand_as(features))
    pieces = root[:, None, :].expand(batch, 4, n).reshape(batch, -1)
    while True:
        missing = current < 0
        if not bool(missing.any()):
            return current.view(batch, height, width)
        near = _neighbours(current.view(batch, height, width))
        touching = (near >= 0) & missing[:, None, :]
        centre = torch.gather(centres, 1, near.clamp_min(0).view(batch, -1, 1).expand(-1, -1, features.shape[2]))
        distance = ((centre.view(batch, 4, n, -1) - mean[:, None]) ** 2).sum(-1).masked_fill(~touching, torch.inf)
        distance = distance.view(batch, -1)
        least = torch.full((batch, n), torch.inf, device=labels.device)
        least = least.scatter_reduce(1, pieces, distance, reduce="amin").gather(1, pieces)
        winner = torch.where(touching.view(batch, -1) & (distance == least), near.view(batch, -1), n)
        chosen = torch.full((batch, n), n, device=labels.device).scatter_reduce(1, pieces, winner, reduce="amin")
        chosen = chosen.gather(1, root)
        current = torch.where(missing & (chosen < n), chosen, current)


def _contiguous(labels: torch.Tensor, k: int) -> torch.Tensor:
    """Labels renumbered 0..K-1 per image in order of first grid cell."""
    batch = labels.shape[0]
    flat = labels.view(batch, -1)
    present = torch.zeros(batch, k, dtype=torch.long, device=labels.device).scatter_(1, flat, 1)
    return (present.cumsum(1) - 1).gather(1, flat).view(labels.shape)


@torch.inference_mode()
def superpixels(
    images: torch.Tensor, n_segments: int = N_SEGMENTS, compactness: float = COMPACTNESS, iterations: int = ITERATIONS
) -> torch.Tensor:
    """Label maps (B, H, W) int64 of uint8 images (B, H, W, 3), on their device: each label one
    connected region, labels 0..K-1 per image with K <= MAX_SEGMENTS."""
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 of shape (B, H, W, 3); got {images.dtype} {tuple(images.shape)}")
    batch, height, width, _ = images.shape
    device = images.device
    rows, cols = grid_shape(height, width, n_segments)
    step = max(height / rows, width / cols)
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    position = torch.stack((ys, xs), dim=-1).expand(batch, height, width, 2) / step
    features = torch.cat((rgb_to_lab(images) / compactness, position), dim=-1).reshape(batch, height * width, 5)
    # Centres start at the pixels in the middle of the grid cells (as skimage's regular grid).
    cy = ((torch.arange(rows, device=device) + 0.5) * height / rows).long()
    cx = ((torch.arange(cols, device=device) + 0.5) * width / cols).long()
    start = (cy[:, None] * width + cx[None, :]).reshape(-1)
    centres = features[:, start, :]
    reachable = _reachable(height, width, rows, cols, str(device))
    labels = _assign(features, centres, reachable)
    for _ in range(iterations - 1):
        centres = _centres(features, labels, centres)
        labels = _assign(features, centres, reachable)
    centres = _centres(features, labels, centres)
    min_size = max(1, int(MIN_SIZE_FACTOR * height * width / (rows * cols)))
    connected = _connect(labels.view(batch, height, width), features, centres, min_size)
    return _contiguous(connected, rows * cols)


@torch.inference_mode()
def patch_weights(labels: torch.Tensor, grid: int) -> torch.Tensor:
    """Share of each patch each segment covers, (B, K, grid * grid) float32 with K the batch's most
    segments (zero rows pad images with fewer): ``segments.patch_weights`` of every image at once."""
    batch, size = labels.shape[:2]
    patch = size // grid
    k = int(labels.max()) + 1
    cells = torch.arange(grid, device=labels.device).repeat_interleave(patch)
    cell = (cells[:, None] * grid + cells[None, :]).reshape(-1)  # each pixel's patch
    index = labels[:, : grid * patch, : grid * patch].reshape(batch, -1) * grid * grid + cell
    counts = torch.zeros(batch, k * grid * grid, device=labels.device)
    counts.scatter_add_(1, index, torch.ones(index.shape, device=labels.device))
    return counts.view(batch, k, grid * grid) / (patch * patch)


@lru_cache(maxsize=8)
def _map_index(size: int) -> np.ndarray:
    """The source row (and column) of each row of the small map: PIL's nearest-neighbour choice."""
    ramp = np.tile(np.arange(size, dtype=np.int32), (1, 1))
    small = Image.fromarray(ramp).resize((SEGMENT_MAP_SIZE, 1), Image.Resampling.NEAREST)
    return np.asarray(small, dtype=np.int64)[0]


@torch.inference_mode()
def small_segment_maps(labels: torch.Tensor) -> torch.Tensor:
    """(B, SEGMENT_MAP_SIZE, SEGMENT_MAP_SIZE) uint8: ``segments.small_segment_map`` of every image."""
    pick = torch.from_numpy(_map_index(labels.shape[1])).to(labels.device)
    return labels[:, pick][:, :, pick].to(torch.uint8)


def enlarge(labels: torch.Tensor, size: int | None) -> torch.Tensor:
    """Label maps (B, C, C) scaled up to (B, size, size) as ``segments.superpixels`` scales its own."""
    if size is None or size == labels.shape[1]:
        return labels
    index = torch.from_numpy(enlarge_index(labels.shape[1], size)).to(labels.device)
    return labels[:, index][:, :, index]


def segment_batch(images: torch.Tensor, grid: int, n_segments: int = N_SEGMENTS, size: int | None = None):
    """What the pipeline needs of a batch: patch weights (B, K, grid * grid), segments per image (B,)
    and the small maps (B, SEGMENT_MAP_SIZE, SEGMENT_MAP_SIZE) uint8, all on ``images``' device.
    ``images`` (B, C, C, 3) are cut as they are and their labels scaled up to the model's input
    ``size`` (None: C) as ``segments.superpixels`` scales its own (``segments.shrink`` made them)."""
    labels = enlarge(superpixels(images, n_segments), size)
    counts = labels.flatten(1).amax(dim=1) + 1
    return patch_weights(labels, grid), counts, small_segment_maps(labels)
