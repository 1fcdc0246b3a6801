"""The Tune page's disagreement subsets: the held-out images of a class in four groups (both say
yes, teacher only, student only, both say no), thumbnails of one group, and the image opened with
its overlays and the contribution of each concept to the student's score."""

import numpy as np
import streamlit as st

from conceptkd_core.markdown_text import literal
from conceptkd_core.students.groups import GROUPS, decision_groups
from views.draw import image_tile, teacher_student
from views.image_detail import NO_CONCEPT, image_detail

GROUP_NAMES = {
    "both_yes": "Both say yes",
    "teacher_only": "Teacher only",
    "student_only": "Student only",
    "both_no": "Both say no",
}
ORDERS = {
    "largest gap first": None,
    "teacher most sure first": "teacher",
    "student most sure first": "student",
}
SHOWN = 24


def open_in_tune(image_id: str) -> None:
    st.session_state["tune_image"] = image_id


def disagreement_panel(explorer, session, c: int) -> None:
    ws = explorer.workspace
    teacher, student = session.teacher_probs[:, c], session.class_probs(c)
    groups = decision_groups(teacher, student, session.shared.held_out_rows)
    st.caption(
        f"The {session.shared.held_out_rows.size:,} held-out images of “{literal(explorer.classes[c])}” by what "
        "the teacher and the student decide (probability above 0.5: yes)."
    )
    left, right = st.columns(2, gap="medium")
    with left:
        group = (
            st.segmented_control(
                "Group",
                GROUPS,
                default="teacher_only",
                format_func=lambda g: f"{GROUP_NAMES[g]} ({groups[g].size})",
                key="tune_group",
            )
            or "teacher_only"
        )
        order = st.selectbox("Order", list(ORDERS), key="tune_group_order")
        rows = groups[group]
        by = ORDERS[order]
        if by:
            sure = np.abs((teacher if by == "teacher" else student)[rows] - 0.5)
            rows = rows[np.argsort(-sure, kind="stable")]
        if rows.size == 0:
            st.info(f"No held-out image in “{GROUP_NAMES[group]}”.")
            return
        shown_id = st.session_state.get("tune_image")
        ids = [str(ws.image_ids[r]) for r in rows[:SHOWN]]
        if shown_id not in ids:
            shown_id = ids[0]
        with st.container(height=620, border=False), st.container(horizontal=True, gap="xsmall"):
            for r, image_id in zip(rows[:SHOWN], ids, strict=True):
                caption = teacher_student(teacher[r], student[r])
                image_tile(
                    str(ws.image_path(int(r))), image_id, caption, image_id == shown_id, open_in_tune, (image_id,)
                )
        if rows.size > SHOWN:
            st.caption(f"The first {SHOWN} of {rows.size:,}.")
    with right:
        image_detail(explorer, session, c, ws.row_of(shown_id), NO_CONCEPT)
