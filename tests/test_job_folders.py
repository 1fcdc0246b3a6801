"""Where a Setup job writes: an uploaded zip is unpacked only into a folder the job may fill (and
taken away again when the job cannot start), a folder holding a job is never started over (its
Resume would lose its spec, or a finished workspace its files), and a job typed as a sub-folder
is listed again after a reload."""

import io
import zipfile

import pytest
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
    with pytest.raises(jobs.JobError, match=f"ws holds a cancelled job \\({stopped.done}/8 images\\); resume it"):
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


def test_a_job_that_failed_before_extracting_anything_may_be_started_over(inputs, tmp_path):  # noqa: F811
    """A teacher file that is no TorchScript fails the job at once: the right file goes into the same folder."""
    broken = tmp_path / "teacher.pt"
    broken.write_bytes(b"not a model")
    out = tmp_path / "ws"
    jobs.start(out, spec_of(inputs, teacher=str(broken)), inputs[-1])
    failed = jobs.wait(out, timeout=120)
    assert failed.state == "failed" and failed.done == 0 and "not a TorchScript model" in failed.message
    jobs.start(out, spec_of(inputs), inputs[-1])
    assert jobs.wait(out, timeout=120).state == "done"


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
