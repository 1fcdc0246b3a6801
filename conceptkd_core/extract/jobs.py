"""Extraction as a background job of the app: start, watch, cancel, resume.

The Setup page must not block while thousands of images are extracted, and a page reload or a
second browser tab must find the job again. So a job is a thread of the server process running
``pipeline.extract`` on the CLIP the server keeps cached, and everything a page needs to know
about it is on disk, in the workspace folder it fills:

* ``OUT/.job/spec.json``: what to extract (``JobSpec``: images, labels, teacher and its
  preprocessing, vocabulary, CLIP, segments; or ``RescoreSpec``: a workspace whose images are
  scored again with another vocabulary), paths relative to that file; written once at start.
  Each kind checks its inputs at start (``check``) and does its work on the job's thread (``run``);
* ``OUT/.job/status.json``: state, images done of total, speed, ETA, the last error, rewritten
  after every batch.

This module writes both and validates both on read. A job the file says is running but that no
thread of this process runs (the server was restarted) reads as "interrupted". Cancelling stops
after the batch in flight; the pipeline keeps finished batches as shards, so ``resume`` (or a
restart of an interrupted job) continues where it stopped with the same settings.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..datasets import DatasetError, ImageSet, load_folder, load_unlabelled, unpack_zip
from ..defaults import N_SEGMENTS
from ..images import Preprocessing
from ..store.atomic_io import atomic_write_json
from ..store.split import assign_heldout
from ..store.strict_json import StrictJSONError, loads_strict
from ..store.validation import META_FILE
from ..vocabulary import VocabularyError, read_words

JOB_DIR = ".job"
ARCHIVE_DIR = "images"  # an uploaded zip's images, inside JOB_DIR
SPEC_FILE, STATUS_FILE = "spec.json", "status.json"
SPEC_FORMAT, STATUS_FORMAT, VERSION = "conceptkd.extract-job", "conceptkd.extract-status", 1
RESCORE_FORMAT = "conceptkd.rescore-job"
STATES = ("running", "done", "failed", "cancelled", "interrupted")
ACTIVE = "running"
# A job that finished this recently is still listed on Setup, to open: the tab that watched it may
# have been reloaded (a new session) or closed while it finished.
RECENT_S = 15 * 60
CANCELLING = "cancelling after the batch in flight"
CLIP_ZERO_SHOT = "clip-zero-shot"  # as teacher_registry names it (not imported: it would load torch)


class JobError(ValueError):
    """A job that cannot start, or a job file that cannot be read; the message says which and why."""


class JobCancelled(Exception):
    """Raised inside the pipeline's progress callback to stop after the batch in flight."""


def _relative(path: str | None, base: Path) -> str | None:
    return None if path is None else os.path.relpath(Path(path).resolve(), base.resolve())


class _Fields:
    """The fields of a spec document read from ``base / SPEC_FILE``, each checked, with JobError naming a bad one."""

    def __init__(self, document: object, base: Path, kind: str, what: str):
        self.base, self.where = base, base / SPEC_FILE
        if not isinstance(document, dict) or document.get("format") != kind:
            raise JobError(f"{self.where}: not {what} (format is not {kind!r})")
        if document.get("version") != VERSION:
            raise JobError(f"{self.where}: version {document.get('version')!r}; this ConceptKD reads version {VERSION}")
        self.document = document

    def __call__(self, name: str, kinds: tuple[type, ...]):
        value = self.document.get(name)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise JobError(f"{self.where}: field {name!r} is {str(value)[:60]!r}; expected {kinds[0].__name__}")
        return value

    def path(self, name: str, optional: bool = False) -> str | None:
        value = self(name, (str, type(None)) if optional else (str,))
        return None if value is None else str((self.base / value).resolve())

    def words(self, name: str) -> tuple[str, ...]:
        words = self(name, (list,))
        if not all(isinstance(w, str) for w in words):
            raise JobError(f"{self.where}: {name!r} must be a list of words")
        return tuple(words)

    def clip(self) -> dict:
        """The CLIP's fields, as ``_clip_json`` writes them."""
        return {
            "model": self.path("model") if self("model_is_file", (bool,)) else self("model", (str,)),
            "pretrained": self("pretrained", (str, type(None))),
            "checkpoint": self.path("checkpoint", optional=True),
        }


def _clip_json(spec: JobSpec | RescoreSpec, base: Path) -> dict:
    model_is_file = spec.model.endswith(".json")
    return {
        "model": _relative(spec.model, base) if model_is_file else spec.model,
        "model_is_file": model_is_file,
        "pretrained": spec.pretrained,
        "checkpoint": _relative(spec.checkpoint, base),
    }


@dataclass(frozen=True)
class JobSpec:
    """What a job extracts. Paths are absolute here and relative to ``spec.json`` on disk.

    images : the image folder; labels : a labels CSV (``datasets.load_folder``), or None to take
        every image in ``images`` unlabelled, the teacher's outputs named by ``classes``
    teacher : "clip-zero-shot", a TorchScript file or a logits file; preprocessing : a TorchScript
        teacher's (None: ImageNet's at 224 px)
    model / pretrained / checkpoint : the CLIP, as ``clip_backend.load_clip`` takes them
    """

    images: str
    teacher: str
    vocabulary: tuple[str, ...]
    model: str
    pretrained: str | None = None
    checkpoint: str | None = None
    labels: str | None = None
    classes: tuple[str, ...] = ()
    preprocessing: Preprocessing | None = None
    n_segments: int = N_SEGMENTS
    batch_size: int = 16

    doing = "extracting"  # what its status says while it runs

    def image_set(self) -> ImageSet:
        """The images with labels and the split the students are fit and measured on. Raises DatasetError."""
        images = load_folder(self.images, self.labels) if self.labels else load_unlabelled(self.images, self.classes)
        return dataclasses.replace(images, splits=assign_heldout(images.splits, images.labels))

    def check(self) -> None:
        """The images and labels, a logits file (cheap to read) and a TorchScript teacher (run once on
        a grey image): one with a row missing, a NaN, a wrong column, or a model that fails is refused
        here, where the page can say so, instead of failing the job a moment later."""
        from .teacher_registry import teacher_kind
        from .teachers import LogitsFileTeacher, TeacherError

        images = self.image_set()
        if self.teacher == CLIP_ZERO_SHOT:
            return
        try:
            if teacher_kind(self.teacher) == "logits-file":
                teacher = LogitsFileTeacher(self.teacher, images.classes, image_ids=images.image_ids)
                teacher.check_covers(images.image_ids)
                teacher.check_known(images.image_ids)
            else:
                _check_model_teacher(self, images.classes)
        except TeacherError as exc:
            raise JobError(f"teacher: {exc}") from None

    def run(self, out: Path, images: ImageSet, clip, progress, say):
        """Extract into ``out`` (on the job's thread); ``say`` records what is happening before the batches."""
        from .pipeline import extract
        from .teacher_registry import create_teacher

        say("loading the teacher")
        teacher = create_teacher(
            self.teacher, images.classes, clip=clip, image_ids=images.image_ids, preprocessing=self.preprocessing
        )
        if hasattr(teacher, "check_known"):  # a logits file: refuse rows for images the labels do not list
            teacher.check_known(images.image_ids)
        say("encoding the vocabulary")
        return extract(
            images,
            out,
            clip,
            teacher,
            list(self.vocabulary),
            batch_size=self.batch_size,
            n_segments=self.n_segments,
            progress=progress,
        )

    def to_json(self, base: Path) -> dict:
        return {
            "format": SPEC_FORMAT,
            "version": VERSION,
            "images": _relative(self.images, base),
            "labels": _relative(self.labels, base),
            "classes": list(self.classes),
            "teacher": self.teacher if self.teacher == CLIP_ZERO_SHOT else _relative(self.teacher, base),
            "preprocessing": self.preprocessing.identity if self.preprocessing else None,
            "vocabulary": list(self.vocabulary),
            **_clip_json(self, base),
            "n_segments": self.n_segments,
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_json(cls, document: object, base: Path) -> JobSpec:
        """The spec ``document`` holds, paths resolved against ``base``; raises JobError naming a bad field."""
        field = _Fields(document, base, SPEC_FORMAT, "an extraction job")
        recorded = field("preprocessing", (dict, type(None)))
        try:
            preprocessing = Preprocessing(**recorded) if recorded is not None else None
        except (TypeError, ValueError) as exc:
            raise JobError(f"{field.where}: field 'preprocessing': {exc}") from None
        teacher = field("teacher", (str,))
        return cls(
            images=field.path("images"),
            teacher=teacher if teacher == CLIP_ZERO_SHOT else str((base / teacher).resolve()),
            vocabulary=field.words("vocabulary"),
            **field.clip(),
            labels=field.path("labels", optional=True),
            classes=field.words("classes"),
            preprocessing=preprocessing,
            n_segments=field("n_segments", (int,)),
            batch_size=field("batch_size", (int,)),
        )


@dataclass(frozen=True)
class RescoreSpec:
    """A workspace's images scored again with another vocabulary (``rescore.rescore``): the images,
    labels, split, segments and teacher logits are those of the workspace in ``source``. Paths are
    absolute here and relative to ``spec.json`` on disk."""

    source: str
    vocabulary: tuple[str, ...]
    model: str
    pretrained: str | None = None
    checkpoint: str | None = None
    batch_size: int = 16

    doing = "re-scoring"

    def workspace(self):
        """The source workspace; raises JobError (one line) when it cannot be read."""
        from ..store.workspace import WorkspaceError, load_workspace

        try:
            return load_workspace(self.source)
        except WorkspaceError as exc:
            raise JobError(f"the workspace to re-score: {exc}") from None

    def image_set(self) -> ImageSet:
        from .rescore import workspace_images

        return workspace_images(self.workspace())

    def check(self) -> None:
        """The workspace can be read (its teacher's logits are recorded in it: no teacher to check)."""
        self.image_set()

    def run(self, out: Path, images: ImageSet, clip, progress, say):
        from .rescore import rescore

        say("encoding the vocabulary")
        return rescore(self.workspace(), self.vocabulary, clip, progress, out=out, batch_size=self.batch_size)

    def to_json(self, base: Path) -> dict:
        return {
            "format": RESCORE_FORMAT,
            "version": VERSION,
            "source": _relative(self.source, base),
            "vocabulary": list(self.vocabulary),
            **_clip_json(self, base),
            "batch_size": self.batch_size,
        }

    @classmethod
    def from_json(cls, document: object, base: Path) -> RescoreSpec:
        field = _Fields(document, base, RESCORE_FORMAT, "a re-scoring job")
        words, batch_size = field.words("vocabulary"), field("batch_size", (int,))
        return cls(source=field.path("source"), vocabulary=words, **field.clip(), batch_size=batch_size)


@dataclass(frozen=True)
class JobStatus:
    state: str  # one of STATES
    done: int
    total: int
    skipped: int = 0
    images_per_s: float = 0.0
    eta_s: float | None = None
    message: str = ""  # the error of a failed job; what is happening while running
    started: float = 0.0
    updated: float = 0.0
    run: str = ""  # which thread writes it: a running job whose thread is gone is "interrupted"

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def active(self) -> bool:
        return self.state == ACTIVE


def finished_recently(status: JobStatus | None, now: float | None = None) -> bool:
    """Whether ``status`` is a job that finished (done) at most ``RECENT_S`` seconds ago."""
    now = time.time() if now is None else now
    return status is not None and status.state == "done" and 0 <= now - status.updated <= RECENT_S


def job_folder(out: str | os.PathLike) -> Path:
    return Path(out) / JOB_DIR


# The jobs this process runs: {workspace folder: (run id, thread, cancel event)}.
_RUNNING: dict[str, tuple[str, threading.Thread, threading.Event]] = {}
_LOCK = threading.Lock()


def _key(out: str | os.PathLike) -> str:
    return str(Path(out).resolve())


def _running(out: str | os.PathLike) -> tuple[str, threading.Thread, threading.Event] | None:
    with _LOCK:
        entry = _RUNNING.get(_key(out))
    return entry if entry and entry[1].is_alive() else None


def read_spec(out: str | os.PathLike) -> JobSpec | RescoreSpec:
    """The spec of the job in workspace folder ``out``; raises JobError, one line, if it cannot be read."""
    folder = job_folder(out)
    try:
        document = loads_strict((folder / SPEC_FILE).read_bytes(), 16 * 2**20)
    except OSError as exc:
        raise JobError(f"{folder / SPEC_FILE}: cannot read ({exc.strerror or exc})") from None
    except StrictJSONError as exc:
        raise JobError(f"{folder / SPEC_FILE}: {exc}") from None
    if isinstance(document, dict) and document.get("format") == RESCORE_FORMAT:
        return RescoreSpec.from_json(document, folder)
    return JobSpec.from_json(document, folder)


def read_status(out: str | os.PathLike) -> JobStatus | None:
    """The job of workspace folder ``out`` as its status file says (None: no job there), "interrupted"
    when it says running but no thread of this process runs it. Raises JobError if the file is damaged."""
    path = job_folder(out) / STATUS_FILE
    if not path.is_file():
        return None
    try:
        document = loads_strict(path.read_bytes(), 2**20)
    except (OSError, StrictJSONError) as exc:
        raise JobError(f"{path}: cannot read ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != STATUS_FORMAT or document.get("version") != VERSION:
        raise JobError(f"{path}: not a job status (format {STATUS_FORMAT!r}, version {VERSION})")
    fields = {f.name: f for f in dataclasses.fields(JobStatus)}
    unknown = sorted(set(document) - set(fields) - {"format", "version"})
    if unknown:
        raise JobError(f"{path}: unknown field {unknown[0][:40]!r}; expected {', '.join(fields)}")
    values = {name: document[name] for name in fields if name in document}
    try:
        status = JobStatus(**values)
    except TypeError as exc:
        raise JobError(f"{path}: {exc}") from None
    numbers = (status.done, status.total, status.skipped, status.images_per_s, status.started, status.updated)
    if (
        status.state not in STATES
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in numbers)
        or not isinstance(status.eta_s, (int, float, type(None)))
        or not isinstance(status.message, str)
        or not isinstance(status.run, str)
        or status.done > status.total
    ):
        raise JobError(
            f"{path}: state {str(status.state)[:20]!r}, done {str(status.done)[:20]} of {str(status.total)[:20]} "
            f"is not a status; expected a state among {', '.join(STATES)} and 0 <= done <= total"
        )
    running = _running(out)
    if status.active and (running is None or running[0] != status.run):
        return dataclasses.replace(status, state="interrupted", eta_s=None)
    if status.active and running[2].is_set():  # a Cancel click shows at once, not after the batch in flight
        return dataclasses.replace(status, message=CANCELLING)
    return status


def _write_status(out: Path, status: JobStatus) -> None:
    document = {"format": STATUS_FORMAT, "version": VERSION} | dataclasses.asdict(status)
    atomic_write_json(job_folder(out) / STATUS_FILE, document | {"updated": time.time()})


def check_out(out: str | os.PathLike) -> None:
    """A job fills a new or empty folder. One that holds a job is refused (starting over it would
    replace the spec that job's Resume needs, or a finished workspace), unless that job failed
    before it extracted anything (a bad teacher file, say): then a corrected start may take its place."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise JobError(f"{out.name} is a file; choose a folder for the new workspace")
    if (job_folder(out) / SPEC_FILE).is_file():
        status = read_status(out)
        if status is not None and status.state == "failed" and status.done == 0:
            return
        if status is not None and status.active:
            raise JobError(f"{out.name}: a job is already running there; choose a new folder")
        if status is not None and status.state == "done":
            raise JobError(f"{out.name} holds a finished workspace; open it, or choose a new folder")
        what = "a job"
        if status is not None:
            what = f"{_article(status.state)} {status.state} job ({status.done:,}/{status.total:,} images)"
        raise JobError(f"{out.name} holds {what}; resume or discard it in the job list, or choose a new folder")
    strangers = sorted(p.name for p in out.iterdir() if p.name != JOB_DIR) if out.is_dir() else []
    if strangers:
        raise JobError(f"{out.name} is not empty (e.g. {strangers[0][:60]!r}); choose a new or empty folder")


def start(
    out: str | os.PathLike,
    spec: JobSpec | RescoreSpec,
    clip,
    archive: str | os.PathLike | IO[bytes] | None = None,
) -> JobStatus:
    """Check ``spec`` (its images, labels, vocabulary), record it in ``out`` and extract there in
    the background with ``clip`` (loaded by the caller from ``spec.model`` …, e.g. cached by the
    app). ``archive``: a zip of the images, unpacked into ``OUT/.job/images`` (``spec.images`` is
    then ignored) once ``out`` is known to be free, and removed again if the job cannot start.
    Raises JobError / DatasetError, one line, when the job cannot start."""
    out = Path(out)
    check_out(out)
    made = not out.exists()
    try:
        read_words(spec.vocabulary)
    except VocabularyError as exc:
        raise JobError(f"vocabulary: {exc}") from None
    if not spec.vocabulary:
        raise JobError("the vocabulary is empty; give at least one concept word")
    if archive is None:
        spec.check()  # refuse bad images, labels or a bad teacher now, where the page can say so
    else:
        unpacked = job_folder(out) / ARCHIVE_DIR
        shutil.rmtree(unpacked, ignore_errors=True)  # images of an earlier start that was refused
        spec = dataclasses.replace(spec, images=str(unpacked))
        try:
            unpack_zip(archive, unpacked)
            spec.check()
        except BaseException:
            shutil.rmtree(job_folder(out), ignore_errors=True)  # no spec there: nothing else of ours
            if made:
                shutil.rmtree(out, ignore_errors=True)
            raise
    if (job_folder(out) / STATUS_FILE).is_file():  # ``check_out`` let it: a job that failed before extracting
        from .pipeline import PARTIAL_DIR  # anything; its plan records the settings this start replaces

        shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)
    job_folder(out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(job_folder(out) / SPEC_FILE, spec.to_json(job_folder(out)))
    return _launch(out, spec, clip)


def _check_model_teacher(spec: JobSpec, classes: Sequence[str]) -> None:
    """Load a TorchScript teacher and run it on one grey image at its input size: a file that is no
    TorchScript model, that fails on its input, or whose output is not one finite logit per class
    is refused at start (the job loads it again on its thread; a load costs far less than a job
    that fails a moment later). Raises TeacherError."""
    import numpy as np

    from .teacher_registry import create_teacher

    teacher = create_teacher(spec.teacher, classes, preprocessing=spec.preprocessing, device="cpu")
    size = teacher.preprocessing.image_size
    teacher.logits([np.full((size, size, 3), 128, dtype=np.uint8)])


def resume(out: str | os.PathLike, clip) -> JobStatus:
    """Continue the job recorded in ``out`` (cancelled, failed or interrupted) with ``clip``: its
    finished batches are kept, the rest is extracted."""
    out = Path(out)
    if _running(out):
        raise JobError(f"{out.name}: the job is still running")
    stopped = read_status(out)
    # Its finished batches count from the start: the bar went back to 0 until the first new batch.
    return _launch(out, read_spec(out), clip, done=stopped.done if stopped else 0)


def cancel(out: str | os.PathLike) -> bool:
    """Ask the job running in ``out`` to stop after its batch in flight; False if none runs."""
    running = _running(out)
    if running:
        running[2].set()
    return running is not None


def discard(out: str | os.PathLike) -> None:
    """Delete a stopped job (cancelled, failed or interrupted) and what it extracted: the folder
    ``out`` it was filling, its finished batches and an uploaded zip's images with it, so the folder
    can be used afresh. A running job, a finished workspace, and a folder holding anything that
    no job writes are refused (JobError naming why): nothing but a job's own files is deleted."""
    from ..store.side_files import foreign_entries

    out = Path(out)
    status = read_status(out) if (job_folder(out) / SPEC_FILE).is_file() else None
    if status is None:
        raise JobError(f"{out.name}: no job to discard there")
    if status.active:
        raise JobError(f"{out.name}: the job is running; cancel it first")
    if status.state == "done":
        raise JobError(f"{out.name}: the job finished; the workspace is kept (delete its folder by hand if unwanted)")
    strangers = foreign_entries(out)
    if strangers:
        raise JobError(
            f"{out.name} also holds {strangers[0][:60]!r}, which no job writes; nothing was deleted (remove it by hand)"
        )
    with _LOCK:
        _RUNNING.pop(_key(out), None)
    shutil.rmtree(out)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def wait(out: str | os.PathLike, timeout: float | None = None) -> JobStatus | None:
    """Block until the job in ``out`` has stopped (for tests and scripts); its status."""
    running = _running(out)
    if running:
        running[1].join(timeout)
    return read_status(out)


def _launch(out: Path, spec: JobSpec, clip, done: int = 0) -> JobStatus:
    run, stop = uuid.uuid4().hex, threading.Event()
    images = spec.image_set()
    status = JobStatus("running", done, len(images), message="starting", started=time.time(), run=run)
    _write_status(out, status)
    thread = threading.Thread(target=_run, args=(out, spec, images, clip, status, stop), daemon=True)
    with _LOCK:
        _RUNNING[_key(out)] = (run, thread, stop)
    thread.start()
    return status


def _run(
    out: Path, spec: JobSpec | RescoreSpec, images: ImageSet, clip, status: JobStatus, stop: threading.Event
) -> None:
    """The job's thread: the pipeline, with a progress callback that records the status and stops on cancel."""
    from .teachers import TeacherError

    def progress(p) -> None:
        nonlocal status
        eta = p.eta_s if p.eta_s != float("inf") else None
        status = dataclasses.replace(
            status, done=p.done, skipped=p.skipped, images_per_s=p.images_per_s, eta_s=eta, message=spec.doing
        )
        _write_status(out, status)
        if stop.is_set():
            raise JobCancelled

    def say(message: str) -> None:
        nonlocal status
        _write_status(out, status := dataclasses.replace(status, message=message))

    try:
        result = spec.run(out, images, clip, progress, say)
        status = dataclasses.replace(
            status,
            state="done",
            done=len(images),
            skipped=len(result.failures),
            eta_s=0.0,
            message=skipped_summary(result.failures),
        )
    except JobCancelled:
        status = dataclasses.replace(status, state="cancelled", eta_s=None, message="cancelled; resume to continue")
    except Exception as exc:  # noqa: BLE001 - a thread's crash must reach the page as a status, not vanish
        if _process_stopping():
            # The server is stopping (a restart, Ctrl+C) and Python shut the worker pool down under
            # this job ("cannot schedule new futures after shutdown"): not the job's failure. The
            # status keeps saying "running", which the next server reads as interrupted, with Resume.
            return
        known = (TeacherError, DatasetError, ValueError, OSError, RuntimeError)  # ExtractionError too
        message = " ".join(str(exc).split()) if isinstance(exc, known) else f"internal error: {exc!r}"
        status = dataclasses.replace(status, state="failed", eta_s=None, message=message[:500])
    _write_status(out, status)


def _process_stopping() -> bool:
    """True once Python has begun to stop this process: threading's exit hooks (which shut down the
    process pools) run while the main thread is still alive, with ``threading._SHUTTING_DOWN`` set
    (Python 3.9 on; read defensively, as it is not public)."""
    return bool(getattr(threading, "_SHUTTING_DOWN", False)) or not threading.main_thread().is_alive()


def skipped_summary(failures: Sequence[dict], shown: int = 3) -> str:
    """The images a job skipped, each with why, in one line: "a.png: cannot read (No such file or
    directory); b.png: not an image file (unrecognised format); and 4 more" ('' when none)."""

    def why(failure: dict) -> str:
        path, error = str(failure.get("path", "?")), str(failure.get("error", "?"))
        return f"{path}: {error.split(f'{Path(path).name}: ', 1)[-1]}"[:200]  # the error names the server's path

    named = "; ".join(why(f) for f in failures[:shown])
    return named + (f"; and {len(failures) - shown:,} more" if len(failures) > shown else "")


# How far find_jobs looks below each folder: a job typed as data/runs/2026/april is found again after
# the server restarts, while a folder of a million images is not read through on every Setup page.
SEARCH_DEPTH, SEARCH_ENTRIES = 3, 20_000


def find_jobs(folders: Sequence[str | os.PathLike]) -> list[Path]:
    """The workspace folders that hold a job, for the page's list: those up to ``SEARCH_DEPTH``
    folders below ``folders`` (hidden folders and workspaces are not entered, symbolic links not
    followed, at most ``SEARCH_ENTRIES`` entries read per folder), and those of the jobs this process
    started, wherever they are."""
    found = []
    for folder in folders:
        found += _jobs_below(Path(folder))
    with _LOCK:
        started = sorted(Path(key) for key in _RUNNING)
    known = {p.resolve() for p in found}
    return found + [p for p in started if p.resolve() not in known and (job_folder(p) / SPEC_FILE).is_file()]


def _jobs_below(root: Path) -> list[Path]:
    """Breadth first, so that a deep tree uses up the entry budget last."""
    found, level, budget = [], [root], SEARCH_ENTRIES
    for _ in range(SEARCH_DEPTH):
        below = []
        for folder in level:
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        budget -= 1
                        if budget < 0:
                            return sorted(found)
                        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                            continue
                        path = Path(entry.path)
                        if (job_folder(path) / SPEC_FILE).is_file():
                            found.append(path)
                        elif not (path / META_FILE).is_file():
                            below.append(path)
            except OSError:  # unreadable or vanished meanwhile: nothing to list there
                continue
        level = below
    return sorted(found)
