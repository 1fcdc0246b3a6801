"""Tuning view: a slider for any concept of the selected class (searchable), up/down/lock/remove,
edits over several classes at once, instant re-fit, held-out figures since the session started;
suggested edits; the images where teacher and student disagree.

The controls sit in the page, not the sidebar: beside the results on a wide window, above them on a
narrow one, so that tuning works on a phone. The sliders, figures and charts are one board
(``views/tune_board.py``), redrawn in place after each edit."""

import streamlit as st

from conceptkd_core.markdown_text import literal
from conceptkd_core.students.session import TuningError
from conceptkd_core.tuning_board import BoardEdit, is_stale_set
from conceptkd_core.tuning_view import batch_pairs, picked_from_text, picked_text, refusal, slider_concepts
from views.common import current, selected_class
from views.tune_board import tune_board
from views.tune_groups import disagreement_panel
from views.tune_suggest import suggestion_panel

PANELS = ("Sliders", "Suggestions", "Disagreements")


def say(message: str) -> None:
    """A refusal or a note (plain text: it names concepts), shown as a toast on the next draw
    (callbacks run before it)."""
    st.session_state["tune_toast"] = message


def act(session, c: int, edit: BoardEdit) -> None:
    """An edit from the board (already checked by ``read_edit``): undo / redo, or an edit of one
    weight, unless it is a slider value that is not an edit (``is_stale_set``) or would be refused."""
    if edit.op in ("undo", "redo"):
        history_step(session, edit.op)
        return
    if is_stale_set(edit, session, c):
        return
    problem = refusal(session, edit.op, c, edit.j, edit.args)
    if problem:
        say(problem)
        return
    try:
        session.apply(edit.op, c, edit.j, **edit.args)
    except TuningError as exc:
        say(str(exc))


def history_step(session, step: str) -> None:
    try:
        session.undo() if step == "undo" else session.redo()
    except TuningError as exc:
        say(str(exc))


def picked_key(session, c: int) -> str:
    return f"picked_{session.session_id}_{c}"


def restore_picked(session) -> None:
    """Once per session in this browser tab: the concepts picked before a reload (or in a shared
    link) come back from the page address (``?picked=``); edited ones come back with the edits. An
    unreadable value is dropped from the address and named in a line shown until the first edit."""
    flag = f"picked_read_{session.session_id}"
    if not st.session_state.get(flag):
        st.session_state[flag] = True
        try:
            picked = picked_from_text(st.query_params.get("picked"), len(session.classes), len(session.vocabulary))
        except TuningError as exc:
            st.session_state[f"picked_problem_{session.session_id}"] = f"{literal(exc)}; no slider was added for them"
            del st.query_params["picked"]
            picked = {}
        for c, js in picked.items():
            st.session_state[picked_key(session, c)] = js
    problem = st.session_state.get(f"picked_problem_{session.session_id}")
    if problem and not session.events:
        st.warning(problem, icon=":material/link_off:")


def pick(session, c: int) -> None:
    """The concept picker's callback: the chosen concept gets a slider (appended to the list)."""
    chosen = st.session_state.get(f"pick_{c}")
    if chosen is None:
        return
    j = session.concept_index(chosen)
    picked = st.session_state.setdefault(picked_key(session, c), [])
    if j in picked or j in slider_concepts(session, c):
        say(f"“{chosen}” already has a slider")
    else:
        picked.append(j)
        everything = {cc: st.session_state.get(picked_key(session, cc), []) for cc in range(len(session.classes))}
        st.query_params["picked"] = picked_text(everything)
    st.session_state[f"pick_{c}"] = None


def batch(session, op: str, c: int) -> None:
    """Several concepts, in this class or in every class, as one undoable edit."""
    words = st.session_state.get("batch_concepts") or []
    if not words:
        say("Choose the concepts to change first")
        return
    everywhere = st.session_state.get("batch_scope") == "every class"
    classes = range(len(session.classes)) if everywhere else [c]
    try:
        pairs, note = batch_pairs(session, op, [session.concept_index(w) for w in words], classes, {})
        session.apply_batch(op, pairs)
    except TuningError as exc:
        say(str(exc))
        return
    if note:
        say(note)


def tools(session, c: int) -> None:
    """The scale factor and the concept picker. Outside the fragment: using them redraws the page,
    which is rare; a slider edit does not redraw them (fewer elements: a faster edit)."""
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.number_input(
            "Scale factor x for up/down", min_value=1.05, max_value=10.0, value=2.0, step=0.25, key="factor", width=200
        )
        st.selectbox(
            "Add a slider for any concept",
            session.vocabulary,
            index=None,
            placeholder="Search…",  # a phone leaves the box ~90 px: a longer hint was cut
            key=f"pick_{c}",
            on_change=pick,
            args=(session, c),
            help="Any concept of the workspace, also one the class does not use (weight 0): up-tune it to bring it in.",
        )


@st.fragment
def tuning_panel(session, c: int) -> None:
    """The board: sliders beside the figures and charts (stacked on a narrow window). A fragment:
    an edit redraws this one element only."""
    if "tune_toast" in st.session_state:
        st.toast(literal(st.session_state.pop("tune_toast")), icon=":material/info:")
    picked = st.session_state.get(picked_key(session, c), [])
    factor = float(st.session_state.get("factor", 2.0))
    tune_board(session, c, picked, factor, on_edit=lambda edit: act(session, c, edit), say=say)


def more_tools(session, c: int) -> None:
    """Batch edits and the exact refit, below the panel (outside the fragment, like ``tools``)."""
    batch_controls(session, c)
    st.button(
        "Refine (exact BCE fit of this class)",
        key=f"refine_{c}",
        icon=":material/auto_fix_high:",
        on_click=refine,
        args=(session, c),
        help="The paper's objective, same bounds; takes a moment. The next slider move returns to the fast fit.",
    )


def batch_controls(session, c: int) -> None:
    with st.expander("Edit several concepts at once (one undo step)", icon=":material/select_all:"):
        st.multiselect(
            "Concepts", session.vocabulary, key="batch_concepts", placeholder="Type to search the vocabulary…"
        )
        st.radio("In", ["this class", "every class"], horizontal=True, key="batch_scope")
        with st.container(horizontal=True):
            for op, label, icon in (
                ("remove", "Remove", "block"),
                ("lock", "Lock", "lock"),
                ("release", "Free", "lock_open"),
            ):
                st.button(label, key=f"batch_{op}", icon=f":material/{icon}:", on_click=batch, args=(session, op, c))


def refine(session, c: int) -> None:
    session.refine([c])


st.title("Tune")
state = current()
if state:
    explorer, session = state
    c = selected_class(explorer)
    st.caption(
        f"Class “{literal(explorer.classes[c])}” (change it in the sidebar): drag a weight or use the buttons under "
        "it; the other weights re-fit at once. This page's address brings this session back after a reload."
    )
    panel = st.segmented_control("Show", PANELS, default=PANELS[0], key="tune_panel", label_visibility="collapsed")
    if panel == "Suggestions":
        suggestion_panel(explorer, session, c)
    elif panel == "Disagreements":
        disagreement_panel(explorer, session, c)
    else:
        restore_picked(session)
        tools(session, c)
        tuning_panel(session, c)
        more_tools(session, c)
