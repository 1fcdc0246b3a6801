"""Landing page: what ConceptKD does, and a three-step path through the open workspace."""

import streamlit as st

from views.common import current, view

STEPS = (  # (page, what to do there, why)
    (
        "Students",
        "See how well the students mimic the teacher",
        "Each class has a small student: a weighted sum of concept words. Compare its AP with the "
        "teacher's and with chance, on images the students were never fit on.",
    ),
    (
        "Images",
        "Open an image and read its decision",
        "Which segments and which concepts push the student's score up or down, step by step from "
        "the bias to the score and the threshold.",
    ),
    (
        "Tune",
        "Steer a student by hand",
        "Drag a concept's weight, lock it or remove it: the other weights re-fit at once and the "
        "held-out figures follow. Undo, revert or export on History.",
    ),
)


def workspace_line() -> None:
    state = current()
    if state:
        ws = state[0].workspace
        demo = (
            " (the embedded demo: a toy classifier, computed for real)" if ws.meta.get("extra", {}).get("demo") else ""
        )
        st.caption(f"Open workspace: {ws.n_images:,} images · {ws.n_classes} classes · {ws.n_concepts} concepts{demo}.")


def steps() -> None:
    for n, (column, (title, task, why)) in enumerate(zip(st.columns(3), STEPS, strict=True), start=1):
        with column.container(border=True, height="stretch"):
            st.markdown(f"**{n}. {task}**")
            st.write(why)
            page = view(title)
            st.page_link(page.script, label=f"Open {title}", icon=page.icon)


st.title("Start here")
st.markdown(
    "ConceptKD explains an image classifier, the **teacher**, with one small, readable **student** per "
    "class: a weighted sum of human concept words (*wheel*, *sky*, *fur*) that CLIP scores on each "
    "image's segments. You can read the students, check them against the teacher and steer them."
)
workspace_line()
steps()
st.caption(
    "The sidebar holds the class in focus and where the workspace lives; Setup shows its images, "
    "vocabulary, CLIP model and teacher."
)
