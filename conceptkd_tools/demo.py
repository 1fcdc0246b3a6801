"""The embedded demo, "Clipart Scenes": built offline by the project's own pipeline.

``python -m conceptkd_core demo build`` renders emoji scenes, trains a mini CLIP from scratch
(open_clip, custom config) and a small CNN teacher on them, then runs the normal extraction
over held-out scenes into ``data/demo/workspace``. ``demo eval`` measures it. Deterministic
for a seed up to torch's CPU kernels; the time budgets bound the training length.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from conceptkd_core.datasets import VOC_CLASSES, load_folder
from conceptkd_core.defaults import CLIP_MEAN, CLIP_STD
from conceptkd_core.images import Preprocessing
from conceptkd_core.store.atomic_io import atomic_write_bytes, atomic_write_json, atomic_write_text
from conceptkd_core.vocabulary import normalise_words, vocabulary_text

DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"
MODEL_NAME = "conceptkd-mini-clip"
MODEL_CONFIG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 96, "layers": 4, "width": 192, "patch_size": 12, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 96, "heads": 4, "layers": 2},
}
CLIP_PREPROCESSING = Preprocessing(MODEL_CONFIG["vision_cfg"]["image_size"], CLIP_MEAN, CLIP_STD)
# The shipped models were trained on bicubic-resized batches (Pillow's default), kept so a rebuild
# reproduces them; extraction feeds CLIP bicubic too, and the teacher scores bilinear like every TorchTeacher.
TRAINING_RESAMPLE = Image.Resampling.BICUBIC
TEACHER_SIZE = 64
# Finer superpixels score the mini CLIP's concepts better at 96 px (student test mAP with 6 / 12 /
# 24 / 48 SLIC segments: 0.35 / 0.50 / 0.62 / 0.65, measured on this demo).
DEMO_SEGMENTS = 48
BACKGROUND_WORDS = ("sky", "grass", "sea", "road", "room")


def class_words() -> tuple[str, ...]:
    from .demo_scenes import CLASS_EMOJI

    return tuple(CLASS_EMOJI[c][0] for c in VOC_CLASSES)


def demo_vocabulary(sprites) -> list[str]:
    """Every word the mini CLIP saw in training: class words, object names, backgrounds."""
    return normalise_words(list(class_words()) + sorted({s.words for s in sprites}) + list(BACKGROUND_WORDS))


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------- mini CLIP
DEFAULT_CLIP_SCENES = 1_240_000  # ~10x the first build's 128k: what closes the student-teacher gap
CHECKPOINT_FOLDER = "checkpoints"


def register_demo_model(folder: Path) -> Path:
    """Write the mini CLIP's open_clip config into ``folder`` and register it under MODEL_NAME."""
    from conceptkd_core.extract.clip_backend import register_model_config

    config = Path(folder) / f"{MODEL_NAME}.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config, json.dumps(MODEL_CONFIG, indent=1) + "\n")
    register_model_config(config)
    return config


def train_clip_into(
    out: Path,
    sprites,
    scenes: int = DEFAULT_CLIP_SCENES,
    *,
    batch_size: int = 256,
    seed: int = 0,
    device: str = "cpu",
    workers: int | None = None,
    max_minutes: float | None = None,
    checkpoint_minutes: float = 5.0,
) -> dict:
    """Train (or resume training) the mini CLIP into ``out`` (weights + config); record its budget
    under ``clip_training`` in ``out/eval.json``. Returns that record; ``done`` is False when the
    run stopped at ``max_minutes`` first (run the same command again to go on)."""
    from conceptkd_core.extract.batching import default_workers

    from .demo_training import ClipTrainingPlan, train_clip

    out = Path(out)
    register_demo_model(out)
    plan = ClipTrainingPlan(scenes=scenes, batch_size=batch_size, seed=seed)
    workers = default_workers(device) if workers is None else workers
    model, progress = train_clip(
        sprites,
        plan,
        out / CHECKPOINT_FOLDER,
        device=device,
        workers=workers,
        max_minutes=max_minutes,
        checkpoint_minutes=checkpoint_minutes,
        log=_log,
    )
    record = {
        "scenes_budget": plan.scenes,
        "batch_size": plan.batch_size,
        "steps": progress["steps"],
        "scenes_seen": progress["scenes_seen"],
        "minutes": round(progress["seconds"] / 60, 2),
        "runs": [
            {
                "device": r["device"],
                "workers": r["workers"],
                "steps": r["steps"],
                "minutes": round(r["seconds"] / 60, 2),
            }
            for r in progress["runs"]
        ],
        "done": progress["done"],
    }
    if progress["done"]:
        save_clip(model, out)
    recorded = json.loads((out / "eval.json").read_text()) if (out / "eval.json").is_file() else {}
    atomic_write_json(out / "eval.json", recorded | {"clip_training": record})
    return record


def save_clip(model, folder: Path) -> tuple[Path, Path]:
    from safetensors.torch import save_file

    config = folder / f"{MODEL_NAME}.json"
    atomic_write_text(config, json.dumps(MODEL_CONFIG, indent=1) + "\n")
    weights = folder / f"{MODEL_NAME}.safetensors"
    # float16 on disk halves the checkpoint; loading casts back into the float32 model.
    save_file({k: v.detach().half().contiguous() for k, v in model.state_dict().items()}, str(weights))
    return config, weights


# ----------------------------------------------------------------------------- teacher
class SceneCNN(torch.nn.Module):
    """A small multi-label CNN over 64 px scenes: the demo's teacher."""

    def __init__(self, n_classes: int):
        super().__init__()
        layers, channels = [], 3
        for width in (32, 64, 128, 192):
            layers += [
                torch.nn.Conv2d(channels, width, 3, padding=1),
                torch.nn.BatchNorm2d(width),
                torch.nn.ReLU(),
                torch.nn.Conv2d(width, width, 3, padding=1),
                torch.nn.BatchNorm2d(width),
                torch.nn.ReLU(),
                torch.nn.MaxPool2d(2),
            ]
            channels = width
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).amax(dim=(2, 3)))


TEACHER_MEAN, TEACHER_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
TEACHER_PREPROCESSING = Preprocessing(TEACHER_SIZE, TEACHER_MEAN, TEACHER_STD)


def train_teacher(sprites, minutes: float, seed: int = 0, batch_size: int = 64, lr: float = 2e-3):
    from .demo_scenes import compose_scene

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    k = len(VOC_CLASSES)
    model = SceneCNN(k)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    budget, start, step = minutes * 60, time.time(), 0
    model.train()
    while time.time() - start < budget:
        progress = (time.time() - start) / budget
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * progress))
        scenes = [compose_scene(sprites, k, rng) for _ in range(batch_size)]
        x = TEACHER_PREPROCESSING.to_tensor([s.image for s in scenes], resample=TRAINING_RESAMPLE)
        y = torch.from_numpy(np.stack([s.labels for s in scenes])).float()
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % 50 == 0:
            _log(f"teacher step {step}: loss {loss.item():.4f}")
    model.eval()
    return torch.jit.script(model), {"steps": step, "scenes_seen": step * batch_size}


# ----------------------------------------------------------------------------- build
def render_split(sprites, folder: Path, n_multi: int, n_single: int, seed: int, split: str, writer, masks_out) -> None:
    from conceptkd_core.defaults import SEGMENT_MAP_SIZE

    from .demo_scenes import compose_scene

    rng = np.random.default_rng(seed)
    k = len(VOC_CLASSES)
    for i in range(n_multi + n_single):
        single = i >= n_multi
        scene = compose_scene(sprites, k, rng, single=single, class_words=class_words())
        image_id = f"{split}-{i:04d}"
        scene.image.save(folder / f"{image_id}.png", optimize=True)
        writer.writerow(
            {
                "image": f"{image_id}.png",
                "image_id": image_id,
                "split": split,
                "kind": "single" if single else "multi",
                "labels": ";".join(VOC_CLASSES[c] for c in np.flatnonzero(scene.labels)),
            }
        )
        for c in np.flatnonzero(scene.labels):
            union = np.zeros((scene.image.size[1], scene.image.size[0]), bool)
            for cls, mask in scene.masks:
                if cls == c:
                    union |= mask
            small = Image.fromarray(union.astype(np.uint8) * 255).resize(
                (SEGMENT_MAP_SIZE, SEGMENT_MAP_SIZE), Image.Resampling.BOX
            )
            masks_out.append((image_id, int(c), np.packbits(np.asarray(small) >= 128)))


def save_teacher(model: torch.jit.ScriptModule, path: Path) -> None:
    """Save a TorchScript teacher without its debug records: they hold the absolute paths of the
    source files on the building machine, and shipped data may hold no absolute path."""
    from conceptkd_core.export import torchscript_without_paths

    atomic_write_bytes(path, torchscript_without_paths(model))


def build(
    out: Path = DEMO_DIR,
    clip_scenes: int = DEFAULT_CLIP_SCENES,
    teacher_minutes: float = 5.0,
    n_val: int = 600,
    n_test: int = 500,
    n_single: int = 200,
    seed: int = 0,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    workers: int | None = None,
    max_minutes: float | None = None,
    checkpoint_minutes: float = 5.0,
) -> dict:
    """Build the whole demo into ``out`` (images, mini CLIP, teacher, workspace, eval.json).

    The mini CLIP's training checkpoints into ``out/checkpoints``; a run that reaches
    ``max_minutes`` first stops there (``done`` False in the result) and the same command resumes it.
    A mini CLIP already trained to this budget (``clip_training`` done in eval.json, e.g. by
    ``demo train-clip --device cuda``) and an existing teacher are kept, so a GPU-trained CLIP and
    the CPU steps make one build. The teacher and the extraction follow once the CLIP is trained."""
    from .demo_scenes import load_sprites

    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(out)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    sprites = load_sprites(VOC_CLASSES, seed)
    vocabulary = demo_vocabulary(sprites)
    atomic_write_text(out / "vocabulary.txt", vocabulary_text(vocabulary))
    _log(f"{len(sprites)} objects, {len(vocabulary)} vocabulary words")

    masks = []
    with open(out / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "image_id", "split", "kind", "labels"])
        writer.writeheader()
        render_split(sprites, images_dir, n_val, 0, seed + 100, "val", writer, masks)
        render_split(sprites, images_dir, n_test - n_single, n_single, seed + 200, "test", writer, masks)
    np.savez_compressed(
        out / "masks.npz",
        image_id=np.array([m[0] for m in masks]),
        class_index=np.array([m[1] for m in masks]),
        bits=np.stack([m[2] for m in masks]),
    )
    _log(f"rendered {n_val + n_test} held-out scenes")

    recorded = json.loads((out / "eval.json").read_text()) if (out / "eval.json").is_file() else {}
    clip_info = recorded.get("clip_training", {})
    trained = (
        clip_info.get("done")
        and (clip_info.get("scenes_budget"), clip_info.get("batch_size")) == (clip_scenes, batch_size)
        and (out / f"{MODEL_NAME}.safetensors").is_file()
    )
    if trained:  # e.g. trained on a GPU by `demo train-clip`: kept, not trained again
        _log(f"keeping the mini CLIP trained on {clip_info['scenes_seen']} scenes")
    else:
        clip_info = train_clip_into(
            out,
            sprites,
            clip_scenes,
            batch_size=batch_size,
            seed=seed,
            device=device,
            workers=workers,
            max_minutes=max_minutes,
            checkpoint_minutes=checkpoint_minutes,
        )
        if not clip_info["done"]:
            _log(f"stopped after {clip_info['scenes_seen']} of {clip_scenes} scenes: run the same command to resume")
            return {"clip_training": clip_info, "done": False}
    teacher_info = recorded.get("teacher_training")
    if (out / "teacher.pt").is_file() and teacher_info:
        _log("keeping the trained teacher (delete teacher.pt to train it again)")
    else:
        teacher_model, teacher_info = train_teacher(sprites, teacher_minutes, seed)
        save_teacher(teacher_model, out / "teacher.pt")

    return extract_and_evaluate(out, {"clip_training": clip_info, "teacher_training": teacher_info})


def extract_and_evaluate(out: Path = DEMO_DIR, training: dict | None = None) -> dict:
    """The last build step on its own: extract ``out/images`` with the shipped mini CLIP and
    teacher into ``out/workspace`` (replacing it), then measure and record ``eval.json``."""
    import shutil

    from conceptkd_core.extract.clip_backend import load_clip, register_model_config
    from conceptkd_core.extract.pipeline import extract
    from conceptkd_core.extract.teacher_registry import create_teacher
    from conceptkd_core.vocabulary import load_vocabulary

    out = Path(out)
    if training is None and (out / "eval.json").is_file():
        recorded = json.loads((out / "eval.json").read_text())
        training = {k: recorded[k] for k in ("clip_training", "teacher_training") if k in recorded}
    config = out / f"{MODEL_NAME}.json"
    register_model_config(config)
    clip = load_clip(str(config), checkpoint=out / f"{MODEL_NAME}.safetensors")
    images = load_folder(out / "images", out / "labels.csv")
    teacher = create_teacher(out / "teacher.pt", images.classes, preprocessing=TEACHER_PREPROCESSING)
    _log("extracting the demo workspace")
    shutil.rmtree(out / "workspace", ignore_errors=True)
    extract(
        images,
        out / "workspace",
        clip,
        teacher,
        load_vocabulary(out / "vocabulary.txt"),
        batch_size=32,
        n_segments=DEMO_SEGMENTS,
        extra_meta={"demo": "Clipart Scenes"} | (training or {}),
    )
    result = evaluate(out)
    atomic_write_json(out / "eval.json", result | (training or {}))
    return result


# ----------------------------------------------------------------------------- eval
def evaluate(demo: Path = DEMO_DIR) -> dict:
    """The demo's goals, measured on its held-out scenes (students fit on val, scored on test)."""
    from conceptkd_core.defaults import DEFAULT_ALPHA
    from conceptkd_core.extract.clip_backend import (
        concept_embeddings,
        encode_image,
        load_clip,
        register_model_config,
        to_model_input,
    )
    from conceptkd_core.images import load_rgb, square_resize
    from conceptkd_core.store.side_files import read_segments
    from conceptkd_core.store.split import workspace_split
    from conceptkd_core.store.workspace import load_workspace
    from conceptkd_core.students.bank import StudentBank
    from conceptkd_core.students.budget import budget_bank
    from conceptkd_core.students.metrics import agreement, average_precision, balanced_agreement, decision_f1, mean_ap
    from conceptkd_core.students.solver import sigmoid

    demo = Path(demo)
    ws = load_workspace(demo / "workspace")
    config = demo / f"{MODEL_NAME}.json"
    register_model_config(config)
    clip = load_clip(str(config), checkpoint=demo / f"{MODEL_NAME}.safetensors")
    kinds = {row["image_id"]: row["kind"] for row in csv.DictReader(open(demo / "labels.csv"))}
    test = ws.split_mask("test")
    single = np.array([kinds.get(i) == "single" for i in ws.image_ids]) & test

    # Zero-shot over the class words on single-object scenes.
    text = concept_embeddings(clip, list(class_words()))
    rows = np.flatnonzero(single)
    batch = to_model_input(clip, [square_resize(load_rgb(ws.image_path(r)), clip.image_size) for r in rows])
    predicted = (encode_image(clip, batch).numpy() @ text.T).argmax(axis=1)
    top1 = float((ws.labels[rows, predicted] == 1).mean())

    # Students fit on the split's fit images (val) and measured on the held-out ones (test).
    split = workspace_split(ws.splits, ws.labels)
    assert not (split.fit & test).any(), "the students must never be fit on a test scene"
    teacher_ap = average_precision(ws.labels[test], ws.teacher_logits[test])
    X = np.asarray(ws.concept_matrix, dtype=np.float32)
    bank = StudentBank(alpha=DEFAULT_ALPHA).fit(X[split.fit], ws.teacher_logits[split.fit])
    scores = bank.decision_function(X[test])
    student_ap = average_precision(ws.labels[test], scores)
    teacher_probs, student_probs = sigmoid(ws.teacher_logits[test].astype(np.float64)), sigmoid(scores)
    budget_ap = {
        f"student_map_at_{b}_concepts": round(
            mean_ap(average_precision(ws.labels[test], budget_bank(bank, b).decision_function(X[test]))), 4
        )
        for b in (5, 20)
    }

    # Pointing game: the segment that gives a present class's word its score overlaps the object.
    segments = read_segments(ws)
    masks = np.load(demo / "masks.npz")
    vocab_index = {w: j for j, w in enumerate(ws.vocabulary)}
    words = class_words()
    test_ids = set(ws.image_ids[test])
    pick = np.random.default_rng(0)
    hits = random_hits = total = 0
    for image_id, c, bits in zip(masks["image_id"], masks["class_index"], masks["bits"], strict=True):
        if str(image_id) not in test_ids:
            continue
        r = ws.row_of(str(image_id))
        j = vocab_index[words[int(c)]]
        seg = segments["best_segment"][r, j]
        region = segments["segment_maps"][r] == seg
        mask = np.unpackbits(bits)[: region.size].reshape(region.shape).astype(bool)
        hits += bool((region & mask).any())
        chance = segments["segment_maps"][r] == pick.choice(np.unique(segments["segment_maps"][r]))
        random_hits += bool((chance & mask).any())  # baseline: a random segment of the image
        total += 1
    return {
        "clip_zero_shot_top1": round(top1, 4),
        "teacher_map": round(mean_ap(teacher_ap), 4),
        "student_map": round(mean_ap(student_ap), 4),
        "student_teacher_gap": round(mean_ap(teacher_ap) - mean_ap(student_ap), 4),
        "balanced_agreement": round(float(np.nanmean(balanced_agreement(teacher_probs, student_probs))), 4),
        "plain_agreement": round(float(agreement(teacher_probs, student_probs).mean()), 4),
        "decision_f1": round(float(np.nanmean(decision_f1(teacher_probs, student_probs))), 4),
        "concepts_per_class_median": float(np.median((bank.coef_ != 0).sum(axis=1))),
        **budget_ap,
        "fit_images": split.n_fit,
        "pointing_game": round(hits / max(total, 1), 4),
        "pointing_game_random_segment": round(random_hits / max(total, 1), 4),
        "single_object_scenes": int(rows.size),
        "test_images": int(test.sum()),
        "vocabulary_words": ws.n_concepts,
    }
