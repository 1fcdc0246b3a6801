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
"""

from __future__ import annotations

import argparse
import json
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


def _cut(segmenter: str, pixels: np.ndarray, n_segments: int) -> list[np.ndarray]:
    """Label maps (S, S) of a batch of squared images, by ``segmenter``."""
    if segmenter == "slic":
        from conceptkd_core.extract.segments import superpixels

        return [superpixels(image, n_segments) for image in pixels]
    import torch

    from conceptkd_core.extract import torch_slic

    return list(torch_slic.superpixels(torch.from_numpy(pixels), n_segments).numpy())


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
    from conceptkd_core.extract.segments import concepts_for_image, small_segment_map
    from conceptkd_core.images import load_rgb, square_resize
    from conceptkd_core.vocabulary import load_vocabulary

    from .demo import DEMO_SEGMENTS, MODEL_NAME, class_words

    register_model_config(demo / f"{MODEL_NAME}.json")
    clip = load_clip(str(demo / f"{MODEL_NAME}.json"), checkpoint=demo / f"{MODEL_NAME}.safetensors")
    vocabulary = load_vocabulary(demo / "vocabulary.txt")
    text = concept_embeddings(clip, vocabulary)
    words = class_words()
    masks = np.load(demo / "masks.npz")
    test = [i for i, image_id in enumerate(masks["image_id"]) if str(image_id).startswith("test-")]
    ids = list(dict.fromkeys(str(masks["image_id"][i]) for i in test))[:limit]
    pairs = [i for i in test if str(masks["image_id"][i]) in set(ids)]
    results = []
    for segmenter in SEGMENTERS:
        pick = np.random.default_rng(0)
        recall, edges, density, asa, hits, chance, segments = [], 0, [], [], 0, 0, []
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
                seg_map = small_segment_map(labels)
                seg_edges = _edges(seg_map)
                density.append(seg_edges.mean())
                segments.append(int(labels.max()) + 1)
                near_edge = _dilate(seg_edges)
                for i in (p for p in pairs if str(masks["image_id"][p]) == image_id):
                    mask = np.unpackbits(masks["bits"][i])[: seg_map.size].reshape(seg_map.shape).astype(bool)
                    mask_edges = _edges(mask.astype(np.int8))
                    recall.append(int((mask_edges & near_edge).sum()))
                    edges += int(mask_edges.sum())
                    inside = np.bincount(seg_map.ravel(), weights=mask.ravel(), minlength=int(seg_map.max()) + 1)
                    total = np.bincount(seg_map.ravel(), minlength=int(seg_map.max()) + 1)
                    asa.append(np.maximum(inside, total - inside).sum() / seg_map.size)
                    best = result.best_segment[vocabulary.index(words[int(masks["class_index"][i])])]
                    hits += bool(((seg_map == best) & mask).any())
                    chance += bool(((seg_map == pick.choice(np.unique(seg_map))) & mask).any())
        results.append(
            {
                "segmenter": segmenter,
                "test_scenes": len(ids),
                "objects": len(pairs),
                "segments_per_image_mean": round(float(np.mean(segments)), 2),
                "boundary_recall": round(sum(recall) / max(edges, 1), 4),
                "boundary_density": round(float(np.mean(density)), 4),
                "achievable_accuracy": round(float(np.mean(asa)), 4),
                "pointing_game": round(hits / max(len(pairs), 1), 4),
                "pointing_game_random_segment": round(chance / max(len(pairs), 1), 4),
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    from .demo import DEMO_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N test scenes")
    args = parser.parse_args(argv)
    for result in measure(DEMO_DIR, args.limit):
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
