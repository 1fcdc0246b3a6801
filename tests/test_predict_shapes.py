"""The Predict page on uploads of any shape: a 1-pixel strip once crashed the page (Streamlit's
image resize gave it a height of 0) after it had been scored. AppTest on a small demo copy."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conceptkd_core.markdown_text import as_read

from demo_subset import make_demo_subset

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_subset(tmp_path_factory.mktemp("predict-shapes") / "demo", per_split=5)


def png(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("width, height", [(2000, 1), (1, 2000)], ids=["a row", "a column"])
def test_a_one_pixel_strip_is_scored_and_shown_in_a_fixed_box(demo, width, height):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["workspace_root"] = str(demo)
    at.run()
    at.switch_page("views/predict.py").run()
    at.file_uploader(key="predict_upload").set_value(("strip.png", png(width, height), "image/png")).run()
    assert not at.exception, at.exception
    assert as_read(at.subheader[0].value) == "strip.png"
    assert any("The students say" in m.value for m in at.markdown)
    assert any("Why the student says" in m.value for m in at.markdown)  # the waterfall and the overlay came after
