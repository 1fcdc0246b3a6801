"""Images -> workspace: concept vectors from CLIP over segments, segment maps, teacher logits.

Resumable: the work is split into batches and every finished batch is written atomically as a
shard under ``OUT/.extract/``; a rerun with the same inputs skips finished shards, so a crash
or Ctrl-C loses at most the batch in flight. Unreadable images are skipped, counted and listed
(``OUT/extraction_report.json``), never fatal. The last step assembles a normal workspace,
streaming shard by shard so a million images never sit in memory at once.

Resume and rerun never mix: the plan (``OUT/.extract/plan.json``) and the finished workspace's
metadata record every setting the result depends on (images and labels, CLIP, teacher,
vocabulary, segments per image and who cuts them; the plan also the batch size). Resuming with other settings is
refused with a message naming them; rerunning on a finished workspace with the same settings
does nothing ("up to date"), and with other settings is refused unless ``overwrite`` is given,
which removes the old workspace and its caches (students, Gram statistics) first.

Who computes the shards is pluggable (an *engine*): by default this process, one batch after
the other, with worker processes preparing the images ahead of the model (``batching``);
``ray_engine.RayEngine`` spreads them over a Ray cluster, each actor running the same pipeline.
Both return the same shard contents, and everything around them (plan, resume, assembly) is this
module's, so the workspace is the same whichever engine made it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..datasets import ImageSet
from ..defaults import DEFAULT_SEGMENTER, DEFAULT_TEACHER, MAX_SEGMENTS, N_SEGMENTS, SEGMENTERS
from ..images import Preprocessing
from ..store.atomic_io import atomic_write, atomic_write_json, atomic_write_npy_rows
from ..store.side_files import REPORT_FILE, SEGMENT_ARRAYS, clear_workspace, foreign_entries, segment_file
from ..store.strict_json import StrictJSONError, canonical_sha256, loads_strict
from ..store.workspace import META_FILE, Workspace, WorkspaceError, load_workspace, read_meta, write_workspace
from ..vocabulary import vocabulary_hash
from . import segments
from .batching import Preparation, Preparer, default_workers, launch_shard
from .clip_backend import ClipModel, concept_embeddings, load_clip
from .teacher_registry import create_teacher
from .teachers import Teacher

PARTIAL_DIR = ".extract"
PLAN_FILE = "plan.json"
# What each recorded setting is, for the message that names the ones that changed.
SETTING_NAMES = {
    "images": "number of images",
    "images_sha256": "images or labels",
    "model_sha256": "CLIP model or weights",
    "teacher_sha256": "teacher",
    "vocabulary_sha256": "vocabulary",
    "n_segments": "segments per image",
    "segmenter": "segmenter",
    "superpixel_size": "superpixel size",
    "batch_size": "batch size",
}
# Settings recorded only since they could differ (or only when they do): what their absence means.
SETTINGS_BEFORE = {"segmenter": "slic", "superpixel_size": "the model's size"}
SMALL_JOB_IMAGES = 256  # below this, starting worker processes costs more than it saves


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
    up_to_date: bool = False  # the workspace was already there, made with these very settings


@dataclass(frozen=True)
class ExtractorSpec:
    """How to build the CLIP model and the teacher, so another process (a Ray actor) can build them too.

    model : open_clip model name or JSON config path; pretrained / checkpoint : its weights
    teacher : a teacher spec (see ``teacher_registry``): "clip-zero-shot", a TorchScript file or a logits file
    teacher_preprocessing, teacher_classes : a torch teacher's preprocessing and the class of each of
        its outputs (None: what its file records, else ImageNet's / the labels' order)
    """

    model: str = "ViT-B-16"
    pretrained: str | None = None
    checkpoint: str | None = None
    teacher: str = DEFAULT_TEACHER
    device: str = "cpu"
    teacher_preprocessing: Preprocessing | None = None
    teacher_classes: tuple[str, ...] | None = None

    def load_clip(self, device: str | None = None) -> ClipModel:
        return load_clip(
            self.model, pretrained=self.pretrained, checkpoint=self.checkpoint, device=device or self.device
        )

    def make_teacher(self, clip: ClipModel, images: ImageSet) -> Teacher:
        return create_teacher(
            self.teacher,
            images.classes,
            clip=clip,
            image_ids=images.image_ids,
            preprocessing=self.teacher_preprocessing,
            output_classes=self.teacher_classes,
        )


@dataclass(frozen=True)
class ExtractionJob:
    """Everything a worker needs to compute shards besides the models: small and picklable."""

    images: ImageSet
    text: np.ndarray  # (n_concepts, embed_dim) concept text embeddings
    batch_size: int
    n_segments: int
    segmenter: str = DEFAULT_SEGMENTER  # see ``defaults.SEGMENTERS``
    superpixel_size: int | None = None  # the side superpixels are cut at (None: the model's input size)

    def rows(self, start: int) -> range:
        return range(start, min(start + self.batch_size, len(self.images)))

    def preparer(self, clip: ClipModel, teacher: Teacher, workers: int = 0) -> Preparer:
        """What prepares this job's images for ``clip`` and ``teacher``: ``workers`` processes (0: this one)."""
        return Preparer(
            Preparation.of(self.images, clip, teacher, self.n_segments, self.segmenter, self.superpixel_size), workers
        )

    def shards(
        self,
        clip: ClipModel,
        teacher: Teacher,
        starts: Iterable[int],
        preparer: Preparer,
        overlap: bool | None = None,
    ) -> Iterator[tuple[int, dict]]:
        """``(start, shard)`` for each of ``starts`` in order (a shard: see ``batching.launch_shard``): the
        images prepared by ``preparer`` ahead of the model, which runs on whole batches on ``clip``'s device.

        ``overlap`` (default: on a CUDA device): the next batch's device work is queued before this
        process finishes the previous shard (waits for its copies, does its NumPy work), so the
        device does not wait for the host between batches. A shard then comes one batch later;
        one whose next batch fails to prepare is still handed over before the error."""
        import torch

        text = torch.from_numpy(np.ascontiguousarray(self.text, dtype=np.float32)).to(clip.device)
        if overlap is None:
            overlap = str(clip.device).startswith("cuda")
        waiting: deque = deque()  # (start, finish) of batches launched, their shards not handed over yet
        failure = None
        try:
            for start, prepared in preparer.shards(starts, self.rows):
                waiting.append(
                    (start, launch_shard(clip, teacher, text, self.images, prepared, self.segmenter, self.n_segments))
                )
                while len(waiting) > int(overlap):  # with overlap, one batch stays in flight
                    start, finish = waiting.popleft()
                    yield start, finish()
        except Exception as exc:  # a batch already launched is still handed over (a resume then skips it)
            failure = exc
        while waiting:
            start, finish = waiting.popleft()
            yield start, finish()
        if failure is not None:
            raise failure


class Engine(Protocol):
    """Computes the shards of ``starts`` (in any order), yielding ``(start, shard)`` as each is done."""

    def __call__(self, job: ExtractionJob, starts: Sequence[int]) -> Iterable[tuple[int, dict]]: ...


def local_engine(clip: ClipModel, teacher: Teacher, workers: int | None = None) -> Engine:
    """This process runs the model, batch after batch; ``workers`` processes prepare the images
    (default ``batching.default_workers``; none for a job under ``SMALL_JOB_IMAGES`` images, whose
    start-up would not pay)."""

    def run(job: ExtractionJob, starts: Sequence[int]) -> Iterator[tuple[int, dict]]:
        count = default_workers(clip.device) if workers is None else workers
        if workers is None and len(starts) * job.batch_size < SMALL_JOB_IMAGES:
            count = 0
        preparer = job.preparer(clip, teacher, count)
        try:
            yield from job.shards(clip, teacher, starts, preparer)
        except BrokenProcessPool:
            raise ExtractionError(
                "A process preparing images stopped (killed, or out of memory?); the finished batches are kept: "
                "run again to resume"
            ) from None
        finally:
            preparer.close()

    return run


def shard_bytes(shard: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **shard)
    return buffer.getvalue()


def shard_from_bytes(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _identity_sha256(identity: dict) -> str:
    """A model's or teacher's identity without where its file was (its content hash stays)."""
    return canonical_sha256({key: value for key, value in identity.items() if key != "source"})


def extraction_settings(
    images: ImageSet,
    clip: ClipModel,
    teacher: Teacher,
    vocabulary: Sequence[str],
    n_segments: int,
    segmenter: str = DEFAULT_SEGMENTER,
    superpixel_size: int | None = None,
) -> dict:
    """Everything a workspace's content depends on, as recorded in its metadata (``extra.extraction``).
    ``superpixel_size`` is recorded only when under the model's input size (the superpixels were cut
    on a shrunk image), so what workspaces cut at the model's size recorded stays as it was."""
    digest = hashlib.sha256()
    for part in (images.image_ids, images.paths, images.splits, images.classes):
        digest.update(json.dumps(list(part), ensure_ascii=False).encode("utf-8"))
    digest.update(np.ascontiguousarray(images.labels, dtype=np.uint8).tobytes())
    return {
        "images": len(images),
        "images_sha256": digest.hexdigest(),
        "model_sha256": _identity_sha256(clip.identity),
        "teacher_sha256": _identity_sha256(teacher.identity),
        "vocabulary_sha256": vocabulary_hash(vocabulary),
        "n_segments": int(n_segments),
        "segmenter": segmenter,
    } | ({"superpixel_size": int(superpixel_size)} if _shrinks(clip, superpixel_size) else {})


def _shrinks(clip: ClipModel, superpixel_size: int | None) -> bool:
    return superpixel_size is not None and superpixel_size < clip.image_size


def _changed_settings(recorded: object, wanted: dict) -> str:
    """The settings that differ, named, with both values where they are short ('' if none differ)."""
    if not isinstance(recorded, dict):
        return "the settings it was made with (not recorded: made by an older ConceptKD, or damaged)"
    changed = []
    # A setting recorded only when it differs from its default, recorded then and not now, differs too.
    absent = {key: default for key, default in SETTINGS_BEFORE.items() if key in recorded and key not in wanted}
    for key, value in (wanted | absent).items():
        then = recorded.get(key, SETTINGS_BEFORE.get(key, "not recorded"))
        if then != value:
            shown = f" ({then} then, {value} now)" if isinstance(value, int | str) and len(str(value)) < 20 else ""
            changed.append(f"{SETTING_NAMES[key]}{shown}")
    return ", ".join(changed)


def _read_plan(path: Path) -> object:
    try:
        return loads_strict(path.read_bytes(), 2**20)
    except (StrictJSONError, OSError):
        return None


def _prepare_output(out: Path, settings: dict, plan: dict, overwrite: bool) -> Workspace | None:
    """Check what ``out`` holds before extracting into it. Returns the finished workspace when it
    was made with ``settings`` (nothing to do); else makes way for the extraction (resume, fresh
    start, or with ``overwrite`` a rebuild), or raises ExtractionError saying why it will not."""
    if out.exists() and not out.is_dir():
        raise ExtractionError(f"{out} is a file; expected a folder for the workspace")
    strangers = foreign_entries(out)
    if strangers:
        raise ExtractionError(
            f"{out} is not empty and holds no workspace (e.g. {strangers[0]!r}); choose a new or empty folder"
        )
    partial, plan_path = out / PARTIAL_DIR, out / PARTIAL_DIR / PLAN_FILE
    if plan_path.is_file():
        changed = _changed_settings(_read_plan(plan_path), plan)
        if changed and not overwrite:
            raise ExtractionError(
                f"{out} holds an unfinished extraction made with other settings: {changed}. Run the same "
                "command as before to resume it, or add --overwrite to start over"
            )
        if changed:
            shutil.rmtree(partial)
        return None
    if not (out / META_FILE).is_file():
        return None
    try:
        recorded = read_meta(out).get("extra", {}).get("extraction")
    except WorkspaceError as exc:
        if not overwrite:
            raise ExtractionError(f"{exc}; add --overwrite to rebuild the workspace") from None
        recorded = None
    changed = _changed_settings(recorded, settings)
    if not changed and not overwrite:
        try:
            return load_workspace(out)
        except WorkspaceError as exc:
            raise ExtractionError(f"{exc}; add --overwrite to rebuild the workspace") from None
    if not overwrite:
        raise ExtractionError(
            f"{out} holds a finished workspace made with other settings: {changed}. Add --overwrite to replace "
            "it (its students and Gram statistics are rebuilt, tuning sessions kept), or choose another folder"
        )
    clear_workspace(out)
    return None


def _shard_path(partial: Path, start: int) -> Path:
    return partial / f"shard-{start:09d}.npz"


def _write_shard(path: Path, arrays: dict) -> None:
    data = shard_bytes(arrays)
    atomic_write(path, lambda handle: handle.write(data))


def extract(
    images: ImageSet,
    out: str | Path,
    clip: ClipModel,
    teacher: Teacher,
    vocabulary: Sequence[str],
    *,
    batch_size: int = 16,
    n_segments: int = N_SEGMENTS,
    segmenter: str = DEFAULT_SEGMENTER,
    superpixel_size: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    text_cache: str | Path | None = None,
    extra_meta: dict | None = None,
    engine: Engine | None = None,
    overwrite: bool = False,
) -> ExtractionResult:
    """Extract ``images`` into the workspace folder ``out`` (resuming a previous run there).

    ``clip`` and ``teacher`` name the models in the workspace and make the concept text
    embeddings; ``engine`` computes the shards (default: ``local_engine(clip, teacher)``).
    A finished workspace made with the same settings is returned as it is (``up_to_date``);
    one made with other settings, or an unfinished run with other settings, is refused
    (ExtractionError naming them) unless ``overwrite``. ``segmenter``: who cuts the superpixels
    (``defaults.SEGMENTERS``), ``superpixel_size``: on the image shrunk to how many pixels a side
    (None: ``defaults.SUPERPIXEL_SIZE``; at most the model's size); both recorded, so images added
    later are cut the same way.
    """
    out = Path(out)
    if tuple(teacher.classes) != tuple(images.classes):
        raise ExtractionError(
            f"The teacher's classes {list(teacher.classes)} differ from the labels' classes {list(images.classes)}"
        )
    if len(images) == 0:
        raise ExtractionError("No images to extract")
    if batch_size < 1:
        raise ExtractionError(f"batch size must be >= 1; got {batch_size}")
    check = getattr(teacher, "check_covers", None)
    if check:
        check(images.image_ids)
    if not 1 <= n_segments <= MAX_SEGMENTS:
        raise ExtractionError(f"segments per image must be 1..{MAX_SEGMENTS}; got {n_segments}")
    if segmenter not in SEGMENTERS:
        raise ExtractionError(f"segmenter must be one of {', '.join(SEGMENTERS)}; got {segmenter!r}")
    try:
        cut = segments.superpixel_size(clip.image_size, superpixel_size)
    except ValueError as exc:
        raise ExtractionError(str(exc)) from None
    partial = out / PARTIAL_DIR
    settings = extraction_settings(images, clip, teacher, vocabulary, n_segments, segmenter, cut)
    plan = settings | {"batch_size": batch_size}
    finished = _prepare_output(out, settings, plan, overwrite)
    if finished is not None:
        return ExtractionResult(finished, up_to_date=True)
    plan_path = partial / PLAN_FILE
    if not plan_path.is_file():
        atomic_write_json(plan_path, plan)
    for leftover in partial.glob(".*.tmp"):  # temp files of writes a crash cut short
        leftover.unlink(missing_ok=True)
    text = concept_embeddings(clip, vocabulary, cache_dir=text_cache or partial)
    job = ExtractionJob(images, text, batch_size, n_segments, segmenter, cut)
    starts = list(range(0, len(images), batch_size))
    pending = [s for s in starts if not _shard_path(partial, s).is_file()]
    resumed = len(images) - sum(len(job.rows(s)) for s in pending)
    done, skipped, computed, t0 = resumed, 0, 0, time.perf_counter()
    for start, shard in (engine or local_engine(clip, teacher))(job, pending):
        _write_shard(_shard_path(partial, start), shard)
        computed += len(job.rows(start))
        skipped += len(shard["failures"])
        done += len(job.rows(start))
        if progress:
            rate = computed / max(time.perf_counter() - t0, 1e-9)
            progress(Progress(done, len(images), skipped, rate, (len(images) - done) / rate if rate else float("inf")))
    missing = [s for s in starts if not _shard_path(partial, s).is_file()]
    if missing:
        raise ExtractionError(
            f"{len(missing)} batches were not computed (first at image {missing[0]}); run again to resume"
        )
    extra_meta = (extra_meta or {}) | {"n_segments": n_segments, "segmenter": segmenter, "extraction": settings}
    if _shrinks(clip, cut):  # absent: cut at the model's size (``segments.recorded_superpixel_size``)
        extra_meta["superpixel_size"] = cut
    return _assemble(images, out, clip, teacher, vocabulary, starts, computed, resumed, extra_meta)


def _assemble(images, out, clip, teacher, vocabulary, starts, computed, resumed, extra_meta) -> ExtractionResult:
    """Merge the shards into a workspace, one shard in memory at a time."""
    partial = out / PARTIAL_DIR
    paths = [_shard_path(partial, start) for start in starts]
    failures, row_parts, shapes = [], [], {}
    for path in paths:  # first pass: rows and array shapes only (npz members load lazily)
        with np.load(path, allow_pickle=False) as shard:
            failures += [json.loads(f) for f in shard["failures"]]
            row_parts.append(shard["rows"])
            if len(row_parts[-1]):
                shapes = {key: (shard[key].shape[1:], shard[key].dtype) for key in shard.files if key != "failures"}
    counts = [len(part) for part in row_parts]
    rows = np.concatenate(row_parts)
    n_ok = len(rows)
    if not n_ok:
        raise ExtractionError(f"None of the {len(images)} images could be read; see {out / REPORT_FILE}")

    def stream(key: str) -> Callable[[np.ndarray], None]:
        def fill(target: np.ndarray) -> None:
            at = 0
            for path, count in zip(paths, counts, strict=True):
                if count:
                    with np.load(path, allow_pickle=False) as shard:
                        target[at : at + count] = shard[key]
                    at += count

        return fill

    def npy(path: Path, key: str, dtype=None) -> Path:
        tail, native = shapes[key]
        return atomic_write_npy_rows(path, (n_ok, *tail), dtype or native, stream(key))

    for name in SEGMENT_ARRAYS:
        npy(segment_file(out, name), name)
    # The concept matrix goes to a memory map first (float16 as stored, converted shard by shard,
    # which gives exactly the bytes of converting it whole); write_workspace then copies it in.
    concepts = np.load(npy(partial / "concepts-merged.npy", "concepts", np.float16), mmap_mode="r")
    logits = np.load(npy(partial / "logits-merged.npy", "logits"))
    workspace = write_workspace(
        out,
        image_ids=[images.image_ids[r] for r in rows],
        paths=[images.paths[r] for r in rows],
        splits=[images.splits[r] for r in rows],
        labels=images.labels[rows],
        classes=images.classes,
        vocabulary=list(vocabulary),
        concept_matrix=concepts,
        teacher_logits=logits,
        model=clip.identity,
        teacher=teacher.identity,
        image_root=os.path.relpath(images.root, out.resolve()),
        extra=(extra_meta or {}) | {"segments": list(SEGMENT_ARRAYS), "skipped_images": len(failures)},
    )
    del concepts
    atomic_write_json(out / REPORT_FILE, {"images": len(images), "extracted": n_ok, "skipped": failures})
    shutil.rmtree(partial, ignore_errors=True)
    return ExtractionResult(workspace, failures, computed, resumed)
