"""Re-scoring a workspace with another vocabulary as a background job: the same workspace the direct
call makes, cancel and resume, a spec without machine paths, a broken source refused at start."""

import json

import numpy as np
import pytest
from test_jobs import WORDS, inputs, spec_of  # noqa: F401 - the module's fixture: eight scenes, a tiny CLIP, a teacher

from conceptkd_core.extract import jobs
from conceptkd_core.extract.rescore import rescore, rescored_already, rescored_folder
from conceptkd_core.store.workspace import load_workspace

NEW_WORDS = (*WORDS, "unicorn")


@pytest.fixture(scope="module")
def source(inputs, tmp_path_factory):  # noqa: F811
    """A finished workspace made by a job, in a folder of its own."""
    out = tmp_path_factory.mktemp("rescore-source") / "ws"
    jobs.start(out, spec_of(inputs), inputs[-1])
    assert jobs.wait(out, timeout=120).state == "done"
    return out


def rescore_spec(inputs, source) -> jobs.RescoreSpec:  # noqa: F811
    _, _, config, weights, _, _ = inputs
    return jobs.RescoreSpec(str(source), NEW_WORDS, config, checkpoint=weights, batch_size=2)


def test_a_rescore_job_makes_what_the_direct_call_makes(inputs, source, tmp_path):  # noqa: F811
    seen = []
    original = jobs._write_status
    jobs._write_status = lambda out, status: (seen.append(status), original(out, status))[1]
    try:
        jobs.start(tmp_path / "job", rescore_spec(inputs, source), inputs[-1])
        status = jobs.wait(tmp_path / "job", timeout=120)
    finally:
        jobs._write_status = original
    assert status.state == "done" and status.done == status.total == 8
    assert {s.message for s in seen if 0 < s.done < 8} == {"re-scoring"}
    direct = rescore(load_workspace(source), NEW_WORDS, inputs[-1], out=tmp_path / "direct", batch_size=2).workspace
    job = load_workspace(tmp_path / "job")
    assert job.vocabulary == direct.vocabulary and job.vocabulary[-1] == "unicorn"
    np.testing.assert_array_equal(np.asarray(job.concept_matrix), np.asarray(direct.concept_matrix))
    np.testing.assert_array_equal(job.teacher_logits, load_workspace(source).teacher_logits)
    text = (tmp_path / "job" / jobs.JOB_DIR / jobs.SPEC_FILE).read_text()
    assert str(tmp_path) not in text and json.loads(text)["format"] == jobs.RESCORE_FORMAT
    assert jobs.read_spec(tmp_path / "job") == rescore_spec(inputs, source)


def test_a_rescore_job_is_cancelled_resumed_and_found_finished(inputs, source, tmp_path):  # noqa: F811
    target = rescored_folder(load_workspace(source), NEW_WORDS)
    try:
        spec = rescore_spec(inputs, source)
        jobs.start(target, spec, inputs[-1])
        assert jobs.cancel(target)
        stopped = jobs.wait(target, timeout=120)
        assert stopped.state == "cancelled" and stopped.done < 8
        assert rescored_already(load_workspace(source), NEW_WORDS) is None  # not finished: nothing to open
        jobs.resume(target, inputs[-1])
        assert jobs.wait(target, timeout=120).state == "done"
        found = rescored_already(load_workspace(source), NEW_WORDS)
        assert found is not None and found.root == target.resolve()
        assert rescored_already(load_workspace(source), (*WORDS, "zebra")) is None
    finally:
        import shutil

        shutil.rmtree(target, ignore_errors=True)  # beside the module's source workspace


def test_a_source_that_is_no_workspace_is_refused_at_start(inputs, tmp_path):  # noqa: F811
    (tmp_path / "empty").mkdir()
    spec = rescore_spec(inputs, tmp_path / "empty")
    with pytest.raises(jobs.JobError, match="^the workspace to re-score: .*empty"):
        jobs.start(tmp_path / "out", spec, inputs[-1])
    assert not (tmp_path / "out").exists()
