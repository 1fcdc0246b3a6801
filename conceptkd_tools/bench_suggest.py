"""``bench suggest``: how long the exact scan of every candidate edit takes, one class and all.

Default: the embedded demo. ``synthetic_voc``: the PASCAL VOC-sized synthetic problem
(11,540 images × 584 concepts × 20 classes, split train / val / test), written to a folder once.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

VOC_SHAPE = (11540, 584, 20)


def run(workspace: str | None = None, synthetic_voc: bool = False, folder: str | None = None) -> dict:
    from conceptkd_core.explorer import new_session, open_explorer
    from conceptkd_core.store.workspace import META_FILE
    from conceptkd_core.students.suggest import suggest

    from .demo import DEMO_DIR
    from .synthetic import write_synthetic_workspace

    if synthetic_voc:
        root = Path(folder or tempfile.gettempdir()) / "conceptkd-synthetic-voc"
        if not (root / META_FILE).is_file():
            write_synthetic_workspace(root, *VOC_SHAPE, seed=0)
        workspace = str(root)
    explorer = open_explorer(workspace or DEMO_DIR / "workspace")
    session = new_session(explorer, autosave=False)
    t0 = time.perf_counter()
    first = suggest(session, 0)
    one = time.perf_counter() - t0
    counts, kkt = [len(first)], [float(first["kkt_violation"].max())]
    t0 = time.perf_counter()
    for c in range(1, len(session.classes)):
        table = suggest(session, c)
        counts.append(len(table))
        kkt.append(float(table["kkt_violation"].max()))
    rest = time.perf_counter() - t0
    result = {
        "bench": "suggest",
        "workspace": "synthetic-voc" if synthetic_voc else (workspace or "demo"),
        "n_images": explorer.workspace.n_images,
        "n_concepts": explorer.workspace.n_concepts,
        "n_classes": len(session.classes),
        "held_out_images": explorer.split.n_held_out,
        "scan_s_one_class": round(one, 3),
        "scan_s_all_classes": round(one + rest, 3),
        "candidates_per_class": min(counts),
        "candidates_total": sum(counts),
        "best_held_out_gain_class0": round(float(first["held_out_gain"].iloc[0]), 4),
        # Every candidate is an exact re-fit: its gradient mapping is within the solver's tolerance.
        "max_kkt_violation": max(kkt),
        "solver_tol": session.bank.tol,
    }
    print(json.dumps(result), flush=True)
    return result
