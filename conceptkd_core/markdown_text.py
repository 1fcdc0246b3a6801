"""Names and words from the data written into Streamlit's Markdown (alerts, captions, progress
texts and button labels all render it) so that they are shown as typed, never rendered: a folder
``run_1_of_2`` read "run<em>1</em>of_2", ``[x](http://host)`` became a link to another host,
``:material/bolt:`` an icon, ``:red[x]`` a colour and ``http://host`` a link."""

import re

# The characters that start Markdown (emphasis, links, images, code, headings, lists, tables, maths,
# HTML, entities), each escaped with a backslash as CommonMark allows.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&])")
# Streamlit draws ":name:" and ":material/name:" as an emoji or an icon after Markdown has read the
# text, so an escaped colon still makes one; a zero-width space after the opening colon does not.
# Only a whole shortcode is broken: "10:30" is left as typed.
_SHORTCODE_START = re.compile(r":(?=[\w+\-]+(?:/[\w\-]+)?:)")
# A colon before a letter starts a directive (":red[x]" a colour; ":red" alone, its label escaped, an
# empty one that swallows the word) and "://" an address that GFM links, escapes in it shown as
# backslashes: such a colon is escaped. "10:30", "1: 2" and "C:\\" are left as typed.
_DIRECTIVE_OR_ADDRESS = re.compile(r":(?=[A-Za-z]|//)")
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~$&:])")


def literal(text: object) -> str:
    """``text`` as Markdown that Streamlit shows character for character."""
    escaped = _SPECIAL.sub(r"\\\1", _SHORTCODE_START.sub(":\u200b", str(text)))
    return _DIRECTIVE_OR_ADDRESS.sub(r"\\:", escaped)


def as_read(markdown: str) -> str:
    """What a reader sees of ``literal``'s output: the text as typed (``as_read(literal(t)) == t``).
    For tests that read an alert's Markdown source, as Streamlit's AppTest gives it."""
    return _ESCAPED.sub(r"\1", markdown).replace(":\u200b", ":")
