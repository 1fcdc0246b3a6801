"""Setup's create form (AppTest, on the embedded demo): a greyed-out Start button says what it waits
for, and the zip uploader says its size limit (the server refuses a larger zip in the browser,
'File must be 20.0MB or smaller', while the label promised nothing)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from conceptkd_core.extract.add_images import MAX_UPLOAD_BYTES

ROOT = Path(__file__).resolve().parent.parent


def setup_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("views/setup.py").run()
    assert not at.exception, at.exception
    return at


def test_start_says_what_it_waits_for():
    at = setup_page()
    assert at.button(key="new_start").disabled
    waiting = [c.value for c in at.caption if c.value.startswith("To start, give")]
    assert waiting == ["To start, give the images, the folder for the new workspace."], waiting
    at.text_input(key="new_images").input("data/demo/images").run()
    at.text_input(key="new_out").input("data/nowhere-yet").run()
    assert not at.exception, at.exception
    assert not [c.value for c in at.caption if c.value.startswith("To start, give")]
    assert not at.button(key="new_start").disabled


def test_the_zip_uploader_says_its_limit():
    at = setup_page()
    at.radio(key="new_source").set_value("a zip I upload").run()
    labels = [e.proto.label for e in at.get("file_uploader")]
    assert f"Zip of images (up to {MAX_UPLOAD_BYTES // 2**20} MiB; a larger set: a folder on this server)" in labels
    assert (ROOT / ".streamlit" / "config.toml").read_text().count(
        f"maxUploadSize = {MAX_UPLOAD_BYTES // 2**20}\n"
    ) == 1
