"""Contribution view: the concepts that drive the selected class, and a class x concept map."""

import altair as alt
import streamlit as st

from conceptkd_core.explorer import heatmap_table, top_concepts
from pages.common import current, diverging_bars, selected_class

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
        st.altair_chart(diverging_bars(top, "weight", ["concept", alt.Tooltip("weight:Q", format=".3f"),
                                                        alt.Tooltip("mean_contribution:Q", format=".3f")]),
                        use_container_width=True)
    st.subheader("Top concepts across classes")
    heat = heatmap_table(session)
    chart = alt.Chart(heat).mark_rect().encode(
        x=alt.X("concept:N", title=None), y=alt.Y("class:N", title=None),
        color=alt.Color("weight:Q", scale=alt.Scale(scheme="redblue", domainMid=0, reverse=True)),
        tooltip=["class", "concept", alt.Tooltip("weight:Q", format=".3f")])
    st.altair_chart(chart, use_container_width=True)
