"""A tiny open_clip ViT with random weights, saved as a real checkpoint: the extraction tests
run the same loading and feature code as real CLIP weights, in seconds."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


def make_tiny_checkpoint(
    folder: Path, name: str = "tiny-vit-test", seed: int = 0, config: dict = TINY_CONFIG
) -> tuple[Path, Path]:
    """Write ``<name>.json`` (architecture, default ``TINY_CONFIG``) and ``<name>.safetensors`` (random weights)."""
    import torch
    from safetensors.torch import save_file

    from conceptkd_core.extract.clip_backend import register_model_config
    from conceptkd_core.extract.torch_compat import import_open_clip

    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / f"{name}.json"
    config_path.write_text(json.dumps(config))
    register_model_config(config_path)
    torch.manual_seed(seed)
    model = import_open_clip().create_model(name, pretrained=None)
    weights = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return config_path, weights


# The same at a real CLIP's input size (224 px, patches of 32): superpixels are cut below it.
TINY_224_CONFIG = TINY_CONFIG | {
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32}
}


def write_scene(path: Path, seed: int, size=(80, 60)) -> None:
    rng = np.random.default_rng(seed)
    image = np.zeros((size[1], size[0], 3), np.uint8) + rng.integers(0, 255, 3, dtype=np.uint8)
    x, y = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
    image[y : y + 25, x : x + 30] = rng.integers(0, 255, 3, dtype=np.uint8)
    Image.fromarray(image).save(path)


def write_labelled_scenes(folder: Path, labels: dict[str, tuple[str, str]]) -> Path:
    """Scenes ``<i>.png`` in ``folder/images`` and ``folder/labels.csv``; ``labels`` maps an image
    id to (split, ``;``-separated classes), in order. Returns the CSV's path."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = ["image,image_id,split,labels"]
    for i, (image_id, (split, classes)) in enumerate(labels.items()):
        write_scene(images / f"{i}.png", i)
        rows.append(f"{i}.png,{image_id},{split},{classes}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"
