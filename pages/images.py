"""Image explorer: a grid filtered by class / concept / disagreement, and one image in detail
with its segment overlays and which concepts push its score up or down."""

import altair as alt
import numpy as np
import streamlit as st

from conceptkd_core.explorer import disagreement_table, image_contributions, rows_where_concept_fires
from conceptkd_core.images import ImageError, load_rgb
from conceptkd_core.overlays import concept_overlay, label_overlay, segment_scores_for_concept
from conceptkd_core.students.metrics import DECISION_THRESHOLD
from pages.common import current, diverging_bars, selected_class, thumbnail


st.title("Images")
state = current()
if state:
    explorer, session = state
    ws = explorer.workspace
    c = selected_class(explorer)
    concepts = ["(none)"] + list(explorer.vocabulary)
    chosen = st.session_state.get("concept") if st.session_state.get("concept") in concepts else "(none)"
    cols = st.columns(2)
    mode = cols[0].radio("Show", ["class members", "where a concept fires", "disagreements"], horizontal=True, key="grid_mode")
    concept = cols[1].selectbox("Concept", concepts, index=concepts.index(chosen), key="concept_input")
    st.session_state["concept"] = concept
    probs, teacher = session.class_probs(c), session.teacher_probs[:, c]
    if mode == "where a concept fires" and concept != "(none)":
        rows = rows_where_concept_fires(ws.concept_matrix, explorer.vocabulary.index(concept))
    elif mode == "disagreements":
        rows = disagreement_table(session, c, top=24)["row"].to_numpy()
    else:
        rows = np.flatnonzero(ws.labels[:, c])[:24]
    if len(rows) == 0:
        st.info("No images match.")
    grid = st.columns(6)
    for n, r in enumerate(rows[:24]):
        thumb = thumbnail(str(ws.image_path(int(r))))
        with grid[n % 6]:
            if thumb is None:
                st.caption(f"{ws.image_ids[r]}: image missing")
            else:
                st.image(thumb, caption=f"{ws.image_ids[r]} · T {teacher[r]:.2f} · S {probs[r]:.2f}")
    st.divider()
    ids = [str(ws.image_ids[r]) for r in rows] or [str(ws.image_ids[0])]
    image_id = st.selectbox("Image in detail", ids, key="detail_image")
    r = ws.row_of(image_id)
    try:
        image = np.asarray(load_rgb(ws.image_path(r)))
    except ImageError as exc:
        st.error(str(exc))
        image = None
    if image is not None and explorer.segments is not None:
        seg = explorer.segments
        left, right = st.columns(2)
        if concept != "(none)":
            j = explorer.vocabulary.index(concept)
            scores = segment_scores_for_concept(j, float(ws.concept_matrix[r, j]), int(seg["best_segment"][r, j]),
                                                np.asarray(seg["top_concepts"][r]), np.asarray(seg["top_scores"][r]))
            left.image(concept_overlay(image, np.asarray(seg["segment_maps"][r]), scores),
                       caption=f"segments by their score for “{concept}”", width="stretch")
        else:
            left.image(image, caption="pick a concept to see where it fires", width="stretch")
        labelled, legend = label_overlay(image, np.asarray(seg["segment_maps"][r]), np.asarray(seg["top_concepts"][r]),
                                         explorer.vocabulary)
        right.image(labelled, caption="segments labelled by their top concept", width="stretch")
        right.markdown(" ".join(f"<span style='color:rgb{rgb}'>■</span> {word}" for word, rgb in legend.items()),
                       unsafe_allow_html=True)
    decided = "yes" if probs[r] > DECISION_THRESHOLD else "no"
    st.subheader(f"Why the student says “{decided}” for “{explorer.classes[c]}”")
    table = image_contributions(session, r, c)
    if table.empty:
        st.info("No concept contributes to this class for this image.")
    else:
        st.altair_chart(diverging_bars(table, "contribution", [
            "concept", alt.Tooltip("score:Q", format=".3f"), alt.Tooltip("weight:Q", format=".3f"),
            alt.Tooltip("contribution:Q", format=".3f")]), width="stretch")
