"""Where a Setup job writes: an uploaded zip is unpacked only into a folder the job may fill (and
taken away again when the job cannot start), a folder holding a job is never started over (its
Resume would lose its spec, or a finished workspace its files), and a job typed as a sub-folder
is listed again after a reload."""

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from test_jobs import inputs, spec_of  # noqa: F401 - the module's fixture: eight scenes, a tiny CLIP, a teacher

from conceptkd_core.datasets import DatasetError
from conceptkd_core.extract import jobs


def zip_of(images) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for path in images:
            bundle.write(path, f"photos/{path.name}")
        bundle.writestr("notes.txt", "not an image")
    buffer.seek(0)
    return buffer


def unlabelled(inputs, **changes):  # noqa: F811
    return spec_of(inputs, **({"labels": None, "classes": ("dog", "cat")} | changes))


def test_a_zip_is_unpacked_only_where_the_job_may_write(inputs, tmp_path):  # noqa: F811
    images = sorted((inputs[0] / "images").glob("*.png"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(jobs.JobError, match="mine is not empty \\(e.g. 'notes.txt'\\)"):
        jobs.start(mine, unlabelled(inputs), inputs[-1], archive=zip_of(images))
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]  # nothing unpacked into someone's folder
    # A start refused after unpacking (no class names) takes its images away again.
    with pytest.raises(DatasetError, match="no class names given"):
        jobs.start(tmp_path / "new", unlabelled(inputs, classes=()), inputs[-1], archive=zip_of(images[:3]))
    assert not (tmp_path / "new").exists()
    with pytest.raises(DatasetError, match="the zip holds no images"):
        jobs.start(tmp_path / "new", unlabelled(inputs), inputs[-1], archive=zip_of([]))
    assert not (tmp_path / "new").exists()
    # An empty folder left by an earlier refused start takes the next zip's images, only those.
    (tmp_path / "new" / jobs.JOB_DIR / jobs.ARCHIVE_DIR / "photos").mkdir(parents=True)
    (tmp_path / "new" / jobs.JOB_DIR / jobs.ARCHIVE_DIR / "photos" / "stale.png").write_bytes(images[0].read_bytes())
    jobs.start(tmp_path / "new", unlabelled(inputs), inputs[-1], archive=zip_of(images[:5]))
    assert jobs.wait(tmp_path / "new", timeout=120).state == "done"
    assert jobs.read_spec(tmp_path / "new").image_set().paths == [f"photos/{p.name}" for p in images[:5]]


def test_a_folder_that_holds_a_job_is_not_started_over(inputs, tmp_path):  # noqa: F811
    out = tmp_path / "ws"
    first = spec_of(inputs, batch_size=1)
    jobs.start(out, first, inputs[-1])
    assert jobs.cancel(out)
    stopped = jobs.wait(out, timeout=120)
    assert stopped.state == "cancelled"
    other = unlabelled(inputs, teacher="clip-zero-shot", preprocessing=None)
    refused = f"ws holds a cancelled job \\({stopped.done}/8 images\\); resume or discard it"
    with pytest.raises(jobs.JobError, match=refused):
        jobs.start(out, other, inputs[-1])
    assert jobs.read_spec(out) == first  # the cancelled job's Resume still has its settings
    jobs.resume(out, inputs[-1])
    with pytest.raises(jobs.JobError, match="ws: a job is already running there"):
        jobs.start(out, other, inputs[-1])
    assert jobs.wait(out, timeout=120).state == "done"
    with pytest.raises(jobs.JobError, match="ws holds a finished workspace; open it, or choose a new folder"):
        jobs.start(out, other, inputs[-1])
    assert jobs.read_spec(out) == first


def test_a_job_in_a_sub_folder_is_listed_again(inputs, tmp_path):  # noqa: F811
    root = tmp_path / "data"
    (root / "elsewhere").mkdir(parents=True)
    jobs.start(root / "runs" / "april", spec_of(inputs), inputs[-1])
    jobs.wait(root / "runs" / "april", timeout=120)
    assert (root / "runs" / "april").resolve() in [p.resolve() for p in jobs.find_jobs([root])]


def test_jobs_are_found_after_a_restart_up_to_three_folders_down(tmp_path, monkeypatch):
    """After a restart this process has started no job: the Setup page finds them on disk. The walk
    is bounded (depth, entries read), skips hidden folders and workspaces, and follows no link."""
    root = tmp_path / "data"

    def job_at(relative: str) -> Path:
        (root / relative / jobs.JOB_DIR).mkdir(parents=True)
        (root / relative / jobs.JOB_DIR / jobs.SPEC_FILE).write_text("{}")
        return root / relative

    listed = [job_at("a"), job_at("runs/april"), job_at("runs/2026/may")]
    job_at("one/two/three/four")  # four folders down: not searched
    job_at(".cache/hidden")
    (root / "ws").mkdir()
    (root / "ws" / "conceptkd.json").write_text("{}")
    job_at("ws/inside")  # a workspace's own folders are not searched
    (root / "link").symlink_to(root / "runs")
    monkeypatch.setattr(jobs, "_RUNNING", {})
    assert jobs.find_jobs([root, tmp_path / "missing"]) == sorted(listed)
    (root / "big").mkdir()
    for name in range(50):  # a big folder uses up the entry budget: what lies beyond it is not read
        (root / "big" / f"img{name}.png").write_text("")
    monkeypatch.setattr(jobs, "SEARCH_ENTRIES", 20)
    assert len(jobs.find_jobs([root])) < 3


class GreyOnly(torch.nn.Module):
    """A teacher that runs on a flat grey image (the check at start) and fails on any real one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert bool(x.std() < 1e-3), "this teacher reads grey images only"
        return x.mean(dim=(2, 3))[:, :2]


def test_a_job_that_failed_before_extracting_anything_may_be_started_over(inputs, tmp_path):  # noqa: F811
    """A teacher that fails on the first batch fails the job at once: the right file goes into the same folder."""
    grey_only = tmp_path / "grey_only.pt"
    torch.jit.save(torch.jit.script(GreyOnly()), str(grey_only))
    out = tmp_path / "ws"
    jobs.start(out, spec_of(inputs, teacher=str(grey_only)), inputs[-1])
    failed = jobs.wait(out, timeout=120)
    assert failed.state == "failed" and failed.done == 0
    assert failed.message.startswith("grey_only.pt fails on 2 images of 32x32: ")  # one line, no traceback
    assert failed.message.endswith("AssertionError: this teacher reads grey images only")
    assert str(tmp_path) not in failed.message and "Traceback" not in failed.message
    jobs.start(out, spec_of(inputs), inputs[-1])
    assert jobs.wait(out, timeout=120).state == "done"


class ThreeOutputs(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))  # three columns (R, G, B) for two classes


class OneChannel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


@pytest.mark.parametrize(
    "teacher, message",
    [
        (b"not a model", "teacher.pt: not a TorchScript model \\(it is not the zip archive torch.jit.save writes\\)$"),
        (
            ThreeOutputs(),
            "teacher.pt gives 3 outputs per image; expected 2, one per class \\(cat, dog\\), in the classes' order",
        ),
        (OneChannel(), "teacher.pt fails on 1 image of 32x32: RuntimeError: Given groups=1, .*channels"),
        (
            {"weights": torch.zeros(2)},
            "teacher.pt: not a TorchScript model \\(it looks like weights saved with torch.save",
        ),
        (None, "teacher.pt: no such file; expected a TorchScript file \\(saved with torch.jit.save\\)$"),
    ],
)
def test_a_torchscript_teacher_that_cannot_score_the_images_is_refused_at_start(inputs, tmp_path, teacher, message):  # noqa: F811
    """A model file is loaded and run on one grey image before the job starts: a broken file, or one
    whose outputs do not fit the classes, is refused where the page can say so, with nothing written."""
    path = tmp_path / "teacher.pt"
    if isinstance(teacher, bytes):
        path.write_bytes(teacher)
    elif isinstance(teacher, dict):
        torch.save(teacher, path)
    elif teacher is not None:
        torch.jit.save(torch.jit.script(teacher), str(path))
    with pytest.raises(jobs.JobError, match=f"^teacher: .*{message}"):
        jobs.start(tmp_path / "ws", spec_of(inputs, teacher=str(path)), inputs[-1])
    assert not (tmp_path / "ws").exists()


def test_a_stopped_job_is_discarded_with_what_it_extracted_and_nothing_else(inputs, tmp_path):  # noqa: F811
    images = sorted((inputs[0] / "images").glob("*.png"))
    out = tmp_path / "ws"
    jobs.start(out, unlabelled(inputs, batch_size=1), inputs[-1], archive=zip_of(images))
    with pytest.raises(jobs.JobError, match="ws: the job is running; cancel it first"):
        jobs.discard(out)
    assert jobs.cancel(out)
    assert jobs.wait(out, timeout=120).state == "cancelled"
    with pytest.raises(jobs.JobError, match="ws holds a cancelled job"):
        jobs.start(out, unlabelled(inputs), inputs[-1], archive=zip_of(images))
    (out / "notes.txt").write_text("the analyst's")  # something no job writes: nothing is deleted
    with pytest.raises(jobs.JobError, match="ws also holds 'notes.txt', which no job writes; nothing was deleted"):
        jobs.discard(out)
    assert (out / jobs.JOB_DIR / jobs.SPEC_FILE).is_file() and jobs.read_status(out).state == "cancelled"
    (out / "notes.txt").unlink()
    jobs.discard(out)  # its finished batches and the zip's images go with it; the images' sources stay
    assert not out.exists() and all(p.is_file() for p in images)
    assert out.resolve() not in [p.resolve() for p in jobs.find_jobs([tmp_path])]
    jobs.start(out, unlabelled(inputs), inputs[-1], archive=zip_of(images[:4]))  # the folder is free again
    assert jobs.wait(out, timeout=120).state == "done"
    with pytest.raises(jobs.JobError, match="ws: the job finished; the workspace is kept"):
        jobs.discard(out)
    with pytest.raises(jobs.JobError, match="elsewhere: no job to discard there"):
        jobs.discard(tmp_path / "elsewhere")


def test_a_folder_holding_an_interrupted_job_is_named_with_the_right_article(inputs, tmp_path):  # noqa: F811
    out = tmp_path / "ws"
    (out / jobs.JOB_DIR).mkdir(parents=True)
    spec = unlabelled(inputs, teacher="clip-zero-shot", preprocessing=None)
    (out / jobs.JOB_DIR / jobs.SPEC_FILE).write_text(json.dumps(spec.to_json(out / jobs.JOB_DIR)))
    status = {"format": jobs.STATUS_FORMAT, "version": 1, "state": "running", "done": 2, "total": 8, "run": "gone"}
    (out / jobs.JOB_DIR / jobs.STATUS_FILE).write_text(json.dumps(status))
    with pytest.raises(jobs.JobError, match="ws holds an interrupted job \\(2/8 images\\); resume or discard it"):
        jobs.start(out, spec, inputs[-1])
    jobs.discard(out)
    assert not out.exists()


@pytest.mark.parametrize(
    "rows, message",
    [
        (7, "no logits for 1 images, e.g. \\['img7'\\]"),
        (9, "logits for 1 images the labels do not list, e.g. \\['img8'\\]"),
    ],
)
def test_a_logits_file_that_does_not_fit_the_images_is_refused_at_start(inputs, tmp_path, rows, message):  # noqa: F811
    """A logits file is cheap to read: one missing a row, or with a row too many, is refused where
    the page can say so, not as a failed job a moment later."""
    logits = tmp_path / "logits.csv"
    logits.write_text("\n".join(["image_id,cat,dog"] + [f"img{i},{i},{-i}" for i in range(rows)]) + "\n")
    with pytest.raises(jobs.JobError, match=f"teacher: .*logits.csv: {message}"):
        jobs.start(tmp_path / "ws", spec_of(inputs, teacher=str(logits), preprocessing=None), inputs[-1])
    assert not (tmp_path / "ws").exists()
