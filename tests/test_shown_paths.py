"""Messages name a folder as the visitor types it: ``data/demo``, not ``demo`` (the open workspace's
parent folder, inside the allowed ``data/``, was shortened to its own name)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from conceptkd_core.markdown_text import as_read

ROOT = Path(__file__).resolve().parent.parent


def test_a_folder_that_is_no_workspace_is_named_as_typed():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.text_input(key="workspace_input").set_value("data/demo").run()
    assert not at.exception, at.exception
    message = as_read(at.sidebar.error[0].value)
    assert "data/demo/conceptkd.json" in message and " demo/" not in message, message
    assert str(ROOT) not in message
