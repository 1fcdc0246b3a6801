"""What a Setup job says: which images it skipped and why (the page said '40 images extracted, 1
skipped' and nothing more, for an image the labels CSV named but the folder lacked, or one too large
to decode), and a Cancel at once (it read 'extracting' until the batch in flight ended)."""

from test_jobs import inputs, spec_of  # noqa: F401 - the module's fixture: eight scenes, a tiny CLIP, a teacher

from conceptkd_core.extract import jobs


def test_a_finished_job_names_the_images_it_skipped(inputs, tmp_path):  # noqa: F811
    folder, labels = inputs[0], inputs[1]
    listed = tmp_path / "labels.csv"
    listed.write_text(labels.read_text() + "nosuch.png,ghost,all,cat\n")
    jobs.start(tmp_path / "ws", spec_of(inputs, labels=str(listed)), inputs[-1])
    status = jobs.wait(tmp_path / "ws", timeout=120)
    assert status.state == "done" and status.skipped == 1
    assert status.message == "nosuch.png: cannot read (No such file or directory)"
    assert str(folder) not in status.message  # no server path


def test_the_summary_names_three_and_counts_the_rest():
    failures = [
        {"path": f"a/{i}.png", "error": f"/srv/x/a/{i}.png: not an image file (unrecognised format)"} for i in range(5)
    ]
    assert jobs.skipped_summary(failures) == (
        "a/0.png: not an image file (unrecognised format); a/1.png: not an image file (unrecognised format); "
        "a/2.png: not an image file (unrecognised format); and 2 more"
    )
    assert jobs.skipped_summary([]) == ""


def test_a_cancel_shows_at_once_while_the_batch_in_flight_finishes(tmp_path):
    """The Cancel button stops after the batch in flight, which may take a while: the status says so
    at once (it read 'extracting' until the batch ended)."""
    import json
    import threading

    stop, hold = threading.Event(), threading.Event()
    batch = threading.Thread(target=hold.wait, daemon=True)  # stands for the job's thread, mid-batch
    batch.start()
    (tmp_path / jobs.JOB_DIR).mkdir()
    status = {"format": jobs.STATUS_FORMAT, "version": 1, "state": "running", "done": 16, "total": 40}
    (tmp_path / jobs.JOB_DIR / jobs.STATUS_FILE).write_text(json.dumps(status | {"run": "r1", "message": "extracting"}))
    with jobs._LOCK:
        jobs._RUNNING[jobs._key(tmp_path)] = ("r1", batch, stop)
    try:
        assert jobs.read_status(tmp_path).message == "extracting"
        assert jobs.cancel(tmp_path)
        assert jobs.read_status(tmp_path).message == "cancelling after the batch in flight"
        assert jobs.read_status(tmp_path).state == "running"
    finally:
        hold.set()
        batch.join()
