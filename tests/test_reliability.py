"""Many sessions at once, and crashes mid-write: nobody sees another's edits, nothing is lost."""

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conceptkd_core.explorer import open_explorer
from conceptkd_core.students.session import TuningSession
from conceptkd_tools.demo import DEMO_DIR
from conceptkd_tools.tune_board_driver import board, move_slider

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_copy(tmp_path_factory):
    copy = tmp_path_factory.mktemp("reliability") / "demo"
    shutil.copytree(DEMO_DIR, copy, ignore=shutil.ignore_patterns("sessions"))
    return copy / "workspace"


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def shared_digest(explorer) -> str:
    return digest(
        explorer.workspace.concept_matrix,
        explorer.workspace.teacher_logits,
        explorer.base_bank.coef_,
        explorer.stats.gram,
        explorer.stats.xty,
    )


def check_isolated(explorer, sessions) -> None:
    assert len({s.session_id for s in sessions}) == len(sessions)
    for i, session in enumerate(sessions):
        assert [e.classes for e in session.events] == [[i]]  # only its own edit
        untouched = [c for c in range(len(explorer.classes)) if c != i]
        np.testing.assert_array_equal(session.bank.coef_[untouched], explorer.base_bank.coef_[untouched])
        saved = json.loads(session.autosave_path.read_text())
        assert saved["session_id"] == session.session_id and len(saved["events"]) == 1


def test_twenty_threads_tuning_one_shared_workspace(demo_copy):
    """20 sessions over one cached workspace, each in its own thread, each tuning its own class."""
    from conceptkd_core.explorer import new_session

    explorer = open_explorer(demo_copy)
    before = shared_digest(explorer)

    def tune(i: int):
        session = new_session(explorer)
        j = int(np.argmax(np.abs(session.bank.coef_[i])))
        for value in (0.5, -0.25, 0.0, 1.0):  # several edits, then back to one
            session.set_weight(i, j, value)
        session.revert(0)
        session.set_weight(i, j, 0.5 * float(session.bank.coef_[i, j]))  # drops the reverted edits
        return session

    with ThreadPoolExecutor(max_workers=20) as pool:
        sessions = list(pool.map(tune, range(20)))
    check_isolated(explorer, sessions)
    assert shared_digest(explorer) == before


def test_twenty_app_sessions_interleaved(demo_copy):
    """20 AppTest sessions of one server process, opened together, each moving a slider of its own class.

    (AppTest itself is not thread-safe, so its runs interleave on one thread; the threaded case
    is the test above, and real concurrent browsers are in test_browser.)"""
    from views.common import get_explorer

    explorer = get_explorer(str(demo_copy.resolve()))
    before = shared_digest(explorer)
    apps = []
    for name in explorer.classes:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["workspace_root"] = str(demo_copy.resolve())
        at.session_state["class"] = name
        at.run()
        at.switch_page("views/tune.py").run()
        apps.append(at)
    for at in apps:
        move_slider(at, round(board(at)["rows"][0]["weight"] * 0.5, 2))
        assert not at.exception, at.exception
    check_isolated(explorer, [at.session_state["tuning"] for at in apps])
    assert shared_digest(explorer) == before


AUTOSAVER = """
import sys
from conceptkd_core.explorer import open_explorer, new_session
explorer = open_explorer(sys.argv[1])
session = new_session(explorer)
session.autosave_path = __import__("pathlib").Path(sys.argv[2])
print("ready", flush=True)
i = 0
while True:  # edits until killed
    session.set_weight(i % 20, int(abs(session.bank.coef_[i % 20]).argmax()), 0.1 * (i % 7))
    i += 1
"""


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.1])
def test_sigkill_during_autosave_leaves_a_loadable_log(demo_copy, tmp_path, delay):
    target = tmp_path / "session.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", AUTOSAVER, str(demo_copy), str(target)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    explorer = open_explorer(demo_copy)
    ws = explorer.workspace
    restored = TuningSession.from_json(
        target.read_text(),
        explorer.base_bank.copy(),
        ws.concept_matrix,
        ws.teacher_logits,
        ws.labels,
        ws.classes,
        ws.vocabulary,
    )
    assert len(restored.events) >= 1


KILLER = """
import os, random, signal, sys
import conceptkd_core.store.atomic_io as aio
import conceptkd_core.extract.pipeline as ex
from conceptkd_core.cli import main
rng = random.Random(int(os.environ["KILL_SEED"]))
shards, point = rng.randint(0, 3), rng.choice(["before", "mid", "after", "assemble"])
if point == "assemble":  # die while the finished workspace is written: arrays on disk, metadata not yet
    import conceptkd_core.store.workspace as ws_mod
    ws_mod.atomic_write_json = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
real_write, real_replace, count = ex._write_shard, os.replace, [0]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def write(path, arrays):
    if count[0] == shards and point == "before":
        die()
    if count[0] == shards and point == "mid":
        aio.os.replace = lambda *a: die()  # the temp file is written, the rename never happens
    real_write(path, arrays)
    count[0] += 1
    if count[0] == shards + 1 and point == "after":
        die()
ex._write_shard = write
sys.exit(main(sys.argv[1:]))
"""


def test_extraction_killed_at_random_points_loses_and_repeats_nothing(tmp_path):
    from conceptkd_core.store.workspace import load_workspace

    from tiny_clip import make_tiny_checkpoint

    config, weights = make_tiny_checkpoint(tmp_path / "model")
    (tmp_path / "im").mkdir()
    from tiny_clip import write_scene

    for i in range(9):
        write_scene(tmp_path / "im" / f"{i}.png", i)
    (tmp_path / "labels.csv").write_text("image,labels\n" + "".join(f"{i}.png,{'ab'[i % 2]}\n" for i in range(9)))
    args = [
        "-m",
        "conceptkd_core",
        "extract",
        "--images",
        str(tmp_path / "im"),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--model",
        str(config),
        "--checkpoint",
        str(weights),
        "--vocabulary",
        str(ROOT / "conceptkd_core/vocabularies/davis2017.txt"),
        "--batch-size",
        "2",
    ]
    baseline = tmp_path / "baseline"
    # The uninterrupted reference run is independent of the killed ones: it runs beside them.
    with (tmp_path / "reference.log").open("wb") as log:  # a file, not a pipe: nothing waits on it being read
        reference = subprocess.Popen(
            [sys.executable] + args + ["--out", str(baseline)], cwd=ROOT, stdout=log, stderr=log
        )
    out = tmp_path / "ws"
    partial = out / ".extract"
    kills = 0
    for seed in (1, 3, 5, 0):  # before, mid-rename, after a shard; then while writing the workspace
        finished = {p.name: p.stat().st_mtime_ns for p in partial.glob("shard-*.npz")} if partial.is_dir() else {}
        run = subprocess.run(
            [sys.executable, "-c", KILLER] + args[2:] + ["--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            timeout=300,
            env={**__import__("os").environ, "KILL_SEED": str(seed)},
        )
        kills += run.returncode == -signal.SIGKILL
        if run.returncode == 0:
            break
        for name, mtime in finished.items():  # a finished shard is never computed again
            assert (partial / name).stat().st_mtime_ns == mtime
    assert kills == 4  # every planned kill happened
    if partial.is_dir():  # finish what the kills left
        final = subprocess.run(
            [sys.executable] + args + ["--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
        )
        assert final.returncode == 0, final.stderr
        computed, resumed = map(int, re.search(r"computed (\d+), resumed (\d+)", final.stdout).groups())
        assert resumed > 0 and computed + resumed == 9  # every image exactly once across the runs
    assert reference.wait(timeout=300) == 0, (tmp_path / "reference.log").read_text()[-3000:]
    ws, ref = load_workspace(out), load_workspace(baseline)
    assert list(ws.image_ids) == list(ref.image_ids)
    np.testing.assert_array_equal(np.asarray(ws.concept_matrix), np.asarray(ref.concept_matrix))
    assert not partial.exists() and not list(out.glob(".*.tmp"))
