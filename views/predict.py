"""Predict view: drop in an image (or pick one of the workspace's) and see the teacher's and the
students' scores per class, the concepts behind the student's decision, and where they are."""

import altair as alt
import numpy as np
import streamlit as st

from conceptkd_core import palette
from conceptkd_core.extract.add_images import ALLOWED_SUFFIXES
from conceptkd_core.images import ImageError, load_rgb, load_rgb_bytes
from conceptkd_core.markdown_text import literal
from conceptkd_core.overlays import contribution_overlay
from conceptkd_core.predict import PredictError, prediction_waterfall, score_table, segment_shares
from conceptkd_core.students.metrics import DECISION_THRESHOLD
from views.common import current, get_predictor, get_teacher, selected_class, shown
from views.draw import class_axis, fitted, waterfall

UPLOAD, PICK = "Upload an image", "Pick a workspace image"


def chosen_image(explorer):
    """(name, PIL image) of the uploaded or picked image, or None (with a message)."""
    if st.radio("Image", [UPLOAD, PICK], horizontal=True, key="predict_source") == UPLOAD:
        upload = st.file_uploader(
            "Drop in an image", type=[s.lstrip(".") for s in ALLOWED_SUFFIXES], key="predict_upload"
        )
        if upload is None:
            st.info("Drop in an image to score it.")
            return None
        return upload.name, load_rgb_bytes(upload.getvalue(), upload.name)
    ws = explorer.workspace
    image_id = st.selectbox("Workspace image", [str(i) for i in ws.image_ids], key="predict_pick")
    return image_id, load_rgb(ws.image_path(ws.row_of(image_id)))


def score_chart(table, threshold: float) -> alt.Chart:
    """Teacher vs student probability per class, with the decision threshold as a dashed line."""
    models = alt.Scale(domain=list(palette.TEACHER_STUDENT), range=list(palette.TEACHER_STUDENT.values()))
    bars = (
        alt.Chart(table)
        .mark_bar()
        .encode(
            x=alt.X("class:N", title=None, axis=class_axis()),
            xOffset=alt.XOffset("model:N", sort=list(palette.TEACHER_STUDENT)),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("model:N", title=None, scale=models, legend=alt.Legend(orient="top")),
            tooltip=["class", "model", alt.Tooltip("probability:Q", format=".3f")],
        )
    )
    rule = (
        alt.Chart(alt.Data(values=[{"threshold": threshold}]))
        .mark_rule(strokeDash=[4, 3], color=palette.NEUTRAL, size=2)
        .encode(y=alt.Y("threshold:Q", title="probability"))
    )
    return bars + rule


def enlarged(image, side: int = 384) -> np.ndarray:
    """The image with its longer side at least ``side`` px, so the overlay's borders stay thin."""
    from PIL import Image

    scale = side / max(image.size)
    if scale > 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return np.asarray(image)


def explain(explorer, session, prediction, c: int, pixels: np.ndarray) -> None:
    wf = prediction_waterfall(prediction, session.bank, explorer.vocabulary, c)
    decided = "yes" if wf.says_yes else "no"
    st.markdown(f"**Why the student says “{decided}” for “{literal(explorer.classes[c])}”**")
    left, right = st.columns([3, 2])
    with left:
        waterfall(wf, float(prediction.student_probs[c]))
    overlay = contribution_overlay(pixels, prediction.segment_map, segment_shares(prediction, session.bank, c))
    right.image(
        fitted(overlay),
        caption=f"segments by how much they push the score for “{literal(explorer.classes[c])}” up or down",
    )


st.title("Predict")
state = current()
if state:
    explorer, session = state
    ws = explorer.workspace
    st.caption(
        "A new image is scored as the workspace's images were: CLIP concept scores on its segments, then "
        "this session's students (tuning included) and the workspace's teacher."
    )
    try:
        chosen = chosen_image(explorer)
        predictor = get_predictor(ws.workspace_id, ws) if chosen else None
    except (ImageError, PredictError, RuntimeError, OSError) as exc:  # RuntimeError: CLIP cannot load
        st.error(shown(exc))
        chosen = None
    if chosen:
        name, image = chosen
        teacher = get_teacher(str(ws.root), ws.workspace_id, ws, predictor.clip)
        if isinstance(teacher, str):
            st.warning(f"Students only: {shown(teacher)}")
            teacher = None
        prediction = predictor.predict(image, session.bank, teacher)
        table = score_table(prediction, explorer.classes)
        st.subheader(literal(name))
        top, chart = st.columns([1, 3])
        # Letterboxed: a 1-pixel strip must not become an image of height 0 (or thousands of px).
        top.image(fitted(np.asarray(image)), width="stretch")
        chart.altair_chart(score_chart(table, DECISION_THRESHOLD), width="stretch")
        chart.caption(f"Probability per class; dashed line: the decision threshold ({DECISION_THRESHOLD:.0%}).")
        yes = [explorer.classes[c] for c in np.flatnonzero(prediction.student_probs > DECISION_THRESHOLD)]
        st.markdown(f"The students say **{literal(', '.join(yes)) if yes else 'no class'}**.")
        c = selected_class(explorer)
        explain(explorer, session, prediction, c, enlarged(image))
        st.caption("Pick another class in the sidebar to see its decision.")
