"""Image explorer: a grid filtered by class / concept / disagreement, and one image in detail
with its segment overlays and which concepts push its score up or down."""

import html

import altair as alt
import numpy as np
import streamlit as st

from conceptkd_core.explorer import disagreement_table, image_contributions, rows_where_concept_fires
from conceptkd_core.images import ImageError, load_rgb
from conceptkd_core.overlays import concept_overlay, label_overlay, segment_scores_for_concept
from conceptkd_core.store.side_files import segment_row
from conceptkd_core.store.workspace import WorkspaceError
from conceptkd_core.students.metrics import DECISION_THRESHOLD
from pages.common import current, diverging_bars, selected_class, shown, thumbnail

GRID_SIZE, GRID_COLUMNS = 24, 6
NO_CONCEPT = "(none)"


def pick_concept(explorer) -> str:
    """The concept in focus, shared with the Concepts page through the session state."""
    concepts = [NO_CONCEPT, *explorer.vocabulary]
    chosen = st.session_state.get("concept") if st.session_state.get("concept") in concepts else NO_CONCEPT
    concept = st.selectbox("Concept", concepts, index=concepts.index(chosen), key="concept_input")
    st.session_state["concept"] = concept
    return concept


def grid_rows(explorer, session, c: int, mode: str, concept: str) -> np.ndarray:
    ws = explorer.workspace
    if mode == "where a concept fires" and concept != NO_CONCEPT:
        return rows_where_concept_fires(ws.concept_matrix, explorer.vocabulary.index(concept), top=GRID_SIZE)
    if mode == "disagreements":
        return disagreement_table(session, c, top=GRID_SIZE)["row"].to_numpy()
    return np.flatnonzero(ws.labels[:, c])[:GRID_SIZE]


def image_grid(explorer, session, c: int, rows: np.ndarray) -> None:
    ws = explorer.workspace
    student, teacher = session.class_probs(c), session.teacher_probs[:, c]
    if len(rows) == 0:
        st.info("No images match.")
    grid = st.columns(GRID_COLUMNS)
    for n, r in enumerate(rows):
        thumb = thumbnail(str(ws.image_path(int(r))))
        with grid[n % GRID_COLUMNS]:
            if thumb is None:
                st.caption(f"{ws.image_ids[r]}: image missing")
            else:
                st.image(thumb, caption=f"{ws.image_ids[r]} · T {teacher[r]:.2f} · S {student[r]:.2f}")


def overlays(explorer, r: int, image: np.ndarray, concept: str) -> None:
    """Left: segments tinted by their score for the concept; right: segments labelled by their top concept."""
    ws = explorer.workspace
    seg = segment_row(explorer.segments, ws, r)  # range-checked: a damaged row raises WorkspaceError
    segment_map = seg["segment_maps"]
    left, right = st.columns(2)
    if concept != NO_CONCEPT:
        j = explorer.vocabulary.index(concept)
        scores = segment_scores_for_concept(
            j, float(ws.concept_matrix[r, j]), int(seg["best_segment"][j]), seg["top_concepts"], seg["top_scores"]
        )
        left.image(
            concept_overlay(image, segment_map, scores),
            caption=f"segments by their score for “{concept}”",
            width="stretch",
        )
    else:
        left.image(image, caption="pick a concept to see where it fires", width="stretch")
    labelled, legend = label_overlay(image, segment_map, seg["top_concepts"], explorer.vocabulary)
    right.image(labelled, caption="segments labelled by their top concept", width="stretch")
    right.markdown(
        " ".join(f"<span style='color:rgb{rgb}'>■</span> {html.escape(word)}" for word, rgb in legend.items()),
        unsafe_allow_html=True,
    )


def why(explorer, session, r: int, c: int) -> None:
    """Which concepts push this image's score for the class up or down."""
    decided = "yes" if session.class_probs(c)[r] > DECISION_THRESHOLD else "no"
    st.subheader(f"Why the student says “{decided}” for “{explorer.classes[c]}”")
    table = image_contributions(session, r, c)
    if table.empty:
        st.info("No concept contributes to this class for this image.")
        return
    tooltip = ["concept", *(alt.Tooltip(f"{name}:Q", format=".3f") for name in ("score", "weight", "contribution"))]
    st.altair_chart(diverging_bars(table, "contribution", tooltip), width="stretch")


def image_detail(explorer, session, c: int, rows: np.ndarray, concept: str) -> None:
    ws = explorer.workspace
    ids = [str(ws.image_ids[r]) for r in rows] or [str(ws.image_ids[0])]
    r = ws.row_of(st.selectbox("Image in detail", ids, key="detail_image"))
    try:
        image = np.asarray(load_rgb(ws.image_path(r)))
    except ImageError as exc:
        st.error(str(exc))
        image = None
    if explorer.segments_problem:
        st.warning(f"No segment overlays: {shown(explorer.segments_problem)}")
    elif image is not None and explorer.segments is not None:
        try:
            overlays(explorer, r, image, concept)
        except WorkspaceError as exc:
            st.warning(f"No segment overlays for this image: {shown(exc)}")
    why(explorer, session, r, c)


st.title("Images")
state = current()
if state:
    explorer, session = state
    c = selected_class(explorer)
    cols = st.columns(2)
    with cols[0]:
        mode = st.radio(
            "Show", ["class members", "where a concept fires", "disagreements"], horizontal=True, key="grid_mode"
        )
    with cols[1]:
        concept = pick_concept(explorer)
    rows = grid_rows(explorer, session, c, mode, concept)
    image_grid(explorer, session, c, rows)
    st.divider()
    image_detail(explorer, session, c, rows, concept)
