"""A Tune address that names nothing readable says so and is cleaned (AppTest on a copy of the demo
workspace): an unknown ``?session=`` id, or garbage in ``?picked=``, used to start a fresh session
with no word and leave the value in the address. A reload before the first edit, whose id has no
file yet, is this browser's own session: it starts again under that id, with nothing to say."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conceptkd_core.explorer import is_own_session_id, open_explorer, own_session_id, owner_of, session_for_link
from conceptkd_core.markdown_text import as_read
from conceptkd_tools.tune_board_driver import board, send_edit

from demo_subset import copy_demo_workspace

ROOT = Path(__file__).resolve().parent.parent
KEY = "link-test-browser-a-00000000"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tunelinks")
    return copy_demo_workspace(folder, with_images=True)


def tune(demo, query: dict, key: str = KEY) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["workspace_root"] = str(demo)
    at.session_state["browser_key"] = key
    for name, value in query.items():
        at.query_params[name] = value
    at.run()
    at.switch_page("views/tune.py").run()
    assert not at.exception, at.exception
    return at


def address(at, name: str) -> str | None:
    value = at.query_params.get(name)
    return value[0] if isinstance(value, list) else value


def warnings(at) -> list[str]:
    """The warnings as a reader sees them (their Markdown's escapes read back)."""
    return [as_read(w.value) for w in at.warning]


def test_an_unknown_session_id_is_named_and_replaced_in_the_address(demo):
    at = tune(demo, {"session": "garbage"})
    session = at.session_state["tuning"]
    assert warnings(at) == ["No saved session 'garbage' in this workspace; a new one was started"]
    assert address(at, "session") == session.session_id != "garbage"
    send_edit(at, {"op": "remove", "j": board(at)["rows"][0]["j"]})
    assert session.events and warnings(at) == []  # said until the first edit


def test_a_reload_before_the_first_edit_keeps_its_id_and_says_nothing(demo):
    first = tune(demo, {})
    sid = first.session_state["tuning"].session_id
    assert address(first, "session") == sid and is_own_session_id(sid, owner_of(KEY))
    again = tune(demo, {"session": sid})  # a reload: no file yet, the same browser
    assert again.session_state["tuning"].session_id == sid and warnings(again) == []
    other = tune(demo, {"session": sid}, key="link-test-browser-b-00000000")  # another browser: nothing saved
    assert other.session_state["tuning"].session_id != sid
    assert warnings(other) == [f"No saved session '{sid}' in this workspace; a new one was started"]


@pytest.mark.parametrize("picked", ["garbage", "0:99999", "<script>alert(1)</script>"])
def test_garbage_in_picked_is_named_and_dropped_from_the_address(demo, picked):
    at = tune(demo, {"picked": picked})
    assert len(warnings(at)) == 1 and f"{picked!r}" in warnings(at)[0], warnings(at)
    assert warnings(at)[0].endswith("; no slider was added for them")
    assert address(at, "picked") is None and not at.toast
    at.run()  # the next run still says it (until the first edit), the address stays clean
    assert len(warnings(at)) == 1 and address(at, "picked") is None


def test_own_session_ids_are_told_from_others(demo):
    explorer = open_explorer(demo)
    mine, theirs = owner_of("key-a"), owner_of("key-b")
    sid = own_session_id(mine)
    assert len(sid) == 16 and sid.isalnum() and is_own_session_id(sid, mine) and not is_own_session_id(sid, theirs)
    assert not is_own_session_id("0123456789abcdef", mine)
    session, problem = session_for_link(explorer, sid, mine)
    assert problem is None and session.session_id == sid and session.autosave_path.name == f"{sid}.json"
    session, problem = session_for_link(explorer, "../etc", mine)
    assert problem.startswith("The address names no session (session id '../etc' must be")
    assert problem.endswith("; a new one was started") and session.session_id != "../etc"
