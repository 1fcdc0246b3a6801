"""Import open_clip on the CPU torch build that ConceptKD pins (see README "Why torch 2.13 (CPU)").

PyPI's torchvision 0.28 wheel is built against CUDA torch; next to the CPU torch 2.13 wheel its
compiled ops library does not load, and torchvision's import then fails while registering fake
kernels for ``torchvision::nms`` and ``torchvision::qnms``. ConceptKD uses none of those ops
(open_clip needs only torchvision's image transforms), so when - and only when - the import
fails for that reason, the two op schemas are declared and the import is retried.
"""

from __future__ import annotations

import sys
import threading

_lock = threading.Lock()
_schemas = None  # keeps the torch.library.Library alive for the life of the process


def _forget_torchvision() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def import_open_clip():
    """Return the ``open_clip`` module, importing torchvision safely first."""
    global _schemas
    with _lock:
        try:
            import torchvision  # noqa: F401
        except RuntimeError as exc:
            if "torchvision::nms" not in str(exc):
                raise
            import torch

            _forget_torchvision()
            _schemas = torch.library.Library("torchvision", "DEF")
            for op in ("nms", "qnms"):
                _schemas.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            import torchvision  # noqa: F401,F811
        import open_clip

        return open_clip
