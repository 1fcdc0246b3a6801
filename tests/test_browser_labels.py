"""Labels a reader sees whole, in headless Chromium on the embedded demo: the concept names of
Concepts' charts at 1280 px (the longest, "oncoming automobile", began at the chart's very left
edge, so that a picture of the chart, or a glyph overhanging by a pixel, cut it),
Tune's concept picker's placeholder at 390 px (it read "Type to search t"), and the round ticks of
Tune's "Weights now" chart (they were ±7.4 and ±14.8)."""

import pytest

from browser_app import chromium_path, no_exception

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")

# Each y-axis label of chart ``n`` (the concept names) whose left end lies less than MARGIN px inside
# the chart's own box.
CUT_CONCEPTS_JS = """
([n, margin]) => {
  const chart = document.querySelectorAll('[data-testid="stVegaLiteChart"]')[n];
  const left = chart.getBoundingClientRect().left;
  return [...chart.querySelectorAll('.role-axis')]
    .filter((axis) => axis.getAttribute('aria-label')?.startsWith('Y-axis'))
    .flatMap((axis) => [...axis.querySelectorAll('.role-axis-label text')])
    .filter((text) => text.getBoundingClientRect().left < left + margin)
    .map((text) => `${text.textContent} from ${Math.round(text.getBoundingClientRect().left - left)} px`);
}
"""
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


MARGIN = 4


def test_no_concept_name_of_the_concept_charts_is_cut(app_page, shots):
    page = app_page("concepts", 1280, 900)
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] svg').length > 1", timeout=60000
    )
    page.wait_for_timeout(1000)  # Vega lays the labels out after the chart is in the page
    no_exception(page)
    for n, name in enumerate(("weights", "heat-map")):
        page.locator('[data-testid="stVegaLiteChart"]').nth(n).screenshot(path=str(shots / f"concepts-{name}-1280.png"))
        assert page.evaluate(CUT_CONCEPTS_JS, [n, MARGIN]) == [], name


def test_no_concept_name_of_the_waterfall_is_cut(app_page, shots):
    page = app_page("images", 1280, 1250)
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] svg').length > 0", timeout=60000
    )
    page.wait_for_timeout(1000)
    no_exception(page)
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    for n in range(charts.count()):
        charts.nth(n).screenshot(path=str(shots / f"images-chart-{n}-1280.png"))
        assert page.evaluate(CUT_CONCEPTS_JS, [n, MARGIN]) == [], n


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
