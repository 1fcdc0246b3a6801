"""Edit suggestions: every candidate re-fit exactly, ranked by the held-out change it makes."""

import numpy as np
import pytest

from conceptkd_core.explorer import new_session, open_explorer
from conceptkd_core.students.suggest import apply_suggestion, candidates, suggest
from conceptkd_tools.synthetic import write_synthetic_workspace


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    root = tmp_path_factory.mktemp("suggest") / "ws"
    write_synthetic_workspace(root, n_images=900, n_concepts=30, n_classes=3, seed=5)
    return open_explorer(root)


def test_every_concept_is_a_candidate_once_or_twice(explorer):
    session = new_session(explorer, autosave=False)
    found = candidates(session, 1)
    used = np.flatnonzero(session.bank.coef_[1])
    assert set(found.concepts) == set(range(30)) and len(found.ops) == 30 + used.size
    for j, op in zip(found.concepts, found.ops, strict=True):
        assert op in (("upweight",) if session.bank.coef_[1, j] == 0 else ("downweight", "remove"))


def test_each_suggestion_is_what_the_edit_itself_gives(explorer):
    session = new_session(explorer, autosave=False)
    table = suggest(session, 0, n_resamples=50)
    assert len(table) >= 30 and table["held_out_gain"].is_monotonic_decreasing
    assert table["scored_rows"].iloc[0] == explorer.split.n_held_out
    base = session.class_metrics(0)["fidelity_ap"]
    # The best, the worst and a few in between: apply each as an edit and compare, then undo.
    for i in (0, 1, len(table) // 2, len(table) - 1):
        row = table.iloc[i]
        event = apply_suggestion(session, 0, row)
        assert event.op == row["op"] and event.concept == row["concept_index"]
        gain = session.class_metrics(0)["fidelity_ap"] - base
        assert gain == pytest.approx(row["held_out_gain"], abs=2e-4), row.to_dict()
        session.undo()
    interval = table.loc[:9, ["low", "high"]].to_numpy()
    assert np.isfinite(interval).all() and (interval[:, 0] <= interval[:, 1]).all()
    assert table.loc[10:, "low"].isna().all()
    assert (table["overfit"] == ((table["fit_gain"] > 1e-9) & (table["held_out_gain"] <= 0))).all()


def test_bad_factor_is_refused(explorer):
    session = new_session(explorer, autosave=False)
    with pytest.raises(ValueError, match="factor must be a number > 1; got 0.5"):
        suggest(session, 0, factor=0.5)
