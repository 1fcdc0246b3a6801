"""An image opened in detail, as the Images and Tune pages show it: its segment overlays (each
segment's share of the class's score, a concept's segments, the top concept of each) and the
waterfall from the student's bias to its score."""

import numpy as np
import streamlit as st

from conceptkd_core import palette
from conceptkd_core.explorer import concept_contributions, image_waterfall
from conceptkd_core.images import ImageError
from conceptkd_core.markdown_text import literal
from conceptkd_core.overlays import ImageSegments, concept_overlay, contribution_overlay, label_overlay
from conceptkd_core.store.workspace import WorkspaceError
from views.common import shown
from views.draw import detail_image, fitted, teacher_student, waterfall

OVERLAY_WIDTH = 300
NO_CONCEPT = "(none)"


def overlays(explorer, session, r: int, c: int, image: np.ndarray, concept: str) -> None:
    """Three views of the image's segments: their share of the class's score, their score for the
    concept in focus, and their top concept."""
    seg = ImageSegments.of(explorer.segments, explorer.workspace, r)
    shares, for_concept, labelled = st.tabs(["Share of the score", "Concept", "Top concept"])
    shares.image(
        fitted(contribution_overlay(image, seg.segment_map, seg.shares(concept_contributions(session, r, c)))),
        caption=f"segments by how much they push the score for “{literal(explorer.classes[c])}” up or down",
        width=OVERLAY_WIDTH,
    )
    if concept == NO_CONCEPT:
        for_concept.info("Pick a concept above to see where it fires.")
    else:
        j = explorer.vocabulary.index(concept)
        weight = float(session.bank.coef_[c, j])
        scores = seg.concept_scores(j, float(explorer.workspace.concept_matrix[r, j]))
        for_concept.image(
            fitted(concept_overlay(image, seg.segment_map, scores, palette.signed_colour(weight))),
            caption=f"segments by their score for “{literal(concept)}” "
            f"(weight {weight:+.3f}: the tint is its direction)",
            width=OVERLAY_WIDTH,
        )
    picture, legend = label_overlay(image, seg.segment_map, seg.top_concepts, explorer.vocabulary)
    labelled.image(fitted(picture), caption="segments coloured by their top concept", width=OVERLAY_WIDTH)
    # Markdown with HTML: ``literal`` escapes both (an HTML-escaped word still had its Markdown drawn).
    labelled.markdown(
        " ".join(f"<span style='color:rgb{rgb}'>■</span> {literal(word)}" for word, rgb in legend.items()),
        unsafe_allow_html=True,
    )


def why(explorer, session, r: int, c: int) -> None:
    """The student's score for the image as a waterfall, and its decision in words."""
    wf = image_waterfall(session, r, c)
    decided = "yes" if wf.says_yes else "no"
    st.markdown(f"**Why the student says “{decided}” for “{literal(explorer.classes[c])}”**")
    waterfall(wf, float(session.class_probs(c)[r]))


def image_detail(explorer, session, c: int, r: int, concept: str) -> None:
    ws = explorer.workspace
    st.subheader(literal(ws.image_ids[r]))
    truth = "labelled" if ws.labels[r, c] else "not labelled"
    teacher, student = float(session.teacher_probs[r, c]), float(session.class_probs(c)[r])
    st.caption(f"“{literal(explorer.classes[c])}” ({truth}): {teacher_student(teacher, student)}")
    try:
        image = detail_image(str(ws.image_path(r)))
    except ImageError as exc:
        st.error(shown(exc))
        image = None
    if explorer.segments_problem:
        st.warning(f"No segment overlays: {shown(explorer.segments_problem)}")
    elif image is not None and explorer.segments is not None:
        try:
            overlays(explorer, session, r, c, image, concept)
        except WorkspaceError as exc:
            st.warning(f"No segment overlays for this image: {shown(exc)}")
    why(explorer, session, r, c)
