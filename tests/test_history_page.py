"""The History page's revert box follows the session: after Undo, Redo or a revert it offers the
edit the session is at now, not the number it showed before (which, pressed, undid the undo). A
refused log import names the file (the reader may have several saved logs)."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conceptkd_core.markdown_text import as_read
from conceptkd_core.store.side_files import session_file
from conceptkd_core.store.strict_json import canonical_sha256
from conceptkd_core.store.workspace import load_workspace
from conceptkd_core.students.session_file import session_summary

from demo_subset import make_demo_subset

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_subset(tmp_path_factory.mktemp("history") / "demo", per_split=5)


def app_with_removals(demo, n: int):
    """The app on ``demo`` and its tuning session with ``n`` edits: concepts 0..n-1 removed from class 0."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["workspace_root"] = str(demo)
    at.run()
    session = at.session_state["tuning"]
    for concept in range(n):
        session.apply("remove", 0, concept)
    return at, session


def revert_box(at):
    return next(n for n in at.number_input if n.label.startswith("Revert to after edit"))


def test_the_revert_box_shows_where_the_session_is_after_undo_redo_and_revert(demo):
    at, session = app_with_removals(demo, 3)
    at.switch_page("views/history.py").run()
    assert not at.exception, at.exception
    assert revert_box(at).value == 3
    next(b for b in at.button if b.label == "Undo").click().run()
    assert session.cursor == 2 and revert_box(at).value == 2
    next(b for b in at.button if b.label == "Undo").click().run()
    assert session.cursor == 1 and revert_box(at).value == 1
    next(b for b in at.button if b.label == "Redo").click().run()
    assert session.cursor == 2 and revert_box(at).value == 2
    revert_box(at).set_value(0).run()
    next(b for b in at.button if b.label == "Revert").click().run()
    assert session.cursor == 0 and revert_box(at).value == 0
    assert not at.exception, at.exception


@pytest.mark.parametrize(
    "data, reason",
    [(b"{", "Not a valid tuning file: malformed or truncated JSON"), (b"[]", "Not a ConceptKD tuning file")],
)
def test_a_refused_log_import_names_the_file(demo, data, reason):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["workspace_root"] = str(demo)
    at.run()
    at.switch_page("views/history.py").run()
    at.file_uploader(key="import_log").set_value(("monday log.json", data, "application/json")).run()
    assert not at.exception, at.exception
    (message,) = [as_read(e.value) for e in at.error]
    assert message.startswith(f"monday log.json: not imported. {reason}") and "\n" not in message, message


def test_an_imported_log_is_saved_at_once_under_the_sessions_id(demo):
    """A reload reopens the session the address names from its autosave: an import saved only from
    the next edit on came back as the session before it (its edits undone), and a log exported from
    another session put that session's id in the address."""
    at, session = app_with_removals(demo, 2)
    log = json.loads(session.export_json())  # as if exported from another session of this workspace
    log.pop("sha256")
    log["session_id"] = "0123456789abcdef"
    log["sha256"] = canonical_sha256(log)
    session.undo()
    session.undo()  # autosaved with both edits undone
    at.switch_page("views/history.py").run()
    at.file_uploader(key="import_log").set_value(("log.json", json.dumps(log).encode(), "application/json")).run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Imported 2 edits."]
    assert at.query_params["session"] in (session.session_id, [session.session_id])
    saved = session_summary(session_file(load_workspace(demo), session.session_id).read_bytes())
    assert (saved.session_id, saved.edits, saved.cursor) == (session.session_id, 2, 2)
