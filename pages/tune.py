"""Tuning view: sliders and up/down/lock/remove for the selected class's concepts; instant re-fit."""

import streamlit as st

from conceptkd_core.explorer import top_concepts
from conceptkd_core.students.session import TuningError
from pages.common import current, diverging_bars, selected_class

st.title("Tune")
state = current()


SLIDER_STEP = 0.01


def act(session, op: str, c: int, j: int, **args) -> None:
    """Widget callback: runs before the rerun, so everything then drawn shows the re-fitted bank."""
    if op == "set":
        args["value"] = float(st.session_state[args.pop("widget")])
        # Streamlit re-sends sliders as "changed" when a slow rerun (a big workspace) is cut short
        # by the next one, with the value they were drawn with. Taken as edits, each drew new
        # sliders that fired again: a chain of phantom edits. So a slider drawn before the last
        # change, or reporting the weight it shows (within half a step), is not an edit.
        if (
            args.pop("drawn_at") != len(session.audit)
            or abs(args["value"] - float(session.bank.coef_[c, j])) <= SLIDER_STEP / 2 + 1e-9
        ):
            return
    try:
        session.apply(op, c, j, **args)
        st.session_state.pop("tune_error", None)
    except TuningError as exc:
        st.session_state["tune_error"] = str(exc)


@st.fragment
def tuning_panel(explorer, session, c: int) -> None:
    top = top_concepts(session, c, n=8)
    with st.sidebar:
        st.subheader(f"Tune “{explorer.classes[c]}”")
        controls(session, c, top)
    results(session, c)


def controls(session, c: int, top) -> None:
    factor = st.number_input(
        "Scale factor x for up/down", min_value=1.05, max_value=10.0, value=2.0, step=0.25, key="factor"
    )
    # One range for the class's sliders, so their positions compare at a glance.
    span = max(1.0, round(1.5 * float(top["weight"].abs().max()), 2)) if len(top) else 1.0
    for row in top.itertuples():
        j = int(row.concept_index)
        w = float(session.bank.coef_[c, j])
        key = f"w_{c}_{j}_{len(session.audit)}"  # a fresh widget after every change shows the re-fitted value
        st.slider(
            row.concept,
            -span,
            span,
            w,
            step=SLIDER_STEP,
            key=key,
            on_change=act,
            args=(session, "set", c, j),
            kwargs={"widget": key, "drawn_at": len(session.audit)},
        )
        cols = st.columns(4)
        cols[0].button(
            "⬆",
            key=key + "_up",
            help=f"up-tune ×{factor}",
            on_click=act,
            args=(session, "upweight", c, j),
            kwargs={"factor": factor},
        )
        cols[1].button(
            "⬇",
            key=key + "_down",
            help=f"down-tune ×{1 / factor:.2f}",
            on_click=act,
            args=(session, "downweight", c, j),
            kwargs={"factor": 1 / factor},
        )
        cols[2].button(
            "🔒", key=key + "_lock", help="lock at the current value", on_click=act, args=(session, "lock", c, j)
        )
        cols[3].button("✖", key=key + "_remove", help="remove (weight 0)", on_click=act, args=(session, "remove", c, j))
    st.button(
        "Refine (exact BCE fit of this class)",
        key=f"refine_{c}",
        on_click=refine,
        args=(session, c),
        help="The paper's objective, same bounds; takes a moment. The next slider move returns to the fast fit.",
    )


def refine(session, c: int) -> None:
    session.refine([c])


def results(session, c: int) -> None:
    if st.session_state.get("tune_error"):
        st.error(st.session_state["tune_error"])
    last = session.last_event
    if last and c in last.metrics_after:
        before, after = last.metrics_before[c], last.metrics_after[c]
        st.caption("After the last edit, on held-out images (the students were not fit on them):")
        cols = st.columns(3)
        for col, (label, key) in zip(
            cols, (("Student AP", "student_ap"), ("Balanced agreement", "balanced_agreement")), strict=False
        ):
            now, then = after.get(key), before.get(key)
            col.metric(
                label,
                "–" if now is None else f"{now:.3f}",
                None if now is None or then is None else f"{now - then:+.3f}",
            )
        cols[2].metric("Held-out images that changed side", last.flipped.get(c, 0))
    if session.autosave_error:
        st.warning(session.autosave_error)
    st.subheader("Weights now")
    st.altair_chart(
        diverging_bars(top_concepts(session, c), "weight", ["concept", "weight", "lower", "upper"]), width="stretch"
    )


if state:
    explorer, session = state
    c = selected_class(explorer)
    st.caption(
        f"Class “{explorer.classes[c]}”: drag a weight in the sidebar or use ⬆ ⬇ 🔒 ✖; "
        "the other weights re-fit at once."
    )
    tuning_panel(explorer, session, c)
