"""Contribution view: the concepts that drive the selected class, and a class x concept map."""

import altair as alt
import streamlit as st

from conceptkd_core.explorer import heatmap_table, rows_where_concept_fires, top_concepts
from pages.common import current, diverging_bars, selected_class, thumbnail

st.title("Concepts")
state = current()
if state:
    explorer, session = state
    c = selected_class(explorer)
    top = top_concepts(session, c)
    st.subheader(f"What drives “{explorer.classes[c]}”")
    if top.empty:
        st.info("This student uses no concept (all weights are zero).")
    else:
        pick = alt.selection_point(fields=["concept"], name="pick")
        bars = diverging_bars(
            top,
            "weight",
            ["concept", alt.Tooltip("weight:Q", format=".3f"), alt.Tooltip("mean_contribution:Q", format=".3f")],
        ).add_params(pick)
        event = st.altair_chart(bars, width="stretch", on_select="rerun", key="concept_chart")
        picked = (event.selection.get("pick") or [{}])[0].get("concept") if event else None
        if picked:
            st.session_state["concept"] = picked  # the Images page opens filtered on it
        concept = st.session_state.get("concept")
        if concept in explorer.vocabulary:
            st.markdown(f"**Where “{concept}” fires most** (click a bar to pick another; the Images page follows)")
            tiles = st.columns(6)
            for n, r in enumerate(
                rows_where_concept_fires(explorer.workspace.concept_matrix, explorer.vocabulary.index(concept), top=6)
            ):
                thumb = thumbnail(str(explorer.workspace.image_path(int(r))))
                if thumb is not None:
                    tiles[n].image(
                        thumb,
                        caption=f"{explorer.workspace.image_ids[r]} · "
                        f"{float(explorer.workspace.concept_matrix[r, explorer.vocabulary.index(concept)]):.2f}",
                    )
        else:
            st.caption("Click a bar to see the images where that concept fires most.")
    st.subheader("Top concepts across classes")
    heat = heatmap_table(session)
    chart = (
        alt.Chart(heat)
        .mark_rect()
        .encode(
            x=alt.X("concept:N", title=None),
            y=alt.Y("class:N", title=None),
            color=alt.Color("weight:Q", scale=alt.Scale(scheme="redblue", domainMid=0, reverse=True)),
            tooltip=["class", "concept", alt.Tooltip("weight:Q", format=".3f")],
        )
    )
    st.altair_chart(chart, width="stretch")
