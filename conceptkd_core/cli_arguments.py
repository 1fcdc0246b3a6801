"""The command line's arguments: the parser and a checked type for every argument, so a bad value
is refused before a command starts, in one line that names it and what is allowed (``UsageError``)."""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

from .defaults import (
    DEFAULT_SEGMENTER,
    DEFAULT_TEACHER,
    MAX_SEGMENTS,
    MIN_SUPERPIXEL_SIZE,
    N_SEGMENTS,
    SEGMENTERS,
    SUPERPIXEL_SIZE,
    TEACHER_IMAGE_SIZE,
)
from .images import RESIZE_MODES

PROG = "python -m conceptkd_core"
MAX_MESSAGE = 1000
DEMO_FILES = ("images", "labels.csv", "vocabulary.txt", "conceptkd-mini-clip.json", "conceptkd-mini-clip.safetensors")


class UsageError(Exception):
    """A bad argument: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` (one line) instead of printing its usage and exiting."""

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} -h')")


# ----------------------------------------------------------------------------- argument types
def _checked(kind: str, check: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type: ``check(text)`` returns the value or raises ValueError saying what is wrong."""

    def parse(text: str) -> object:
        try:
            return check(text)
        except (ValueError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise argparse.ArgumentTypeError(f"{_shown(text)}: {reason}") from None

    parse.__name__ = kind
    return parse


def _shown(text: str) -> str:
    return repr(text if len(text) <= 120 else text[:120] + "…")


def whole(low: int, high: int | None = None) -> Callable[[str], object]:
    allowed = f"a whole number from {low:,} to {high:,}" if high is not None else f"a whole number >= {low:,}"

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected {allowed}") from None
        if value < low or (high is not None and value > high):
            raise ValueError(f"expected {allowed}")
        return value

    return _checked("whole number", check)


def number(low: float, high: float, low_open: bool = False) -> Callable[[str], object]:
    allowed = f"a number {'>' if low_open else '>='} {low:g} and <= {high:g}"

    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected {allowed}") from None
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            raise ValueError(f"expected {allowed}")
        return value

    return _checked("number", check)


def _path(text: str) -> Path:
    if not text.strip():
        raise ValueError("an empty path; expected a file or folder path")
    if "\0" in text:
        raise ValueError("holds a NUL character")
    path = Path(text)
    path.exists()  # raises OSError for a name too long
    return path


def _existing_folder(text: str) -> Path:
    path = _path(text)
    if not path.is_dir():
        raise ValueError("is a file; expected a folder" if path.exists() else "no such folder")
    return path


def _existing_file(text: str) -> Path:
    path = _path(text)
    if not path.is_file():
        raise ValueError("is a folder; expected a file" if path.is_dir() else "no such file")
    return path


def _writable_target(path: Path) -> None:
    """Refuse a target whose nearest existing folder cannot be written."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{probe} is a file, so nothing can be created below it")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{'this folder' if probe == path else probe} is not writable")


def _output_folder(text: str) -> Path:
    path = _path(text)
    if path.exists() and not path.is_dir():
        raise ValueError("is a file; expected a folder (new, empty, or a workspace to resume)")
    _writable_target(path)
    return path


def _output_file(text: str) -> Path:
    path = _path(text)
    if path.is_dir():
        raise ValueError("is a folder; expected a file name")
    _writable_target(path.parent if str(path.parent) else Path("."))
    return path


def _model(text: str) -> str:
    if text.endswith(".json"):
        _existing_file(text)
    elif not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-/@]{0,199}", text):
        raise ValueError("expected an open_clip model name (e.g. ViT-B-16) or an open_clip JSON config file")
    return text


def _teacher(text: str) -> str:
    from .extract.teacher_registry import ALLOWED_SPECS, CLIP_ZERO_SHOT, teacher_kind
    from .extract.teachers import TeacherError

    if text == CLIP_ZERO_SHOT:
        return text
    try:
        teacher_kind(text)
    except TeacherError:
        raise ValueError(f"expected {ALLOWED_SPECS}") from None
    _existing_file(text)
    return text


def _channels(text: str) -> tuple[float, float, float]:
    """Three numbers (R, G, B) or one for all three, comma-separated."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(
            "expected one number or three comma-separated numbers (R,G,B), e.g. 0.5 or 0.485,0.456,0.406"
        ) from None
    if len(values) not in (1, 3) or not all(math.isfinite(v) and -10 <= v <= 10 for v in values):
        raise ValueError("expected one number or three comma-separated numbers (R,G,B) from -10 to 10")
    return tuple(values * 3 if len(values) == 1 else values)


def _positive_channels(text: str) -> tuple[float, float, float]:
    values = _channels(text)
    if min(values) <= 0:
        raise ValueError("expected positive numbers: one, or three comma-separated (R,G,B)")
    return values


def _class_names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise ValueError("expected the teacher's output classes in its order, comma-separated, each named once")
    return names


def _device(text: str) -> str:
    if not re.fullmatch(r"cpu|mps|cuda(:\d{1,2})?", text):
        raise ValueError("expected cpu, cuda, cuda:N or mps")
    return text


def _splits(text: str) -> list[str]:
    splits = [s.strip() for s in text.split(",") if s.strip()]
    if not splits or not all(re.fullmatch(r"[a-z0-9_-]{1,40}", s) for s in splits):
        raise ValueError("expected split names, comma-separated (e.g. train,val)")
    return splits


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(n) for n in text.split(",") if n.strip())
    except ValueError:
        raise ValueError("expected numbers of images, comma-separated (e.g. 10000,100000)") from None
    if not sizes or not all(100 <= n <= 10_000_000 for n in sizes):
        raise ValueError("expected numbers of images from 100 to 10,000,000, comma-separated")
    return sizes


def _address(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:/\-\[\]@]{1,300}", text):
        raise ValueError("expected a Ray address such as auto, ray://head:10001 or host:port")
    return text


folder, file, output_folder, output_file = (
    _checked("folder", _existing_folder),
    _checked("file", _existing_file),
    _checked("output folder", _output_folder),
    _checked("output file", _output_file),
)


# ----------------------------------------------------------------------------- the parser
SEGMENTER_HELP = (
    "who cuts the superpixels: slic (skimage, in the CPU workers; default) or torch-slic (the same algorithm "
    "on --device for a whole batch: for GPUs)"
)
SUPERPIXEL_SIZE_HELP = (
    f"cut the superpixels on the image shrunk to N pixels a side, at most the model's input size (default "
    f"{SUPERPIXEL_SIZE}: the overlays' maps twice over, a quarter of a 224-px model's work)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{extract,gram,student,bench,demo}")
    debug = _Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", help="show the traceback of a failure")

    bench = sub.add_parser("bench", help="run a benchmark; prints one JSON line")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True)
    refit = bench_sub.add_parser(
        "refit", parents=[debug], help="interactive re-fit vs scikit-learn Lasso at PASCAL VOC scale"
    )
    refit.add_argument("--n-images", type=whole(10, 2_000_000), default=11540)
    refit.add_argument("--n-concepts", type=whole(2, 5000), default=584)
    refit.add_argument("--n-classes", type=whole(1, 1000), default=20)
    refit.add_argument("--alpha", type=number(0, 1e3), default=1e-3)
    refit.add_argument("--moves", type=whole(1, 100_000), default=100)
    refit.add_argument("--seed", type=whole(0, 2**32 - 1), default=0)
    ext = bench_sub.add_parser("extract", parents=[debug], help="dense extraction vs plain encode_image throughput")
    ext.add_argument("--model", type=_checked("model", _model), default="ViT-B-16")
    ext.add_argument("--batch-size", type=whole(1, 4096), default=8)
    ext.add_argument("--batches", type=whole(1, 10_000), default=4)
    ext.add_argument("--device", type=_checked("device", _device), default="cpu")
    ext.add_argument(
        "--workers", type=whole(0, 256), default=None, help="processes preparing images (default: by device)"
    )
    ext.add_argument("--segmenter", choices=SEGMENTERS, default=DEFAULT_SEGMENTER, help=SEGMENTER_HELP)
    ext.add_argument("--superpixel-size", type=whole(MIN_SUPERPIXEL_SIZE, 4096), help=SUPERPIXEL_SIZE_HELP)
    scale = bench_sub.add_parser(
        "scale", parents=[debug], help="students at 10k..1M images: Gram build, re-fit, metrics after a move"
    )
    scale.add_argument(
        "--sizes", type=_checked("sizes", _sizes), default=(10000, 100000, 1000000), help="numbers of images"
    )
    scale.add_argument("--n-concepts", type=whole(2, 5000), default=584)
    scale.add_argument("--n-classes", type=whole(1, 1000), default=20)
    scale.add_argument("--moves", type=whole(1, 100_000), default=100, help="slider moves timed through the solver")
    scale.add_argument(
        "--session-moves", type=whole(1, 100_000), default=20, help="of those, moves also timed through a session"
    )
    scale.add_argument(
        "--folder",
        type=output_folder,
        help="keep the synthetic workspaces here (reused by the next run); default: a temp folder",
    )
    scale.add_argument("--plot", type=output_file, help="write a log-log PNG of the results here")
    app = bench_sub.add_parser(
        "app", parents=[debug], help="page and slider timings, memory, on a workspace (default: the demo)"
    )
    app.add_argument("--workspace", type=folder, default=None)
    app.add_argument("--moves", type=whole(1, 10_000), default=10)
    suggest = bench_sub.add_parser(
        "suggest", parents=[debug], help="exact scan of every candidate edit, one class and all classes"
    )
    suggest.add_argument("--workspace", type=folder, default=None, help="workspace folder (default: the demo)")
    suggest.add_argument(
        "--synthetic-voc", action="store_true", help="the PASCAL VOC-sized synthetic problem (11,540 x 584 x 20)"
    )
    suggest.add_argument(
        "--folder", type=output_folder, help="where to keep the synthetic workspace (default: the temp folder)"
    )

    extract = sub.add_parser(
        "extract", parents=[debug], help="images -> workspace (CLIP concept scores, segments, teacher logits)"
    )
    extract.add_argument("--images", type=folder, required=True, help="image folder, or a VOCdevkit/VOC2012 root")
    extract.add_argument("--labels", type=file, help="labels CSV for a folder of images (omit for the VOC layout)")
    extract.add_argument(
        "--splits",
        type=_checked("splits", _splits),
        default=["train", "val"],
        help="VOC splits, comma-separated (default train,val)",
    )
    extract.add_argument(
        "--model", type=_checked("model", _model), default="ViT-B-16", help="open_clip model name or JSON config path"
    )
    weights = extract.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", help="open_clip pretrained tag, e.g. openai (needs internet once)")
    weights.add_argument("--checkpoint", type=file, help="local weights file (.safetensors or torch tensors)")
    extract.add_argument(
        "--teacher",
        type=_checked("teacher", _teacher),
        default=DEFAULT_TEACHER,
        help="clip-zero-shot (default), a TorchScript file (.pt/.ts/.pth/.jit; preprocessed as the --teacher-* "
        "flags say, else as its preprocessing.json extra file says, else ImageNet's at "
        f"{TEACHER_IMAGE_SIZE} px), or a logits file (.csv/.parquet/.npy)",
    )
    extract.add_argument(
        "--teacher-image-size",
        type=whole(1, 4096),
        help=f"a TorchScript teacher's input size (default {TEACHER_IMAGE_SIZE})",
    )
    extract.add_argument(
        "--teacher-mean",
        type=_checked("mean", _channels),
        help="a TorchScript teacher's per-channel mean on [0, 1] pixels: R,G,B or one value (default ImageNet's)",
    )
    extract.add_argument(
        "--teacher-std",
        type=_checked("std", _positive_channels),
        help="a TorchScript teacher's per-channel std: R,G,B or one value (default ImageNet's)",
    )
    extract.add_argument(
        "--teacher-resize",
        choices=RESIZE_MODES,
        help="how a TorchScript teacher's square input is made: squash (default: the whole image), "
        "center-crop (shorter side to the size, middle square) or letterbox (longer side, padded with the mean)",
    )
    extract.add_argument(
        "--teacher-classes",
        type=_checked("classes", _class_names),
        help="a TorchScript teacher's output classes in its order, comma-separated (default: the labels' classes)",
    )
    extract.add_argument(
        "--vocabulary", type=file, help="concept words, one per line (default: the built-in 571-word list)"
    )
    extract.add_argument("--out", type=output_folder, required=True, help="workspace folder to create (or to resume)")
    extract.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a workspace (finished or not) made with other settings; without it such a rerun is refused",
    )
    extract.add_argument("--batch-size", type=whole(1, 4096), default=16)
    extract.add_argument(
        "--segments",
        type=whole(1, MAX_SEGMENTS),
        default=N_SEGMENTS,
        help=f"superpixels asked of SLIC per image, 1..{MAX_SEGMENTS} (default {N_SEGMENTS})",
    )
    extract.add_argument("--device", type=_checked("device", _device), default="cpu")
    extract.add_argument("--segmenter", choices=SEGMENTERS, default=DEFAULT_SEGMENTER, help=SEGMENTER_HELP)
    extract.add_argument("--superpixel-size", type=whole(MIN_SUPERPIXEL_SIZE, 4096), help=SUPERPIXEL_SIZE_HELP)
    extract.add_argument("--limit", type=whole(1), help="only the first N images (a quick try)")
    _ray_arguments(extract, "local: this process (default); ray: a pool of Ray Data actors (pip install 'ray[data]')")
    extract.add_argument(
        "--actors", type=whole(1, 100_000), help="Ray actors (default: cluster GPUs / --gpus-per-actor, else CPUs)"
    )
    extract.add_argument(
        "--gpus-per-actor",
        type=number(0, 64),
        default=None,
        help="GPUs per Ray actor; > 0 runs CLIP on cuda (default: 1 when the cluster has GPUs, else 0)",
    )
    extract.add_argument(
        "--cpus-per-actor", type=number(0, 1024, low_open=True), default=1.0, help="CPUs per Ray actor"
    )
    gram = sub.add_parser(
        "gram", parents=[debug], help="build (or rebuild) a workspace's Gram statistics, cached in the workspace"
    )
    gram.add_argument("workspace", type=folder, help="workspace folder")
    _ray_arguments(gram, "ray: one Ray task per chunk of rows (the workspace must be on a path every node sees)")

    student = sub.add_parser("student", help="export the students as a model; predict with an exported one")
    student_sub = student.add_subparsers(dest="student_command", required=True)
    export = student_sub.add_parser(
        "export", parents=[debug], help="write a self-contained, explainable student model folder; prints one JSON line"
    )
    export.add_argument("--workspace", type=folder, required=True, help="workspace folder")
    export.add_argument("--out", type=output_folder, required=True, help="folder to write the model into")
    export.add_argument(
        "--session", type=file, help="a tuning session file (History's export or an autosave); default: base students"
    )
    export.add_argument(
        "--bench",
        type=whole(0, 10_000),
        default=8,
        help="held-out images to time the exported student and the teacher on, one at a time (0: no timing)",
    )
    predict = student_sub.add_parser(
        "predict", parents=[debug], help="score images with an exported student; one JSON line per image"
    )
    predict.add_argument("--model", type=folder, required=True, help="an exported student folder")
    predict.add_argument("--top", type=whole(0, 1000), default=5, help="concepts shown per class (default 5)")
    predict.add_argument("images", type=file, nargs="+", help="image files")

    demo = sub.add_parser("demo", help="the embedded demo workspace (Clipart Scenes)")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True)
    build = demo_sub.add_parser(
        "build",
        parents=[debug],
        help="render scenes, train mini CLIP + teacher, extract (needs fonts-noto-color-emoji)",
    )
    build.add_argument("--out", type=output_folder, default=None, help="folder (default data/demo)")
    _clip_training_arguments(build)
    build.add_argument("--teacher-minutes", type=number(0, 24 * 60, low_open=True), default=5.0)
    build.add_argument("--val", type=whole(1, 1_000_000), default=600, help="scenes the students are fit on")
    build.add_argument("--test", type=whole(1, 1_000_000), default=500)
    build.add_argument(
        "--single", type=whole(0, 1_000_000), default=200, help="single-object scenes within the test split"
    )
    build.add_argument("--seed", type=whole(0, 2**32 - 1), default=0)
    train = demo_sub.add_parser(
        "train-clip",
        parents=[debug],
        help="only the mini CLIP's training (resumable) into --out; then `demo extract` re-extracts with it",
    )
    train.add_argument("--out", type=output_folder, default=None, help="folder (default data/demo)")
    _clip_training_arguments(train)
    train.add_argument("--seed", type=whole(0, 2**32 - 1), default=0)
    reextract = demo_sub.add_parser(
        "extract", parents=[debug], help="only the last build step: re-extract the workspace and re-measure"
    )
    reextract.add_argument("--out", type=folder, default=None, help="folder (default data/demo)")
    evaluate = demo_sub.add_parser("eval", parents=[debug], help="measure the demo's goals; one JSON line")
    evaluate.add_argument("--demo", type=folder, default=None, help="folder (default data/demo)")
    ablate = demo_sub.add_parser(
        "ablate", parents=[debug], help="student design choices (L1 path, loss, whole-image scores) on held-out scenes"
    )
    ablate.add_argument("--demo", type=folder, default=None, help="folder (default data/demo)")
    return parser


def _clip_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The mini CLIP's training budget and where it runs (demo build and demo train-clip)."""
    parser.add_argument(
        "--clip-scenes", type=whole(1, 10**9), default=1_240_000, help="training budget in scenes (default 1.24M)"
    )
    parser.add_argument("--batch-size", type=whole(1, 65536), default=256, help="scenes per training step")
    parser.add_argument("--device", type=_checked("device", _device), default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--workers", type=whole(0, 256), default=None, help="processes composing scenes (default: by device)"
    )
    parser.add_argument(
        "--max-minutes",
        type=number(0, 7 * 24 * 60, low_open=True),
        default=None,
        help="stop this run after so many minutes (checkpointed; the same command resumes)",
    )
    parser.add_argument(
        "--checkpoint-minutes",
        type=number(0, 24 * 60),
        default=5.0,
        help="minutes between training checkpoints (0: after every step)",
    )


def _ray_arguments(parser: argparse.ArgumentParser, engine_help: str) -> None:
    """--engine (local or ray; what ray means for this command is ``engine_help``) and the Ray options."""
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help=engine_help)
    parser.add_argument(
        "--address",
        type=_checked("address", _address),
        help="Ray cluster address for --engine ray (e.g. auto, ray://head:10001); "
        "default: the RAY_ADDRESS variable, else a Ray instance on this machine",
    )
    parser.add_argument(
        "--no-ship-code",
        dest="ship_code",
        action="store_false",
        help="do not send conceptkd_core to the Ray workers (they already have it installed)",
    )
