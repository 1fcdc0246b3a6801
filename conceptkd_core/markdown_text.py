"""Names and words from the data written into Streamlit's Markdown (alerts, captions, progress
texts and button labels all render it) so that they are shown as typed, never rendered: a folder
``run_1_of_2`` read "run<em>1</em>of_2", ``[x](http://host)`` became a link to another host,
``:material/bolt:`` an icon, ``:red[x]`` a colour and ``http://host`` or ``a@b.org`` a link."""

import re

# The characters that start Markdown (emphasis, links, images, code, headings, lists, tables, maths,
# HTML, entities), each escaped with a backslash as CommonMark allows.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&])")
# Streamlit draws ":name:" and ":material/name:" as an emoji or an icon after Markdown has read the
# text, so an escaped colon still makes one; a zero-width space after the opening colon does not.
# Only a whole shortcode is broken: "10:30" is left as typed.
_SHORTCODE_START = re.compile(r":(?=[\w+\-]+(?:/[\w\-]+)?:)")
# GFM links web and mail addresses in the text Markdown has read, so escapes do not stop it either:
# a zero-width space after "http:", "www" and "@" does.
_ADDRESS = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)(?=[-\w])", re.IGNORECASE)
# A colon before a letter starts a directive (":red[x]" a colour; ":red" alone, its label escaped, an
# empty one that swallows the word): such a colon is escaped. "10:30", "1: 2" and "C:\\" are kept.
_DIRECTIVE = re.compile(r":(?=[A-Za-z])")
_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~$&:])")
_BROKEN = re.compile(r"(?<=[:@])\u200b|(?<=www)\u200b(?=\.)", re.IGNORECASE)


def literal(text: object) -> str:
    """``text`` as Markdown that Streamlit shows character for character."""
    broken = _ADDRESS.sub("\u200b", _SHORTCODE_START.sub(":\u200b", str(text)))
    return _DIRECTIVE.sub(r"\\:", _SPECIAL.sub(r"\\\1", broken))


def as_read(markdown: str) -> str:
    """What a reader sees of ``literal``'s output: the text as typed (``as_read(literal(t)) == t``).
    For tests that read an alert's Markdown source, as Streamlit's AppTest gives it."""
    return _BROKEN.sub("", _ESCAPED.sub(r"\1", markdown))
