"""Teachers: anything that gives class logits for images (``teacher_registry`` builds them from a spec).

* ``TorchTeacher``: a torch module, or a TorchScript file, with its preprocessing.
* ``LogitsFileTeacher``: precomputed logits in CSV / Parquet (keyed by image id) or NPY (in
  manifest order), validated against the manifest.
* ``ClipZeroShotTeacher``: the built-in default, CLIP zero-shot over class-name prompts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from PIL import Image

from ..images import Preprocessing


class TeacherError(ValueError):
    """A teacher that cannot be used as given; one line naming the bad value (spec, file) and what is allowed."""


class Teacher(Protocol):
    """What extraction needs of a teacher; ``teacher_registry.create_teacher`` makes them."""

    classes: tuple[str, ...]
    preprocessing: Preprocessing | None  # how it prepares pixels; None: it reads none (precomputed logits)

    @property
    def identity(self) -> dict: ...

    def logits(self, images: Sequence[Image.Image], image_ids: Sequence[str]) -> np.ndarray:
        """Logits of shape (len(images), n_classes)."""


def error_line(exc: BaseException) -> str:
    """One line saying what went wrong inside a model: a TorchScript error's message is the
    interpreter's traceback (file paths included), whose last line is the error itself."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    line = lines[-1] if lines[0].startswith("The following operation failed") else lines[0]
    return line.removeprefix("builtins.")[:300]


def load_torchscript(path: str | os.PathLike, device: str = "cpu", **kwargs):
    """``torch.jit.load`` with a one-line TeacherError that says what the file is: missing, a folder,
    not the zip ``torch.jit.save`` writes, or a ``torch.save`` checkpoint (weights without the code).
    Torch's own messages said "not a TorchScript model (The provided filename … does not exist)" and,
    for any other file, a paragraph about "an internal miniz error", cut off mid-word."""
    import torch

    if not os.path.exists(path):
        raise TeacherError(f"{path}: no such file; expected a TorchScript file (saved with torch.jit.save)")
    if os.path.isdir(path):
        raise TeacherError(f"{path}: a folder; expected a TorchScript file (saved with torch.jit.save)")
    try:
        return torch.jit.load(str(path), map_location=device, **kwargs)
    except Exception as exc:  # noqa: BLE001 - whatever torch cannot read is no TorchScript model
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        if "constants.pkl" in first:  # a zip without TorchScript code: what torch.save writes
            why = "it looks like weights saved with torch.save; save the model with torch.jit.save"
        elif "zip archive" in first:
            why = "it is not the zip archive torch.jit.save writes"
        else:
            why = first.split(". ")[0][:200]
        raise TeacherError(f"{path}: not a TorchScript model ({why})") from None


def _finite_logits(values: np.ndarray, n_rows: int, k: int, source: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    if values.shape != (n_rows, k):
        raise TeacherError(f"{source}: logits have shape {values.shape}; expected ({n_rows}, {k})")
    if not np.isfinite(values).all():
        raise TeacherError(f"{source}: logits contain NaN or inf")
    return values


class TorchTeacher:
    """A classifier as a torch module or a TorchScript file, with the preprocessing it was trained
    for (images made square at ``preprocessing.image_size`` by its resize mode, bilinear; then mean / std).

    ``output_classes`` names the model's outputs in its order when that is not ``classes``' order
    (or it has more outputs than the workspace has classes): logits are taken in ``classes``' order.
    Built by ``teacher_registry.create_teacher``, which supplies the preprocessing.
    """

    def __init__(
        self,
        model,
        classes: Sequence[str],
        preprocessing: Preprocessing,
        device: str = "cpu",
        output_classes: Sequence[str] | None = None,
    ):
        self.source = None
        if isinstance(model, (str, os.PathLike)):
            self.source = str(model)
            model = load_torchscript(model, device)
        self.model = model.to(device).eval()
        self.classes = tuple(classes)
        self.preprocessing = preprocessing
        self.device = device
        self.output_classes = None if output_classes is None else tuple(str(c) for c in output_classes)
        self.columns = None  # which output gives each class, when the outputs are named
        if self.output_classes is not None:
            missing = [c for c in self.classes if c not in self.output_classes]
            if missing or len(set(self.output_classes)) != len(self.output_classes):
                raise TeacherError(
                    f"teacher output classes {list(self.output_classes)[:30]}: "
                    + (f"no output for classes {missing[:10]}" if missing else "a class is named twice")
                    + "; expected each of the labels' classes named once"
                )
            self.columns = [self.output_classes.index(c) for c in self.classes]

    @property
    def identity(self) -> dict:
        from ..store.atomic_io import sha256_file

        return {
            "kind": "torch",
            "source": self.source,
            "sha256": sha256_file(self.source) if self.source else None,
            **self.preprocessing.identity,
            "classes": list(self.classes),
            **({"output_classes": list(self.output_classes)} if self.output_classes is not None else {}),
        }

    @property
    def name(self) -> str:
        """The model file's name in messages (no server path), or "the teacher model"."""
        return Path(self.source).name if self.source else "the teacher model"

    def logits(self, images, image_ids=None) -> np.ndarray:
        import torch

        batch = self.preprocessing.to_tensor(images, device=self.device)
        try:
            with torch.inference_mode():
                out = self.model(batch).float().cpu().numpy()
        except Exception as exc:  # noqa: BLE001 - whatever the model raises on its input is the model's fault
            size = self.preprocessing.image_size
            images_n = f"{len(images)} image" + ("s" if len(images) != 1 else "")
            raise TeacherError(f"{self.name} fails on {images_n} of {size}x{size}: {error_line(exc)}") from None
        if self.columns is not None:
            if out.ndim != 2 or out.shape[1] != len(self.output_classes):
                raise TeacherError(
                    f"teacher model output has shape {out.shape}; expected "
                    f"({len(images)}, {len(self.output_classes)}), one column per output class"
                )
            out = out[:, self.columns]
        elif out.ndim == 2 and out.shape[1] != len(self.classes):  # the usual mistake: said in class terms
            shown_classes = ", ".join(self.classes[:5]) + (", …" if len(self.classes) > 5 else "")
            raise TeacherError(
                f"{self.name} gives {out.shape[1]} outputs per image; expected {len(self.classes)}, "
                f"one per class ({shown_classes}), in the classes' order"
            )
        return _finite_logits(out, len(images), len(self.classes), "teacher model output")


class LogitsFileTeacher:
    """Precomputed logits. CSV/Parquet: an ``image_id`` column plus one column per class.
    NPY: shape (n_images, n_classes) in the manifest's order (``image_ids`` must be given).
    ``name``: how messages and the identity call the file (an upload's name; default its path)."""

    preprocessing = None  # precomputed: no pixels are read

    def __init__(
        self,
        path: str | os.PathLike,
        classes: Sequence[str],
        image_ids: Sequence[str] | None = None,
        name: str | None = None,
    ):
        from ..store.atomic_io import sha256_file

        self.path = Path(path)
        self.name = str(self.path) if name is None else name
        self.classes = tuple(classes)
        k = len(self.classes)
        suffix = self.path.suffix.lower()
        if not self.path.is_file():
            raise TeacherError(f"{self.name}: logits file not found")
        self.sha256 = sha256_file(self.path)  # now: an uploaded file is read from a temporary copy
        if suffix == ".npy":
            if image_ids is None:
                raise TeacherError(
                    f"{self.name}: an .npy logits file has no image ids; it must come with the manifest order"
                )
            try:
                values = np.load(self.path, allow_pickle=False)
            except ValueError as exc:
                raise TeacherError(f"{self.name}: not a plain numeric .npy array ({exc})") from None
            values = _finite_logits(values, len(image_ids), k, self.name)
            self.table = dict(zip(map(str, image_ids), values, strict=True))
            return
        try:
            frame = pd.read_parquet(self.path) if suffix == ".parquet" else pd.read_csv(self.path)
        except Exception as exc:
            raise TeacherError(f"{self.name}: cannot read logits table ({exc})") from None
        if "image_id" not in frame.columns:
            raise TeacherError(f"{self.name}: missing column 'image_id'; has {list(frame.columns)}")
        missing = [c for c in self.classes if c not in frame.columns]
        if missing:
            raise TeacherError(f"{self.name}: no logits column for classes {missing}")
        ids = frame["image_id"].astype(str)
        if ids.duplicated().any():
            raise TeacherError(f"{self.name}: duplicate image ids, e.g. {ids[ids.duplicated()].iloc[0]!r}")
        try:
            values = frame[list(self.classes)].to_numpy(dtype=np.float32)
        except ValueError as exc:
            raise TeacherError(f"{self.name}: logits must be numbers ({exc})") from None
        values = _finite_logits(values, len(frame), k, self.name)
        self.table = dict(zip(ids, values, strict=True))

    @property
    def identity(self) -> dict:
        return {
            "kind": "logits-file",
            "source": self.name,
            "sha256": self.sha256,
            "classes": list(self.classes),
        }

    def check_covers(self, image_ids: Sequence[str]) -> None:
        missing = [i for i in image_ids if str(i) not in self.table]
        if missing:
            raise TeacherError(f"{self.name}: no logits for {len(missing)} images, e.g. {missing[:3]}")

    def check_known(self, image_ids: Sequence[str]) -> None:
        """Refuse logits for images the dataset does not have: a file made for another image set
        (or with mistyped ids) must not be half used."""
        known = {str(i) for i in image_ids}
        unknown = [i for i in self.table if i not in known]
        if unknown:
            raise TeacherError(
                f"{self.name}: logits for {len(unknown)} images the labels do not list, e.g. {unknown[:3]}; "
                "expected one row per image of the dataset"
            )

    def logits(self, images, image_ids) -> np.ndarray:
        self.check_covers(image_ids)
        return np.stack([self.table[str(i)] for i in image_ids])


class ClipZeroShotTeacher:
    """CLIP zero-shot: logit_c = scale · (cos(image, class_c) − mean over classes of cos).

    Centring over classes turns CLIP's softmax-style scores into per-class logits whose sign
    says "more like this class than the average class"; ``scale`` is the model's logit scale.
    """

    def __init__(self, clip, classes: Sequence[str]):
        from .clip_backend import encode_text_prompts

        self.clip = clip
        self.classes = tuple(classes)
        self.class_embeddings = encode_text_prompts(clip, [c.replace("_", " ") for c in self.classes])
        self.scale = float(clip.model.logit_scale.exp().item()) if hasattr(clip.model, "logit_scale") else 100.0

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(self.clip.image_size, self.clip.mean, self.clip.std)

    @property
    def identity(self) -> dict:
        return {"kind": "clip-zero-shot", "model": self.clip.identity, "classes": list(self.classes)}

    def logits_from_embeddings(self, image_embeddings: np.ndarray) -> np.ndarray:
        cos = image_embeddings @ self.class_embeddings.T
        return (self.scale * (cos - cos.mean(axis=1, keepdims=True))).astype(np.float32)

    def logits(self, images, image_ids=None) -> np.ndarray:
        from .clip_backend import encode_image, to_model_input

        batch = to_model_input(self.clip, images)
        return self.logits_from_embeddings(encode_image(self.clip, batch).cpu().numpy())
