"""Image explorer: a grid of thumbnails filtered by class / concept / disagreement, and the image
opened from it in detail: its segment overlays and the waterfall from the student's bias to its score."""

import numpy as np
import streamlit as st

from conceptkd_core.explorer import disagreement_table, rows_where_concept_fires
from views.common import current, selected_class
from views.draw import image_tile, teacher_student
from views.image_detail import NO_CONCEPT, image_detail

GRID_SIZE, GRID_HEIGHT = 24, 640


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


def shown_row(explorer, rows: np.ndarray) -> int:
    """The image opened in detail: the last one opened, else the grid's first."""
    try:
        return explorer.workspace.row_of(st.session_state.get("detail_image"))
    except KeyError:
        return int(rows[0]) if len(rows) else 0


def open_image(image_id: str) -> None:
    st.session_state["detail_image"] = image_id


def image_grid(explorer, session, c: int, rows: np.ndarray, shown: int) -> None:
    ws = explorer.workspace
    student, teacher = session.class_probs(c), session.teacher_probs[:, c]
    if len(rows) == 0:
        st.info("No images match.")
        return
    with st.container(height=GRID_HEIGHT, border=False), st.container(horizontal=True, gap="xsmall"):
        for r in rows:
            image_id = str(ws.image_ids[r])
            caption = teacher_student(teacher[r], student[r])
            image_tile(str(ws.image_path(int(r))), image_id, caption, r == shown, open_image, (image_id,))


st.title("Images")
state = current()
if state:
    explorer, session = state
    c = selected_class(explorer)
    filters = st.columns(2)
    with filters[0]:
        mode = st.radio(
            "Show", ["class members", "where a concept fires", "disagreements"], horizontal=True, key="grid_mode"
        )
    with filters[1]:
        concept = pick_concept(explorer)
    rows = grid_rows(explorer, session, c, mode, concept)
    r = shown_row(explorer, rows)
    grid, detail = st.columns(2, gap="medium")
    with grid:
        image_grid(explorer, session, c, rows, r)
    with detail:
        image_detail(explorer, session, c, r, concept)
