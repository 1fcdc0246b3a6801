"""Performance view: how well the students match the teacher, on images they were not fit on."""

import altair as alt
import pandas as pd
import streamlit as st

from conceptkd_core.explorer import budget_table, disagreement_table, metrics_summary, metrics_table
from pages.common import current, selected_class, thumbnail

COLUMNS = {  # metrics_table column -> what the analyst reads
    "class": "class",
    "positives": "held-out positives",
    "teacher_ap": "teacher AP",
    "student_ap": "student AP",
    "chance_ap": "chance AP",
    "fidelity_ap": "student AP vs teacher",
    "balanced_agreement": "balanced agreement",
    "decision_f1": "F1 vs teacher",
    "concepts_used": "concepts used",
    "student_ap_in_sample": "student AP (in-sample)",
    "agreement": "plain agreement",
}


def headline(overall: dict) -> None:
    st.caption(
        f"Held-out: {overall['n_held_out']:,} images the students were not fit on "
        f"({overall['n_fit']:,} fit images; {overall['split_rule']})."
    )
    cols = st.columns(5)
    cols[0].metric("Teacher mAP", f"{overall['teacher_map']:.3f}")
    cols[1].metric(
        "Student mAP",
        f"{overall['student_map']:.3f}",
        f"{overall['student_map'] - overall['teacher_map']:+.3f} vs teacher",
        delta_color="off",
    )
    cols[2].metric("Chance mAP", f"{overall['chance_map']:.3f}", help="A random ranking: the share of positives.")
    cols[3].metric(
        "Balanced agreement",
        f"{overall['balanced_agreement']:.3f}",
        help="Mean of the student's agreement on the teacher's yes and on its no images (0.5 = chance).",
    )
    cols[4].metric(
        "Concepts per class", f"{overall['concepts_per_class_median']:.0f}", help="Median of non-zero weights."
    )


def ap_chart(table: pd.DataFrame) -> alt.Chart:
    """Teacher vs student AP per class on held-out images, with each class's chance AP as a tick."""
    long = table.melt(id_vars="class", value_vars=["teacher_ap", "student_ap"], var_name="model", value_name="AP")
    long["model"] = long["model"].map({"teacher_ap": "teacher", "student_ap": "student"})
    bars = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("class:N", title=None),
            xOffset="model:N",
            y=alt.Y("AP:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("model:N", title=None),
            tooltip=["class", "model", alt.Tooltip("AP:Q", format=".3f")],
        )
    )
    chance = (
        alt.Chart(table)
        .mark_tick(color="#555", thickness=2, size=28)
        .encode(
            x="class:N", y="chance_ap:Q", tooltip=["class", alt.Tooltip("chance_ap:Q", title="chance AP", format=".3f")]
        )
    )
    return bars + chance


def disagreements(explorer, session) -> None:
    st.subheader("Where teacher and student disagree (held-out images)")
    scope = st.radio("Class", ["selected class", "all classes"], horizontal=True, key="disagree_scope")
    c = selected_class(explorer) if scope == "selected class" else None
    worst = disagreement_table(session, c)
    worst.insert(0, "image_id", [explorer.workspace.image_ids[r] for r in worst["row"]])
    tiles = st.columns(6)
    for n, (_, item) in enumerate(worst.head(6).iterrows()):
        thumb = thumbnail(str(explorer.workspace.image_path(int(item["row"]))))
        if thumb is not None:
            tiles[n].image(
                thumb,
                caption=f"{item['image_id']} · {item['class']}: teacher {item['teacher_prob']:.2f}, "
                f"student {item['student_prob']:.2f}",
            )
    st.dataframe(worst.drop(columns=["class_index"]), hide_index=True)


st.title("Students")
state = current()
if state:
    explorer, session = state
    table = metrics_table(explorer, session)
    headline(metrics_summary(explorer, session))
    st.altair_chart(ap_chart(table), width="stretch")
    st.caption(
        "Bars: AP on held-out images; grey ticks: chance (a random ranking). The in-sample AP "
        "(on the images the students were fit on) is in the table for comparison only."
    )
    st.dataframe(table[list(COLUMNS)].rename(columns=COLUMNS), hide_index=True)
    if st.toggle("AP at a budget of concepts (re-fits every class; a moment on big workspaces)", key="budgets"):
        st.dataframe(budget_table(explorer, session), hide_index=True)
    disagreements(explorer, session)
