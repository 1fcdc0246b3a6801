"""Concept vocabularies: plain text, one concept word per line.

Each word is normalised: Unicode NFC (so "café" typed two ways is one word), a byte-order mark
dropped, whitespace trimmed and collapsed, lower-cased. Blank lines are dropped; a duplicate is
dropped after its first appearance and reported (``ParsedVocabulary.duplicates``). Non-ASCII
words are legitimate and kept. A vocabulary holds at most ``MAX_WORDS`` words of at most
``MAX_WORD_LENGTH`` characters: the students' Gram matrix grows with the square of the number
of words (100,000 words would need 75 GiB), and a word is a concept, not a sentence.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

# The word lists ship inside the package (package data), so an installed ConceptKD finds them too.
VOCABULARY_DIR = Path(__file__).resolve().parent / "vocabularies"
DEFAULT_VOCABULARY = VOCABULARY_DIR / "default.txt"
MAX_WORD_LENGTH = 100
MAX_WORDS = 5000
MAX_VOCABULARY_BYTES = 4 * 2**20
BYTE_ORDER_MARK = "\ufeff"
# Zero-width (non-)joiners are format characters that words in Persian, Indic scripts and emoji need.
_JOINERS = ("\u200c", "\u200d")


class VocabularyError(ValueError):
    """A vocabulary that cannot be used: empty, too large, or a word that is too long or unprintable."""


class ParsedVocabulary(NamedTuple):
    """The normalised words in order of first appearance, and the duplicates dropped (normalised)."""

    words: list[str]
    duplicates: list[str]


def normalise_word(raw: object) -> str:
    """One word as a vocabulary keeps it ('' for a blank line); VocabularyError if it is unusable."""
    text = unicodedata.normalize("NFC", str(raw).replace(BYTE_ORDER_MARK, ""))
    word = unicodedata.normalize("NFC", " ".join(text.split()).lower())
    if len(word) > MAX_WORD_LENGTH:
        raise VocabularyError(
            f"concept word {word[:40]!r}... has {len(word)} characters; the limit is {MAX_WORD_LENGTH}"
        )
    bad = next(
        (ch for ch in word if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") and ch not in _JOINERS), None
    )
    if bad is not None:
        raise VocabularyError(
            f"concept word {word[:40]!r} holds the control or unassigned character U+{ord(bad):04X}; "
            "expected printable text"
        )
    return word


def read_words(words: Iterable[object]) -> ParsedVocabulary:
    """Normalise ``words``, drop blanks, drop and report duplicates (first one wins), apply the caps."""
    seen: set[str] = set()
    result: list[str] = []
    duplicates: list[str] = []
    for raw in words:
        word = normalise_word(raw)
        if not word:
            continue
        if word in seen:
            duplicates.append(word)
            continue
        seen.add(word)
        result.append(word)
        if len(result) > MAX_WORDS:
            raise VocabularyError(f"the vocabulary has more than {MAX_WORDS:,} words; the limit is {MAX_WORDS:,}")
    return ParsedVocabulary(result, duplicates)


def normalise_words(words: Iterable[object]) -> list[str]:
    """The normalised words of ``words`` without blanks and duplicates (see ``read_words``)."""
    return read_words(words).words


def read_vocabulary_text(text: str) -> ParsedVocabulary:
    """Parse a vocabulary file's text; VocabularyError if it holds no word or breaks a cap."""
    if len(text) > MAX_VOCABULARY_BYTES:
        raise VocabularyError(
            f"the vocabulary text has {len(text):,} characters; the limit is {MAX_VOCABULARY_BYTES:,}"
        )
    parsed = read_words(text.splitlines())
    if not parsed.words:
        raise VocabularyError("the vocabulary has no words (every line is empty)")
    return parsed


def parse_vocabulary(text: str) -> list[str]:
    return read_vocabulary_text(text).words


def read_vocabulary_file(path: str | os.PathLike) -> ParsedVocabulary:
    """Read a UTF-8 vocabulary file (a byte-order mark is allowed); VocabularyError naming the file otherwise."""
    path = Path(path)
    if path.is_dir():
        raise VocabularyError(f"vocabulary {path} is a folder; expected a text file with one word per line")
    try:
        size = path.stat().st_size
        if size > MAX_VOCABULARY_BYTES:
            raise VocabularyError(f"vocabulary file {path} has {size:,} bytes; the limit is {MAX_VOCABULARY_BYTES:,}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VocabularyError(f"vocabulary file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise VocabularyError(f"vocabulary file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise VocabularyError(f"cannot read vocabulary file {path}: {exc.strerror or exc}") from None
    try:
        return read_vocabulary_text(text)
    except VocabularyError as exc:
        raise VocabularyError(f"vocabulary file {path}: {exc}") from None


def load_vocabulary(path: str | os.PathLike = DEFAULT_VOCABULARY) -> list[str]:
    return read_vocabulary_file(path).words


def vocabulary_text(words: Sequence[str]) -> str:
    return "".join(f"{w}\n" for w in words)


def vocabulary_hash(words: Sequence[str]) -> str:
    """SHA-256 of the normalised word list: what workspaces and logs are stamped with."""
    return hashlib.sha256(vocabulary_text(words).encode("utf-8")).hexdigest()
