"""The demo's mini CLIP training: scenes composed in worker processes, a step budget, checkpoints.

Training is counted in scenes, not minutes, so a build is the same on any machine and can stop and
go on: a CPU build of ~1.2M scenes takes hours on two cores, so it runs as several runs of at most
``max_minutes`` each, every run resuming from the last checkpoint. Batch ``b`` of the stream is
drawn from its own generator, seeded by ``(seed, b)``, whichever worker makes it and whichever run
it falls in: a resumed build sees exactly the scenes an uninterrupted one would, and the learning
rate follows the step, so resuming neither repeats nor skips data.

The objective (sigmoid multi-positive contrastive loss on scene-text pairs plus a dense term) is
described in :func:`clip_loss`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from conceptkd_core.store.atomic_io import atomic_write_bytes

CHECKPOINT_NAME = "clip-training.pt"
WARMUP_STEPS = 100


class TrainingError(ValueError):
    """A checkpoint that does not belong to this training (another seed, batch or budget)."""


@dataclass(frozen=True)
class ClipTrainingPlan:
    """What defines a training run; a checkpoint resumes only under the same plan."""

    scenes: int  # the budget: scenes seen in all
    batch_size: int = 256
    seed: int = 0
    lr: float = 1e-3

    @property
    def total_steps(self) -> int:
        return max(1, math.ceil(self.scenes / self.batch_size))


class SceneBatches(torch.utils.data.IterableDataset):
    """An endless stream of training batches, batch ``b`` drawn from ``default_rng((seed, b))``.

    With ``n`` DataLoader workers, worker ``w`` makes batches ``start + w``, ``start + w + n``, ...
    and the loader takes them in turn, so the stream's order does not depend on ``n``.
    Each batch: ``images`` uint8 (B, S, S, 3) already resized for the model, ``labels`` (B, k),
    ``tokens`` for the B scene texts and the k class prompts, and ``targets`` (B, B + k): 1 where
    every object a text names is in the scene.
    """

    def __init__(self, sprites, class_words, tokenizer, batch_size: int, seed: int, start: int, image_size: int):
        super().__init__()
        self.sprites, self.class_words, self.tokenizer = sprites, tuple(class_words), tokenizer
        self.batch_size, self.seed, self.start, self.image_size = batch_size, seed, start, image_size

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        b = self.start + worker
        while True:
            yield self.batch(b)
            b += workers

    def batch(self, b: int) -> dict:
        from conceptkd_core.extract.clip_backend import PROMPT_TEMPLATES
        from conceptkd_core.images import make_square

        from .demo import TRAINING_RESAMPLE
        from .demo_scenes import compose_scene

        rng = np.random.default_rng((self.seed, b))
        words, k = self.class_words, len(self.class_words)
        scenes = [
            compose_scene(self.sprites, k, rng, single=rng.random() < 0.3, class_words=words)
            for _ in range(self.batch_size)
        ]
        labels = np.stack([s.labels for s in scenes]).astype(bool)
        texts, named = [], np.zeros((self.batch_size, k), bool)
        for i, scene in enumerate(scenes):
            present = np.flatnonzero(scene.labels)
            if rng.random() < 0.5:
                texts.append(scene.caption(rng, words))
                named[i, present] = True
            else:
                c = int(rng.choice(present))
                texts.append(PROMPT_TEMPLATES[rng.integers(len(PROMPT_TEMPLATES))].format(words[c]))
                named[i, c] = True
        texts += [PROMPT_TEMPLATES[rng.integers(len(PROMPT_TEMPLATES))].format(w) for w in words]
        # A text is a positive for a scene when every class it names is in the scene.
        pairs = ~(named[None, :, :] & ~labels[:, None, :]).any(axis=2)
        return {
            "images": torch.from_numpy(
                np.stack([make_square(s.image, self.image_size, "squash", TRAINING_RESAMPLE) for s in scenes])
            ),
            "labels": torch.from_numpy(labels.astype(np.float32)),
            "tokens": self.tokenizer(texts),
            "targets": torch.from_numpy(np.concatenate([pairs, labels], axis=1).astype(np.float32)),
        }


def clip_loss(model, heads: torch.nn.ParameterDict, batch: dict, k: int, mean, std) -> tuple[torch.Tensor, ...]:
    """Sigmoid (multi-positive) contrastive loss on scene-text pairs, plus a dense term.

    Texts per step: one per scene (a full caption, or a prompt for one of its objects) and the k
    class prompts. A pair is positive when every object the text names is in the scene, so
    same-label pairs are never pushed apart. The dense term scores each class prompt by its best
    patch (MaskCLIP value path) against the scene's labels, which teaches the patch tokens to live
    in the text space: what extraction's segments rely on. Returns (global loss, dense loss).
    """
    from conceptkd_core.extract.clip_backend import dense_and_global

    images = batch["images"].permute(0, 3, 1, 2).float().div_(255.0)
    images = (images - mean) / std
    dense, pooled = dense_and_global(model.visual, images)
    text = F.normalize(model.encode_text(batch["tokens"]).float(), dim=-1)
    logits = F.normalize(pooled.float(), dim=-1) @ text.T * heads["scale"].exp() + heads["bias"]
    loss_global = F.binary_cross_entropy_with_logits(logits, batch["targets"])
    patch = F.normalize(dense.float(), dim=-1)
    best = torch.einsum("bnd,kd->bkn", patch, text[-k:]).amax(dim=-1)
    loss_dense = F.binary_cross_entropy_with_logits(
        best * heads["dense_scale"].exp() + heads["dense_bias"], batch["labels"]
    )
    return loss_global, loss_dense


def _learning_rate(plan: ClipTrainingPlan, step: int) -> float:
    """Linear warm-up, then a cosine to zero over the whole budget (a function of the step alone)."""
    progress = min(1.0, step / plan.total_steps)
    return plan.lr * min(1.0, (step + 1) / WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * progress))


def _heads() -> torch.nn.ParameterDict:
    return torch.nn.ParameterDict(
        {
            "scale": torch.nn.Parameter(torch.tensor(math.log(10.0))),
            "bias": torch.nn.Parameter(torch.tensor(-5.0)),
            "dense_scale": torch.nn.Parameter(torch.tensor(math.log(10.0))),
            "dense_bias": torch.nn.Parameter(torch.tensor(-5.0)),
        }
    )


def save_checkpoint(path: Path, plan: ClipTrainingPlan, model, heads, optimizer, progress: dict) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(
        {
            "plan": asdict(plan),
            "model": model.state_dict(),
            "heads": heads.state_dict(),
            "optimizer": optimizer.state_dict(),
            "progress": progress,
        },
        buffer,
    )
    atomic_write_bytes(path, buffer.getvalue())  # a run killed mid-write leaves the last checkpoint whole


def load_checkpoint(path: Path, plan: ClipTrainingPlan) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("plan") != asdict(plan):
        raise TrainingError(
            f"checkpoint {path.name} was made for {state.get('plan')}, not {asdict(plan)}: "
            "use the same --clip-scenes, --batch-size and --seed, or another --checkpoint folder"
        )
    return state


def train_clip(
    sprites,
    plan: ClipTrainingPlan,
    checkpoint_dir: Path,
    *,
    device: str = "cpu",
    workers: int = 0,
    max_minutes: float | None = None,
    checkpoint_minutes: float = 5.0,
    log=print,
):
    """Train (or go on training) the mini CLIP until ``plan.scenes`` have been seen or this run has
    lasted ``max_minutes``. Checkpoints into ``checkpoint_dir`` every ``checkpoint_minutes`` and at
    the end. Returns (model in eval mode, progress dict with ``done``)."""
    from conceptkd_core.extract.torch_compat import import_open_clip

    from .demo import CLIP_PREPROCESSING, MODEL_NAME, class_words

    open_clip = import_open_clip()
    torch.manual_seed(plan.seed)
    model = open_clip.create_model(MODEL_NAME, pretrained=None)
    heads = _heads()
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(heads.parameters()), lr=plan.lr, weight_decay=0.05)
    progress = {"steps": 0, "scenes_seen": 0, "seconds": 0.0, "runs": []}
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_NAME
    if checkpoint.is_file():
        state = load_checkpoint(checkpoint, plan)
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        progress = state["progress"]
        log(f"resuming from step {progress['steps']} ({progress['scenes_seen']} scenes seen)")
    model.to(device).train()
    heads.to(device)
    for group in optimizer.state.values():  # the optimizer's moments follow the parameters
        for key, value in group.items():
            if torch.is_tensor(value) and key != "step":
                group[key] = value.to(device)
    mean = torch.tensor(CLIP_PREPROCESSING.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_PREPROCESSING.std, device=device).view(1, 3, 1, 1)
    words = class_words()
    stream = SceneBatches(
        sprites,
        words,
        open_clip.get_tokenizer(MODEL_NAME),
        plan.batch_size,
        plan.seed,
        progress["steps"],
        CLIP_PREPROCESSING.image_size,
    )
    cuda = str(device).startswith("cuda")
    loader = torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        pin_memory=cuda,
    )
    run = {"device": str(device), "workers": workers, "first_step": progress["steps"], "steps": 0, "seconds": 0.0}
    progress["runs"].append(run)
    start = last_save = time.perf_counter()
    params = list(model.parameters()) + list(heads.parameters())
    for batch in loader if progress["steps"] < plan.total_steps else ():
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(plan, progress["steps"])
        batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda):
            loss_global, loss_dense = clip_loss(model, heads, batch, len(words), mean, std)
        loss = loss_global + loss_dense
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            heads["scale"].clamp_(max=math.log(100.0))
            heads["dense_scale"].clamp_(max=math.log(100.0))
        progress["steps"] += 1
        progress["scenes_seen"] += plan.batch_size
        run["steps"] += 1
        now = time.perf_counter()
        if progress["steps"] % 50 == 0:
            log(
                f"clip step {progress['steps']}/{plan.total_steps}: loss {loss_global.item():.3f} "
                f"+ dense {loss_dense.item():.3f}, {run['steps'] * plan.batch_size / (now - start):.0f} scenes/s"
            )
        finished = progress["steps"] >= plan.total_steps
        out_of_time = max_minutes is not None and now - start >= max_minutes * 60
        if finished or out_of_time or now - last_save >= checkpoint_minutes * 60:
            _account(progress, run, now - last_save)
            save_checkpoint(checkpoint, plan, model, heads, optimizer, progress)
            last_save = now
        if finished or out_of_time:
            break
    _account(progress, run, time.perf_counter() - last_save)
    progress["done"] = progress["steps"] >= plan.total_steps
    model.eval()
    return model.cpu(), progress


def _account(progress: dict, run: dict, seconds: float) -> None:
    progress["seconds"] = round(progress["seconds"] + seconds, 1)
    run["seconds"] = round(run["seconds"] + seconds, 1)
