"""Extraction as a background job: progress on disk, cancel after the batch in flight, resume to
the same workspace a single run makes, and job files validated on read."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conceptkd_core.datasets import DatasetError
from conceptkd_core.extract import jobs
from conceptkd_core.extract.clip_backend import load_clip
from conceptkd_core.extract.pipeline import PARTIAL_DIR
from conceptkd_core.images import Preprocessing
from conceptkd_core.store.workspace import load_workspace

from tiny_clip import make_tiny_checkpoint, write_labelled_scenes

WORDS = ("red square", "blue sky", "grass", "dog")


class MeanColour(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Eight labelled scenes, a tiny CLIP and a TorchScript teacher, each in its own folder."""
    folder = tmp_path_factory.mktemp("inputs")
    labels = write_labelled_scenes(folder, {f"img{i}": ("all", "cat" if i % 2 else "dog") for i in range(8)})
    config, weights = make_tiny_checkpoint(folder / "model")
    teacher = folder / "teacher" / "mean_colour.pt"
    teacher.parent.mkdir()
    torch.jit.save(torch.jit.script(MeanColour()), str(teacher))
    clip = load_clip(str(config), checkpoint=weights)
    return folder, labels, str(config), str(weights), str(teacher), clip


def spec_of(inputs, **changes) -> jobs.JobSpec:
    folder, labels, config, weights, teacher, _ = inputs
    fields = dict(
        images=str(folder / "images"),
        labels=str(labels),
        teacher=teacher,
        preprocessing=Preprocessing(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        vocabulary=WORDS,
        model=config,
        checkpoint=weights,
        n_segments=8,
        batch_size=2,
    )
    return jobs.JobSpec(**(fields | changes))


def test_a_job_runs_in_the_background_and_records_its_progress(inputs, tmp_path):
    seen = []
    original = jobs._write_status
    jobs._write_status = lambda out, status: (seen.append(status), original(out, status))[1]
    try:
        started = jobs.start(tmp_path / "ws", spec_of(inputs), inputs[-1])
        assert started.state == "running" and started.total == 8
        status = jobs.wait(tmp_path / "ws", timeout=120)
    finally:
        jobs._write_status = original
    assert status.state == "done" and status.done == status.total == 8 and status.fraction == 1.0
    extracting = [s for s in seen if s.message == "extracting"]
    assert [s.done for s in extracting] == [2, 4, 6, 8]  # one status per batch of 2, in order
    assert all(s.images_per_s > 0 and s.eta_s is not None for s in extracting) and extracting[-1].eta_s == 0
    ws = load_workspace(tmp_path / "ws")
    assert ws.n_images == 8 and set(ws.splits) == {"train", "heldout"}  # a held-out split is recorded
    assert ws.meta["teacher"]["image_size"] == 32 and ws.meta["teacher"]["mean"] == [0.5, 0.5, 0.5]
    # The spec on disk holds no machine path, and reads back as the spec that was given.
    text = (tmp_path / "ws" / jobs.JOB_DIR / jobs.SPEC_FILE).read_text()
    assert str(tmp_path) not in text and str(inputs[0]) not in text
    assert jobs.read_spec(tmp_path / "ws") == spec_of(inputs)


def test_cancel_stops_after_the_batch_in_flight_and_resume_finishes_the_same_workspace(inputs, tmp_path):
    spec = spec_of(inputs, batch_size=1)
    jobs.start(tmp_path / "ws", spec, inputs[-1])
    assert jobs.cancel(tmp_path / "ws")
    status = jobs.wait(tmp_path / "ws", timeout=120)
    assert status.state == "cancelled" and 1 <= status.done < status.total
    shards = sorted((tmp_path / "ws" / PARTIAL_DIR).glob("shard-*.npz"))
    assert len(shards) == status.done  # finished batches are kept for the resume
    assert jobs.read_status(tmp_path / "ws").state == "cancelled"  # as a reloaded page reads it
    resumed = jobs.resume(tmp_path / "ws", inputs[-1])
    assert resumed.done == status.done  # the bar goes on from the batches kept, not from 0
    assert jobs.wait(tmp_path / "ws", timeout=120).state == "done"
    jobs.start(tmp_path / "one-go", spec, inputs[-1])
    assert jobs.wait(tmp_path / "one-go", timeout=120).state == "done"
    resumed, one_go = load_workspace(tmp_path / "ws"), load_workspace(tmp_path / "one-go")
    np.testing.assert_array_equal(np.asarray(resumed.concept_matrix), np.asarray(one_go.concept_matrix))
    np.testing.assert_array_equal(resumed.teacher_logits, one_go.teacher_logits)
    assert not jobs.cancel(tmp_path / "ws")  # nothing runs any more


def test_a_job_whose_thread_is_gone_reads_interrupted_and_resumes(inputs, tmp_path):
    """A server restart leaves the status file saying "running": it reads as interrupted, and resumes."""
    out = tmp_path / "ws"
    (out / jobs.JOB_DIR).mkdir(parents=True)
    spec = spec_of(inputs, teacher="clip-zero-shot", preprocessing=None, labels=None, classes=("dog", "cat"))
    (out / jobs.JOB_DIR / jobs.SPEC_FILE).write_text(json.dumps(spec.to_json(out / jobs.JOB_DIR)))
    status = {"format": jobs.STATUS_FORMAT, "version": 1, "state": "running", "done": 2, "total": 8, "run": "gone"}
    (out / jobs.JOB_DIR / jobs.STATUS_FILE).write_text(json.dumps(status))
    assert jobs.read_status(out).state == "interrupted"
    jobs.resume(out, inputs[-1])
    assert jobs.wait(out, timeout=120).state == "done"
    ws = load_workspace(out)
    assert ws.classes == ("dog", "cat") and ws.meta["teacher"]["kind"] == "clip-zero-shot"
    assert ws.labels.sum() == 0 and ws.n_images == 8  # no labels file: every image, unlabelled


@pytest.mark.parametrize(
    "document, message",
    [
        ({"format": "other"}, "not a job status"),
        ({"state": "exploded", "done": 1, "total": 2}, "state 'exploded', done 1 of 2 is not a status"),
        ({"state": "running", "done": 5, "total": 2}, "done 5 of 2 is not a status"),
        ({"state": "done", "done": 1, "total": 2, "colour": "red"}, "unknown field .colour.; expected state, done"),
    ],
)
def test_a_damaged_status_file_is_one_line_naming_it(tmp_path, document, message):
    (tmp_path / jobs.JOB_DIR).mkdir()
    base = {"format": jobs.STATUS_FORMAT, "version": 1}
    (tmp_path / jobs.JOB_DIR / jobs.STATUS_FILE).write_text(json.dumps(base | document))
    with pytest.raises(jobs.JobError, match=message):
        jobs.read_status(tmp_path)


def test_jobs_that_cannot_start_say_why_before_anything_is_written(inputs, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(jobs.JobError, match="full is not empty \\(e.g. 'notes.txt'\\); choose a new or empty folder"):
        jobs.start(tmp_path / "full", spec_of(inputs), inputs[-1])
    with pytest.raises(jobs.JobError, match="the vocabulary is empty"):
        jobs.start(tmp_path / "a", spec_of(inputs, vocabulary=()), inputs[-1])
    with pytest.raises(DatasetError, match="Labels file not found"):
        jobs.start(tmp_path / "b", spec_of(inputs, labels=str(tmp_path / "nope.csv")), inputs[-1])
    with pytest.raises(DatasetError, match="no class names given"):
        jobs.start(tmp_path / "c", spec_of(inputs, labels=None), inputs[-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    assert jobs.read_status(tmp_path / "a") is None
    assert Path(tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_a_job_that_finished_lately_is_still_listed_then_not():
    """Setup lists a job finished in the last RECENT_S seconds with a button that opens it: the tab
    that watched it may have been reloaded while it finished."""
    import dataclasses

    done = jobs.JobStatus("done", 40, 40, updated=1_000_000.0)
    assert jobs.finished_recently(done, now=1_000_000.0 + jobs.RECENT_S)
    assert not jobs.finished_recently(done, now=1_000_000.0 + jobs.RECENT_S + 1)
    assert not jobs.finished_recently(dataclasses.replace(done, state="failed"), now=1_000_000.0)
    assert not jobs.finished_recently(None)
