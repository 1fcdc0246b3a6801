"""Names from the data shown in Streamlit's Markdown are escaped (``markdown_text.literal``); the
browser check that they read as typed is in tests/test_browser_qa_round3.py."""

import random

from conceptkd_core.markdown_text import as_read, literal


def test_every_character_that_starts_markdown_is_escaped():
    for ch in "\\`*_{}[]()#+-.!|<>~$&":
        assert literal(f"a{ch}b") == f"a\\{ch}b", ch
    assert literal("a,b/c") == "a,b/c"


def test_icon_and_emoji_shortcodes_are_broken_and_plain_text_is_kept():
    assert literal("demo/run_1 :material/bolt: :smile:") == "demo/run\\_1 :\u200bmaterial/bolt: :\u200bsmile:"
    assert literal(":arrow_back:") == ":\u200barrow\\_back:"
    assert literal("ünï 🦓 images 12") == "ünï 🦓 images 12"
    assert literal("10:30 ratio 1: 2, C:\\") == "10:30 ratio 1: 2, C:\\\\"
    assert literal(3) == "3"


def test_colour_directives_and_addresses_are_not_made():
    # ":red[x]" is a colour; with its label escaped ":red" is still an (empty) directive that swallows
    # the word; GFM links addresses in the text it has read (escaped or not).
    assert literal(":red[x]") == "\\:red\\[x\\]"
    assert literal("a:b") == "a\\:b"
    assert literal("http://x.test www.x.test a@x.test") == "http:\u200b//x\\.test www\u200b\\.x\\.test a@\u200bx\\.test"
    assert literal(":smile:") == ":\u200bsmile:"  # a shortcode's colon: broken, not escaped


def test_what_is_read_is_what_was_typed():
    rng = random.Random(0)
    alphabet = "abw1 :/@_*\\`[]()#+-.!|<>~$&{}\u00e9"
    for _ in range(2000):
        typed = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert as_read(literal(typed)) == typed, typed
