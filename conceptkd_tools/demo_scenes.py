"""Clipart scenes for the embedded demo: emoji objects composed on simple backgrounds.

Objects are Noto Color Emoji glyphs (Debian ``fonts-noto-color-emoji``, SIL OFL 1.1) rendered
with Pillow, plus a dining table drawn here (no emoji exists for one). Each object has its
words: the Unicode character name (``unicodedata``) and the class it stands for. A scene has
1-4 objects at random scales and positions (overlaps allowed) on one of several backgrounds,
and keeps its labels, per-object masks and a caption naming the objects and the background.
Only the demo *build* needs the font; what it produces is committed.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# CONCEPTKD_EMOJI_FONT points a machine without the Debian package (a GPU box) at a copy of the font.
EMOJI_FONT = Path(os.environ.get("CONCEPTKD_EMOJI_FONT", "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"))
SCENE_SIZE = 128

# Class name (PASCAL VOC) -> (the words used in prompts, emoji code points standing for it).
CLASS_EMOJI: dict[str, tuple[str, tuple[str, ...]]] = {
    "aeroplane": ("aeroplane", ("\u2708", "\U0001f6e9", "\U0001f6eb", "\U0001f6ec")),
    "bicycle": ("bicycle", ("\U0001f6b2",)),
    "bird": (
        "bird",
        (
            "\U0001f426",
            "\U0001f424",
            "\U0001f427",
            "\U0001f985",
            "\U0001f986",
            "\U0001f989",
            "\U0001f54a",
            "\U0001f99c",
            "\U0001f413",
        ),
    ),
    "boat": ("boat", ("\u26f5", "\U0001f6a4", "\U0001f6e5", "\U0001f6a2", "\U0001f6f6", "\u26f4")),
    "bottle": ("bottle", ("\U0001f37e", "\U0001f37c", "\U0001f9f4")),
    "bus": ("bus", ("\U0001f68c", "\U0001f68d", "\U0001f68e", "\U0001f690")),
    "car": ("car", ("\U0001f697", "\U0001f698", "\U0001f695", "\U0001f693", "\U0001f3ce", "\U0001f699")),
    "cat": ("cat", ("\U0001f408", "\U0001f431")),
    "chair": ("chair", ("\U0001fa91", "\U0001f4ba")),
    "cow": ("cow", ("\U0001f404", "\U0001f42e", "\U0001f402", "\U0001f403")),
    "diningtable": ("dining table", ()),  # drawn by draw_table
    "dog": ("dog", ("\U0001f415", "\U0001f436", "\U0001f429", "\U0001f9ae")),
    "horse": ("horse", ("\U0001f40e", "\U0001f434", "\U0001f3c7")),
    "motorbike": ("motorbike", ("\U0001f3cd", "\U0001f6f5")),
    "person": (
        "person",
        (
            "\U0001f9cd",
            "\U0001f6b6",
            "\U0001f3c3",
            "\U0001f469",
            "\U0001f468",
            "\U0001f9d2",
            "\U0001f467",
            "\U0001f466",
            "\U0001f9d1",
            "\U0001f46e",
            "\U0001f483",
            "\U0001f57a",
        ),
    ),
    "pottedplant": ("potted plant", ("\U0001fab4", "\U0001f335")),
    "sheep": ("sheep", ("\U0001f411", "\U0001f40f")),
    "sofa": ("sofa", ("\U0001f6cb",)),
    "train": (
        "train",
        (
            "\U0001f686",
            "\U0001f682",
            "\U0001f684",
            "\U0001f685",
            "\U0001f688",
            "\U0001f687",
            "\U0001f68a",
            "\U0001f683",
        ),
    ),
    "tvmonitor": ("tv monitor", ("\U0001f4fa", "\U0001f5a5")),
}
# Objects that belong to no class: they make scenes less trivial and concepts richer.
DISTRACTORS = (
    "\U0001f333",
    "\U0001f3e0",
    "\u2600",
    "\u26bd",
    "\U0001f34e",
    "\U0001f338",
    "\U0001f319",
    "\u2601",
    "\U0001f388",
    "\U0001f381",
    "\U0001f4da",
    "\u2602",
    "\U0001f344",
    "\U0001f31f",
    "\U0001f36a",
    "\U0001f3b8",
)
BACKGROUNDS = ("plain", "gradient", "noise", "sky", "grass", "sea", "road", "room")


def emoji_words(char: str) -> str:
    """The emoji's Unicode name as lower-case words ("POLICE CAR" -> "police car")."""
    return unicodedata.name(char[0]).lower().replace("-", " ")


@dataclass
class Sprite:
    image: Image.Image  # RGBA, cropped to the object
    class_index: int  # -1 for a distractor
    words: str  # what it is called in captions


def _render_emoji(char: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((10, 10), char, font=font, embedded_color=True)
    return canvas.crop(canvas.getbbox())


def draw_table(rng: np.random.Generator) -> Image.Image:
    """A small dining table (top, legs, plates), drawn in one of a few wood colours."""
    wood = [(139, 90, 43), (160, 110, 60), (101, 67, 33), (190, 140, 90)][rng.integers(4)]
    image = Image.new("RGBA", (120, 90), (0, 0, 0, 0))
    d = ImageDraw.Draw(image)
    d.rectangle((4, 20, 116, 34), fill=wood + (255,), outline=(60, 40, 20, 255))
    for x in (12, 100):
        d.rectangle((x, 34, x + 8, 88), fill=wood + (255,), outline=(60, 40, 20, 255))
    for x in (24, 70):
        d.ellipse((x, 10, x + 26, 24), fill=(245, 245, 245, 255), outline=(150, 150, 150, 255))
    return image


def load_sprites(classes: tuple[str, ...], seed: int = 0) -> list[Sprite]:
    if not EMOJI_FONT.is_file():
        raise FileNotFoundError(
            f"{EMOJI_FONT} is missing: the demo build needs Debian's fonts-noto-color-emoji "
            "(apt-get install fonts-noto-color-emoji)"
        )
    font = ImageFont.truetype(str(EMOJI_FONT), 109)
    rng = np.random.default_rng(seed)
    sprites = []
    for c, name in enumerate(classes):
        word, chars = CLASS_EMOJI[name]
        for char in chars:
            sprites.append(Sprite(_render_emoji(char, font), c, emoji_words(char)))
        if name == "diningtable":
            sprites += [Sprite(draw_table(rng), c, "dining table") for _ in range(4)]
    sprites += [Sprite(_render_emoji(ch, font), -1, emoji_words(ch)) for ch in DISTRACTORS]
    return sprites


def _background(kind: str, rng: np.random.Generator, size: int) -> Image.Image:
    def colour():
        return tuple(int(v) for v in rng.integers(0, 256, 3))

    if kind == "plain":
        return Image.new("RGB", (size, size), colour())
    if kind == "noise":
        base = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        return Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    t = np.linspace(0, 1, size)[:, None, None]
    if kind == "gradient":
        a, b = np.array(colour()), np.array(colour())
        arr = a * (1 - t) + b * t
        return Image.fromarray(np.broadcast_to(arr, (size, size, 3)).astype(np.uint8))
    horizon = int(size * rng.uniform(0.35, 0.65))
    top, bottom = {
        "sky": ((110, 170, 235), (200, 225, 250)),
        "grass": ((130, 190, 240), (70, 150, 60)),
        "sea": ((150, 200, 245), (30, 90, 170)),
        "road": ((160, 200, 235), (90, 90, 95)),
        "room": ((225, 210, 180), (150, 105, 70)),
    }[kind]
    jitter = rng.integers(-20, 21, 3)
    arr = np.zeros((size, size, 3))
    arr[:horizon] = np.clip(np.array(top) + jitter, 0, 255)
    arr[horizon:] = np.clip(np.array(bottom) + jitter, 0, 255)
    if kind == "sky":
        arr[:] = np.array(top) * (1 - t) + np.array(bottom) * t
    if kind == "road":
        arr[horizon + (size - horizon) // 2 - 1 : horizon + (size - horizon) // 2 + 2, ::12] = 240
    return Image.fromarray(arr.astype(np.uint8))


@dataclass
class Scene:
    image: Image.Image
    labels: np.ndarray  # (k,) uint8
    masks: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (class index, bool mask)
    object_words: list[str] = field(default_factory=list)
    background: str = "plain"

    def caption(self, rng: np.random.Generator, class_words: tuple[str, ...], classes_only: bool = False) -> str:
        words = [w for w in self.object_words]
        rng.shuffle(words)
        things = " and ".join(f"a {w}" for w in words)
        place = {
            "plain": "",
            "gradient": "",
            "noise": "",
            "sky": " in the sky",
            "grass": " on grass",
            "sea": " at sea",
            "road": " on a road",
            "room": " in a room",
        }[self.background]
        return f"a picture of {things}{place}."


def compose_scene(
    sprites: list[Sprite],
    n_classes: int,
    rng: np.random.Generator,
    size: int = SCENE_SIZE,
    max_objects: int = 4,
    single: bool = False,
    class_words: tuple[str, ...] = (),
) -> Scene:
    """One scene: 1-max_objects objects (at least one of a class), with masks and labels."""
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    image = _background(background, rng, size).convert("RGBA")
    class_sprites = [s for s in sprites if s.class_index >= 0]
    others = [s for s in sprites if s.class_index < 0]
    count = 1 if single else int(rng.integers(1, max_objects + 1))
    chosen = [class_sprites[rng.integers(len(class_sprites))]]
    for _ in range(count - 1):
        pool = others if rng.random() < 0.25 else class_sprites
        chosen.append(pool[rng.integers(len(pool))])
    labels = np.zeros(n_classes, np.uint8)
    masks, words = [], []
    for sprite in chosen:
        scale = rng.uniform(0.32, 0.6) * size if not single else rng.uniform(0.45, 0.75) * size
        w, h = sprite.image.size
        factor = scale / max(w, h)
        obj = sprite.image.resize((max(4, int(w * factor)), max(4, int(h * factor))), Image.Resampling.LANCZOS)
        if rng.random() < 0.5:
            obj = obj.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = int(rng.integers(0, size - obj.size[0] + 1))
        y = int(rng.integers(0, size - obj.size[1] + 1))
        image.alpha_composite(obj, (x, y))
        alpha = np.zeros((size, size), bool)
        alpha[y : y + obj.size[1], x : x + obj.size[0]] = np.asarray(obj)[..., 3] > 96
        for _, earlier in masks:  # later objects occlude earlier ones
            earlier &= ~alpha
        masks.append((sprite.class_index, alpha))
        if sprite.class_index >= 0:
            labels[sprite.class_index] = 1
            words.append(class_words[sprite.class_index] if class_words and rng.random() < 0.6 else sprite.words)
        else:
            words.append(sprite.words)
    return Scene(image.convert("RGB"), labels, masks, words, background)
