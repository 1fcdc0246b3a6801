"""Superpixels are cut on the image shrunk to ``SUPERPIXEL_SIZE`` and scaled back up: for a model of a
real CLIP's input size (224 px) the pipeline, the per-image reference, the Predict page's scorer, an
export and images added later all cut the same way, and a workspace records how it was cut."""

import shutil

import numpy as np
import pytest
import torch
from skimage.measure import label as connected_pieces

from conceptkd_core.datasets import load_folder
from conceptkd_core.defaults import SUPERPIXEL_SIZE
from conceptkd_core.explorer import new_session, open_explorer
from conceptkd_core.export import ExportError, export_students, load_export
from conceptkd_core.extract import torch_slic
from conceptkd_core.extract.add_images import add_images
from conceptkd_core.extract.clip_backend import concept_embeddings, dense_patch_features, load_clip, to_model_input
from conceptkd_core.extract.pipeline import ExtractionError, _changed_settings, extract, extraction_settings
from conceptkd_core.extract.segments import (
    concepts_for_image,
    enlarge_index,
    recorded_superpixel_size,
    shrink,
    small_segment_map,
    superpixel_size,
    superpixels,
)
from conceptkd_core.extract.teachers import ClipZeroShotTeacher
from conceptkd_core.images import load_rgb, square_resize
from conceptkd_core.predict import Predictor
from conceptkd_core.store.side_files import read_segments
from conceptkd_core.store.workspace import load_workspace
from conceptkd_tools.demo import DEMO_DIR

from tiny_clip import TINY_224_CONFIG, make_tiny_checkpoint

SEGMENTS = 24
VOCABULARY = ["dog", "cat", "grass", "sky", "water", "road", "tree", "car"]


@pytest.fixture(scope="module")
def clip224(tmp_path_factory):
    config, weights = make_tiny_checkpoint(tmp_path_factory.mktemp("model"), "tiny-vit-224", config=TINY_224_CONFIG)
    return load_clip(str(config), checkpoint=weights)


@pytest.fixture(scope="module")
def scenes():
    """24 demo scenes (12 val, 12 test): photos-like detail, squared to 224 px by the pipeline."""
    full = load_folder(DEMO_DIR / "images", DEMO_DIR / "labels.csv")
    rows = [i for i, s in enumerate(full.splits) if s == "val"][:12] + [
        i for i, s in enumerate(full.splits) if s == "test"
    ][:12]
    return full.subset(rows)


@pytest.fixture(scope="module")
def workspace(clip224, scenes, tmp_path_factory):
    teacher = ClipZeroShotTeacher(clip224, scenes.classes)
    out = tmp_path_factory.mktemp("ws") / "ws"
    return extract(scenes, out, clip224, teacher, VOCABULARY, n_segments=SEGMENTS, batch_size=10).workspace


def pixels_of(images, row, size=224):
    return square_resize(load_rgb(images.absolute_path(row)), size)


def test_the_size_is_the_default_at_most_the_models_and_named_when_bad():
    assert superpixel_size(224) == SUPERPIXEL_SIZE == 112
    assert superpixel_size(96) == 96 and superpixel_size(224, 160) == 160 and superpixel_size(224, 4096) == 224
    for bad in (8, 0, 112.5, "112", True):
        with pytest.raises(ValueError, match=rf"superpixel size must be a whole number of pixels >= 16; got {bad!r}"):
            superpixel_size(224, bad)


@pytest.mark.parametrize("small, size", [(112, 224), (112, 336), (96, 224), (50, 77), (64, 64)])
def test_scaling_up_keeps_every_label_and_its_order(small, size):
    index = enlarge_index(small, size)
    assert len(index) == size and index[0] == 0 and index[-1] == small - 1
    assert set(np.diff(index)) <= {0, 1}  # non-decreasing, no row skipped: onto, blocks stay connected


def test_superpixels_cut_small_are_connected_regions_of_the_full_image(scenes):
    image = pixels_of(scenes, 0)
    labels = superpixels(image, SEGMENTS, cut_size=112)
    assert labels.shape == (224, 224) and labels.dtype == np.int64
    k = int(labels.max()) + 1
    assert 10 <= k <= 64 and set(np.unique(labels)) == set(range(k))
    for segment in range(k):  # scaling a label map up keeps each segment one 4-connected region
        assert (
            connected_pieces(labels == segment, connectivity=1).max()
            <= connected_pieces(superpixels(shrink(image, 112), SEGMENTS) == segment, connectivity=1).max()
        )
    np.testing.assert_array_equal(labels[::2, ::2], superpixels(shrink(image, 112), SEGMENTS))
    assert not np.array_equal(labels, superpixels(image, SEGMENTS))  # really cut on the small image


def test_a_224_px_workspace_is_cut_at_112_and_matches_the_per_image_reference(clip224, scenes, workspace):
    assert workspace.meta["extra"]["superpixel_size"] == 112
    assert workspace.meta["extra"]["extraction"]["superpixel_size"] == 112
    assert recorded_superpixel_size(workspace, 224) == 112
    text = concept_embeddings(clip224, VOCABULARY)
    stored, maps_differ = read_segments(workspace), 0
    for row in range(workspace.n_images):
        pixels = pixels_of(scenes, row)
        features = dense_patch_features(clip224, to_model_input(clip224, [pixels]))[0].numpy()
        reference = concepts_for_image(features, superpixels(pixels, SEGMENTS, cut_size=112), text)
        np.testing.assert_array_equal(stored["segment_maps"][row], reference.segment_map)
        np.testing.assert_allclose(
            np.asarray(workspace.concept_matrix[row], np.float32), reference.concept_vector, atol=2e-3
        )  # stored as float16
        maps_differ += not np.array_equal(reference.segment_map, small_segment_map(superpixels(pixels, SEGMENTS)))
    assert maps_differ > workspace.n_images // 2  # cut at 224 the maps would differ: the test can fail


def test_torch_slic_cuts_the_shrunk_batch_on_the_device(clip224, scenes, tmp_path):
    images = scenes.subset(range(6))
    teacher = ClipZeroShotTeacher(clip224, images.classes)
    ws = extract(images, tmp_path / "ws", clip224, teacher, VOCABULARY, segmenter="torch-slic").workspace
    assert ws.meta["extra"]["superpixel_size"] == 112
    small = torch.from_numpy(np.stack([shrink(pixels_of(images, row), 112) for row in range(6)]))
    weights, counts, maps = torch_slic.segment_batch(small, clip224.grid_size, SEGMENTS, 224)
    np.testing.assert_array_equal(read_segments(ws)["segment_maps"], maps.numpy())
    labels = torch_slic.superpixels(small, SEGMENTS).numpy()
    index = enlarge_index(112, 224)
    np.testing.assert_array_equal(maps.numpy()[0], small_segment_map(labels[0][index][:, index]))
    np.testing.assert_array_equal(torch_slic.enlarge(torch.from_numpy(labels), 224)[0], labels[0][index][:, index])
    assert weights.shape[2] == clip224.grid_size**2 and torch.allclose(weights.sum(1), torch.ones(1))


def test_settings_name_a_changed_superpixel_size(clip224, scenes, workspace, tmp_path):
    teacher = ClipZeroShotTeacher(clip224, scenes.classes)
    again = extract(scenes, workspace.root, clip224, teacher, VOCABULARY, n_segments=SEGMENTS, batch_size=10)
    assert again.up_to_date
    with pytest.raises(ExtractionError, match=r"superpixel size \(112 then, the model's size now\)"):
        extract(scenes, workspace.root, clip224, teacher, VOCABULARY, n_segments=SEGMENTS, superpixel_size=224)
    with pytest.raises(ExtractionError, match="superpixel size must be a whole number of pixels >= 16; got 4"):
        extract(scenes, tmp_path / "new", clip224, teacher, VOCABULARY, superpixel_size=4)
    # A workspace cut at its model's size before the size was recorded: its settings lack the key.
    now = extraction_settings(scenes, clip224, teacher, VOCABULARY, SEGMENTS, "slic", 112)
    before = extraction_settings(scenes, clip224, teacher, VOCABULARY, SEGMENTS, "slic", 224)
    assert "superpixel_size" not in before and _changed_settings(before, before) == ""
    assert _changed_settings(before, now) == "superpixel size (the model's size then, 112 now)"


def test_images_added_later_are_cut_as_the_workspace_was(clip224, scenes, workspace, tmp_path):
    teacher = ClipZeroShotTeacher(clip224, scenes.classes)
    old = extract(
        scenes.subset(range(4)),
        tmp_path / "old",
        clip224,
        teacher,
        VOCABULARY,
        n_segments=SEGMENTS,
        superpixel_size=224,
    ).workspace
    assert "superpixel_size" not in old.meta["extra"] and recorded_superpixel_size(old, 224) == 224
    new = scenes.absolute_path(20)
    upload = [("upload-new.png", new.read_bytes())]
    pixels = square_resize(load_rgb(new), 224)
    for base, cut in ((old, 224), (workspace, 112)):
        merged = add_images(base, upload, [scenes.classes[0]], clip224, teacher, tmp_path / f"added-{cut}")
        expected = small_segment_map(superpixels(pixels, SEGMENTS, cut_size=cut))
        np.testing.assert_array_equal(read_segments(merged)["segment_maps"][-1], expected)
        assert recorded_superpixel_size(load_workspace(merged.root), 224) == cut


def test_the_predict_scorer_and_an_export_cut_as_the_workspace_did(clip224, workspace, tmp_path):
    explorer = open_explorer(workspace.root)
    session = new_session(explorer, autosave=False)
    expected = session.bank.decision_function(np.asarray(workspace.concept_matrix, np.float32))
    predictor = Predictor(workspace, clip224)
    exported = export_students(explorer, session, clip224, tmp_path / "model")
    model = load_export(exported.out)
    assert model.document["segments"]["superpixel_size"] == 112
    for row in (0, 13):
        image = load_rgb(workspace.image_path(row))
        prediction = predictor.predict(image, session.bank)
        np.testing.assert_allclose(
            prediction.concept_scores, np.asarray(workspace.concept_matrix[row], np.float32), atol=2e-3
        )
        got = model.predict(image)
        np.testing.assert_allclose([got["scores"][c] for c in workspace.classes], expected[row], atol=2e-2)


def test_an_export_with_a_bad_superpixel_size_is_refused(clip224, workspace, tmp_path):
    import json

    explorer = open_explorer(workspace.root)
    export_students(explorer, new_session(explorer, autosave=False), clip224, tmp_path / "model")
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "model", copy)
    document = json.loads((copy / "model.json").read_text())
    document["segments"]["superpixel_size"] = 999
    (copy / "model.json").write_text(json.dumps(document))
    with pytest.raises(ExportError, match=r"superpixel_size 999; expected whole pixels from 16 to .* \(224\)"):
        load_export(copy)


def test_the_cli_takes_a_superpixel_size_and_names_the_allowed_range(tmp_path):
    from conceptkd_core.cli_arguments import UsageError, build_parser

    parser = build_parser()
    (tmp_path / "images").mkdir()
    args = ["extract", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "ws")]
    assert parser.parse_args(args).superpixel_size is None
    assert parser.parse_args([*args, "--superpixel-size", "224"]).superpixel_size == 224
    assert parser.parse_args(["bench", "extract", "--superpixel-size", "64"]).superpixel_size == 64
    with pytest.raises(UsageError, match="--superpixel-size.*8"):
        parser.parse_args([*args, "--superpixel-size", "8"])


def test_segment_quality_compares_the_superpixel_sizes_at_a_model_size():
    from conceptkd_tools.segment_quality import measure_cut_sizes

    results = measure_cut_sizes(DEMO_DIR, image_size=160, limit=3)
    assert [(r["segmenter"], r["superpixel_size"]) for r in results] == [
        ("slic", 160),
        ("slic", 112),
        ("torch-slic", 160),
        ("torch-slic", 112),
    ]
    for result in results:
        assert result["image_size"] == 160 and result["test_scenes"] == 3 and result["cpu_ms_per_image"] > 0
        assert 0.5 < result["boundary_recall"] <= 1 and 0.5 < result["achievable_accuracy"] <= 1
