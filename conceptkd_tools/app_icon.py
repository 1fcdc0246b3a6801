"""Draws ``data/app_icon.png``, the browser tab's icon (``app.py``'s ``page_icon``): a hub, a
centre joined to four nodes, in the app's primary teal. Shipped in the repository because a
Material icon (``:material/hub:``) as the page icon makes the browser fetch it from
fonts.gstatic.com, off the machine, on every load.

    python -m conceptkd_tools.app_icon
"""

from pathlib import Path

from PIL import Image, ImageDraw

ICON = Path(__file__).resolve().parent.parent / "data" / "app_icon.png"
TEAL = "#0f7f80"  # .streamlit/config.toml's primaryColor (light theme)


def draw(size: int = 64) -> Image.Image:
    """The icon, ``size`` pixels square, drawn at 4x and scaled down for smooth edges."""
    big = size * 4
    image = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    centre, reach, node, hub = big / 2, big * 0.34, big * 0.12, big * 0.17
    nodes = [(centre - reach, centre - reach), (centre + reach, centre - reach)]
    nodes += [(centre - reach, centre + reach), (centre + reach, centre + reach)]
    for x, y in nodes:
        pen.line([(centre, centre), (x, y)], fill=TEAL, width=int(big * 0.07))
        pen.ellipse([x - node, y - node, x + node, y + node], fill=TEAL)
    pen.ellipse([centre - hub, centre - hub, centre + hub, centre + hub], fill=TEAL)
    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    draw().save(ICON, optimize=True)
    print(f"{ICON}  {ICON.stat().st_size} bytes")


if __name__ == "__main__":
    main()
