"""torch-slic: SLIC superpixels of a batch as tensor operations (run here on CPU torch), and the
pipeline's ``--segmenter torch-slic`` path: the device cuts the segments, the rest is unchanged."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.color import rgb2lab

from conceptkd_core.datasets import load_folder
from conceptkd_core.defaults import MAX_SEGMENTS
from conceptkd_core.extract import torch_slic
from conceptkd_core.extract.clip_backend import concept_embeddings, dense_patch_features, load_clip, to_model_input
from conceptkd_core.extract.pipeline import ExtractionError, _changed_settings, extract, extraction_settings
from conceptkd_core.extract.segments import (
    concepts_for_image,
    patch_weights,
    recorded_segmenter,
    small_segment_map,
)
from conceptkd_core.extract.teachers import ClipZeroShotTeacher
from conceptkd_core.images import load_rgb, square_resize
from conceptkd_core.store.side_files import read_segments
from conceptkd_tools.demo import DEMO_DIR

from tiny_clip import make_tiny_checkpoint, write_labelled_scenes

DEMO_FILES = ("test-0000.png", "test-0007.png", "val-0003.png")


@pytest.fixture(scope="module")
def demo_pixels():
    """Three demo scenes squared to 224, as the pipeline gives them to the segmenter."""
    return np.stack([square_resize(load_rgb(DEMO_DIR / "images" / name), 224) for name in DEMO_FILES])


@pytest.fixture(scope="module")
def demo_labels(demo_pixels):
    return torch_slic.superpixels(torch.from_numpy(demo_pixels), 24)


def noise(seed: int, size: int = 64) -> np.ndarray:
    """Blocky colour noise: ragged clusters, so the connectivity cleanup has work to do (~1,000 stray
    pieces in two such images before it, as measured when this test was written)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
    return np.kron(small, np.ones((4, 4, 1), dtype=np.uint8)) ^ rng.integers(0, 40, (size, size, 3), dtype=np.uint8)


def check_label_maps(labels: torch.Tensor, n_cells: int) -> None:
    """Labels 0..K-1 per image, every one used, K <= the grid's cells <= MAX_SEGMENTS, each one region."""
    for image in labels.numpy():
        k = int(image.max()) + 1
        assert image.min() == 0 and k <= n_cells <= MAX_SEGMENTS
        np.testing.assert_array_equal(np.unique(image), np.arange(k))
        for label in range(k):
            _, pieces = ndimage.label(image == label)  # 4-connectivity, as the cleanup uses
            assert pieces == 1, f"segment {label} is in {pieces} pieces"


def test_colours_are_skimage_cielab():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_allclose(torch_slic.rgb_to_lab(torch.from_numpy(pixels)).numpy(), rgb2lab(pixels), atol=1e-3)


def test_demo_scenes_give_connected_contiguous_segments_the_same_every_time(demo_pixels, demo_labels):
    batch, labels = torch.from_numpy(demo_pixels), demo_labels
    assert labels.shape == (3, 224, 224) and labels.dtype == torch.int64
    check_label_maps(labels, 25)  # 24 asked: a 5 x 5 grid
    assert all(int(image.max()) + 1 >= 12 for image in labels)  # few merged away on real scenes
    np.testing.assert_array_equal(torch_slic.superpixels(batch, 24).numpy(), labels.numpy())  # deterministic
    alone = torch_slic.superpixels(batch[1:2], 24)  # an image's segments do not depend on its batch
    np.testing.assert_array_equal(alone[0].numpy(), labels[1].numpy())


@pytest.mark.parametrize("n_segments", [1, 9, 30, 64])
def test_ragged_noise_is_cleaned_up_and_k_stays_bounded(n_segments):
    batch = torch.from_numpy(np.stack([noise(1), noise(2)]))
    rows, cols = torch_slic.grid_shape(64, 64, n_segments)
    labels = torch_slic.superpixels(batch, n_segments)
    check_label_maps(labels, rows * cols)
    assert torch_slic.grid_shape(224, 224, MAX_SEGMENTS) == (8, 8)
    assert torch_slic.grid_shape(100, 900, 64)[0] * torch_slic.grid_shape(100, 900, 64)[1] <= MAX_SEGMENTS


def test_a_two_colour_image_splits_at_the_colour_edge():
    """A diagonal edge that follows no grid line: no segment may take pixels from both sides."""
    y, x = np.mgrid[0:96, 0:96]
    left = x + 0.6 * y < 70
    image = np.where(left[..., None], np.array([200, 30, 30], np.uint8), np.array([30, 60, 200], np.uint8))
    labels = torch_slic.superpixels(torch.from_numpy(image[None]), 16)[0].numpy()
    check_label_maps(torch.from_numpy(labels[None]), 16)
    for label in np.unique(labels):
        side = left[labels == label]
        assert side.all() or not side.any(), f"segment {label} crosses the edge"
    assert len(np.unique(labels[left])) >= 2 and len(np.unique(labels[~left])) >= 2


def test_patch_weights_and_small_maps_match_the_per_image_ones(demo_labels):
    labels = demo_labels
    weights, maps = torch_slic.patch_weights(labels, 14), torch_slic.small_segment_maps(labels)
    counts = labels.flatten(1).amax(1) + 1
    assert weights.shape == (3, int(counts.max()), 196) and maps.dtype == torch.uint8
    for i, image in enumerate(labels.numpy()):
        k = int(image.max()) + 1
        assert counts[i] == k
        np.testing.assert_allclose(weights[i, :k].numpy(), patch_weights(image, 14), atol=1e-7)
        assert (weights[i, k:] == 0).all()
        np.testing.assert_array_equal(maps[i].numpy(), small_segment_map(image))


def test_non_uint8_or_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"uint8 of shape \(B, H, W, 3\); got torch.float32"):
        torch_slic.superpixels(torch.zeros(1, 8, 8, 3))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    config, weights = make_tiny_checkpoint(folder)
    return load_clip(str(config), checkpoint=weights)


def test_extract_with_torch_slic_scores_the_device_segments_and_records_the_segmenter(tiny, tmp_path):
    labels = {f"img{i}": ("train" if i < 4 else "test", "cat" if i % 2 else "dog") for i in range(6)}
    images = load_folder(tmp_path / "images", write_labelled_scenes(tmp_path, labels))
    vocabulary = ["red square", "blue sky", "grass", "dog"]
    teacher = ClipZeroShotTeacher(tiny, images.classes)
    result = extract(images, tmp_path / "ws", tiny, teacher, vocabulary, batch_size=4, segmenter="torch-slic")
    ws = result.workspace
    assert recorded_segmenter(ws) == "torch-slic" and ws.meta["extra"]["extraction"]["segmenter"] == "torch-slic"

    # The per-image reference on the segments torch-slic cuts: the same scores and maps.
    text = concept_embeddings(tiny, vocabulary)
    segments = read_segments(ws)
    for row in range(ws.n_images):
        pixels = square_resize(load_rgb(images.absolute_path(row)), tiny.image_size)
        cut = torch_slic.superpixels(torch.from_numpy(pixels[None].copy()))[0].numpy()
        features = dense_patch_features(tiny, to_model_input(tiny, [pixels]))[0].numpy()
        reference = concepts_for_image(features, cut, text)
        np.testing.assert_array_equal(segments["segment_maps"][row], reference.segment_map)
        np.testing.assert_allclose(
            np.asarray(ws.concept_matrix[row], np.float32), reference.concept_vector, atol=2e-3
        )  # stored as float16

    # Another segmenter is another workspace: refused without --overwrite, naming the setting.
    with pytest.raises(ExtractionError, match=r"segmenter \(torch-slic then, slic now\)"):
        extract(images, tmp_path / "ws", tiny, teacher, vocabulary, batch_size=4, segmenter="slic")
    with pytest.raises(ExtractionError, match="segmenter must be one of slic, torch-slic; got 'gpu'"):
        extract(images, tmp_path / "other", tiny, teacher, vocabulary, segmenter="gpu")

    # A workspace from before the segmenter was recorded was cut by skimage's SLIC: still up to date.
    settings = extraction_settings(images, tiny, teacher, vocabulary, 24)
    older = {key: value for key, value in settings.items() if key != "segmenter"}
    assert _changed_settings(older, settings) == ""
    assert "segmenter" in _changed_settings(
        older, extraction_settings(images, tiny, teacher, vocabulary, 24, "torch-slic")
    )


def test_segment_quality_measures_both_segmenters_on_the_demo():
    from conceptkd_tools.segment_quality import _edges, measure

    two = np.array([[0, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(_edges(two), [[0, 1, 1], [0, 1, 1]])
    results = measure(DEMO_DIR, limit=2)
    assert [r["segmenter"] for r in results] == ["slic", "torch-slic"]
    for result in results:
        assert result["test_scenes"] == 2 and result["objects"] >= 2
        for key in ("boundary_recall", "boundary_density", "achievable_accuracy", "pointing_game"):
            assert 0 < result[key] <= 1
        assert 0.5 < result["achievable_accuracy"] and result["segments_per_image_mean"] > 10


def test_the_cli_takes_a_segmenter_and_names_the_allowed_ones(tmp_path):
    from conceptkd_core.cli_arguments import UsageError, build_parser

    parser = build_parser()
    assert parser.parse_args(["bench", "extract"]).segmenter == "slic"
    assert parser.parse_args(["bench", "extract", "--segmenter", "torch-slic"]).segmenter == "torch-slic"
    (tmp_path / "images").mkdir()
    args = ["extract", "--images", str(tmp_path / "images"), "--out", str(tmp_path / "ws"), "--segmenter"]
    assert parser.parse_args([*args, "torch-slic"]).segmenter == "torch-slic"
    with pytest.raises(UsageError, match="invalid choice: 'gpu'.*'slic', 'torch-slic'"):
        parser.parse_args([*args, "gpu"])
