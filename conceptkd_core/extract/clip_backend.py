"""CLIP through open_clip: loading (pretrained tags or local checkpoints), concept text
embeddings, and dense text-aligned patch features (MaskCLIP style) for ViT models.

Nothing here executes code from a weights file: checkpoints load with safetensors or
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..defaults import CLIP_MEAN, CLIP_STD
from ..images import to_tensor
from ..store.atomic_io import atomic_write_npy, sha256_file
from ..vocabulary import vocabulary_hash
from .torch_compat import import_open_clip

PROMPT_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of the {}.",
    "a close-up photo of the {}.",
    "a drawing of a {}.",
)
HUB_HOST = "huggingface.co"


class ClipLoadError(RuntimeError):
    """CLIP weights could not be loaded; the message says how to supply them."""


@dataclass
class ClipModel:
    """A loaded CLIP: the open_clip model (eval mode) with what extraction needs around it."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    pretrained: str | None
    checkpoint_sha256: str | None
    image_size: int
    patch_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: str

    @property
    def identity(self) -> dict:
        """What a workspace records about the model that made its concept scores."""
        return {
            "name": self.name,
            "pretrained": self.pretrained,
            "checkpoint_sha256": self.checkpoint_sha256,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
        }

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the weights hub resolves at all; offline machines fail fast instead of retrying."""
    result: list[bool] = []

    def probe():
        try:
            socket.getaddrinfo(HUB_HOST, 443)
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


@contextlib.contextmanager
def _hub_offline(offline: bool):
    """Make huggingface_hub use its local cache only (no network retries) while ``offline``."""
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = previous or offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


class _DropOpenClipRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "open_clip" not in record.pathname


@contextlib.contextmanager
def _quiet_open_clip_logs():
    """Drop the log records open_clip writes to the root logger while it builds a model."""
    root, dropper = logging.getLogger(), _DropOpenClipRecords()
    root.addFilter(dropper)
    try:
        yield
    finally:
        root.removeFilter(dropper)


def _short(text: str, limit: int = 300) -> str:
    """The first line of ``text``, cut at a word boundary with an ellipsis when longer than ``limit``."""
    line = " ".join(text.splitlines()[0].split()) if text.strip() else "no details"
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " …"


def load_state_dict_safely(path: str | os.PathLike) -> dict:
    """Tensors from a .safetensors file or a torch file loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ClipLoadError(f"Checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle with code, truncated file, not a checkpoint at all
        raise ClipLoadError(
            f"Cannot read checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}. "
            "Checkpoints must be .safetensors or plain tensor files loadable with torch.load(weights_only=True)."
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ClipLoadError(f"Checkpoint {path} does not hold a dictionary of tensors")
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def register_model_config(path: str | os.PathLike) -> str:
    """Make an open_clip JSON architecture config usable by name; returns the name (file stem)."""
    open_clip = import_open_clip()
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ClipLoadError(f"Cannot read model config {path}: {exc}") from None
    if not all(key in config for key in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ClipLoadError(f"{path} is not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)")
    open_clip.add_model_config(path)
    return path.stem


def load_clip(
    model_name: str = "ViT-B-16",
    pretrained: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
) -> ClipModel:
    """Load a CLIP for extraction.

    model_name : an open_clip architecture name (e.g. "ViT-B-16"), or the path of an open_clip
        JSON config file (a custom architecture such as the demo's mini CLIP)
    pretrained : an open_clip pretrained tag (e.g. "openai"), downloaded once when online
    checkpoint : a local weights file (.safetensors, or torch tensors) for ``model_name``

    Raises ``ClipLoadError`` with what to do when no weights can be had.
    """
    open_clip = import_open_clip()
    if pretrained and checkpoint:
        raise ClipLoadError("Give either pretrained (a tag to download) or checkpoint (a local file), not both")
    if not pretrained and not checkpoint:
        raise ClipLoadError(
            f"No weights given for {model_name!r}. Pass pretrained='openai' (or another open_clip tag; needs "
            "internet once) or checkpoint='path/to/weights.safetensors'. CLI: --pretrained TAG or --checkpoint FILE."
        )
    name = register_model_config(model_name) if str(model_name).endswith(".json") else str(model_name)
    if name not in open_clip.list_models():
        raise ClipLoadError(
            f"Unknown open_clip model {name!r}; e.g. ViT-B-16, ViT-B-32, ViT-L-14, or a JSON config path"
        )
    checkpoint_sha = None
    if pretrained:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise ClipLoadError(
                f"Unknown pretrained tag {pretrained!r} for {name!r}; its tags are "
                f"{', '.join(tags) or 'none (use a local weights file)'}. Local weights: --checkpoint FILE."
            )
    online = bool(checkpoint) or _hub_reachable()
    try:
        # open_clip logs its own notes (a randomly initialised model before the checkpoint is loaded,
        # a failed download): the ClipLoadError below says what matters, once.
        with _quiet_open_clip_logs():
            if checkpoint:
                model = open_clip.create_model(name, pretrained=None, device="cpu")
                state = load_state_dict_safely(checkpoint)
                try:
                    model.load_state_dict(state, strict=True)
                except RuntimeError as exc:
                    raise ClipLoadError(f"Checkpoint {checkpoint} does not fit {name!r}: {_short(str(exc))}") from None
                checkpoint_sha = sha256_file(checkpoint)
            else:
                with _hub_offline(not online):
                    model = open_clip.create_model(name, pretrained=pretrained, device="cpu", require_pretrained=True)
    except ClipLoadError:
        raise
    except Exception as exc:
        where = f"{HUB_HOST} cannot be reached from this machine" if not online else _short(str(exc))
        raise ClipLoadError(
            f"Cannot download the {pretrained!r} weights of {name!r}: {where}. Fetch them once on a connected "
            "machine (they are cached under ~/.cache/huggingface), or use a local weights file: --checkpoint FILE."
        ) from None
    model = model.to(device).eval()
    visual = model.visual
    image_size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else int(visual.image_size)
    patch = getattr(visual, "patch_size", None)
    patch_size = patch[0] if isinstance(patch, (tuple, list)) else int(patch or 0)
    mean = tuple(getattr(visual, "image_mean", None) or CLIP_MEAN)
    std = tuple(getattr(visual, "image_std", None) or CLIP_STD)
    return ClipModel(
        model=model,
        tokenizer=open_clip.get_tokenizer(name),
        name=name,
        pretrained=pretrained,
        checkpoint_sha256=checkpoint_sha,
        image_size=image_size,
        patch_size=patch_size,
        mean=mean,
        std=std,
        device=device,
    )


# ----------------------------------------------------------------------------- images
def to_model_input(clip: ClipModel, images: Sequence[Image.Image | np.ndarray]) -> torch.Tensor:
    """CLIP's normalised batch (B, 3, S, S) of RGB images: PIL images (squared to ``image_size``,
    bicubic, as ``images.square_resize`` does) or uint8 arrays (S, S, 3) already squared."""
    return to_tensor(
        images, clip.image_size, clip.mean, clip.std, resample=Image.Resampling.BICUBIC, device=clip.device
    )


@torch.inference_mode()
def encode_image(clip: ClipModel, batch: torch.Tensor) -> torch.Tensor:
    """Global image embeddings, L2-normalised, shape (B, D)."""
    return F.normalize(clip.model.encode_image(batch), dim=-1)


def _check_dense_support(clip: ClipModel) -> None:
    visual = clip.model.visual
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None or not hasattr(visual, "conv1"):
        raise NotImplementedError(
            f"Dense patch features need an open_clip VisionTransformer; {clip.name!r} has "
            f"{type(visual).__name__}. Use a ViT model (e.g. ViT-B-16)."
        )
    last = blocks[-1]
    if (
        not isinstance(getattr(last, "attn", None), torch.nn.MultiheadAttention)
        or getattr(visual, "attn_pool", None) is not None
    ):
        raise NotImplementedError(
            f"Dense patch features are not supported for {clip.name!r}'s attention/pooling variant"
        )


def dense_and_global(visual: torch.nn.Module, batch: torch.Tensor, with_global: bool = True):
    """MaskCLIP dense patch tokens (B, N, D) and, optionally, the usual pooled embedding (B, D),
    both projected but not normalised; differentiable (the demo's training uses it)."""
    x = visual._embeds(batch)
    transformer = visual.transformer
    if not transformer.batch_first:
        x = x.transpose(0, 1)
    for block in transformer.resblocks[:-1]:
        x = block(x)
    last = transformer.resblocks[-1]
    attn = last.attn
    width = attn.embed_dim
    values = F.linear(last.ln_1(x), attn.in_proj_weight[2 * width :], attn.in_proj_bias[2 * width :])
    if not transformer.batch_first:
        values = values.transpose(0, 1)
    dense = (visual.ln_post(attn.out_proj(values)) @ visual.proj)[:, 1:, :]
    if not with_global:
        return dense, None
    full = last(x)
    if not transformer.batch_first:
        full = full.transpose(0, 1)
    pooled, _ = visual._pool(full)
    return dense, pooled @ visual.proj


@torch.inference_mode()
def dense_patch_features(clip: ClipModel, batch: torch.Tensor, with_global: bool = False):
    """Text-aligned patch embeddings (MaskCLIP), L2-normalised, shape (B, grid, grid, D).

    Blocks 0..L-2 run as usual; the last block keeps only its value path
    ``out_proj(v(ln_1(x)))`` (no query-key attention, residual or MLP); then ``ln_post`` and
    ``proj`` map every patch token into the joint text space. With ``with_global`` the usual
    last block also runs on the shared intermediate, and the normalised global embedding
    (B, D) is returned too: ``(patches, global)``, for one pass instead of two.
    """
    _check_dense_support(clip)
    dense, pooled = dense_and_global(clip.model.visual, batch, with_global)
    g = clip.grid_size
    patches = F.normalize(dense, dim=-1).reshape(batch.shape[0], g, g, -1)
    return (patches, F.normalize(pooled, dim=-1)) if with_global else patches


# ----------------------------------------------------------------------------- text
@torch.inference_mode()
def encode_text_prompts(
    clip: ClipModel, words: Sequence[str], templates: Sequence[str] = PROMPT_TEMPLATES, batch_size: int = 256
) -> np.ndarray:
    """One embedding per word: the normalised mean of its normalised prompt embeddings, shape (m, D)."""
    prompts = [t.format(w) for w in words for t in templates]
    chunks = []
    for start in range(0, len(prompts), batch_size):
        tokens = clip.tokenizer(prompts[start : start + batch_size]).to(clip.device)
        chunks.append(F.normalize(clip.model.encode_text(tokens), dim=-1))
    per_prompt = torch.cat(chunks).reshape(len(words), len(templates), -1)
    return F.normalize(per_prompt.mean(dim=1), dim=-1).float().cpu().numpy()


def text_cache_path(
    clip: ClipModel,
    vocabulary: Sequence[str],
    cache_dir: str | os.PathLike,
    templates: Sequence[str] = PROMPT_TEMPLATES,
) -> Path:
    """Where ``concept_embeddings`` caches the embeddings of ``vocabulary`` for ``clip`` in ``cache_dir``."""
    key = hashlib.sha256(
        json.dumps([clip.identity, vocabulary_hash(vocabulary), list(templates)], sort_keys=True).encode()
    ).hexdigest()[:24]
    return Path(cache_dir) / f"text-{key}.npy"


def concept_embeddings(
    clip: ClipModel,
    vocabulary: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    templates: Sequence[str] = PROMPT_TEMPLATES,
) -> np.ndarray:
    """Concept text embeddings, cached on disk keyed by model identity + vocabulary + templates."""
    if cache_dir is None:
        return encode_text_prompts(clip, vocabulary, templates)
    path = text_cache_path(clip, vocabulary, cache_dir, templates)
    if path.is_file():
        cached = np.load(path, allow_pickle=False)
        if cached.shape[0] == len(vocabulary):
            return cached
    embeddings = encode_text_prompts(clip, vocabulary, templates)
    atomic_write_npy(path, embeddings.astype(np.float32))
    return embeddings
