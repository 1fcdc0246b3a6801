"""Images -> workspace: concept vectors from CLIP over segments, segment maps, teacher logits.

Resumable: the work is split into batches and every finished batch is written atomically as a
shard under ``OUT/.extract/``; a rerun with the same inputs skips finished shards, so a crash
or Ctrl-C loses at most the batch in flight. Unreadable images are skipped, counted and listed
(``OUT/extraction_report.json``), never fatal. The last step assembles a normal workspace.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .atomic_io import atomic_write, atomic_write_json, atomic_write_npy
from .clip_backend import ClipModel, concept_embeddings, dense_patch_features, to_model_input
from .datasets import ImageSet
from .images import load_rgb, square_resize
from .segments import SEGMENT_FILES, concepts_for_image, superpixels
from .teachers import ClipZeroShotTeacher, Teacher
from .vocabulary import vocabulary_hash
from .workspace import SEGMENTS_DIR, Workspace, write_workspace

PARTIAL_DIR = ".extract"
REPORT_FILE = "extraction_report.json"


class ExtractionError(RuntimeError):
    """Extraction cannot start or finish; the message says why and what to do."""


@dataclass
class Progress:
    done: int
    total: int
    skipped: int
    images_per_s: float
    eta_s: float


@dataclass
class ExtractionResult:
    workspace: Workspace
    failures: list[dict] = field(default_factory=list)
    computed: int = 0
    resumed: int = 0


def _plan(images: ImageSet, clip: ClipModel, teacher: Teacher, vocabulary: Sequence[str], batch_size: int) -> dict:
    return {"image_ids": list(images.image_ids), "model": clip.identity, "teacher": teacher.identity,
            "vocabulary_sha256": vocabulary_hash(vocabulary), "batch_size": batch_size}


def _shard_path(partial: Path, start: int) -> Path:
    return partial / f"shard-{start:09d}.npz"


def _write_shard(path: Path, arrays: dict) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    atomic_write(path, lambda handle: handle.write(data))


def _extract_batch(clip: ClipModel, teacher: Teacher, text: np.ndarray, images: ImageSet, rows: range,
                   n_segments: int) -> dict:
    loaded, ok_rows, failures = [], [], []
    for r in rows:
        try:
            loaded.append(load_rgb(images.absolute_path(r)))
            ok_rows.append(r)
        except Exception as exc:  # any unreadable image (ImageError, a path outside the root, …) is skipped
            failures.append({"image_id": images.image_ids[r], "path": images.paths[r], "error": str(exc)})
    m = text.shape[0]
    result = {"rows": np.asarray(ok_rows, dtype=np.int64),
              "failures": np.asarray([json.dumps(f) for f in failures], dtype=str)}
    if not ok_rows:
        return result | {"concepts": np.zeros((0, m), np.float32), "logits": np.zeros((0, len(teacher.classes)), np.float32)}
    resized = [square_resize(im, clip.image_size) for im in loaded]
    batch = to_model_input(clip, resized)
    if isinstance(teacher, ClipZeroShotTeacher) and teacher.clip is clip:
        patches, global_emb = dense_patch_features(clip, batch, with_global=True)
        logits = teacher.logits_from_embeddings(global_emb.cpu().numpy())
    else:
        patches = dense_patch_features(clip, batch)
        logits = teacher.logits(loaded, [images.image_ids[r] for r in ok_rows])
    patches = patches.float().cpu().numpy()
    per_image = [concepts_for_image(patches[i], superpixels(resized[i], n_segments), text) for i in range(len(ok_rows))]
    return result | {
        "concepts": np.stack([p.concept_vector for p in per_image]),
        "logits": np.asarray(logits, dtype=np.float32),
        "segment_maps": np.stack([p.segment_map for p in per_image]),
        "top_concepts": np.stack([p.top_concepts for p in per_image]),
        "top_scores": np.stack([p.top_scores for p in per_image]),
        "best_segment": np.stack([p.best_segment for p in per_image]),
    }


def extract(images: ImageSet, out: str | Path, clip: ClipModel, teacher: Teacher, vocabulary: Sequence[str], *,
            batch_size: int = 16, n_segments: int = 24, progress: Callable[[Progress], None] | None = None,
            text_cache: str | Path | None = None, extra_meta: dict | None = None) -> ExtractionResult:
    """Extract ``images`` into the workspace folder ``out`` (resuming a previous run there)."""
    out = Path(out)
    if tuple(teacher.classes) != tuple(images.classes):
        raise ExtractionError(f"The teacher's classes {list(teacher.classes)} differ from the labels' classes {list(images.classes)}")
    if len(images) == 0:
        raise ExtractionError("No images to extract")
    check = getattr(teacher, "check_covers", None)
    if check:
        check(images.image_ids)
    partial = out / PARTIAL_DIR
    plan = _plan(images, clip, teacher, vocabulary, batch_size)
    plan_path = partial / "plan.json"
    if plan_path.is_file():
        if json.loads(plan_path.read_text()) != plan:
            raise ExtractionError(
                f"{out} holds an unfinished extraction with different images, model, teacher, vocabulary or batch "
                f"size. Use another --out, or delete {partial} to start over.")
    else:
        atomic_write_json(plan_path, plan)
    for leftover in partial.glob(".*.tmp"):  # temp files of writes a crash cut short
        leftover.unlink(missing_ok=True)
    text = concept_embeddings(clip, vocabulary, cache_dir=text_cache or partial)
    starts = list(range(0, len(images), batch_size))
    resumed = sum(min(s + batch_size, len(images)) - s for s in starts if _shard_path(partial, s).is_file())
    done = resumed
    skipped, computed, t0 = 0, 0, time.perf_counter()
    for start in starts:
        path = _shard_path(partial, start)
        if path.is_file():
            continue
        rows = range(start, min(start + batch_size, len(images)))
        shard = _extract_batch(clip, teacher, text, images, rows, n_segments)
        _write_shard(path, shard)
        computed += len(rows)
        skipped += len(shard["failures"])
        done = min(done + len(rows), len(images))
        if progress:
            rate = computed / max(time.perf_counter() - t0, 1e-9)
            progress(Progress(done, len(images), skipped, rate, (len(images) - done) / rate if rate else float("inf")))
    extra_meta = (extra_meta or {}) | {"n_segments": n_segments}
    return _assemble(images, out, clip, teacher, vocabulary, starts, computed, resumed, extra_meta)


def _assemble(images, out, clip, teacher, vocabulary, starts, computed, resumed, extra_meta) -> ExtractionResult:
    partial = out / PARTIAL_DIR
    parts = {key: [] for key in ("rows", "concepts", "logits") + tuple(f[:-4] for f in SEGMENT_FILES)}
    failures = []
    for start in starts:
        with np.load(_shard_path(partial, start), allow_pickle=False) as shard:
            failures += [json.loads(f) for f in shard["failures"]]
            if len(shard["rows"]):
                for key in parts:
                    parts[key].append(shard[key])
    if not parts["rows"]:
        raise ExtractionError(f"None of the {len(images)} images could be read; see {out / REPORT_FILE}")
    merged = {key: np.concatenate(value) for key, value in parts.items()}
    rows = merged["rows"]
    segments_dir = out / SEGMENTS_DIR
    for name in SEGMENT_FILES:
        atomic_write_npy(segments_dir / name, merged[name[:-4]])
    workspace = write_workspace(
        out, image_ids=[images.image_ids[r] for r in rows], paths=[images.paths[r] for r in rows],
        splits=[images.splits[r] for r in rows], labels=images.labels[rows], classes=images.classes,
        vocabulary=list(vocabulary), concept_matrix=merged["concepts"], teacher_logits=merged["logits"],
        model=clip.identity, teacher=teacher.identity, image_root=os.path.relpath(images.root, out.resolve()),
        extra=(extra_meta or {}) | {"segments": list(SEGMENT_FILES), "skipped_images": len(failures),
                                    "image_root_absolute": str(images.root)},
    )
    atomic_write_json(out / REPORT_FILE, {"images": len(images), "extracted": int(len(rows)), "skipped": failures})
    shutil.rmtree(partial, ignore_errors=True)
    return ExtractionResult(workspace, failures, computed, resumed)
