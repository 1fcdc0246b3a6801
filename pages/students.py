"""Performance view: AP of teacher vs students, fidelity, and where they disagree."""

import altair as alt
import streamlit as st

from conceptkd_core.explorer import disagreement_table, metrics_summary, metrics_table
from pages.common import current, selected_class, thumbnail

st.title("Students")
state = current()
if state:
    explorer, session = state
    table = metrics_table(explorer, session)
    overall = metrics_summary(explorer, session)
    cols = st.columns(3)
    cols[0].metric("Teacher mAP", f"{overall['teacher_map']:.3f}")
    cols[1].metric("Student mAP", f"{overall['student_map']:.3f}")
    cols[2].metric("Fidelity (same decision)", f"{overall['fidelity']:.3f}")
    long = table.melt(id_vars="class", value_vars=["teacher_ap", "student_ap"], var_name="model", value_name="AP")
    chart = alt.Chart(long).mark_bar().encode(
        x=alt.X("class:N", title=None), xOffset="model:N", y=alt.Y("AP:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("model:N", title=None), tooltip=["class", "model", alt.Tooltip("AP:Q", format=".3f")])
    st.altair_chart(chart, width="stretch")
    st.dataframe(table, hide_index=True)
    st.subheader("Where teacher and student disagree")
    scope = st.radio("Class", ["selected class", "all classes"], horizontal=True, key="disagree_scope")
    c = selected_class(explorer) if scope == "selected class" else None
    worst = disagreement_table(session, c)
    worst.insert(0, "image_id", [explorer.workspace.image_ids[r] for r in worst["row"]])
    tiles = st.columns(6)
    for n, (_, item) in enumerate(worst.head(6).iterrows()):
        thumb = thumbnail(str(explorer.workspace.image_path(int(item["row"]))))
        if thumb is not None:
            tiles[n].image(thumb, caption=f"{item['image_id']} · {item['class']}: teacher {item['teacher_prob']:.2f}, "
                                          f"student {item['student_prob']:.2f}")
    st.dataframe(worst.drop(columns=["class_index"]), hide_index=True)
