"""Performance view: how well the students match the teacher, on images they were not fit on."""

import altair as alt
import pandas as pd
import streamlit as st

from conceptkd_core import palette
from conceptkd_core.explorer import budget_table, disagreement_table, metrics_summary, metrics_table
from views.common import current, get_predictor, selected_class, shown
from views.draw import class_axis, number_column, score_column, teacher_student, thumbnail_uri

# Pinned, a column is as wide as its longest name and never scrolls: a class name of 200 characters
# left a phone nothing but that column. Capped, a longer name ends in "…" (a click shows it whole).
CLASS_COLUMN = st.column_config.TextColumn("Class", pinned=True, width="medium")
METRIC_COLUMNS = {  # metrics_table column -> how the table shows it
    "class": CLASS_COLUMN,
    "positives": number_column("Held-out positives", "Held-out images labelled with the class.", "%d"),
    "teacher_ap": score_column("Teacher AP", "Average precision of the teacher's scores.", palette.TEACHER),
    "student_ap": score_column("Student AP", "Average precision of the student's scores.", palette.STUDENT),
    "chance_ap": number_column("Chance AP", "A random ranking: the share of positives."),
    "fidelity_ap": number_column("Student AP vs teacher", "AP of the student at finding the teacher's yes images."),
    "balanced_agreement": score_column("Balanced agreement", "Mean agreement on the teacher's yes and no images."),
    "decision_f1": number_column("F1 vs teacher", "F1 of the student's yes/no against the teacher's."),
    "concepts_used": number_column("Concepts used", "Non-zero weights.", "%d"),
    "student_ap_in_sample": number_column("Student AP (in-sample)", "On the images the students were fit on."),
    "agreement": number_column(
        "Plain agreement", "Share of images where both say the same; flattered by rare classes."
    ),
}

LABEL_COLUMNS = ("positives", "teacher_ap", "student_ap", "chance_ap", "student_ap_in_sample")


def headline(overall: dict) -> None:
    st.caption(
        f"Held-out: {overall['n_held_out']:,} images the students were not fit on "
        f"({overall['n_fit']:,} fit images; {overall['split_rule']})."
    )
    cols = st.columns(5)
    if overall["labelled"]:
        cols[0].metric("Teacher mAP", f"{overall['teacher_map']:.3f}")
        cols[1].metric(
            "Student mAP",
            f"{overall['student_map']:.3f}",
            f"{overall['student_map'] - overall['teacher_map']:+.3f} vs teacher",
            delta_color="off",
        )
        cols[2].metric("Chance mAP", f"{overall['chance_map']:.3f}", help="A random ranking: the share of positives.")
    else:  # no labels to measure AP against: the students are measured against the teacher
        st.info(UNLABELLED, icon=":material/label_off:")
        cols[0].metric("Teacher mAP", "no labels", help="AP needs labels; this workspace has none.")
        cols[1].metric(
            "Student AP vs teacher",
            f"{overall['fidelity_ap']:.3f}",
            help="Mean over classes of the AP of the student at finding the teacher's yes images.",
        )
        cols[2].metric(
            "Chance",
            f"{overall['fidelity_chance']:.3f}",
            help="A random ranking: the share of the teacher's yes images.",
        )
    cols[3].metric(
        "Balanced agreement",
        f"{overall['balanced_agreement']:.3f}",
        help="Mean of the student's agreement on the teacher's yes and on its no images (0.5 = chance).",
    )
    cols[4].metric(
        "Concepts per class", f"{overall['concepts_per_class_median']:.0f}", help="Median of non-zero weights."
    )


UNLABELLED = (
    "No held-out image has a label (the workspace was made from class names only), so AP against labels "
    "cannot be measured. The students are measured against the teacher instead: how well each finds the "
    "images the teacher says yes to."
)


def ap_chart(table: pd.DataFrame, labelled: bool = True) -> alt.Chart:
    """Teacher vs student AP per class on held-out images, with each class's chance AP as a tick;
    without labels, the student's AP at finding the teacher's yes images, and its chance."""
    if labelled:
        columns, chance, title = {"teacher_ap": "teacher", "student_ap": "student"}, "chance_ap", "held-out AP"
    else:
        columns, chance, title = {"fidelity_ap": "student"}, "teacher_yes_share", "held-out AP vs teacher"
    long = table.melt(id_vars="class", value_vars=list(columns), var_name="model", value_name="AP")
    long["model"] = long["model"].map(columns)
    shown_models = list(columns.values())  # the legend names only the bars drawn
    models = alt.Scale(domain=shown_models, range=[palette.TEACHER_STUDENT[m] for m in shown_models])
    bars = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("class:N", title=None, axis=class_axis()),
            xOffset=alt.XOffset("model:N", sort=list(palette.TEACHER_STUDENT)),
            y=alt.Y("AP:Q", scale=alt.Scale(domain=[0, 1]), title=title),
            color=alt.Color("model:N", title=None, scale=models, legend=alt.Legend(orient="top")),
            tooltip=["class", "model", alt.Tooltip("AP:Q", format=".3f")],
        )
    )
    ticks = (
        alt.Chart(table)
        .mark_tick(color=palette.NEUTRAL, thickness=2)
        .encode(
            x="class:N", y=f"{chance}:Q", tooltip=["class", alt.Tooltip(f"{chance}:Q", title="chance AP", format=".3f")]
        )
    )
    return bars + ticks


def budgets(explorer, session) -> None:
    if st.toggle("AP at a budget of concepts (re-fits every class; a moment on big workspaces)", key="budgets"):
        table = budget_table(explorer, session)
        config = {name: score_column(f"AP, {name.removeprefix('ap_at_')} concepts") for name in table if "_at_" in name}
        config |= {
            "class": CLASS_COLUMN,
            "concepts_used": number_column("Concepts used now", format="%d"),
            "ap_all": score_column("AP, all concepts used now", colour=palette.STUDENT),
        }
        st.dataframe(table, hide_index=True, column_config=config)


def open_on_images(ids: list[str], classes: list[str]) -> None:
    """The Open button of a table row: show that image, for that class, on the Images page."""
    row = st.session_state["open_disagreement"].row
    st.session_state["detail_image"] = ids[row]
    st.session_state["class"] = st.session_state["class_input"] = classes[row]
    st.session_state["go_to_images"] = True


def disagreements(explorer, session) -> None:
    st.subheader("Where teacher and student disagree")
    scope = st.radio("Class", ["selected class", "all classes"], horizontal=True, key="disagree_scope")
    c = selected_class(explorer) if scope == "selected class" else None
    worst = disagreement_table(session, c)
    ws = explorer.workspace
    worst["open"] = ":material/zoom_in: Open"
    worst["image"] = [thumbnail_uri(str(ws.image_path(int(r)))) for r in worst["row"]]
    worst["image_id"] = [str(ws.image_ids[r]) for r in worst["row"]]
    worst["in_words"] = [
        teacher_student(t, s) for t, s in zip(worst["teacher_prob"], worst["student_prob"], strict=True)
    ]
    st.caption("Held-out images, largest gap first. Open one to see why on the Images page.")
    opener = st.column_config.ButtonColumn(
        "Open",
        pinned=True,
        key="open_disagreement",
        on_click=open_on_images,
        args=(list(worst["image_id"]), list(worst["class"])),
    )
    st.dataframe(
        worst,
        hide_index=True,
        row_height=56,
        column_order=["open", "image", "image_id", "class", "in_words", "teacher_prob", "student_prob"],
        column_config={
            "open": opener,
            "image": st.column_config.ImageColumn("Image", width="small"),
            "image_id": st.column_config.TextColumn("Image id"),
            "class": st.column_config.TextColumn("Class"),
            "in_words": st.column_config.TextColumn("In words"),
            "teacher_prob": score_column("Teacher", "The teacher's probability for the class.", palette.TEACHER),
            "student_prob": score_column("Student", "The student's probability for the class.", palette.STUDENT),
        },
    )


def export_student(explorer, session) -> None:
    """Write this session's students as a self-contained model (``conceptkd_core.export``) and offer it as a zip."""
    from conceptkd_core.export import ExportError, export_as_zip  # imports torch: only on this click
    from conceptkd_core.extract.clip_backend import ClipLoadError
    from conceptkd_core.predict import PredictError

    ws = explorer.workspace
    try:
        with st.spinner("Exporting: tracing CLIP and the students…"):
            clip = get_predictor(ws.workspace_id, ws).clip
            st.session_state["export_zip"] = (ws.workspace_id, session.cursor, export_as_zip(explorer, session, clip))
    except (ExportError, PredictError, ClipLoadError, OSError) as exc:
        st.error(f"Cannot export: {shown(exc)}")


def export_section(explorer, session) -> None:
    st.subheader("Take the students away")
    st.caption(
        "A folder that runs with torch alone: the dense path as TorchScript, the sparse heads, the concepts' "
        "text embeddings, the vocabulary and a model card with these held-out figures. "
        "`python -m conceptkd_core student predict --model DIR IMAGE…` scores images with it."
    )
    st.button("Export student", key="export_student", on_click=export_student, args=(explorer, session))
    ready = st.session_state.get("export_zip")
    if ready and ready[:2] == (explorer.workspace.workspace_id, session.cursor):
        st.download_button(
            "Download conceptkd-student.zip",
            ready[2],
            file_name="conceptkd-student.zip",
            mime="application/zip",
            key="download_student",
        )


if st.session_state.pop("go_to_images", False):
    st.switch_page("views/images.py")
st.title("Students")
state = current()
if state:
    explorer, session = state
    table = metrics_table(explorer, session)
    overall = metrics_summary(explorer, session)
    headline(overall)
    st.altair_chart(ap_chart(table, overall["labelled"]), width="stretch")
    st.caption(
        "Bars: AP on held-out images; grey ticks: chance (a random ranking). The in-sample AP "
        "(on the images the students were fit on) is in the table for comparison only."
        if overall["labelled"]
        else "Bars: the student's AP at finding the teacher's yes images, on held-out images; grey ticks: chance "
        "(the share of the teacher's yes images)."
    )
    # without labels, the columns measured against labels are empty (or 0): not shown
    shown_columns = [c for c in METRIC_COLUMNS if overall["labelled"] or c not in LABEL_COLUMNS]
    st.dataframe(table, hide_index=True, column_order=shown_columns, column_config=METRIC_COLUMNS)
    budgets(explorer, session)
    disagreements(explorer, session)
    export_section(explorer, session)
