"""Names and words from the data, shown as typed on every page in headless Chromium: a workspace
(in a folder with Markdown in its name) whose class names, image ids and concept words hold
Markdown, emoji and icon shortcodes, colour directives, HTML, web and mail addresses, a
200-character word and right-to-left text with emoji. One server, one browser session walked
through the pages (a concept picked, an image opened, a tuning edit made, a log with such a file
name imported, a word added to the vocabulary), each page looked at 1400 px and 390 px wide: every
name reads as typed, no element is made from it (emphasis, link, code, image, maths), no
exception, nothing wider than a phone's window.

What it found: image captions, the Tune and disagreement captions, the top-concept legend and the
imported file's name drawn as Markdown (emphasis, links, code, maths, emoji, colours); ":red[x]"
losing ":red" and "http://…" or "a@b.org" made links even where escaped (markdown_text.literal);
a 200-character class name taking a phone's whole table as a pinned column; and a chart's
tooltip, left by a page switch, making the next page scroll sideways.

Screenshots land in $CONCEPTKD_SCREENSHOTS (default: the test's temporary folder)."""

import itertools
import re

import pytest

from conceptkd_core.store.workspace import load_workspace
from conceptkd_tools.screenshots import OVERFLOW_JS
from conceptkd_tools.tune_board_driver import BOARD_SLIDERS

from browser_app import app_on, chromium_path, go_to, settle
from demo_subset import make_demo_subset

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")

# Everything Streamlit's Markdown would draw, in one name: the first class's (the one in focus), and
# every image id's with a word of 200 characters after it; the second class's is that long word with
# right-to-left text and an emoji (a class name has at most 200 characters).
NAME = (
    "_ita_ *emph* [link](http://x.test) `mono` ~~gone~~ $maths$ :smile: :material/bolt: :red[red] "
    "<b>bold</b> <img src=x onerror=alert(1)> # a|b <c>"
)
LONG = "שלום 👋🏽 " + "w" * 180
# Concept words are lower-case, at most 100 characters, and stay distinct (each keeps its own word).
WORDS = (
    "_ita_ *emph* [link](http://x.test) `mono`",
    ":smile: :material/bolt: :red[red] ~~gone~~ $maths$",
    "<b>bold</b> <img src=x onerror=alert(1)> # a|b",
    "שלום 👋🏽 " + "w" * 50,
)
FOLDER = "ws_1_of_2 *x* [y](h) :smile:"
# Elements the names would become if read as Markdown or HTML.
MADE_FROM_DATA_JS = """() => [...document.querySelectorAll('em, strong, code, del, b, a, img, .katex')].filter((el) =>
  /^(ita|emph|mono|gone|bold|link)$/.test(el.textContent.trim())
  || (el.tagName === 'A' && el.href.includes('x.test')) || (el.tagName === 'IMG' && el.getAttribute('src') === 'x')
  || el.classList.contains('katex')).map((el) => el.outerHTML.slice(0, 120))"""


def cycled(texts):
    """A ``make_demo_subset`` rewrite: each name with the next of ``texts`` after it."""
    suffixes = itertools.cycle(texts)
    return lambda name: f"{name} {next(suffixes)}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data-names")
    return make_demo_subset(
        folder,
        per_split=5,
        word=cycled(WORDS),
        class_name=cycled([NAME, LONG]),
        image_id=cycled([f"{NAME} {'w' * 200}"]),
        workspace=FOLDER,
    )


@pytest.fixture(scope="module")
def server(demo):
    with app_on(demo) as url:
        yield url


def read(locator) -> str:
    """What a reader sees: the invisible space that keeps ":smile:" from being an emoji removed."""
    return locator.inner_text().replace("\u200b", "")


def main_text(page) -> str:
    return read(page.locator('[data-testid="stMain"]'))


def looked_at(page, shots, name: str, problems: list) -> None:
    """``page`` checked at 1400 px and at 390 px wide (a screenshot of each), back at 1400 px."""
    for width in (1400, 390):
        page.set_viewport_size({"width": width, "height": 2000})  # the main area scrolls: a tall window shows it
        page.wait_for_timeout(300)
        page.screenshot(path=str(shots / f"names-{name}-{width}.png"), full_page=True)
        problems += [f"{name} at {width} px: {p}" for p in page.evaluate(OVERFLOW_JS)]
        problems += [f"{name}: made from data: {p}" for p in dict.fromkeys(page.evaluate(MADE_FROM_DATA_JS))]
        if page.locator('[data-testid="stException"]').count():
            problems.append(f"{name}: exception {read(page.locator('[data-testid=stException]').first)[:300]}")
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.wait_for_timeout(300)


def expect(problems: list, page_name: str, text: str, shown: str) -> None:
    if text not in shown:
        problems.append(f"{page_name}: {text[:90]!r} not shown as typed")


def hovered_tooltip(page, chart) -> str:
    """The text of the tooltip of the first mark found under the mouse, moved over the top of ``chart``."""
    box = chart.bounding_box()
    tooltip = page.locator("#vg-tooltip-element")
    for fx in (0.5, 0.6, 0.7, 0.8, 0.9):
        for fy in (0.05, 0.1, 0.15):
            page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
            page.wait_for_timeout(200)
            if tooltip.count() and tooltip.is_visible():
                assert tooltip.locator("img, b").count() == 0, tooltip.inner_html()
                return read(tooltip)
    return ""


def test_names_from_the_data_read_as_typed_on_every_page(app_page, demo, shots):
    ws = load_workspace(demo)
    klass, concept, image_id = ws.classes[0], ws.vocabulary[1], str(ws.image_ids[0])
    dialogs = []
    problems: list[str] = []
    page = app_page("", 1400, 1000)
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    looked_at(page, shots, "start", problems)

    go_to(page, "Students")
    looked_at(page, shots, "students", problems)

    go_to(page, "Images")  # the concept in focus, the first image opened
    box = page.locator(".st-key-concept_input input")
    box.click()
    box.fill(concept[:12])
    page.get_by_role("option").filter(has_text=re.compile(re.escape(concept[:12]))).first.click()
    settle(page)
    page.locator(".st-key-grid_mode").get_by_text("where a concept fires").click()
    settle(page)
    page.locator('[data-testid="stMain"] button', has_text=re.compile("^(Open|Shown)$")).first.click()
    settle(page)
    shown_id = read(page.locator("h3").first)
    expect(problems, "images", f"“{klass}” (", main_text(page))
    expect(problems, "images", f"for “{klass}” up or down", main_text(page))
    expect(problems, "images", "Why the student says", main_text(page))
    page.get_by_role("tab", name="Concept", exact=True).click()
    page.wait_for_timeout(300)
    expect(problems, "images", f"their score for “{concept}”", main_text(page))
    page.get_by_role("tab", name="Top concept").click()
    page.wait_for_timeout(300)
    looked_at(page, shots, "images", problems)
    if shown_id not in ws.image_ids:
        problems.append(f"images: heading {shown_id[:90]!r} is no image id as typed")

    go_to(page, "Concepts")
    text = main_text(page)
    expect(problems, "concepts", f"What drives “{klass}”", text)
    expect(problems, "concepts", f"Where “{concept}” fires most", text)
    expect(problems, "concepts", f"“{concept}” scores", text)
    looked_at(page, shots, "concepts", problems)
    tip = hovered_tooltip(page, page.locator('[data-testid="stVegaLiteChart"]').first)
    if not any(word in tip for word in ws.vocabulary):  # Vega's tooltip: plain text, HTML escaped
        problems.append(f"concepts: the chart's tooltip {tip[:90]!r} names no concept as typed")

    go_to(page, "Tune")
    expect(problems, "tune", f"Class “{klass}” (change", main_text(page))
    page.locator(BOARD_SLIDERS).first.focus()
    page.keyboard.press("PageUp")
    page.wait_for_function("document.querySelector('.ckd-board')?.dataset.edits === '1'", timeout=30000)
    settle(page)
    board = read(page.locator(".ckd-board"))
    if not any(word in board for word in ws.vocabulary):
        problems.append("tune: no concept word on the board as typed")
    first = read(page.locator(".ckd-board .ckd-name").first)  # picked again: a toast names it
    box = page.locator(".st-key-pick_0 input")
    box.click()
    box.fill(first[:12])
    page.get_by_role("option").filter(has_text=re.compile(re.escape(first[:12]))).first.click()
    page.locator('[data-testid="stToast"]').first.wait_for(timeout=30000)
    expect(problems, "tune toast", f"“{first}” already has a slider", read(page.locator('[data-testid="stToast"]')))
    settle(page)
    looked_at(page, shots, "tune", problems)
    page.locator('[data-testid="stButtonGroup"] button', has_text="Disagreements").click()
    settle(page)
    expect(problems, "tune disagreements", f"held-out images of “{klass}”", main_text(page))
    looked_at(page, shots, "tune-disagreements", problems)
    page.locator('[data-testid="stButtonGroup"] button', has_text="Suggestions").click()
    settle(page)
    page.locator(".st-key-suggest_run button").click()
    page.locator(".st-key-apply_0 button").wait_for(timeout=60000)
    settle(page)
    expect(problems, "tune suggestions", f"for “{klass}”: held-out", main_text(page))
    if re.search(r"\bnan\b", main_text(page)):  # a gain with no held-out yes of the teacher read "+nan"
        problems.append("tune suggestions: a figure reads nan")
    looked_at(page, shots, "tune-suggestions", problems)

    go_to(page, "History")
    upload = f"log {FOLDER} a@x.test.json"
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        {"name": upload, "mimeType": "application/json", "buffer": b"not json"}
    )
    page.locator('[data-testid="stAlertContentError"]').wait_for(timeout=30000)
    settle(page)
    expect(problems, "history", f"{upload}: not imported.", main_text(page))
    looked_at(page, shots, "history", problems)

    go_to(page, "Predict")
    page.get_by_text("Pick a workspace image").click()
    page.locator("h3").first.wait_for(timeout=120000)
    settle(page)
    text = main_text(page)
    expect(problems, "predict", image_id, read(page.locator("h3").first))
    expect(problems, "predict", f"for “{klass}”", text)
    expect(problems, "predict", f"for “{klass}” up or down", text)
    looked_at(page, shots, "predict", problems)

    go_to(page, "Setup")
    vocabulary = page.get_by_label("Concept words, one per line (edit, then re-score)")
    vocabulary.fill(vocabulary.input_value() + "\nnew_word *x* :red[y] http://x.test")
    vocabulary.press("Control+Enter")
    settle(page)
    text = main_text(page)
    expect(problems, "setup", "1 added (new_word *x* :red[y] http://x.test)", text)
    expect(problems, "setup", f"→ {FOLDER}-vocab-", text)
    looked_at(page, shots, "setup", problems)

    assert not dialogs, dialogs
    assert not problems, "\n".join(dict.fromkeys(problems))
