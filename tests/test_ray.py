"""Scale-out on a real local Ray instance: the Ray engines give what one machine gives."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray Data is in requirements-dev.txt; this runs wherever it is installed")

from conceptkd_core.datasets import load_folder
from conceptkd_core.explorer import fit_split, workspace_stats
from conceptkd_core.extract.pipeline import PARTIAL_DIR, ExtractorSpec, extract
from conceptkd_core.extract.ray_engine import RayEngine, gram_stats_on_ray
from conceptkd_core.store.side_files import GRAM_FILE, SEGMENT_ARRAYS, read_segments
from conceptkd_core.store.workspace import CONCEPTS_FILE, load_workspace
from conceptkd_core.students.gram import GramStats

from tiny_clip import make_tiny_checkpoint, write_labelled_scenes

ROOT = Path(__file__).resolve().parent.parent
VOCAB = ["red square", "blue sky", "grass", "dog", "car"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"py_modules": [str(ROOT / "conceptkd_core")]},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    config, weights = make_tiny_checkpoint(folder / "model")
    labels = {f"img{i}": ("train" if i < 9 else "test", "cat" if i % 3 else "dog") for i in range(13)}
    csv = write_labelled_scenes(folder, labels)
    (folder / "images" / "broken.png").write_bytes(b"not an image")
    rows = csv.read_text().splitlines()
    rows.insert(5, "broken.png,broken,train,cat")
    csv.write_text("\n".join(rows) + "\n")
    spec = ExtractorSpec(str(config), checkpoint=str(weights))
    return folder, spec, load_folder(folder / "images", csv)


def _assert_same_workspace(a, b):
    assert list(a.image_ids) == list(b.image_ids)
    assert list(a.paths) == list(b.paths)
    np.testing.assert_allclose(
        np.asarray(a.concept_matrix, np.float32), np.asarray(b.concept_matrix, np.float32), atol=1e-5
    )
    np.testing.assert_allclose(a.teacher_logits, b.teacher_logits, atol=1e-5)
    np.testing.assert_array_equal(a.labels, b.labels)
    sa, sb = read_segments(a), read_segments(b)
    for name in SEGMENT_ARRAYS:
        np.testing.assert_array_equal(sa[name], sb[name])


def test_ray_extraction_matches_local_and_resumes(local_ray, image_set, tmp_path):
    folder, spec, images = image_set
    clip = spec.load_clip()
    teacher = spec.make_teacher(clip, images)
    local = extract(images, tmp_path / "local", clip, teacher, VOCAB, batch_size=3, n_segments=8)

    # First Ray run is cut short after two shards (the driver stops reading: like a crash).
    engine = RayEngine(spec, num_actors=2)
    interrupted = tmp_path / "ray"

    class Stop(Exception):
        pass

    def stop_after_two(job, starts):
        for n, item in enumerate(engine(job, starts)):
            yield item
            if n == 1:
                raise Stop

    with pytest.raises(Stop):
        extract(images, interrupted, clip, teacher, VOCAB, batch_size=3, n_segments=8, engine=stop_after_two)
    finished = {int(p.stem.split("-")[1]) for p in (interrupted / PARTIAL_DIR).glob("shard-*.npz")}
    assert len(finished) == 2

    asked, progress = [], []

    def recording(job, starts):
        asked.extend(starts)
        yield from engine(job, starts)

    result = extract(
        images,
        interrupted,
        clip,
        teacher,
        VOCAB,
        batch_size=3,
        n_segments=8,
        engine=recording,
        progress=progress.append,
    )
    assert sorted(asked) == sorted(set(range(0, len(images), 3)) - finished)  # finished shards not recomputed
    assert result.resumed == 6 and result.computed == len(images) - 6
    assert progress[-1].done == len(images)
    assert [f["image_id"] for f in result.failures] == ["broken"]
    _assert_same_workspace(local.workspace, result.workspace)
    assert "broken" not in set(result.workspace.image_ids)
    assert not (interrupted / PARTIAL_DIR).exists()


def test_ray_gram_tasks_match_one_machine_bit_for_bit(local_ray, tmp_path):
    from conceptkd_tools.synthetic import write_synthetic_workspace

    workspace = write_synthetic_workspace(tmp_path / "ws", n_images=2500, n_concepts=40, n_classes=4, seed=3)
    local = GramStats.from_arrays(workspace.concept_matrix, workspace.teacher_logits, chunk_rows=700)
    on_ray = gram_stats_on_ray(workspace.root / CONCEPTS_FILE, workspace.teacher_logits, chunk_rows=700)
    for field in ("gram", "xty", "yty", "x_mean", "y_mean"):
        np.testing.assert_array_equal(getattr(local, field), getattr(on_ray, field))
    assert local.n_samples == on_ray.n_samples == 2500


def test_cli_extract_with_ray_engine_starts_its_own_instance(image_set, tmp_path):
    """The user's path: the CLI with --engine ray and no cluster address starts a local Ray."""
    if ray.is_initialized():
        ray.shutdown()
    folder, spec, images = image_set
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    out = tmp_path / "cli-ray"
    command = [
        sys.executable,
        "-m",
        "conceptkd_core",
        "extract",
        "--images",
        str(folder / "images"),
        "--labels",
        str(folder / "labels.csv"),
        "--model",
        spec.model,
        "--checkpoint",
        spec.checkpoint,
        "--vocabulary",
        str(vocab),
        "--batch-size",
        "4",
        "--segments",
        "8",
        "--out",
        str(out),
        "--engine",
        "ray",
        "--actors",
        "2",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "engine ray" in done.stdout and "13 images extracted, 1 skipped" in done.stdout
    workspace = load_workspace(out)
    clip = spec.load_clip()
    local = extract(
        images, tmp_path / "local", clip, spec.make_teacher(clip, images), VOCAB, batch_size=4, n_segments=8
    )
    _assert_same_workspace(local.workspace, workspace)

    gram = subprocess.run(
        [sys.executable, "-m", "conceptkd_core", "gram", str(out), "--engine", "ray"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert gram.returncode == 0, gram.stderr[-3000:]
    assert (out / GRAM_FILE).is_file() and "(ray)" in gram.stdout
    cached = workspace_stats(workspace)
    local_gram = GramStats.from_arrays(
        workspace.concept_matrix, workspace.teacher_logits, rows=fit_split(workspace).fit
    )
    np.testing.assert_array_equal(cached.gram, local_gram.gram)  # the students' fit images, bit for bit


def test_unreachable_cluster_is_a_clear_error(image_set, tmp_path):
    if ray.is_initialized():
        ray.shutdown()
    folder, spec, _ = image_set
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "conceptkd_core",
            "extract",
            "--images",
            str(folder / "images"),
            "--labels",
            str(folder / "labels.csv"),
            "--model",
            spec.model,
            "--checkpoint",
            spec.checkpoint,
            "--out",
            str(tmp_path / "x"),
            "--engine",
            "ray",
            "--address",
            "127.0.0.1:1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1  # a runtime failure (2 is for usage errors)
    assert "error:" in done.stderr and "127.0.0.1:1" in done.stderr
    assert json.loads((tmp_path / "x" / PARTIAL_DIR / "plan.json").read_text())["batch_size"] == 16
