"""The app's colours, in one place: charts, overlays and the theme (``.streamlit/config.toml``,
checked against these values by a test) all read them from here.

* Signed contributions (a weight, weight × score, a segment's share of the score) use one
  diverging palette: ``POSITIVE`` pushes a class's score up, ``NEGATIVE`` pushes it down and
  ``NEUTRAL`` is no change (zero). The same sign convention as SHAP's plots.
* Teacher and student are told apart by one categorical pair, ``TEACHER`` and ``STUDENT``, chosen
  away from the diverging hues so that "student" never reads as "pushes up".
* Concept labels on segments use ``CONCEPT_COLOURS``, cycled.

Every colour is a mid-lightness tone that reads on the light and on the dark theme.
"""

from __future__ import annotations

POSITIVE = "#e0475b"  # pushes the score up
NEGATIVE = "#2f7fd1"  # pushes the score down
NEUTRAL = "#9aa0a6"  # no change / zero
# Heat maps: NEGATIVE → light neutral → POSITIVE, symmetric around 0.
DIVERGING = ("#2f7fd1", "#8fb8e6", "#dcdfe3", "#ef9aa5", "#e0475b")

TEACHER = "#e39b1b"
STUDENT = "#7a5cd6"
TEACHER_STUDENT = {"teacher": TEACHER, "student": STUDENT}

CONCEPT_COLOURS = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)


def rgb(colour: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` → ``(r, g, b)`` in 0..255."""
    value = colour.lstrip("#")
    if len(value) != 6:
        raise ValueError(f"Expected a colour written #rrggbb; got {colour!r}")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def signed_colour(value: float) -> str:
    """The diverging colour of a signed value: ``POSITIVE``, ``NEGATIVE`` or, at zero, ``NEUTRAL``."""
    return POSITIVE if value > 0 else NEGATIVE if value < 0 else NEUTRAL
