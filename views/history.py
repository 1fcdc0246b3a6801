"""Provenance view: every edit with its metrics, undo/redo, revert, export and import."""

import pandas as pd
import streamlit as st

from conceptkd_core.explorer import import_log, owner_of, resume_session, saved_sessions
from conceptkd_core.markdown_text import literal
from conceptkd_core.students.session import TuningError
from views.common import browser_key, current, shown

EDIT_COLUMNS = {
    "#": st.column_config.NumberColumn("#", format="%d", width="small"),
    "applied": st.column_config.CheckboxColumn("Applied", help="Undone edits stay listed until the next edit."),
    "time": st.column_config.TextColumn("Time (UTC)"),
    "user": st.column_config.TextColumn("User"),
    "operation": st.column_config.TextColumn("Operation"),
    "class": st.column_config.TextColumn("Class"),
    "concept": st.column_config.TextColumn("Concept"),
    "held-out AP after": st.column_config.TextColumn("Held-out AP after", help="Student AP of each class edited."),
}
SESSION_COLUMNS = {
    "name": st.column_config.TextColumn("Session"),
    "modified": st.column_config.TextColumn("Last saved (UTC)"),
    "edits": st.column_config.NumberColumn("Edits", format="%d"),
    "applied": st.column_config.NumberColumn("Applied", format="%d", help="Edits not undone."),
}

st.title("History")
state = current()
if state:
    explorer, session = state
    buttons = st.container(horizontal=True)
    if buttons.button("Undo", icon=":material/undo:", disabled=not session.can_undo()):
        session.undo()
        st.rerun()
    if buttons.button("Redo", icon=":material/redo:", disabled=not session.can_redo()):
        session.redo()
        st.rerun()
    rows = [
        {
            "#": i + 1,
            "applied": i < session.cursor,
            "time": e.time,
            "user": e.user,
            "operation": e.op,
            "class": ", ".join(explorer.classes[c] for c in e.classes),
            "concept": explorer.vocabulary[e.concept] if e.concept is not None else "",
            "held-out AP after": "; ".join(
                f"{v['student_ap']:.3f}"
                for v in e.metrics_after.values()
                if isinstance(v, dict) and isinstance(v.get("student_ap"), (int, float))
            ),
        }
        for i, e in enumerate(session.events)
    ]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, column_config=EDIT_COLUMNS)
        # Keyed by where the session is: after Undo, Redo or a revert the box offers that point, not
        # the number it kept from before (a widget keeps its value while its key stays).
        point = st.number_input(
            "Revert to after edit # (0 = before any edit)",
            0,
            len(rows),
            session.cursor,
            key=f"revert_to_{session.session_id}_{session.cursor}_{len(rows)}",
        )
        if st.button("Revert"):
            session.revert(int(point))
            st.rerun()
    else:
        st.info("No edits yet. Tune a concept on the Tune page.")
    st.download_button(
        "Download students + log (JSON)",
        session.export_json(),
        file_name="conceptkd-tuning.json",
        mime="application/json",
        icon=":material/download:",
    )
    upload = st.file_uploader("Import a saved log", type=["json"], key="import_log")
    # The uploader keeps its file across reruns: import each file once, then keep its outcome.
    if upload is not None and st.session_state.get("imported_file") != upload.file_id:
        st.session_state["imported_file"] = upload.file_id
        try:
            restored = import_log(explorer, upload.getvalue(), session)
            st.session_state["tuning"] = restored
            st.session_state["import_outcome"] = ("success", f"Imported {len(restored.events)} edits.")
        except (TuningError, ValueError) as exc:
            # Named: the reader may have picked the wrong one of several saved logs.
            name = " ".join(upload.name.split())[:120]
            st.session_state["import_outcome"] = ("error", f"{literal(name)}: not imported. {shown(exc)}")
    if upload is not None and "import_outcome" in st.session_state:
        kind, message = st.session_state["import_outcome"]
        (st.success if kind == "success" else st.error)(message)

    st.subheader("Your autosaved sessions")
    owner = owner_of(browser_key())
    name = st.text_input(
        "This session's name",
        value=session.name,
        max_chars=200,
        key=f"name_{session.session_id}",
        placeholder="e.g. aeroplane without sky (listed by this name instead of its start time)",
    )
    if name != session.name:
        session.name, session.owner = name, owner
        session.autosave()
    saved = saved_sessions(explorer, owner)
    others = saved[saved["session_id"] != session.session_id]
    damaged, others = others[others["problem"] != ""], others[others["problem"] == ""]
    for row in damaged.itertuples():
        st.warning(f"Autosave {row.session_id} ({row.modified}) cannot be resumed: {shown(row.problem)}")
    if others.empty:
        st.caption("No other session of yours on this workspace (sessions are listed to the browser that made them).")
    else:
        st.dataframe(others, hide_index=True, column_order=list(SESSION_COLUMNS), column_config=SESSION_COLUMNS)
        names = dict(zip(others["session_id"], others["name"], strict=True))
        pick = st.selectbox("Session to resume", list(names), format_func=names.get, key="resume_pick")
        if st.button("Resume it"):
            try:
                st.session_state["tuning"] = resume_session(explorer, others.set_index("session_id").loc[pick, "path"])
                st.rerun()
            except (TuningError, ValueError, OSError) as exc:
                st.error(f"Not resumed: {shown(exc)}")
