"""Which images the students are fit on, and which are held out to measure them.

A student fit and scored on the same images proves nothing, so every figure the app and the
CLI show is computed on held-out images. The split comes from the workspace's own split column
when it has one that separates images:

=======================================  ==================  =============================
split names in the manifest              students fit on      held out
=======================================  ==================  =============================
``train`` and anything else              ``train``           every other split
``val`` and ``test`` (no ``train``)      ``val``             ``test`` and any other split
one name only (or none)                  a seeded, class-stratified 80 % ("train")  the other 20 % ("heldout")
=======================================  ==================  =============================

The seeded split is a pure function of the labels and the seed, so it is the same on every
load; ``assign_heldout`` writes it into a new workspace's split column, where it is recorded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

HELDOUT_FRACTION = 0.2
SEED = 0
TRAIN, HELDOUT = "train", "heldout"


@dataclass(frozen=True)
class Split:
    """fit, held_out : bool arrays of shape (n_images,), disjoint, covering every image."""

    fit: np.ndarray
    held_out: np.ndarray
    rule: str  # how the split was chosen, in words, for the views

    @property
    def n_fit(self) -> int:
        return int(self.fit.sum())

    @property
    def n_held_out(self) -> int:
        return int(self.held_out.sum())

    @property
    def digest(self) -> str:
        """Identifies the fit rows, so statistics or students cached for another split are refused."""
        return hashlib.blake2b(np.packbits(self.fit).tobytes(), digest_size=12).hexdigest()


def stratified_heldout(labels: np.ndarray, fraction: float = HELDOUT_FRACTION, seed: int = SEED) -> np.ndarray:
    """A seeded held-out mask of shape (n_images,): about ``fraction`` of the images of each stratum.

    An image's stratum is its rarest positive class (or "no class"), so rare classes still get
    held-out examples. Each stratum of two or more images gives at least one.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1; got {fraction!r}")
    labels = np.asarray(labels, dtype=bool)
    n, k = labels.shape
    counts = labels.sum(axis=0)
    rarity = np.where(labels, counts[None, :], n + 1)  # an absent class is never the rarest
    strata = np.where(labels.any(axis=1), rarity.argmin(axis=1), k)
    rng = np.random.default_rng(seed)
    held_out = np.zeros(n, dtype=bool)
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        take = int(round(members.size * fraction))
        if members.size >= 2:
            take = min(max(take, 1), members.size - 1)
        held_out[members[:take]] = True
    return held_out


def workspace_split(splits: np.ndarray, labels: np.ndarray) -> Split:
    """The fit / held-out split of a workspace from its split column and labels (see the module docstring)."""
    splits = np.asarray(splits).astype(str)
    names = set(np.unique(splits).tolist())
    if len(names) > 1 and TRAIN in names:
        fit, rule = splits == TRAIN, "fit on the 'train' split, measured on the others"
    elif len(names) > 1 and {"val", "test"} <= names:
        fit, rule = splits == "val", "fit on the 'val' split, measured on the others"
    else:
        fit = ~stratified_heldout(labels)
        rule = f"fit on a seeded, class-stratified {1 - HELDOUT_FRACTION:.0%} of the images, measured on the rest"
    fit.setflags(write=False)
    held_out = ~fit
    held_out.setflags(write=False)
    return Split(fit, held_out, rule)


def assign_heldout(splits: list[str], labels: np.ndarray) -> list[str]:
    """The split column a new workspace records: kept when it already separates fit and held-out
    images, else the seeded, class-stratified split written as "train" / "heldout"."""
    names = set(splits)
    if len(names) > 1 and (TRAIN in names or {"val", "test"} <= names):
        return list(splits)
    held_out = stratified_heldout(labels)
    return [HELDOUT if h else TRAIN for h in held_out]
