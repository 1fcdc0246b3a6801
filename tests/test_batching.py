"""The batched dense pipeline gives what the per-image path gives, on the demo's images and mini CLIP."""

import dataclasses
import os
import signal
import sys
import types

import numpy as np
import pytest

from conceptkd_core.datasets import load_folder
from conceptkd_core.extract.batching import default_workers
from conceptkd_core.extract.clip_backend import concept_embeddings, dense_patch_features, load_clip, to_model_input
from conceptkd_core.extract.pipeline import (
    PARTIAL_DIR,
    ExtractionError,
    ExtractionJob,
    ExtractorSpec,
    extract,
    local_engine,
    shard_from_bytes,
)
from conceptkd_core.extract.ray_engine import _ShardWorker
from conceptkd_core.extract.segments import concepts_for_image, segment_embeddings, superpixels
from conceptkd_core.extract.teachers import ClipZeroShotTeacher
from conceptkd_core.images import load_rgb, square_resize
from conceptkd_core.store.side_files import SEGMENT_ARRAYS, read_segments
from conceptkd_core.vocabulary import load_vocabulary
from conceptkd_tools.demo import DEMO_DIR, DEMO_SEGMENTS, MODEL_NAME

CONFIG, WEIGHTS = DEMO_DIR / f"{MODEL_NAME}.json", DEMO_DIR / f"{MODEL_NAME}.safetensors"
FLOAT16_HALF_ULP_AT_1 = 2.0**-12  # the rounding of a stored score near 1 (scores are cosines, at most 1)


@pytest.fixture(scope="module")
def demo():
    clip = load_clip(str(CONFIG), checkpoint=WEIGHTS)
    images = load_folder(DEMO_DIR / "images", DEMO_DIR / "labels.csv").subset(range(0, 800, 50))  # 16 scenes
    vocabulary = load_vocabulary(DEMO_DIR / "vocabulary.txt")
    text = concept_embeddings(clip, vocabulary)
    return clip, images, vocabulary, text, ClipZeroShotTeacher(clip, images.classes)


def per_image_reference(clip, images, text):
    """The per-image path: superpixels and ``concepts_for_image`` one image at a time, in numpy; and
    each image's segment x concept cosines, to tell near-ties apart."""
    results, sims = [], []
    for row in range(len(images)):
        image = square_resize(load_rgb(images.absolute_path(row)), clip.image_size)
        features = dense_patch_features(clip, to_model_input(clip, [image]))[0].numpy()
        labels = superpixels(image, DEMO_SEGMENTS)
        results.append(concepts_for_image(features, labels, text))
        sims.append(segment_embeddings(features, labels) @ text.T)
    return results, sims


def clear_order(scores: np.ndarray, axis: int, gap: float = 1e-4) -> np.ndarray:
    """Where the largest score along ``axis`` beats the runner-up by more than ``gap`` (no near-tie)."""
    ranked = -np.sort(-scores, axis=axis)
    return np.take(ranked, 0, axis=axis) - np.take(ranked, 1, axis=axis) > gap


def test_batched_pipeline_matches_the_per_image_path_on_the_demo(demo):
    clip, images, _, text, teacher = demo
    job = ExtractionJob(images, text, batch_size=6, n_segments=DEMO_SEGMENTS)
    preparer = job.preparer(clip, teacher, workers=2)  # worker processes, as a big job uses
    try:
        shards = dict(job.shards(clip, teacher, [0, 6, 12], preparer))
    finally:
        preparer.close()
    assert list(shards) == [0, 6, 12]
    batched = {key: np.concatenate([shards[s][key] for s in (0, 6, 12)]) for key in shards[0] if key != "failures"}
    reference, sims = per_image_reference(clip, images, text)
    np.testing.assert_array_equal(batched["rows"], np.arange(16))
    fields = {"segment_maps": "segment_map", "concepts": "concept_vector"}  # the shard's name: ImageConcepts'
    ref = {
        name: np.stack([getattr(r, fields.get(name, name)) for r in reference])
        for name in (*SEGMENT_ARRAYS, "concepts")
    }
    np.testing.assert_array_equal(batched["segment_maps"], ref["segment_maps"])  # the same segments
    assert np.abs(batched["concepts"] - ref["concepts"]).max() <= FLOAT16_HALF_ULP_AT_1 / 16
    stored, ref_stored = batched["concepts"].astype(np.float16), ref["concepts"].astype(np.float16)
    assert (np.abs(stored - ref_stored) <= np.spacing(np.maximum(stored, ref_stored))).all()  # one float16 step
    assert (stored == ref_stored).mean() > 0.99
    assert (batched["concepts"] >= 0).all() and batched["concepts"].dtype == np.float32

    # Per segment, the top concepts and their scores; orders may differ only between near-equal scores.
    np.testing.assert_allclose(
        batched["top_scores"].astype(np.float32), ref["top_scores"].astype(np.float32), atol=2 * FLOAT16_HALF_ULP_AT_1
    )
    used = ref["top_concepts"] >= 0
    np.testing.assert_array_equal(batched["top_concepts"] >= 0, used)
    same = batched["top_concepts"] == ref["top_concepts"]
    assert same[used].mean() > 0.99
    gaps = np.abs(np.diff(ref["top_scores"].astype(np.float32), axis=2))
    near_tie = np.zeros_like(used)
    near_tie[..., :-1] |= gaps < 1e-3
    near_tie[..., 1:] |= gaps < 1e-3
    assert (same | near_tie | ~used).all()

    # The segment that gives each concept its score: the same wherever the best segment is clear.
    for row, s in enumerate(sims):
        clear = clear_order(s, axis=0)
        np.testing.assert_array_equal(batched["best_segment"][row][clear], ref["best_segment"][row][clear])

    # CLIP zero-shot logits from the same forward pass equal the teacher's own call on the images.
    direct = teacher.logits([load_rgb(images.absolute_path(r)) for r in range(len(images))])
    np.testing.assert_allclose(batched["logits"], direct, atol=1e-4)


def test_overlapped_batches_give_the_same_shards_in_order(demo):
    """On an accelerator the next batch is queued before the previous shard is finished; the shards
    must be the same, bit for bit and in order (here on the CPU, where the overlap is forced)."""
    clip, images, _, text, teacher = demo
    job = ExtractionJob(images, text, batch_size=5, n_segments=DEMO_SEGMENTS)
    made = {
        overlap: list(job.shards(clip, teacher, [0, 5, 10], job.preparer(clip, teacher), overlap))
        for overlap in (False, True)
    }
    assert [start for start, _ in made[True]] == [0, 5, 10]
    for (_, plain), (_, overlapped) in zip(made[False], made[True], strict=True):
        assert list(plain) == list(overlapped)
        for key in plain:
            np.testing.assert_array_equal(plain[key], overlapped[key])


def test_with_overlap_a_failure_of_the_next_batch_still_hands_over_the_finished_shard(demo):
    from concurrent.futures.process import BrokenProcessPool

    clip, images, _, text, teacher = demo
    job = ExtractionJob(images, text, batch_size=5, n_segments=DEMO_SEGMENTS)
    preparer = job.preparer(clip, teacher)

    class DiesAfterTheFirstBatch:  # what a worker's death looks like to the loop
        def shards(self, starts, rows_of):
            for i, item in enumerate(preparer.shards(starts, rows_of)):
                if i == 1:
                    raise BrokenProcessPool("a process preparing images stopped")
                yield item

    handed = []
    with pytest.raises(BrokenProcessPool):
        for start, shard in job.shards(clip, teacher, [0, 5, 10], DiesAfterTheFirstBatch(), overlap=True):
            handed.append((start, shard["rows"].tolist()))
    assert handed == [(0, [0, 1, 2, 3, 4])]


def test_worker_processes_change_nothing_and_skip_unreadable_images(demo, tmp_path):
    clip, images, vocabulary, _, teacher = demo
    broken = tmp_path / "images"
    broken.mkdir()
    for row in range(len(images)):
        (broken / images.paths[row]).write_bytes(images.absolute_path(row).read_bytes())
    (broken / images.paths[3]).write_bytes(b"not an image")
    images = dataclasses.replace(images, root=broken)
    made = {}
    for workers in (0, 2):
        made[workers] = extract(
            images,
            tmp_path / f"ws{workers}",
            clip,
            teacher,
            vocabulary,
            batch_size=5,
            n_segments=DEMO_SEGMENTS,
            engine=local_engine(clip, teacher, workers=workers),
        )
    for result in made.values():
        assert [f["image_id"] for f in result.failures] == [images.image_ids[3]]
    a, b = made[0].workspace, made[2].workspace
    assert a.n_images == 15 and list(a.image_ids) == list(b.image_ids)
    np.testing.assert_array_equal(np.asarray(a.concept_matrix), np.asarray(b.concept_matrix))
    np.testing.assert_array_equal(a.teacher_logits, b.teacher_logits)
    sa, sb = read_segments(a), read_segments(b)
    for name in SEGMENT_ARRAYS:
        np.testing.assert_array_equal(sa[name], sb[name])


def test_workers_do_not_rerun_the_main_script(demo, tmp_path, monkeypatch):
    """Under Streamlit the app script is ``__main__``; a worker that re-ran it would start the app."""
    clip, images, _, text, teacher = demo
    script = tmp_path / "app.py"
    script.write_text("raise SystemExit('the main script ran in a worker')\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    job = ExtractionJob(images.subset(range(4)), text, batch_size=2, n_segments=DEMO_SEGMENTS)
    preparer = job.preparer(clip, teacher, workers=2)
    try:
        assert [start for start, _ in job.shards(clip, teacher, [0, 2], preparer)] == [0, 2]
    finally:
        preparer.close()


def test_a_worker_that_dies_stops_the_extraction_with_a_message_and_keeps_the_finished_batches(
    demo, tmp_path, monkeypatch
):
    """The worker is killed (SIGKILL, as the kernel's OOM killer does) while it prepares the third
    batch. It kills itself at that point: a kill from outside could land while it writes a result
    to the pool's queue, which leaves the pool's reader waiting forever (a hang seen in CI)."""
    import conceptkd_core.extract.batching as batching

    clip, images, vocabulary, _, teacher = demo
    parent, load = os.getpid(), batching.load_rgb
    doomed = images.absolute_path(4)

    def load_or_die(path):
        if os.getpid() != parent and path == doomed:
            os.kill(os.getpid(), signal.SIGKILL)
        return load(path)

    monkeypatch.setattr(batching, "load_rgb", load_or_die)  # the worker is forked after this
    with pytest.raises(ExtractionError, match="A process preparing images stopped.*run again to resume"):
        extract(
            images,
            tmp_path / "ws",
            clip,
            teacher,
            vocabulary,
            batch_size=2,
            engine=local_engine(clip, teacher, workers=1),
        )
    assert len(list((tmp_path / "ws" / PARTIAL_DIR).glob("shard-*.npz"))) >= 1  # rows 0-1 at least


def test_a_ray_actor_runs_the_same_pipeline_with_its_own_workers(demo):
    clip, images, _, text, teacher = demo
    job = ExtractionJob(images, text, batch_size=4, n_segments=DEMO_SEGMENTS)

    spec = ExtractorSpec(str(CONFIG), checkpoint=str(WEIGHTS))  # the actor loads its own CLIP and teacher
    actor = _ShardWorker(spec, job, "cpu", threads=1, workers=2)
    try:
        out = actor({"start": np.array([8, 0, 4])})
    finally:
        actor.preparer.close()
    assert out["start"].tolist() == [8, 0, 4] and len(out["shard"]) == 3
    preparer = job.preparer(clip, teacher)
    expected = dict(job.shards(clip, teacher, [8, 0, 4], preparer))
    for start, data in zip(out["start"], out["shard"], strict=True):
        got = shard_from_bytes(data)
        for key, value in expected[int(start)].items():
            np.testing.assert_array_equal(got[key], value)


@pytest.mark.parametrize(
    ("device", "cpus", "workers"), [("cuda", 16, 15), ("cuda:1", 64, 16), ("cpu", 2, 1), ("cpu", 16, 4), ("cpu", 1, 0)]
)
def test_default_workers(device, cpus, workers):
    assert default_workers(device, cpus) == workers
