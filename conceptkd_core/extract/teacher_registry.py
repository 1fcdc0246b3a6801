"""The teacher registry: the one place that turns a teacher spec into a teacher with its preprocessing.

Modelled on open_clip's factory (``create_model_and_transforms``): a caller names a teacher and
this module picks the adapter and how its images are prepared, so the CLI (through
``ExtractorSpec``), the Ray workers, the Setup page, add-images, re-scoring and the demo build
teachers alike. ``teacher_from_workspace`` rebuilds the teacher a workspace recorded, to score
new images the way the extracted ones were scored; ``teacher_for_workspace`` is the app's one
lookup of it (beside the workspace, or where it was recorded when that is inside the folders the
server may read), so the Predict and Setup pages find the same teacher.

Specs:

* ``"clip-zero-shot"``: CLIP zero-shot over class prompts; needs the CLIP model, whose
  preprocessing it uses.
* a TorchScript file (.pt, .ts, .pth, .jit) or a torch module: a ``TorchTeacher`` with the
  preprocessing given (``teacher_preprocessing``: flags first, then what the file itself says in
  its ``preprocessing.json`` extra file, then ImageNet's at 224 px, squashed; ``defaults``).
* a logits file (.csv, .parquet, .npy): a ``LogitsFileTeacher``; it reads no pixels.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..defaults import IMAGENET_MEAN, IMAGENET_STD, TEACHER_IMAGE_SIZE
from ..images import Preprocessing
from ..store.atomic_io import find_by_sha256
from ..store.validation import is_absolute_path
from ..store.workspace import Workspace
from .teachers import ClipZeroShotTeacher, LogitsFileTeacher, Teacher, TeacherError, TorchTeacher, load_torchscript

if TYPE_CHECKING:  # clip_backend imports torch, which the Setup page must not load to browse
    from .clip_backend import ClipModel

CLIP_ZERO_SHOT = "clip-zero-shot"
TORCHSCRIPT_SUFFIXES = (".pt", ".ts", ".pth", ".jit")
LOGITS_SUFFIXES = (".csv", ".parquet", ".npy")
ALLOWED_SPECS = (
    f"{CLIP_ZERO_SHOT}, a TorchScript file ({', '.join(TORCHSCRIPT_SUFFIXES)}), a torch module "
    f"or a logits file ({', '.join(LOGITS_SUFFIXES)})"
)
IMAGENET = Preprocessing(TEACHER_IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD)
# A TorchScript teacher may carry its own preprocessing: save it with
# ``torch.jit.save(model, path, _extra_files={"preprocessing.json": json.dumps({...})})``, keys
# image_size, mean, std, resize and classes (the order of its outputs); each one is optional.
MODEL_EXTRA_FILE = "preprocessing.json"


def preprocessing_in_file(spec: object) -> dict:
    """What a TorchScript file says of its own preprocessing (``MODEL_EXTRA_FILE``); {} when it says
    nothing or ``spec`` is no TorchScript file. Raises TeacherError if what it says is unreadable."""
    if not isinstance(spec, (str, os.PathLike)) or Path(spec).suffix.lower() not in TORCHSCRIPT_SUFFIXES:
        return {}
    import json

    extra = {MODEL_EXTRA_FILE: ""}
    load_torchscript(spec, "cpu", _extra_files=extra)
    if not extra[MODEL_EXTRA_FILE]:
        return {}
    try:
        said = json.loads(extra[MODEL_EXTRA_FILE])
        if not isinstance(said, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise TeacherError(f"{spec}: its {MODEL_EXTRA_FILE} is unreadable ({exc}); expected a JSON object") from None
    return {key: said[key] for key in (*Preprocessing.FIELDS, "classes") if key in said}


def teacher_preprocessing(
    spec: object,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize: str | None = None,
) -> Preprocessing:
    """A torch teacher's preprocessing: each value given here, else the one its file records
    (``preprocessing_in_file``), else ImageNet's (224 px, squashed). Raises TeacherError naming
    a bad value."""
    return _chosen(spec, {"image_size": image_size, "mean": mean, "std": std, "resize": resize})


def _chosen(spec: object, given: dict, said: dict | None = None) -> Preprocessing:
    said = preprocessing_in_file(spec) if said is None else said
    chosen = {key: given.get(key) if given.get(key) is not None else said.get(key) for key in Preprocessing.FIELDS}
    try:
        return Preprocessing.from_identity({k: v for k, v in chosen.items() if v is not None}, IMAGENET)
    except (TypeError, ValueError) as exc:
        raise TeacherError(f"teacher {Path(str(spec)).name}: unusable preprocessing: {exc}") from None


def teacher_kind(spec: object) -> str:
    """The kind a workspace records for ``spec``: "clip-zero-shot", "torch" or "logits-file".

    Raises TeacherError, one line naming the spec and the kinds allowed, for anything else.
    """
    if isinstance(spec, (str, os.PathLike)):
        if str(spec) == CLIP_ZERO_SHOT:
            return CLIP_ZERO_SHOT
        suffix = Path(spec).suffix.lower()
        if suffix in TORCHSCRIPT_SUFFIXES:
            return "torch"
        if suffix in LOGITS_SUFFIXES:
            return "logits-file"
    else:
        torch = sys.modules.get("torch")  # a torch module exists only once torch is imported: no import for the check
        if torch is not None and isinstance(spec, torch.nn.Module):
            return "torch"
    shown = " ".join(repr(spec).split())[:120]
    raise TeacherError(f"teacher {shown}: expected {ALLOWED_SPECS}")


def create_teacher(
    spec: object,
    classes: Sequence[str],
    *,
    clip: ClipModel | None = None,
    image_ids: Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
    device: str | None = None,
    output_classes: Sequence[str] | None = None,
) -> Teacher:
    """The teacher ``spec`` names, giving logits for ``classes`` in that order.

    clip : the CLIP model; clip-zero-shot is made of it, and a torch teacher runs on its device
    image_ids : the manifest order, which the rows of an .npy logits file follow
    preprocessing : a torch teacher's (default: ``teacher_preprocessing(spec)``: what its file
        records, else ImageNet's at 224 px); clip-zero-shot uses CLIP's and a logits file reads no
        pixels, so giving one for them is an error
    device : a torch teacher's device (default: the CLIP's, else "cpu")
    output_classes : the class of each of a torch teacher's outputs, in its order (default: what its
        file records, else ``classes``); its logits are then taken in ``classes``' order
    """
    kind = teacher_kind(spec)
    for name, value in (("preprocessing", preprocessing), ("output_classes", output_classes)):
        if value is not None and kind != "torch":
            raise TeacherError(f"teacher {spec}: {name} applies to torch teachers only; got one for a {kind} teacher")
    if kind == CLIP_ZERO_SHOT:
        if clip is None:
            raise TeacherError(f"teacher {CLIP_ZERO_SHOT}: needs the CLIP model; got none")
        return ClipZeroShotTeacher(clip, classes)
    if kind == "logits-file":
        return LogitsFileTeacher(spec, classes, image_ids=image_ids)
    said = preprocessing_in_file(spec) if preprocessing is None or output_classes is None else {}
    return TorchTeacher(
        spec,
        classes,
        preprocessing or _chosen(spec, {}, said),
        device=device or (clip.device if clip else "cpu"),
        output_classes=said.get("classes") if output_classes is None else output_classes,
    )


def recorded_teacher_spec(workspace: Workspace, search: Sequence[str | os.PathLike] = ()) -> str | None:
    """The spec that rebuilds ``workspace``'s teacher on this machine, or None when it cannot be had.

    clip-zero-shot is rebuilt from the workspace's CLIP; a torch teacher from the TorchScript file
    whose SHA-256 the workspace records, looked for at its recorded path, in ``search``, in the
    workspace's folder and its parent (where the demo keeps it). A logits file has no logits for
    new images, and a torch module given in memory left no file: both give None.
    """
    recorded = workspace.meta.get("teacher", {})
    if recorded.get("kind") == CLIP_ZERO_SHOT:
        return CLIP_ZERO_SHOT
    sha256 = recorded.get("sha256")
    if recorded.get("kind") != "torch" or not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        return None
    folders = [Path(p) for p in search] + [workspace.root, workspace.root.parent]
    found = find_by_sha256(sha256, folders, TORCHSCRIPT_SUFFIXES, first=_recorded_file(workspace, recorded))
    return str(found) if found else None


def _recorded_file(workspace: Workspace, recorded: dict) -> list[Path]:
    """The teacher file the metadata names, when it is a relative path that stays beside the
    workspace (in its folder or the one holding it); metadata never sends the reader elsewhere."""
    source = recorded.get("source")
    if not isinstance(source, str) or not source or "\0" in source or is_absolute_path(source):
        return []
    near = workspace.root.parent
    candidate = (workspace.root / source).resolve()
    return [candidate] if candidate.suffix in TORCHSCRIPT_SUFFIXES and near in candidate.parents else []


def teacher_from_workspace(
    workspace: Workspace,
    clip: ClipModel | None = None,
    search: Sequence[str | os.PathLike] = (),
    device: str | None = None,
) -> Teacher:
    """The teacher ``workspace`` was extracted with, with its recorded preprocessing.

    clip : the workspace's own CLIP (found by its checksum): a clip-zero-shot teacher is made of
        it, so another CLIP would give other logits and is refused
    search, device : as for ``recorded_teacher_spec`` and ``create_teacher``

    Raises TeacherError, one line saying what cannot be found or rebuilt.
    """
    recorded = workspace.meta.get("teacher", {})
    spec = recorded_teacher_spec(workspace, search)
    if spec is None:
        raise TeacherError(f"{workspace.root}: cannot rebuild its teacher here: {_why_not(recorded)}")
    if spec == CLIP_ZERO_SHOT:
        if clip is not None and clip.identity != recorded.get("model"):
            raise TeacherError(
                f"{workspace.root}: its clip-zero-shot teacher is the CLIP it recorded, "
                f"{_clip_label(recorded.get('model', {}))}; got {_clip_label(clip.identity)}"
            )
        return create_teacher(spec, workspace.classes, clip=clip)
    try:
        preprocessing = Preprocessing.from_identity(recorded, IMAGENET)
    except (TypeError, ValueError) as exc:
        raise TeacherError(f"{workspace.root}: its teacher's recorded preprocessing is unusable: {exc}") from None
    output_classes = recorded.get("output_classes")
    return create_teacher(
        spec, workspace.classes, clip=clip, device=device, preprocessing=preprocessing, output_classes=output_classes
    )


def allowed_teacher_folders(workspace: Workspace, roots: Sequence[str | os.PathLike]) -> list[Path]:
    """The folder of the teacher file ``workspace`` recorded, when it lies inside one of ``roots``
    (the folders this server may read): a TorchScript file kept with the user's models rather than
    beside the workspace. Empty otherwise: recorded metadata never sends the server outside them."""
    source = workspace.meta.get("teacher", {}).get("source")
    if not isinstance(source, str) or not source or "\0" in source or is_absolute_path(source):
        return []
    folder = (workspace.root / source).resolve().parent
    allowed = [Path(root).resolve() for root in roots]
    return [folder] if any(folder == root or root in folder.parents for root in allowed) else []


def find_teacher(workspace: Workspace, roots: Sequence[str | os.PathLike] = ()) -> str | None:
    """The spec of ``workspace``'s teacher on this server (``recorded_teacher_spec``, also looking in
    ``allowed_teacher_folders``), without loading it (no torch): None when it cannot be had. Its
    SHA-256 must still match."""
    return recorded_teacher_spec(workspace, allowed_teacher_folders(workspace, roots))


def teacher_for_workspace(
    workspace: Workspace,
    roots: Sequence[str | os.PathLike] = (),
    clip: ClipModel | None = None,
    device: str | None = None,
) -> Teacher:
    """The app's one lookup of ``workspace``'s teacher: found as ``find_teacher`` finds it and built
    as ``teacher_from_workspace`` builds it (``clip``: the workspace's own, for clip-zero-shot and
    the device). Raises TeacherError, one line saying what cannot be found or rebuilt."""
    return teacher_from_workspace(workspace, clip, allowed_teacher_folders(workspace, roots), device)


def _why_not(recorded: dict) -> str:
    kind = recorded.get("kind")
    source = Path(str(recorded.get("source") or "")).name[:80]
    if kind == "logits-file":
        return f"it is a logits file ({source}), which has no logits for new images"
    if kind == "torch" and recorded.get("sha256"):
        return (
            f"no TorchScript file with SHA-256 {str(recorded['sha256'])[:12]}… ({source}) "
            "in the workspace's folder or its parent"
        )
    if kind == "torch":
        return "it was a torch module given in memory, not a file"
    return f"its recorded kind {str(kind)[:40]!r} is not one of {CLIP_ZERO_SHOT}, torch, logits-file"


def _clip_label(identity: dict) -> str:
    return f"{identity.get('name')} ({identity.get('pretrained') or str(identity.get('checkpoint_sha256'))[:12]})"
