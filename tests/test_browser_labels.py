"""Labels a reader sees whole, in headless Chromium on the embedded demo: Tune's concept picker's
placeholder at 390 px (it read "Type to search t"), and the round ticks of Tune's "Weights now"
chart (they were ±7.4 and ±14.8)."""

import pytest

from browser_app import chromium_path, no_exception

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")

# The picker's placeholder: its text's width in the box's font against the room the box gives it.
PLACEHOLDER_JS = """
() => {
  const box = document.querySelector('.st-key-pick_0 input');
  const style = getComputedStyle(box);
  const context = document.createElement('canvas').getContext('2d');
  context.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const room = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return {text: box.placeholder, width: context.measureText(box.placeholder).width, room};
}
"""
WEIGHT_TICKS_JS = """
() => [...document.querySelectorAll('.ckd-weights text.ckd-tick[text-anchor="middle"]')].map((t) => t.textContent)
"""


def test_the_tune_picker_placeholder_fits_a_phone_and_weight_ticks_are_round(app_page, shots):
    page = app_page("tune", 390, 844)
    page.locator(".ckd-weights text").first.wait_for(timeout=60000)
    no_exception(page)
    placeholder = page.evaluate(PLACEHOLDER_JS)
    page.locator(".st-key-pick_0").screenshot(path=str(shots / "tune-picker-390.png"))
    assert placeholder["width"] <= placeholder["room"], placeholder
    ticks = [float(t.replace("−", "-")) for t in page.evaluate(WEIGHT_TICKS_JS)]
    page.locator(".ckd-weights").screenshot(path=str(shots / "tune-weights-390.png"))
    step = ticks[1] - ticks[0]
    assert step in (1, 2, 5, 10, 20, 50) and all(t % step == 0 for t in ticks), ticks
