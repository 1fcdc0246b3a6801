"""Drive the Tune page's board (``views/tune_board.py``) from AppTest and from a browser, for the
tests and the benchmarks.

AppTest has no wrapper for components (``st.components.v2``): ``send_edit`` puts the "edit"
trigger value in the page's widget states exactly as the board's JavaScript sends it. It uses
two private names of Streamlit, which the project pins (requirements.txt)."""

from __future__ import annotations

import json

from streamlit.components.v2.bidi_component.main import _make_trigger_id

# The board's slider handles in a browser page, first one first.
BOARD_SLIDERS = '.ckd-board input[type="range"]'


def board(at) -> dict:
    """The document the Tune board was drawn from (``conceptkd_core.tuning_board.board_data``)."""
    (element,) = at.get("bidi_component")
    assert element.proto.component_name == "conceptkd_tune_board", element.proto.component_name
    return json.loads(element.proto.json)


def send_edit(at, edit: dict):
    """Send ``edit`` ({"op", "j", "value"}; "drawn_at" defaults to the board's) as the board would,
    and run the app with it (AppTest's own ``run`` would send no trigger value)."""
    (element,) = at.get("bidi_component")
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = _make_trigger_id(element.proto.id, "events")
    state.json_trigger_value = json.dumps([{"event": "edit", "value": {"drawn_at": board(at)["drawn_at"], **edit}}])
    return at._run(states)


def move_slider(at, value: float, row: int = 0):
    """Drag the board's slider ``row`` (0: the first) to ``value`` and release it."""
    return send_edit(at, {"op": "set", "j": board(at)["rows"][row]["j"], "value": value})
