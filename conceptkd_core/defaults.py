"""Defaults shared by extraction, the CLI, the app and the tools: one place to read or change them."""

# Segmentation (extract.segments): SLIC superpixels per image, and the compact segment data kept
# for overlays. Segment ids fit uint8 maps; SLIC is asked for N_SEGMENTS and may overshoot a little.
N_SEGMENTS = 24
MAX_SEGMENTS = 64
TOP_CONCEPTS_PER_SEGMENT = 8
SEGMENT_MAP_SIZE = 56
# Superpixels are cut on the squared image shrunk to at most this many pixels a side, and their
# label map is scaled back up to the model's input: twice the overlays' maps, so they lose no
# detail, at a quarter of a 224-px model's pixels (skimage's SLIC 4x faster; boundary recall on the
# demo's masks 0.920 vs 0.926, see README "Performance"). Models at or under it are cut at their size.
SUPERPIXEL_SIZE = 112
MIN_SUPERPIXEL_SIZE = 16
# Who cuts the superpixels: "slic" is skimage's SLIC in the CPU workers (the reference); "torch-slic"
# the same algorithm on the model's device for a whole batch (extract.torch_slic; for GPUs).
SEGMENTERS = ("slic", "torch-slic")
DEFAULT_SEGMENTER = "slic"

# Students: the L1 weight of the interactive objective (students.bank).
DEFAULT_ALPHA = 1e-3

# Teachers (extract.teacher_registry): the spec used when none is given, and the preprocessing a
# TorchScript teacher gets when its maker names none: ImageNet's normalisation at 224 px, the
# convention of torchvision's classifiers, which most exported teachers follow.
DEFAULT_TEACHER = "clip-zero-shot"
TEACHER_IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# CLIP (extract.clip_backend): OpenAI's normalisation, for a CLIP model that does not name its own
# (the values of open_clip's OPENAI_DATASET_MEAN / _STD, kept here so reading them needs no torch).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
