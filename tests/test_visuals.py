"""The app's visual language, computed without Streamlit: the contribution waterfall, each
segment's share of a score, the overlays' colours, and one palette shared with the theme."""

import tomllib
from pathlib import Path

import numpy as np
import pytest

from conceptkd_core import palette
from conceptkd_core.explorer import concept_contributions, image_waterfall, new_session, open_explorer
from conceptkd_core.overlays import ImageSegments, concept_overlay, contribution_overlay, label_overlay
from conceptkd_core.students.metrics import DECISION_THRESHOLD
from conceptkd_core.waterfall import BIAS_LABEL, SCORE_LABEL, contribution_waterfall

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo():
    explorer = open_explorer(ROOT / "data" / "demo" / "workspace")
    return explorer, new_session(explorer, autosave=False)


def test_waterfall_steps_add_up_to_the_score():
    contributions = np.array([0.0, 3.0, -1.0, 0.5, -4.0, 0.25, 0.0])
    names = list("abcdefg")
    wf = contribution_waterfall(-2.0, contributions, names, threshold=0.0, top=3)
    steps = wf.steps
    assert list(steps["label"]) == [BIAS_LABEL, "e", "b", "c", "2 other concepts", SCORE_LABEL]
    assert list(steps["kind"]) == ["bias", "concept", "concept", "concept", "other", "score"]
    np.testing.assert_allclose(steps["value"], [-2.0, -4.0, 3.0, -1.0, 0.75, -3.25])
    np.testing.assert_allclose(steps["end"][:-1], np.cumsum(steps["value"][:-1]))
    np.testing.assert_allclose(steps["start"][1:-1], steps["end"][:-2])
    assert steps["start"].iloc[0] == 0 and steps["start"].iloc[-1] == 0
    assert wf.score == pytest.approx(-2.0 + contributions.sum()) == steps["end"].iloc[-2]
    assert not wf.says_yes
    assert contribution_waterfall(-2.0, contributions, names, threshold=-3.5).says_yes


def test_waterfall_with_every_concept_shown_or_none_used():
    wf = contribution_waterfall(0.5, np.array([1.0, -2.0]), ["x", "y"], threshold=0.0, top=8)
    assert list(wf.steps["label"]) == [BIAS_LABEL, "y", "x", SCORE_LABEL]  # no "other" step
    empty = contribution_waterfall(0.5, np.zeros(3), ["x", "y", "z"], threshold=0.0)
    assert list(empty.steps["kind"]) == ["bias", "score"] and empty.score == 0.5 and empty.says_yes


@pytest.mark.parametrize(
    ("contributions", "names", "top", "message"),
    [
        (np.zeros(3), ["a", "b"], 8, r"shape \(2,\)"),
        (np.zeros((2, 2)), ["a", "b"], 8, "shape"),
        (np.zeros(2), "ab", -1, "top"),
    ],
)
def test_waterfall_refuses_bad_input(contributions, names, top, message):
    with pytest.raises(ValueError, match=message):
        contribution_waterfall(0.0, contributions, names, threshold=0.0, top=top)


def test_image_waterfall_matches_the_students_score_and_decision(demo):
    explorer, session = demo
    rows = np.arange(0, explorer.workspace.n_images, 37)
    for c in (0, 6, 14):
        probs = session.class_probs(c)
        for r in rows:
            wf = image_waterfall(session, int(r), c)
            assert wf.score == pytest.approx(session.student_scores[r, c], abs=1e-4)
            assert wf.says_yes == (probs[r] > DECISION_THRESHOLD)
            assert wf.steps["value"].iloc[0] == session.bank.intercept_[c]


def test_segment_shares_sum_to_the_score_without_the_bias(demo):
    explorer, session = demo
    for r, c in [(0, 0), (5, 6), (123, 14)]:
        seg = ImageSegments.of(explorer.segments, explorer.workspace, r)
        contributions = concept_contributions(session, r, c)
        shares = seg.shares(contributions)
        assert shares.shape == (64,)
        assert shares.sum() == pytest.approx(session.student_scores[r, c] - session.bank.intercept_[c], abs=1e-4)
        best = int(seg.best_segment[np.argmax(np.abs(contributions))])
        assert shares[best] != 0  # the largest contribution sits on its concept's best segment


def test_contribution_overlay_tints_by_sign_and_dims_the_rest():
    image = np.full((40, 40, 3), 128, np.uint8)
    segment_map = np.zeros((4, 4), np.uint8)
    segment_map[:, 2:] = 1
    segment_map[2:, :2] = 2
    shares = np.zeros(64)
    shares[0], shares[1] = 2.0, -1.0  # segment 0 pushes up, 1 down, 2 nothing
    out = contribution_overlay(image, segment_map, shares).astype(int)
    up, down, none = out[5, 5], out[5, 35], out[35, 5]
    positive, negative = np.array(palette.rgb(palette.POSITIVE)), np.array(palette.rgb(palette.NEGATIVE))
    assert np.abs(up - positive).sum() < np.abs(image[0, 0] - positive).sum() / 2
    assert np.abs(down - negative).sum() < np.abs(image[0, 0] - negative).sum()
    assert (none < 128).all() and len(set(none)) == 1  # dimmed, still grey
    assert (out[19, :] == 255).any()  # segment borders


def test_concept_overlay_tints_where_the_concept_fires_most_in_the_colour_given():
    image = np.full((20, 20, 3), 128, np.uint8)
    segment_map = np.zeros((2, 2), np.uint8)
    segment_map[1] = 1
    scores = np.zeros(64, np.float32)
    scores[0] = 0.8
    out = concept_overlay(image, segment_map, scores, palette.NEGATIVE).astype(int)
    assert out[2, 2, 2] > out[2, 2, 0]  # blue-ish where the concept fires
    assert (out[15, 15] < 128).all()
    scores[1] = 0.3  # fires less in segment 1: measured from there, segment 1 is dimmed as if absent
    out = concept_overlay(image, segment_map, scores, palette.POSITIVE).astype(int)
    assert out[2, 2, 0] > out[2, 2, 2] and len(set(out[15, 15])) == 1 and (out[15, 15] < 128).all()


def test_label_overlay_uses_the_concept_colours():
    image = np.zeros((8, 8, 3), np.uint8)
    segment_map = np.array([[0, 1], [0, 1]], np.uint8)
    top = np.full((64, 8), -1, np.int16)
    top[0, 0], top[1, 0] = 2, 0
    _, legend = label_overlay(image, segment_map, top, ["sky", "sea", "fur"])
    assert legend == {"sky": palette.rgb(palette.CONCEPT_COLOURS[0]), "fur": palette.rgb(palette.CONCEPT_COLOURS[1])}


def test_the_theme_uses_the_palette():
    theme = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["theme"]
    assert theme["chartDivergingColors"] == list(palette.DIVERGING)
    assert (
        theme["chartDivergingColors"][0] == palette.NEGATIVE and theme["chartDivergingColors"][-1] == palette.POSITIVE
    )
    assert theme["chartCategoricalColors"] == [palette.TEACHER, palette.STUDENT, *palette.CONCEPT_COLOURS]
    assert {"light", "dark"} <= set(theme)
    for name in ("light", "dark"):
        assert {"primaryColor", "backgroundColor", "textColor"} <= set(theme[name])


def test_signed_colours_and_hex_parsing():
    assert [palette.signed_colour(v) for v in (0.3, -1e-9, 0.0)] == [
        palette.POSITIVE,
        palette.NEGATIVE,
        palette.NEUTRAL,
    ]
    assert palette.rgb("#0a0B0c") == (10, 11, 12)
    with pytest.raises(ValueError, match="#rrggbb"):
        palette.rgb("red")


@pytest.mark.parametrize("size", [(1, 2000), (3000, 2), (4, 4), (640, 480)])
def test_any_image_is_letterboxed_to_the_same_box(size):
    """A 1 x 2000 strip and a 3000 x 2 line take the box exactly (the Images page's thumbnails and
    detail pictures): nothing can make a row thousands of pixels tall."""
    from PIL import Image

    from conceptkd_core.images import LETTERBOX_FILL, letterbox

    width, height = size
    image = Image.new("RGB", size, (200, 10, 10))
    boxed = letterbox(image, (160, 120))
    assert boxed.shape == (120, 160, 3) and boxed.dtype == np.uint8
    drawn = np.any(boxed != LETTERBOX_FILL, axis=2)
    ys, xs = np.nonzero(drawn)
    assert len(xs) > 0  # at least one pixel of the image, however thin
    # The image keeps its aspect ratio (to the pixel), centred; the rest is padding.
    scale = min(160 / width, 120 / height)
    assert xs.max() - xs.min() + 1 == max(1, min(160, round(width * scale)))
    assert ys.max() - ys.min() + 1 == max(1, min(120, round(height * scale)))
    assert abs((xs.min() + xs.max()) / 2 - 79.5) <= 1 and abs((ys.min() + ys.max()) / 2 - 59.5) <= 1
    np.testing.assert_array_equal(letterbox(np.asarray(image), (160, 120)), boxed)  # arrays too
    with pytest.raises(ValueError, match="box must be at least 1 x 1 pixels; got 0 x 5"):
        letterbox(image, (0, 5))
