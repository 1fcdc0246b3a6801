"""Tuning view: sliders and up/down/lock/remove for the selected class's concepts; instant re-fit.

The controls sit in the page, not the sidebar: beside the results on a wide window, above them on a
narrow one (Streamlit stacks columns), so that tuning works on a phone."""

import altair as alt
import streamlit as st

from conceptkd_core.explorer import top_concepts
from conceptkd_core.students.session import TuningError
from views.common import current, selected_class
from views.draw import colour_key, direction, signed_bars

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
    """Controls beside the results; on a narrow window the columns stack, controls first."""
    top = top_concepts(session, c, n=8)
    left, right = st.columns([5, 6], gap="large")
    with left:
        controls(session, c, top)
    with right:
        results(session, c)


def controls(session, c: int, top) -> None:
    factor = st.number_input(
        "Scale factor x for up/down", min_value=1.05, max_value=10.0, value=2.0, step=0.25, key="factor"
    )
    # One range for the class's sliders, so their positions compare at a glance.
    span = max(1.0, round(1.5 * float(top["weight"].abs().max()), 2)) if len(top) else 1.0
    st.caption(" · ".join(f":material/{icon}: {name}" for icon, _, name, _, _ in actions(factor)))
    for row in top.itertuples():
        concept_controls(session, c, int(row.concept_index), row.concept, span, factor)
    st.button(
        "Refine (exact BCE fit of this class)",
        key=f"refine_{c}",
        icon=":material/auto_fix_high:",
        on_click=refine,
        args=(session, c),
        help="The paper's objective, same bounds; takes a moment. The next slider move returns to the fast fit.",
    )


def concept_controls(session, c: int, j: int, concept: str, span: float, factor: float) -> None:
    """One concept's weight slider and its up / down / lock / remove buttons."""
    key = f"w_{c}_{j}_{len(session.audit)}"  # a fresh widget after every change shows the re-fitted value
    st.slider(
        concept,
        -span,
        span,
        float(session.bank.coef_[c, j]),
        step=SLIDER_STEP,
        key=key,
        on_change=act,
        args=(session, "set", c, j),
        kwargs={"widget": key, "drawn_at": len(session.audit)},
    )
    with st.container(horizontal=True, gap="small"):
        for icon, op, _, tip, arguments in actions(factor):
            st.button(
                f":material/{icon}:",
                key=f"{key}_{op}",
                help=tip,
                on_click=act,
                args=(session, op, c, j),
                kwargs=arguments,
            )


def actions(factor: float) -> tuple:
    """The buttons under each slider: (Material icon, operation, name, what it does, its arguments)."""
    up, down = f"× {factor:g}", f"× {1 / factor:.2f}"
    return (
        (
            "arrow_upward",
            "upweight",
            f"up-tune {up}",
            f"Up-tune: |weight| at least {up} its original",
            {"factor": factor},
        ),
        (
            "arrow_downward",
            "downweight",
            f"down-tune {down}",
            f"Down-tune: |weight| at most {down} its original",
            {"factor": 1 / factor},
        ),
        ("lock", "lock", "lock", "Lock at the current weight", {}),
        ("block", "remove", "remove", "Remove: the weight is 0", {}),
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
    tooltip = ["concept", *(alt.Tooltip(f"{name}:Q", format="+.3f") for name in ("weight", "lower", "upper"))]
    weights = top_concepts(session, c)
    st.altair_chart(signed_bars(weights, "weight", tooltip), width="stretch")
    colour_key(direction(weights["weight"]))


if state:
    explorer, session = state
    c = selected_class(explorer)
    st.caption(
        f"Class “{explorer.classes[c]}” (change it in the sidebar): drag a weight or use the buttons under "
        "it; the other weights re-fit at once."
    )
    tuning_panel(explorer, session, c)
