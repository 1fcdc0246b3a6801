"""The Tune page's board: one Streamlit component (``st.components.v2``, views/tune_board.js and
.css) that draws ``conceptkd_core.tuning_board.board_data`` (the class's sliders and their
actions, the held-out figures since the start, both charts) and sends back the analyst's edit.
One element instead of ~40: the browser redraws an edit in about half the time (see
``conceptkd_core/tuning_board.py``)."""

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from conceptkd_core.students.session import TuningError
from conceptkd_core.tuning_board import BoardEdit, board_data, read_edit

HERE = Path(__file__).resolve().parent
_BOARD = st.components.v2.component(
    "conceptkd_tune_board",
    js=(HERE / "tune_board.js").read_text(encoding="utf-8"),
    css=(HERE / "tune_board.css").read_text(encoding="utf-8"),
    isolate_styles=False,  # the page's own nodes: its text is found and read like the rest of the page
)


def tune_board(session, c: int, picked, factor: float, on_edit: Callable[[BoardEdit], None], say) -> None:
    """Draw the board of class ``c``; an edit sent from it is checked against the board the
    analyst saw (``read_edit``), then handed to ``on_edit`` (or refused in words through ``say``)."""
    board = board_data(session, c, picked, factor)
    key = f"tune_board_{c}"

    def edited() -> None:  # runs before the next run, with the board this run drew
        try:
            edit = read_edit((st.session_state.get(key) or {}).get("edit"), board)
        except TuningError as exc:
            say(str(exc))
            return
        on_edit(edit)

    _BOARD(data=board, key=key, on_edit_change=edited)
