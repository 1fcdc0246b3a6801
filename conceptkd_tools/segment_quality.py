"""How well each segmenter's superpixels serve the overlays, on the demo's held-out scenes.

``python -m conceptkd_tools.segment_quality [--limit N]`` prints one JSON line per segmenter
(``defaults.SEGMENTERS``), all on the demo's test scenes with their object masks (``masks.npz``,
56 x 56 like the stored segment maps), at the demo's own settings (its mini CLIP, 48 segments):

* ``boundary_recall``: share of object-mask boundary pixels with a segment boundary within one
  pixel (of the 56 x 56 map the overlays draw); ``boundary_density`` beside it, the share of all
  pixels on a segment boundary (more segments recall more edges, so the two go together);
* ``achievable_accuracy`` (ASA): per (scene, present class), the pixel accuracy of the best mask
  that is a union of segments: each segment labelled object or not by its majority;
* ``pointing_game``: the segment that gives a present class's word its score overlaps the object
  (``demo.evaluate``'s measure, segments cut by this segmenter), and a random segment's rate as chance.

``--image-size 224`` instead squares the scenes to a real CLIP's input size and prints, per
segmenter, the masks' measures of superpixels cut at that size and at ``SUPERPIXEL_SIZE`` (scaled
back up, as extraction does), with the milliseconds an image each took on this machine's CPU
(one thread); no pointing game, the demo's CLIP being 96 px.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BATCH = 32


def _edges(label_map: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label (either side of the edge marked)."""
    edge = np.zeros(label_map.shape, bool)
    right, down = label_map[:, 1:] != label_map[:, :-1], label_map[1:, :] != label_map[:-1, :]
    edge[:, 1:] |= right
    edge[:, :-1] |= right
    edge[1:, :] |= down
    edge[:-1, :] |= down
    return edge


def _dilate(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.logical_or.reduce([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])


def _cut(segmenter: str, pixels: np.ndarray, n_segments: int, cut_size: int | None = None) -> list[np.ndarray]:
    """Label maps (S, S) of a batch of squared images, by ``segmenter``, cut at ``cut_size`` (None: S)."""
    from conceptkd_core.extract.segments import shrink, superpixels

    if segmenter == "slic":
        return [superpixels(image, n_segments, cut_size=cut_size) for image in pixels]
    import torch

    from conceptkd_core.extract import torch_slic

    small = torch.from_numpy(np.stack([shrink(image, cut_size) for image in pixels]))
    return list(torch_slic.enlarge(torch_slic.superpixels(small, n_segments), pixels.shape[1]).numpy())


class _MaskMeasures:
    """Boundary recall and density and achievable accuracy of label maps against the object masks."""

    def __init__(self):
        self.recalled, self.edges, self.density, self.asa, self.segments = 0, 0, [], [], []

    def add(self, labels: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
        """One image's labels (S, S) and its objects' masks; returns its small segment map."""
        from conceptkd_core.extract.segments import small_segment_map

        seg_map = small_segment_map(labels)
        seg_edges = _edges(seg_map)
        self.density.append(seg_edges.mean())
        self.segments.append(int(labels.max()) + 1)
        near_edge = _dilate(seg_edges)
        for mask in masks:
            mask_edges = _edges(mask.astype(np.int8))
            self.recalled += int((mask_edges & near_edge).sum())
            self.edges += int(mask_edges.sum())
            inside = np.bincount(seg_map.ravel(), weights=mask.ravel(), minlength=int(seg_map.max()) + 1)
            total = np.bincount(seg_map.ravel(), minlength=int(seg_map.max()) + 1)
            self.asa.append(np.maximum(inside, total - inside).sum() / seg_map.size)
        return seg_map

    def result(self) -> dict:
        return {
            "segments_per_image_mean": round(float(np.mean(self.segments)), 2),
            "boundary_recall": round(self.recalled / max(self.edges, 1), 4),
            "boundary_density": round(float(np.mean(self.density)), 4),
            "achievable_accuracy": round(float(np.mean(self.asa)), 4),
        }


def _test_scenes(demo: Path, limit: int | None) -> tuple[list[str], dict[str, list[tuple[int, np.ndarray]]]]:
    """The first ``limit`` test scenes with masks, and per scene its objects: (class index, mask 56 x 56)."""
    from conceptkd_core.defaults import SEGMENT_MAP_SIZE

    masks = np.load(demo / "masks.npz")
    ids, objects = [], {}
    for i, image_id in enumerate(str(m) for m in masks["image_id"]):
        if not image_id.startswith("test-") or (image_id not in objects and limit is not None and len(ids) >= limit):
            continue
        if image_id not in objects:
            ids.append(image_id)
            objects[image_id] = []
        bits = np.unpackbits(masks["bits"][i])[: SEGMENT_MAP_SIZE**2]
        objects[image_id].append((int(masks["class_index"][i]), bits.reshape(SEGMENT_MAP_SIZE, -1).astype(bool)))
    return ids, objects


def measure(demo: Path, limit: int | None = None) -> list[dict]:
    """One result per segmenter (see the module's docstring) on the first ``limit`` test scenes with masks."""
    from conceptkd_core.defaults import SEGMENTERS
    from conceptkd_core.extract.clip_backend import (
        concept_embeddings,
        dense_patch_features,
        load_clip,
        register_model_config,
        to_model_input,
    )
    from conceptkd_core.extract.segments import concepts_for_image
    from conceptkd_core.images import load_rgb, square_resize
    from conceptkd_core.vocabulary import load_vocabulary

    from .demo import DEMO_SEGMENTS, MODEL_NAME, class_words

    register_model_config(demo / f"{MODEL_NAME}.json")
    clip = load_clip(str(demo / f"{MODEL_NAME}.json"), checkpoint=demo / f"{MODEL_NAME}.safetensors")
    vocabulary = load_vocabulary(demo / "vocabulary.txt")
    text = concept_embeddings(clip, vocabulary)
    words = class_words()
    ids, objects = _test_scenes(demo, limit)
    results = []
    for segmenter in SEGMENTERS:
        pick = np.random.default_rng(0)
        measures, hits, chance = _MaskMeasures(), 0, 0
        for start in range(0, len(ids), BATCH):
            batch_ids = ids[start : start + BATCH]
            pixels = np.stack(
                [square_resize(load_rgb(demo / "images" / f"{i}.png"), clip.image_size) for i in batch_ids]
            )
            features = dense_patch_features(clip, to_model_input(clip, list(pixels))).numpy()
            for image_id, labels, feature in zip(
                batch_ids, _cut(segmenter, pixels, DEMO_SEGMENTS), features, strict=True
            ):
                result = concepts_for_image(feature, labels, text)
                seg_map = measures.add(labels, [mask for _, mask in objects[image_id]])
                for class_index, mask in objects[image_id]:
                    best = result.best_segment[vocabulary.index(words[class_index])]
                    hits += bool(((seg_map == best) & mask).any())
                    chance += bool(((seg_map == pick.choice(np.unique(seg_map))) & mask).any())
        n_objects = sum(len(objects[i]) for i in ids)
        results.append(
            {"segmenter": segmenter, "test_scenes": len(ids), "objects": n_objects}
            | measures.result()
            | {
                "pointing_game": round(hits / max(n_objects, 1), 4),
                "pointing_game_random_segment": round(chance / max(n_objects, 1), 4),
            }
        )
    return results


def measure_cut_sizes(demo: Path, image_size: int, limit: int | None = None) -> list[dict]:
    """Per segmenter, the masks' measures of superpixels cut at ``image_size`` and at
    ``SUPERPIXEL_SIZE``, the scenes squared to ``image_size``, with the CPU milliseconds an image."""
    import torch

    from conceptkd_core.defaults import SEGMENTERS, SUPERPIXEL_SIZE
    from conceptkd_core.images import load_rgb, square_resize

    from .demo import DEMO_SEGMENTS

    ids, objects = _test_scenes(demo, limit)
    pixels = np.stack([square_resize(load_rgb(demo / "images" / f"{i}.png"), image_size) for i in ids])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # skimage's SLIC is one thread: the same for torch-slic on the CPU
    results = []
    try:
        for segmenter in SEGMENTERS:
            for cut in dict.fromkeys((image_size, min(SUPERPIXEL_SIZE, image_size))):
                measures, seconds = _MaskMeasures(), 0.0
                for start in range(0, len(ids), BATCH):
                    t0 = time.perf_counter()
                    labels = _cut(segmenter, pixels[start : start + BATCH], DEMO_SEGMENTS, cut)
                    seconds += time.perf_counter() - t0
                    for image_id, image_labels in zip(ids[start : start + BATCH], labels, strict=True):
                        measures.add(image_labels, [mask for _, mask in objects[image_id]])
                results.append(
                    {"segmenter": segmenter, "image_size": image_size, "superpixel_size": cut, "test_scenes": len(ids)}
                    | measures.result()
                    | {"cpu_ms_per_image": round(1000 * seconds / len(ids), 1)}
                )
    finally:
        torch.set_num_threads(threads)
    return results


def main(argv: list[str] | None = None) -> int:
    from .demo import DEMO_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N test scenes")
    parser.add_argument("--image-size", type=int, default=None, help="compare superpixel sizes at this model size")
    args = parser.parse_args(argv)
    results = (
        measure(DEMO_DIR, args.limit)
        if args.image_size is None
        else measure_cut_sizes(DEMO_DIR, args.image_size, args.limit)
    )
    for result in results:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
