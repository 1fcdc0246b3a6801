"""Contribution view: the concepts that drive the selected class, and a class × concept map."""

import altair as alt
import streamlit as st

from conceptkd_core import palette
from conceptkd_core.explorer import heatmap_table, rows_where_concept_fires, top_concepts
from conceptkd_core.markdown_text import literal
from views.common import current, selected_class
from views.draw import LABEL_ROOM, class_axis, colour_key, concept_axis, direction, image_tile, signed_bars

TILES = 6


def weights_chart(explorer, session, c: int) -> None:
    """The class's largest weights; clicking a bar picks the concept the image views follow."""
    top = top_concepts(session, c)
    if top.empty:
        st.info("This student uses no concept (all weights are zero).")
        return
    pick = alt.selection_point(fields=["concept"], name="pick")
    tooltip = ["concept", alt.Tooltip("weight:Q", format="+.3f"), alt.Tooltip("mean_contribution:Q", format="+.3f")]
    bars = signed_bars(top, "weight", tooltip).add_params(pick)
    event = st.altair_chart(bars, width="stretch", on_select="rerun", key="concept_chart")
    colour_key(direction(top["weight"]))
    picked = (event.selection.get("pick") or [{}])[0].get("concept") if event else None
    if picked:
        st.session_state["concept"] = picked  # the Images page opens filtered on it


def where_it_fires(explorer) -> None:
    """Thumbnails of the images where the picked concept scores highest; Open shows one on Images."""
    concept = st.session_state.get("concept")
    if concept not in explorer.vocabulary:
        st.caption("Click a bar to see the images where that concept fires most.")
        return
    st.markdown(f"**Where “{literal(concept)}” fires most** (click a bar to pick another; the Images page follows)")
    ws, j = explorer.workspace, explorer.vocabulary.index(concept)
    with st.container(horizontal=True, gap="xsmall"):
        for r in rows_where_concept_fires(ws.concept_matrix, j, top=TILES):
            image_id = ws.image_ids[r]
            caption = f"“{literal(concept)}” scores {float(ws.concept_matrix[r, j]):.2f}"
            if image_tile(str(ws.image_path(int(r))), image_id, caption):
                st.session_state["detail_image"] = image_id
                st.switch_page("views/images.py")


def heatmap(session) -> alt.Chart:
    """Each class's top weights; an empty cell is a zero weight."""
    heat = heatmap_table(session)
    heat = heat[heat["weight"] != 0]
    span = float(heat["weight"].abs().max()) if len(heat) else 1.0
    colour = alt.Color(
        "weight:Q",
        scale=alt.Scale(domain=[-span, span], range=list(palette.DIVERGING)),
        legend=alt.Legend(orient="bottom", title="weight", gradientLength=220),
    )
    return (
        alt.Chart(heat)
        .mark_rect()
        .encode(
            x=alt.X("class:N", title=None, axis=class_axis()),
            y=alt.Y("concept:N", title=None, axis=concept_axis()),
            color=colour,
            tooltip=["class", "concept", alt.Tooltip("weight:Q", format="+.3f")],
        )
        .properties(padding=LABEL_ROOM)
    )


st.title("Concepts")
state = current()
if state:
    explorer, session = state
    c = selected_class(explorer)
    st.subheader(f"What drives “{literal(explorer.classes[c])}”")
    st.caption(
        "Each bar is a concept's weight in the class's student: its score is the bias plus weight × concept score."
    )
    weights_chart(explorer, session, c)
    where_it_fires(explorer)
    st.subheader("Top concepts across classes")
    st.altair_chart(heatmap(session), width="stretch")
