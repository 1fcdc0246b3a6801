"""Image sets with labels: PASCAL VOC (VOCdevkit layout) and a folder of images plus a CSV."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from .store.metadata import MAX_CLASSES, MAX_NAME_LENGTH
from .store.validation import SPLITS_ALLOWED_CHARS, check_relative_paths, image_file
from .store.workspace import WorkspaceError, safe_join

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


class DatasetError(ValueError):
    """A dataset whose layout or labels cannot be used; the message names what is missing."""


@dataclass(frozen=True)
class ImageSet:
    """Images to extract: ids, paths relative to ``root``, splits, and multi-hot labels (n, k)."""

    root: Path
    image_ids: list[str]
    paths: list[str]
    splits: list[str]
    labels: np.ndarray
    classes: tuple[str, ...]
    workspace_root: Path | None = None  # where a workspace's own images (uploads) are, for its paths

    def __len__(self) -> int:
        return len(self.image_ids)

    def absolute_path(self, i: int) -> Path:
        return image_file(self.root, self.workspace_root, self.paths[i])

    def subset(self, rows: Sequence[int]) -> ImageSet:
        rows = list(rows)
        return ImageSet(
            self.root,
            [self.image_ids[r] for r in rows],
            [self.paths[r] for r in rows],
            [self.splits[r] for r in rows],
            self.labels[rows],
            self.classes,
            self.workspace_root,
        )


def load_voc(
    root: str | os.PathLike, splits: Sequence[str] = ("train", "val"), classes: Sequence[str] = VOC_CLASSES
) -> ImageSet:
    """PASCAL VOC in its VOCdevkit layout: ``root`` holds JPEGImages/ and ImageSets/Main/.

    Labels come from ``ImageSets/Main/<class>_<split>.txt`` (1 present, 0 difficult — counted
    present, -1 absent); the images of a split from ``ImageSets/Main/<split>.txt``.
    """
    root = Path(root)
    main = root / "ImageSets" / "Main"
    for needed in (root / "JPEGImages", main):
        if not needed.is_dir():
            raise DatasetError(
                f"{root} is not a VOC root: missing folder {needed.relative_to(root)}/ "
                "(point --images at VOCdevkit/VOC2012)"
            )
    ids, split_of = [], []
    for split in splits:
        listing = main / f"{split}.txt"
        if not listing.is_file():
            raise DatasetError(f"{root}: missing {listing.relative_to(root)} for split {split!r}")
        for line in listing.read_text().split():
            ids.append(line)
            split_of.append(split)
    if not ids:
        raise DatasetError(f"{root}: the splits {list(splits)} list no images")
    index = {i: r for r, i in enumerate(ids)}
    labels = np.zeros((len(ids), len(classes)), dtype=np.uint8)
    for c, name in enumerate(classes):
        for split in splits:
            path = main / f"{name}_{split}.txt"
            if not path.is_file():
                raise DatasetError(f"{root}: missing {path.relative_to(root)} (labels of class {name!r})")
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[0] in index and parts[1] in ("0", "1"):
                    labels[index[parts[0]], c] = 1
    paths = [f"JPEGImages/{i}.jpg" for i in ids]
    return ImageSet(root.resolve(), ids, paths, split_of, labels, tuple(classes))


def load_folder(images_dir: str | os.PathLike, labels_csv: str | os.PathLike) -> ImageSet:
    """A folder of images and a CSV of labels.

    CSV columns: ``image`` (path relative to the folder), optional ``image_id`` (default: the
    path), optional ``split`` (default "all"), and labels either as a ``labels`` column of
    ``;``-separated class names or as one 0/1 column per class.
    """
    root = Path(images_dir).resolve()
    if not root.is_dir():
        raise DatasetError(f"Image folder not found: {images_dir}")
    if Path(labels_csv).is_dir():
        raise DatasetError(f"Labels file {labels_csv} is a folder; expected a CSV file")
    try:
        frame = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DatasetError(f"Labels file not found: {labels_csv}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DatasetError(f"{labels_csv}: not a readable CSV ({' '.join(str(exc).split())[:300]})") from None
    _check_header(labels_csv)
    if "image" not in frame.columns:
        raise DatasetError(
            f"{labels_csv}: missing column 'image' (paths relative to {root}); has {list(frame.columns)}"
        )
    paths = [p.strip() for p in frame["image"]]
    ids = [i.strip() for i in frame["image_id"]] if "image_id" in frame.columns else paths
    splits = [s.strip().lower() or "all" for s in frame["split"]] if "split" in frame.columns else ["all"] * len(paths)
    if not paths:
        raise DatasetError(f"{labels_csv}: no rows")
    seen: set[str] = set()
    for i in ids:
        if not i:
            raise DatasetError(f"{labels_csv}: empty image id")
        if i in seen:
            raise DatasetError(f"{labels_csv}: duplicate image id {i!r}")
        seen.add(i)
    bad_splits = sorted({s for s in splits if not set(s) <= SPLITS_ALLOWED_CHARS})
    if bad_splits:
        raise DatasetError(
            f"{labels_csv}: split {bad_splits[0][:40]!r} is not allowed; expected lower-case letters, digits, _ or -"
        )
    try:
        check_relative_paths(paths, Path(labels_csv))
        for p in paths:
            safe_join(root, p)
    except WorkspaceError as exc:
        raise DatasetError(f"{labels_csv}: {exc.problem}") from None
    if "labels" in frame.columns:
        names = [[n.strip() for n in cell.split(";") if n.strip()] for cell in frame["labels"]]
        classes = tuple(sorted({n for row in names for n in row}))
        if not classes:
            raise DatasetError(f"{labels_csv}: the 'labels' column names no classes")
        col = {c: j for j, c in enumerate(classes)}
        labels = np.zeros((len(paths), len(classes)), dtype=np.uint8)
        for r, row in enumerate(names):
            labels[r, [col[n] for n in row]] = 1
    else:
        classes = tuple(c for c in frame.columns if c not in ("image", "image_id", "split"))
        if not classes:
            raise DatasetError(f"{labels_csv}: no label columns (give a 'labels' column or one 0/1 column per class)")
        raw = frame[list(classes)].apply(lambda s: s.str.strip())
        bad = ~raw.isin(["0", "1"])
        if bad.to_numpy().any():
            r, c = np.argwhere(bad.to_numpy())[0]
            raise DatasetError(
                f"{labels_csv}: label for image {ids[r]!r}, class {classes[c]!r} is {raw.iat[r, c]!r}; expected 0 or 1"
            )
        labels = raw.to_numpy().astype(np.uint8)
    _check_classes(classes, labels_csv)
    return ImageSet(root, ids, paths, splits, labels, classes)


def _check_header(labels_csv: str | os.PathLike) -> None:
    """Every column named, once. pandas would read a blank header as a class 'Unnamed: 2' and a
    repeated one as 'cat.1': classes the teacher does not have, taken silently."""
    import csv

    with open(labels_csv, encoding="utf-8-sig", newline="") as handle:
        header = [name.strip() for name in next(csv.reader(handle), [])]
    blank = next((i for i, name in enumerate(header, 1) if not name), None)
    if blank is not None:
        raise DatasetError(
            f"{labels_csv}: column {blank} has no name; expected a name in the first row for every column"
        )
    repeated = next((name for name in header if header.count(name) > 1), None)
    if repeated is not None:
        raise DatasetError(f"{labels_csv}: column {repeated[:40]!r} appears more than once; expected each column once")


def _check_classes(classes: Sequence[str], source: str | os.PathLike) -> None:
    """Class names a workspace can hold: at most ``MAX_CLASSES``, each 1..``MAX_NAME_LENGTH`` characters."""
    if len(classes) > MAX_CLASSES:
        raise DatasetError(f"{source}: {len(classes):,} classes; the limit is {MAX_CLASSES:,}")
    long = next((c for c in classes if len(c) > MAX_NAME_LENGTH), None)
    if long is not None:
        raise DatasetError(
            f"{source}: class name {long[:40]!r}... has {len(long)} characters; the limit is {MAX_NAME_LENGTH}"
        )


def load_dataset(
    images: str | os.PathLike, labels_csv: str | os.PathLike | None = None, splits: Sequence[str] = ("train", "val")
) -> ImageSet:
    """VOC layout if ``images`` has JPEGImages/ and no CSV is given, else folder + CSV."""
    if labels_csv is None:
        if (Path(images) / "JPEGImages").is_dir():
            return load_voc(images, splits)
        raise DatasetError(f"{images}: not a VOC root (no JPEGImages/); give a labels CSV with --labels")
    return load_folder(images, labels_csv)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_ZIP_IMAGES = 100_000
MAX_ZIP_BYTES = 4 * 2**30  # unpacked


def load_unlabelled(images_dir: str | os.PathLike, classes: Sequence[str]) -> ImageSet:
    """Every image (``IMAGE_SUFFIXES``) under ``images_dir``, recursively, in path order, with no
    labels: the students mimic the teacher, which needs no labels; ``classes`` name the teacher's
    outputs in order. Image ids are the paths; the split is "all" (``store.split`` then holds out a
    seeded share)."""
    root = Path(images_dir).resolve()
    if not root.is_dir():
        raise DatasetError(f"Image folder not found: {images_dir}")
    classes = tuple(c.strip() for c in classes if c.strip())
    if not classes:
        raise DatasetError("no class names given; name the teacher's classes, in its output order")
    if len(set(classes)) != len(classes):
        repeated = next(c for c in classes if classes.count(c) > 1)
        raise DatasetError(
            f"class name {repeated[:40]!r} is given twice; expected each class once, in the teacher's order"
        )
    _check_classes(classes, "class names")
    paths = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not paths:
        raise DatasetError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or its sub-folders")
    return ImageSet(root, paths, paths, ["all"] * len(paths), np.zeros((len(paths), len(classes)), np.uint8), classes)


def unpack_zip(archive: str | os.PathLike | IO[bytes], folder: str | os.PathLike) -> int:
    """Unpack the images of a zip into ``folder`` (made if missing); returns how many.

    Only image files are taken; members with absolute paths or ``..``, more than
    ``MAX_ZIP_IMAGES`` images or ``MAX_ZIP_BYTES`` unpacked are refused (DatasetError, before
    anything is written), so an upload cannot write outside ``folder`` or fill the disk.
    """
    import zipfile

    folder = Path(folder)
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [
                m for m in bundle.infolist() if not m.is_dir() and Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
            ]
            bad = next(
                (m.filename for m in members if m.filename.startswith(("/", "\\")) or ".." in m.filename.split("/")),
                None,
            )
            if bad is not None:
                raise DatasetError(f"zip member {bad[:120]!r} is not allowed; expected paths inside the archive")
            if not members:
                raise DatasetError(f"the zip holds no images ({', '.join(IMAGE_SUFFIXES)})")
            if len(members) > MAX_ZIP_IMAGES:
                raise DatasetError(f"the zip holds {len(members):,} images; the limit is {MAX_ZIP_IMAGES:,}")
            total = sum(m.file_size for m in members)
            if total > MAX_ZIP_BYTES:
                raise DatasetError(
                    f"the zip unpacks to {total / 2**30:.1f} GiB; the limit is {MAX_ZIP_BYTES // 2**30} GiB"
                )
            for member in members:
                target = folder / member.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"not a readable zip file ({exc})") from None
    return len(members)
