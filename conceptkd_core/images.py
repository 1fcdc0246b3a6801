"""Reading user images safely (size limits, decompression bombs, odd modes, EXIF rotation), and
turning them into a model's input (made square by a resize mode, then per-channel normalisation)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

MAX_FILE_BYTES = 50 * 2**20
MAX_PIXELS = 50_000_000  # ~7000 x 7000; larger declared sizes are refused before decoding
# How a model's square input is made from an image of any shape: "squash" resizes the whole image
# to S x S (aspect ratio lost; what extraction and every teacher did before resize was recorded),
# "center-crop" resizes the shorter side to S and cuts the middle square (torchvision's
# Resize + CenterCrop), "letterbox" resizes the longer side to S and pads with the mean colour.
RESIZE_MODES = ("squash", "center-crop", "letterbox")


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and the reason."""


def load_rgb(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES) -> Image.Image:
    """Open an image as 8-bit RGB, upright per its EXIF orientation. Raises ImageError."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size == 0:
        raise ImageError(f"{path}: empty file")
    if size > max_bytes:
        raise ImageError(f"{path}: file is {size / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB limit")
    try:
        with _open_unchecked(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{path}: declared size {width}x{height} ({width * height:,} pixels) is over the "
                    f"{max_pixels:,}-pixel limit"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None


# PIL's decompression-bomb check is a process-wide setting; it is switched off only while a header
# is read, one thread at a time, so that no other opener sees it off for longer than that.
_PIL_LIMIT = threading.Lock()


def _open_unchecked(path: Path) -> Image.Image:
    """``Image.open`` (the header only; nothing is decoded) without PIL's decompression-bomb check:
    PIL raises before the declared size can be read, so its refusal names neither the size nor our
    limit. ``load_rgb`` checks the size itself before decoding."""
    with _PIL_LIMIT:
        pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = pil_limit


def load_rgb_bytes(data: bytes, name: str) -> Image.Image:
    """``load_rgb`` of an uploaded file's bytes; errors name the upload, not a temporary path."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{Path(name).suffix.lower()[:10]}"
        path.write_bytes(data)
        try:
            return load_rgb(path)
        except ImageError as exc:
            raise ImageError(str(exc).replace(str(path), name)) from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / top)).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def square_resize(image: Image.Image, size: int) -> np.ndarray:
    """The whole image resized to size x size (no crop, so segments cover every pixel), uint8 (S, S, 3)."""
    return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def to_tensor(
    images: Sequence[Image.Image | np.ndarray],
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
    device: str = "cpu",
    resize: str = "squash",
) -> torch.Tensor:
    """A model's input batch of shape (B, 3, S, S), float32: each image made square at
    ``image_size`` by ``resize`` (``RESIZE_MODES``), scaled to [0, 1], then ``(x - mean) / std`` per channel.

    The one place images become tensors, so CLIP, every teacher and the demo's training see the
    same arithmetic. ``images`` are PIL images or uint8 arrays (H, W, 3); arrays already of
    size S x S are used as they are (extraction resizes once for CLIP and the superpixels).
    Torch is imported here, not at module level, so browsing a workspace never loads it.
    """
    import torch

    arrays = [make_square(image, image_size, resize, resample, mean) for image in images]
    batch = torch.from_numpy(np.stack(arrays)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    mean_ = torch.tensor(tuple(mean), device=device).view(1, 3, 1, 1)
    std_ = torch.tensor(tuple(std), device=device).view(1, 3, 1, 1)
    return (batch - mean_) / std_


def make_square(
    image: Image.Image | np.ndarray,
    size: int,
    resize: str = "squash",
    resample: Image.Resampling = Image.Resampling.BILINEAR,
    pad: Sequence[float] = (0.5, 0.5, 0.5),
) -> np.ndarray:
    """``image`` as uint8 (size, size, 3) by the ``resize`` mode (``RESIZE_MODES``); ``pad`` is the
    letterbox colour in [0, 1] (a model's mean, so padding normalises to zero)."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"Got resize {resize!r}; expected one of {', '.join(RESIZE_MODES)}")
    if isinstance(image, np.ndarray):
        if image.shape[:2] == (size, size):
            return image
        image = Image.fromarray(image)
    width, height = image.size
    if resize == "squash" or width == height:
        return np.asarray(image.resize((size, size), resample))
    scale = size / (min if resize == "center-crop" else max)(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = image.resize(new, resample)
    if resize == "center-crop":
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        return np.asarray(resized.crop((left, top, left + size, top + size)))
    colour = tuple(int(round(255 * float(v))) for v in pad)
    canvas = Image.new("RGB", (size, size), colour)
    canvas.paste(resized, ((size - new[0]) // 2, (size - new[1]) // 2))
    return np.asarray(canvas)


@dataclass(frozen=True)
class Preprocessing:
    """How a model wants its images: the size and the way they are made square (``resize``, one of
    ``RESIZE_MODES``) and the per-channel mean / std.

    A workspace records it with its teacher (``identity``), so the same model can score new
    images later exactly as it scored the extracted ones. Mean and std are held at float32, the
    precision the model sees, so a recorded value reads back equal to the one that was used.
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "squash"

    FIELDS = ("image_size", "mean", "std", "resize")

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", int(self.image_size))
        object.__setattr__(self, "mean", tuple(float(np.float32(v)) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(np.float32(v)) for v in self.std))
        if self.image_size < 1 or len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(
                f"Got image_size {self.image_size}, mean {list(self.mean)}, std {list(self.std)}; "
                "expected a size >= 1 and three means and three positive stds (R, G, B)"
            )
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"Got resize {self.resize!r}; expected one of {', '.join(RESIZE_MODES)}")

    @classmethod
    def from_identity(cls, identity: dict, default: Preprocessing) -> Preprocessing:
        """The preprocessing recorded in ``identity``; ``default``'s for what it does not record."""
        return cls(*(identity.get(name, getattr(default, name)) for name in cls.FIELDS))

    @property
    def identity(self) -> dict:
        """What a workspace records. "squash" is left out: workspaces recorded before the resize
        mode existed were squashed, so their records (and the settings hashed from them) stay valid."""
        recorded = {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}
        return recorded if self.resize == "squash" else recorded | {"resize": self.resize}

    def to_tensor(
        self,
        images: Sequence[Image.Image | np.ndarray],
        device: str = "cpu",
        resample: Image.Resampling = Image.Resampling.BILINEAR,
    ) -> torch.Tensor:
        """``to_tensor`` with this preprocessing."""
        return to_tensor(
            images, self.image_size, self.mean, self.std, resample=resample, device=device, resize=self.resize
        )


LETTERBOX_FILL = (242, 244, 247)  # the app's secondary background, so the padding reads as empty space


def letterbox(
    image: Image.Image | np.ndarray, box: tuple[int, int], fill: tuple[int, int, int] = LETTERBOX_FILL
) -> np.ndarray:
    """``image`` scaled to fit inside ``box`` (width, height), aspect ratio kept, centred on ``fill``:
    uint8 of shape (height, width, 3) whatever the image's size or shape.

    A page lays images out in fixed boxes, so a 1 x 2000 strip or a 3000 x 2 line cannot stretch
    a row or a column to thousands of pixels; every side keeps at least one pixel of the image.
    """
    width, height = int(box[0]), int(box[1])
    if width < 1 or height < 1:
        raise ValueError(f"box must be at least 1 x 1 pixels; got {width} x {height}")
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8)) if isinstance(image, np.ndarray) else image
    picture = picture.convert("RGB")
    scale = min(width / picture.width, height / picture.height)
    size = (max(1, min(width, round(picture.width * scale))), max(1, min(height, round(picture.height * scale))))
    canvas = Image.new("RGB", (width, height), fill)
    canvas.paste(picture.resize(size, Image.Resampling.LANCZOS), ((width - size[0]) // 2, (height - size[1]) // 2))
    return np.asarray(canvas)
