"""Defaults shared by extraction, the CLI, the app and the tools: one place to read or change them."""

# Segmentation (extract.segments): SLIC superpixels per image, and the compact segment data kept
# for overlays. Segment ids fit uint8 maps; SLIC is asked for N_SEGMENTS and may overshoot a little.
N_SEGMENTS = 24
MAX_SEGMENTS = 64
TOP_CONCEPTS_PER_SEGMENT = 8
SEGMENT_MAP_SIZE = 56

# Students: the L1 weight of the interactive objective (students.bank).
DEFAULT_ALPHA = 1e-3
