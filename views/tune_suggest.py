"""The Tune page's suggestions: every candidate edit of a class (or of all) tried exactly, ranked by
what it does on the held-out images; one click applies one as an ordinary, undoable edit."""

import numpy as np
import streamlit as st

from conceptkd_core.markdown_text import literal
from conceptkd_core.students.session import TuningError
from conceptkd_core.students.suggest import apply_suggestion
from conceptkd_core.tuning_view import gain_words, suggestions, unmeasured_note
from views.draw import number_column

ALL = "All classes"
SHOWN = 10
COLUMNS = {
    "class": st.column_config.TextColumn("Class"),
    "edit": st.column_config.TextColumn("Edit"),
    "held_out_gain": number_column(
        "Held-out gain", "Change in the student's AP against the teacher's decisions, held-out images", "%+.3f"
    ),
    "interval": st.column_config.TextColumn("90% interval", help="Bootstrap over the held-out images (5–95 %)"),
    "held_out_gain_labels": number_column(
        "Gain vs labels", "Change in AP against the labels, held-out images", "%+.3f"
    ),
    "fit_gain": number_column("Gain in-sample", "The same change on the images the students were fit on", "%+.3f"),
    "warning": st.column_config.TextColumn("Warning"),
}


def run_scan(session, classes: list[int], factor: float) -> None:
    bar = st.progress(0.0, text="Trying every edit…")
    table = suggestions(session, classes, factor, progress=lambda done, total: bar.progress(done / total))
    bar.empty()
    st.session_state["suggestions"] = {"table": table, "at": len(session.audit), "factor": factor}


def apply_row(session, row) -> None:
    try:
        apply_suggestion(session, int(row["class_index"]), row)
    except TuningError as exc:
        st.session_state["tune_toast"] = str(exc)
        return
    st.session_state["tune_toast"] = f"Applied: {row['edit']} for “{row['class']}” (undo on Sliders or History)"
    st.session_state.pop("suggestions", None)  # the students changed: the ranking is out of date


def suggestion_panel(explorer, session, c: int) -> None:
    if "tune_toast" in st.session_state:
        st.toast(literal(st.session_state.pop("tune_toast")), icon=":material/info:")
    st.caption(
        "For each candidate edit (up-tune each concept the class does not use, down-tune and remove each one it "
        "uses), the students are re-fit exactly and measured on held-out images."
    )
    with st.container(horizontal=True, vertical_alignment="bottom"):
        options = [ALL, *explorer.classes]
        target = st.selectbox("Class", options, index=c + 1, key="suggest_class")
        factor = float(st.session_state.get("factor", 2.0))
        if st.button("Find suggestions", icon=":material/search:", type="primary", key="suggest_run"):
            classes = list(range(len(explorer.classes))) if target == ALL else [options.index(target) - 1]
            with st.spinner("Re-fitting every candidate…"):
                run_scan(session, classes, factor)
    found = st.session_state.get("suggestions")
    if not found:
        st.info("Nothing scanned yet: choose a class and press “Find suggestions”.")
        return
    if found["at"] != len(session.audit):
        st.warning("These suggestions were found before the last change; press “Find suggestions” again.")
    table = found["table"].copy()
    table["interval"] = [
        "" if np.isnan(lo) else f"{lo:+.3f} … {hi:+.3f}" for lo, hi in zip(table["low"], table["high"], strict=True)
    ]
    table["warning"] = np.where(table["overfit"], "⚠ gains in-sample only: overfit", "")
    st.caption(
        f"Up-tune / down-tune by × {found['factor']:g}; best first; "
        f"measured on {int(table['scored_rows'].iloc[0]):,} held-out images."
    )
    note = unmeasured_note(table)
    if note:
        st.info(literal(note))
    for i, row in table.head(SHOWN).iterrows():
        with st.container(horizontal=True, vertical_alignment="center", border=True):
            st.markdown(
                f"**{i + 1}. {literal(row['edit'])}** for “{literal(row['class'])}”: "
                f"held-out {gain_words(row['held_out_gain'])}"
                + (f" ({row['interval']})" if row["interval"] else "")
                + (f" · :orange[{row['warning']}]" if row["warning"] else "")
            )
            st.button("Apply", key=f"apply_{i}", icon=":material/check:", on_click=apply_row, args=(session, row))
    st.dataframe(table, hide_index=True, column_order=list(COLUMNS), column_config=COLUMNS)
