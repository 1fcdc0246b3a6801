"""An image too large to decode is refused in one line that names its declared size and the
allowed limit, whatever PIL's own decompression-bomb check would have said: it raised (or warned)
before the size was known, and the message read "decompression bomb (declared size too large)".
The files are tiny PNGs that only declare their size, so no test decodes a huge image."""

import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from conceptkd_core.images import MAX_PIXELS, ImageError, load_rgb, load_rgb_bytes
from conceptkd_core.markdown_text import as_read

ROOT = Path(__file__).resolve().parent.parent


def declared_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (grey, 1 bit) with one row of pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = zlib.compress(b"\0" + b"\0" * ((width + 7) // 8))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


# 12000 x 12000 is over PIL's warning (89 M pixels); 20000 x 20000 over its error (179 M pixels).
@pytest.mark.parametrize("width, height", [(12000, 12000), (20000, 20000), (8000, 6500)])
def test_an_image_over_the_limit_is_refused_with_its_size_and_the_limit(tmp_path, width, height):
    path = tmp_path / "big.png"
    path.write_bytes(declared_png(width, height))
    expected = (
        f"big.png: declared size {width}x{height} ({width * height:,} pixels) is over the {MAX_PIXELS:,}-pixel limit"
    )
    with pytest.raises(ImageError) as refused:
        load_rgb(path)
    assert str(refused.value) == f"{path}: " + expected.split(": ", 1)[1]
    with pytest.raises(ImageError) as refused:
        load_rgb_bytes(path.read_bytes(), "big.png")  # an upload (Predict, Setup)
    assert str(refused.value) == expected
    assert Image.MAX_IMAGE_PIXELS is not None  # PIL's own check is left on for the rest of the process


def test_an_image_at_the_limit_is_read(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("L", (MAX_PIXELS // 2000, 2000)).save(path)  # exactly the limit, 50 MB of grey
    assert load_rgb(path).size == (MAX_PIXELS // 2000, 2000)


def test_setup_and_predict_name_the_size_and_the_limit(tmp_path):
    """Setup's upload check and the Predict page (AppTest, on a small demo copy) say it in one line."""
    from streamlit.testing.v1 import AppTest

    from conceptkd_core.extract.add_images import check_uploads

    from demo_subset import make_demo_subset

    data = declared_png(12000, 12000)
    limit = f"declared size 12000x12000 (144,000,000 pixels) is over the {MAX_PIXELS:,}-pixel limit"
    assert check_uploads([("big.png", data)]).refused == [("big.png", limit)]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["workspace_root"] = str(make_demo_subset(tmp_path / "demo", per_split=5))
    at.run()
    at.switch_page("views/predict.py").run()
    at.file_uploader(key="predict_upload").set_value(("big.png", data, "image/png")).run()
    assert not at.exception, at.exception
    assert [as_read(e.value) for e in at.error] == [f"big.png: {limit}"]
