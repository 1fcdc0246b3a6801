"""Names from the data shown in Streamlit's Markdown are escaped (``markdown_text.literal``); the
browser check that they read as typed is in tests/test_browser_qa_round3.py."""

from conceptkd_core.markdown_text import literal


def test_every_character_that_starts_markdown_is_escaped():
    for ch in "\\`*_{}[]()#+-.!|<>~$&":
        assert literal(f"a{ch}b") == f"a\\{ch}b", ch
    assert literal("a,b/c") == "a,b/c"


def test_icon_and_emoji_shortcodes_are_broken_and_plain_text_is_kept():
    assert literal("demo/run_1 :material/bolt: :smile:") == "demo/run\\_1 :\u200bmaterial/bolt: :\u200bsmile:"
    assert literal("ünï 🦓 images 12") == "ünï 🦓 images 12"
    assert literal("10:30 ratio 1: 2") == "10:\u200b30 ratio 1: 2"
    assert literal(3) == "3"
