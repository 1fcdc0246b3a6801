"""Drawing helpers the views share: signed bars in the one diverging palette, probabilities in
words, thumbnails and image tiles, and the table column formats."""

from __future__ import annotations

import base64
import html
import io

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from conceptkd_core import palette
from conceptkd_core.images import ImageError, letterbox, load_rgb
from conceptkd_core.markdown_text import literal

# Signed values (weights, contributions) are coloured by what they do to the class's score.
DIRECTIONS = {"pushes up": palette.POSITIVE, "pushes down": palette.NEGATIVE, "no change": palette.NEUTRAL}


def direction(values: pd.Series) -> np.ndarray:
    """The ``DIRECTIONS`` word of each signed value."""
    up, down, zero = DIRECTIONS
    return np.select([values > 0, values < 0], [up, down], zero)


def present_colours(words, extra: dict[str, str] | None = None) -> dict[str, str]:
    """{word: colour} of the ``DIRECTIONS`` (and ``extra``) words that occur in ``words``."""
    occurring = set(words)
    return {word: colour for word, colour in {**DIRECTIONS, **(extra or {})}.items() if word in occurring}


def direction_colour(words: pd.Series, extra: dict[str, str] | None = None) -> alt.Color:
    """Altair colour channel of a column of ``direction`` words (plus ``extra`` {word: colour});
    its legend is ``colour_key``, drawn under the chart."""
    colours = present_colours(words, extra)
    scale = alt.Scale(domain=list(colours), range=list(colours.values()))
    return alt.Color(f"{words.name}:N", title=None, scale=scale, legend=None)


def colour_key(words, extra: dict[str, str] | None = None) -> None:
    """The legend of a ``direction_colour`` chart, as a line of text: it wraps on a narrow window,
    where a chart's own legend would be cut off."""
    keys = (
        f"<span style='color:{colour}'>■</span>&nbsp;{html.escape(word)}"
        for word, colour in present_colours(words, extra).items()
    )
    st.markdown(" &nbsp; ".join(keys), unsafe_allow_html=True)


def class_axis() -> alt.Axis:
    """The x axis of a chart with a column per class: every class named, vertically. Vega-Lite hides
    labels that overlap by default, which left every other class (every fourth on a phone) unnamed."""
    return alt.Axis(labelAngle=-90, labelOverlap=False)


def concept_axis() -> alt.Axis:
    """The y axis of a chart with a row per concept: names up to 140 px (a longer one ends in "…";
    the tooltip has it whole)."""
    return alt.Axis(labelLimit=140)


# A chart's room beyond its axes: Vega sizes the concept axis to the longest name exactly, so with no
# padding that name began at the chart's very edge, and a glyph overhanging by a pixel was cut.
LABEL_ROOM = {"left": 8, "top": 5, "right": 5, "bottom": 5}


def signed_bars(table: pd.DataFrame, value: str, tooltip: list) -> alt.Chart:
    """Horizontal bars per concept, largest first, coloured by what ``value`` does to the score."""
    table = table.assign(direction=direction(table[value]))
    return (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X(f"{value}:Q", title=value.replace("_", " ")),
            y=alt.Y("concept:N", sort="-x", title=None, axis=concept_axis()),
            color=direction_colour(table["direction"]),
            tooltip=tooltip,
        )
        .properties(padding=LABEL_ROOM)
    )


def percent(p: float) -> str:
    """A probability in words a reader takes in at a glance: 62%, <1%, >99%."""
    return "<1%" if 0 < p < 0.005 else ">99%" if 0.995 <= p < 1 else f"{p:.0%}"


def teacher_student(teacher: float, student: float) -> str:
    """ "teacher 62% · student 2%": both models' probabilities for one image and class."""
    return f"teacher {percent(teacher)} · student {percent(student)}"


@st.cache_data(max_entries=512, show_spinner=False)
def thumbnail(path: str, size: int = 160) -> np.ndarray | None:
    """A small RGB copy of an image letterboxed to ``size`` x ``size`` for grids (any aspect ratio
    takes the same box), or None if it cannot be read."""
    try:
        return letterbox(load_rgb(path), (size, size))
    except ImageError:
        return None


@st.cache_data(max_entries=64, show_spinner=False)
def detail_image(path: str, side: int = 384) -> np.ndarray:
    """An image enlarged (smoothly) so that its longer side is at least ``side`` pixels, so that the
    overlays drawn on it keep thin segment borders. Raises ``ImageError`` if it cannot be read.
    Show it (and its overlays) through ``fitted``: it keeps the image's own shape."""
    image = load_rgb(path)
    scale = side / max(image.size)
    if scale > 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return np.asarray(image)


def fitted(picture: np.ndarray, side: int = 384) -> np.ndarray:
    """A detail picture letterboxed to ``side`` x ``side``: a strip 1 px wide cannot make its row
    thousands of pixels tall."""
    return letterbox(picture, (side, side))


@st.cache_data(max_entries=2048, show_spinner=False)
def thumbnail_uri(path: str, size: int = 64) -> str | None:
    """A thumbnail as a PNG data URI, for ``st.column_config.ImageColumn``."""
    small = thumbnail(path, size)
    if small is None:
        return None
    buffer = io.BytesIO()
    Image.fromarray(small).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


TILE_WIDTH = 112  # three tiles, 8 px apart, fit a phone's width


def image_tile(path: str, image_id: str, caption: str, selected: bool = False, on_click=None, args=()) -> bool:
    """One thumbnail, its caption (Markdown) and a button that opens the image (highlighted when it is the
    image shown); True when clicked. Lay tiles in ``st.container(horizontal=True)``: they wrap to
    the window's width."""
    with st.container(border=True, width=TILE_WIDTH, gap="xsmall"):
        small = thumbnail(path)
        if small is None:
            st.caption("image missing")
        else:
            st.image(small, width="stretch")
        st.caption(caption)
        return st.button(
            "Shown" if selected else "Open",
            key=f"open_{image_id}",
            type="primary" if selected else "secondary",
            width="stretch",
            help=f"Open {literal(image_id)} in detail",
            on_click=on_click,
            args=args,
        )


def score_column(label: str, help: str | None = None, colour: str | None = None):
    """A 0..1 figure (AP, agreement, a probability) as a bar with three decimals."""
    return st.column_config.ProgressColumn(label, help=help, format="%.3f", min_value=0.0, max_value=1.0, color=colour)


def number_column(label: str, help: str | None = None, format: str = "%.3f"):
    return st.column_config.NumberColumn(label, help=help, format=format)


SCORE_COLOUR = {"score": palette.STUDENT}


def waterfall_chart(steps: pd.DataFrame, threshold: float) -> alt.Chart:
    """A ``waterfall.Waterfall``'s bars from the bias through each concept to the score (``steps``
    with a ``colour`` word per bar); a dashed line at the decision threshold."""
    bars = (
        alt.Chart(steps)
        .mark_bar()
        .encode(
            y=alt.Y("label:N", sort=list(steps["label"]), title=None, axis=concept_axis()),
            x=alt.X("start:Q", title="student score"),
            x2="end:Q",
            color=direction_colour(steps["colour"], SCORE_COLOUR),
            tooltip=["label", alt.Tooltip("value:Q", format="+.3f", title="adds"), alt.Tooltip("end:Q", format="+.3f")],
        )
    )
    line = pd.DataFrame({"threshold": [threshold], "text": ["threshold"]})
    rule = alt.Chart(line).mark_rule(strokeDash=[4, 3], color=palette.NEUTRAL, size=2).encode(x="threshold:Q")
    label = rule.mark_text(align="left", dx=4, dy=-6, color=palette.NEUTRAL, baseline="bottom").encode(
        y=alt.value(0), text="text:N"
    )
    return (bars + rule + label).properties(padding=LABEL_ROOM)


def waterfall_steps(steps: pd.DataFrame) -> pd.DataFrame:
    """``steps`` with the ``colour`` word of each bar: the score's own, else its direction."""
    return steps.assign(colour=np.where(steps["kind"] == "score", "score", direction(steps["value"])))


def waterfall(wf, student_prob: float) -> None:
    """A ``waterfall.Waterfall`` drawn: its chart against the threshold, the colour key, and the
    sum in words ("bias + contributions = score, above the threshold, so yes")."""
    steps = waterfall_steps(wf.steps)
    st.altair_chart(waterfall_chart(steps, wf.threshold), width="stretch")
    colour_key(steps["colour"], SCORE_COLOUR)
    decided = "yes" if wf.says_yes else "no"
    st.caption(
        f"Bias {wf.steps['value'].iloc[0]:+.2f}, plus each concept's weight × score, gives {wf.score:+.2f}; "
        f"{'above' if wf.says_yes else 'not above'} the threshold {wf.threshold:+.2f}, so “{decided}” "
        f"(student {percent(student_prob)})."
    )
