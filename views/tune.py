"""Tuning view: a slider for any concept of the selected class (searchable), up/down/lock/remove,
edits over several classes at once, instant re-fit, held-out figures since the session started;
suggested edits; the images where teacher and student disagree.

The controls sit in the page, not the sidebar: beside the results on a wide window, above them on a
narrow one (Streamlit stacks columns), so that tuning works on a phone."""

import numpy as np
import pandas as pd
import streamlit as st

from conceptkd_core import palette
from conceptkd_core.explorer import top_concepts
from conceptkd_core.students.session import TuningError
from conceptkd_core.tuning_view import (
    SCOPES,
    TRACKED,
    action_help,
    batch_pairs,
    chance_levels,
    metric_summary,
    metric_track,
    refusal,
    slider_concepts,
    weight_state,
)
from views.common import current, selected_class
from views.draw import DIRECTIONS, colour_key, direction
from views.tune_groups import disagreement_panel
from views.tune_suggest import suggestion_panel

SLIDER_STEP = 0.01
# The first word of a constraint (``tuning_view.constraint_words``) and its icon.
STATE_ICONS = {
    "removed": "block",
    "locked": "lock",
    "floor": "vertical_align_bottom",
    "ceiling": "vertical_align_top",
    "kept": "straighten",
}
PANELS = ("Sliders", "Suggestions", "Disagreements")


def say(message: str) -> None:
    """A refusal or a note, shown as a toast on the next draw (callbacks run before it)."""
    st.session_state["tune_toast"] = message


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
    problem = refusal(session, op, c, j, args)
    if problem:
        say(problem)
        return
    try:
        session.apply(op, c, j, **args)
    except TuningError as exc:
        say(str(exc))


def history_step(session, step: str) -> None:
    try:
        session.undo() if step == "undo" else session.redo()
    except TuningError as exc:
        say(str(exc))


def picked_key(session, c: int) -> str:
    return f"picked_{session.session_id}_{c}"


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
            placeholder="Type to search the whole vocabulary…",
            key=f"pick_{c}",
            on_change=pick,
            args=(session, c),
            help="Any concept of the workspace, also one the class does not use (weight 0): up-tune it to bring it in.",
        )


@st.fragment
def tuning_panel(explorer, session, c: int) -> None:
    """Sliders beside the results; on a narrow window the columns stack, sliders first. A fragment:
    an edit redraws this panel only."""
    if "tune_toast" in st.session_state:
        st.toast(st.session_state.pop("tune_toast"), icon=":material/info:")
    left, right = st.columns([5, 6], gap="large")
    with left:
        controls(session, c)
    with right:
        results(session, c)


def controls(session, c: int) -> None:
    factor = float(st.session_state.get("factor", 2.0))
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button(
            "Undo",
            icon=":material/undo:",
            key="tune_undo",
            disabled=not session.can_undo(),
            on_click=history_step,
            args=(session, "undo"),
        )
        st.button(
            "Redo",
            icon=":material/redo:",
            key="tune_redo",
            disabled=not session.can_redo(),
            on_click=history_step,
            args=(session, "redo"),
        )
    concepts = slider_concepts(session, c, st.session_state.get(picked_key(session, c), []))
    # One range for the class's sliders, fixed at the session's start unless a weight outgrows it.
    largest = max(np.abs(session.base.coef[c]).max(), np.abs(session.bank.coef_[c, concepts]).max(initial=0))
    span = max(1.0, round(1.5 * float(largest), 1))
    st.caption(
        f":material/arrow_upward: × {factor:g}: up-tune, |weight| at least × {factor:g} of now (a weight of 0 comes in "
        f"with a floor) · :material/arrow_downward: × {1 / factor:.2f}: down-tune, at most × {1 / factor:.2f} of now "
        "· :material/lock: keep the weight now · :material/block: remove (weight 0)"
    )
    for j in concepts:
        concept_controls(session, c, j, span, factor)


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


def concept_controls(session, c: int, j: int, span: float, factor: float) -> None:
    """One concept's weight slider, its constraint in words, and its up / down / lock / remove buttons."""
    # Stable keys: the browser updates these controls in place after an edit instead of building new
    # ones (faster); the slider is given the re-fitted weight through its state before it is drawn.
    key = f"w_{c}_{j}_{span:g}"  # a new range is a new widget (its state would not fit the old one)
    weight = round(float(session.bank.coef_[c, j]), 2)
    if st.session_state.get(key) != weight:
        st.session_state[key] = weight
    st.slider(
        session.vocabulary[j],  # a constant label: a new label would make a new widget
        -span,
        span,
        step=SLIDER_STEP,
        key=key,
        on_change=act,
        args=(session, "set", c, j),
        kwargs={"widget": key, "drawn_at": len(session.audit)},
    )
    # One control for the actions (not a button each): fewer elements to redraw after every edit.
    # Its last option, when the weight is constrained (the slider's label says how), frees it.
    state = weight_state(session, c, j)
    if state:
        st.caption(f":orange[:material/{STATE_ICONS[state.split()[0]]}: {state}]")
    labels = {op: f":material/{icon}: {words}" for icon, op, words, _ in actions(factor)}
    if state:
        labels["release"] = ":material/lock_open: free"
    up, down = (action_help(session, op, c, j, factor) for op in ("upweight", "downweight"))
    st.segmented_control(
        f"Actions on {session.vocabulary[j]}",
        list(labels),
        format_func=labels.get,
        key=f"a_{c}_{j}",
        label_visibility="collapsed",
        on_change=act_chosen,
        args=(session, c, j, factor),
        help=f"{up}. {down}. Lock: keep the current weight. Remove: weight 0."
        + (" Free: drop the constraint." if state else ""),
    )


def act_chosen(session, c: int, j: int, factor: float) -> None:
    """Callback of a concept's action control: carry out the chosen action, then clear the choice."""
    op = st.session_state.get(f"a_{c}_{j}")
    st.session_state[f"a_{c}_{j}"] = None
    arguments = {"upweight": {"factor": factor}, "downweight": {"factor": 1 / factor}}.get(op, {})
    if op:
        act(session, op, c, j, **arguments)


def actions(factor: float) -> tuple:
    """The actions under each slider: (Material icon, operation, label words, its arguments)."""
    return (
        ("arrow_upward", "upweight", f"× {factor:g}", {"factor": factor}),
        ("arrow_downward", "downweight", f"× {1 / factor:.2f}", {"factor": 1 / factor}),
        ("lock", "lock", "", {}),
        ("block", "remove", "", {}),
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


def results(session, c: int) -> None:
    track = metric_track(session, c)
    summary = metric_summary(track).set_index(["scope", "metric"])
    st.caption(
        f"On held-out images (the students were not fit on them), since this session started "
        f"({session.cursor} edit{'s' * (session.cursor != 1)} applied)."
    )
    tiles = [
        (SCOPES[0], "student AP", "Student AP"),
        (SCOPES[0], "balanced agreement", "Balanced agreement"),
        (SCOPES[1], "student AP", "Mean AP, all classes"),
        (SCOPES[1], "balanced agreement", "Mean balanced agreement, all classes"),
    ]
    last_edit = []
    for col, (scope, metric, label) in zip([*st.columns(2), *st.columns(2)], tiles, strict=True):
        row = summary.loc[(scope, metric)]
        since = row["since_start"]
        moved = np.isfinite(since) and round(since, 3) != 0
        col.metric(label, figure(row["now"]), f"{since:+.3f}" if moved else None, help="Change since the start")
        last_edit.append(f"{label} {figure(row['last_edit'], '+')}")
    st.caption("Arrows: change since the start. The last edit's change: " + " · ".join(last_edit))
    # Plain Vega-Lite specs, not Altair: Altair validates every chart against its schema, which
    # cost more than the re-fit itself on each edit.
    st.vega_lite_chart(
        track_data(track, chance_levels(session, c)), track_spec(max(session.cursor, 1)), width="stretch"
    )
    colour_key(SCOPES, dict(zip(SCOPES, (palette.STUDENT, palette.TEACHER), strict=True)))
    st.caption(
        "Solid: student AP · dotted: balanced agreement · dashed grey: chance (AP of this class, of the mean; 0.5)"
    )
    if session.autosave_error:
        st.warning(session.autosave_error)
    weights = top_concepts(session, c)
    span = max(
        1.0, float(np.abs(session.base.coef[c]).max()), float(np.abs(weights["weight"].to_numpy()).max(initial=0))
    )
    st.vega_lite_chart(weights.assign(direction=direction(weights["weight"])), weight_spec(span), width="stretch")
    colour_key(direction(weights["weight"]))


def figure(value: float, sign: str = "") -> str:
    return "–" if not np.isfinite(value) else f"{value:{sign}.3f}"


def track_data(track: pd.DataFrame, chance: dict) -> pd.DataFrame:
    """The figures after each edit, and the chance lines as rows with kind "chance"."""
    levels = {f"chance AP ({scope})": level["student AP"] for scope, level in chance.items()}
    levels["chance balanced agreement"] = 0.5
    rules = pd.DataFrame({"scope": list(levels), "value": list(levels.values()), "kind": "chance"})
    return pd.concat([track.assign(kind="figure"), rules], ignore_index=True)


# The figures on a fixed 0..1 axis (colour: this class or the mean; solid: AP, dotted: balanced
# agreement), each edit a point, with the chance lines dashed grey.
def track_spec(last: int) -> dict:
    return {
        "height": 170,
        "encoding": {"y": {"field": "value", "type": "quantitative", "scale": {"domain": [0, 1]}, "title": "held-out"}},
        "layer": [
            {
                "transform": [{"filter": "datum.kind == 'figure'"}],
                "mark": {"type": "line", "point": True},
                "encoding": {
                    "x": {
                        "field": "edit",
                        "type": "quantitative",
                        "title": "edit",
                        "axis": {"tickMinStep": 1},
                        "scale": {"domain": [0, last]},
                    },
                    "color": {
                        "field": "scope",
                        "type": "nominal",
                        "scale": {"domain": list(SCOPES), "range": [palette.STUDENT, palette.TEACHER]},
                        "legend": None,  # drawn as a line of text under the chart: a legend squeezes the plot
                    },
                    "strokeDash": {
                        "field": "metric",
                        "type": "nominal",
                        "scale": {"domain": list(TRACKED.values()), "range": [[1, 0], [2, 2]]},
                        "legend": None,
                    },
                    "tooltip": [
                        {"field": "scope"},
                        {"field": "metric"},
                        {"field": "edit"},
                        {"field": "value", "format": ".3f"},
                    ],
                },
            },
            {
                "transform": [{"filter": "datum.kind == 'chance'"}],
                "mark": {"type": "rule", "strokeDash": [4, 3], "color": palette.NEUTRAL},
                "encoding": {"tooltip": [{"field": "scope", "title": "line"}, {"field": "value", "format": ".3f"}]},
            },
        ],
    }


def weight_spec(span: float) -> dict:
    """The class's largest weights as signed bars on a fixed axis (-span..span), largest first,
    coloured by what they do to the score (``views.draw.DIRECTIONS``)."""
    return {
        "mark": "bar",
        "title": "Weights now (largest 15)",
        "encoding": {
            "x": {"field": "weight", "type": "quantitative", "title": "weight now", "scale": {"domain": [-span, span]}},
            "y": {"field": "concept", "type": "nominal", "sort": "-x", "title": None, "axis": {"labelLimit": 140}},
            "color": {
                "field": "direction",
                "type": "nominal",
                "scale": {"domain": list(DIRECTIONS), "range": list(DIRECTIONS.values())},
                "legend": None,
            },
            "tooltip": [{"field": "concept"}]
            + [{"field": name, "type": "quantitative", "format": "+.3f"} for name in ("weight", "lower", "upper")],
        },
    }


st.title("Tune")
state = current()
if state:
    explorer, session = state
    c = selected_class(explorer)
    st.caption(
        f"Class “{explorer.classes[c]}” (change it in the sidebar): drag a weight or use the buttons under "
        "it; the other weights re-fit at once. This page's address brings this session back after a reload."
    )
    panel = st.segmented_control("Show", PANELS, default=PANELS[0], key="tune_panel", label_visibility="collapsed")
    if panel == "Suggestions":
        suggestion_panel(explorer, session, c)
    elif panel == "Disagreements":
        disagreement_panel(explorer, session, c)
    else:
        tools(session, c)
        tuning_panel(explorer, session, c)
        more_tools(session, c)
