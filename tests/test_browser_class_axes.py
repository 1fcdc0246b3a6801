"""Every class is named under the per-class charts (Students' AP bars, Concepts' heat map), on a
desktop and on a phone: Vega-Lite hid overlapping axis labels, so every other class (every fourth
on a phone) had a column but no name. Headless Chromium on the embedded demo."""

import pytest

from browser_app import chromium_path, no_exception

# The x-axis labels of each chart that Vega left visible (it hides an overlapping one by opacity 0).
SHOWN_LABELS_JS = """
() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')].map((chart) =>
  [...chart.querySelectorAll('.role-axis')]
    .filter((axis) => axis.getAttribute('aria-label')?.startsWith('X-axis'))
    .flatMap((axis) => [...axis.querySelectorAll('.role-axis-label text')])
    .filter((text) => getComputedStyle(text).opacity !== '0' && text.getAttribute('opacity') !== '0')
    .map((text) => text.textContent))
"""


@pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")
@pytest.mark.parametrize("width, height", [(1280, 900), (390, 844)], ids=["desktop", "phone"])
@pytest.mark.parametrize("path, chart", [("students", 0), ("concepts", 1)], ids=["AP bars", "heat map"])
def test_every_class_is_named_under_the_chart(app_page, shots, path, chart, width, height):
    from conceptkd_core.store.workspace import load_workspace
    from conceptkd_tools.demo import DEMO_DIR

    classes = list(load_workspace(DEMO_DIR / "workspace").classes)
    page = app_page(path, width, height)
    page.wait_for_function(
        f"document.querySelectorAll('[data-testid=\"stVegaLiteChart\"] svg').length > {chart}", timeout=60000
    )
    page.wait_for_timeout(1000)  # Vega lays the labels out after the chart is in the page
    no_exception(page)
    shown = page.evaluate(SHOWN_LABELS_JS)[chart]
    page.locator('[data-testid="stVegaLiteChart"]').nth(chart).screenshot(
        path=str(shots / f"class-axis-{path}-{width}.png")
    )
    assert shown == classes, f"{len(shown)} of {len(classes)} classes named: {shown}"
