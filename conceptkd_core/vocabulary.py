"""Concept vocabularies: plain text, one concept word per line.

Words are normalised (whitespace collapsed, lower-cased), duplicates and blank lines are dropped
in order of first appearance. Non-ASCII words are legitimate and kept as they are.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

# The word lists ship inside the package (package data), so an installed ConceptKD finds them too.
VOCABULARY_DIR = Path(__file__).resolve().parent / "vocabularies"
DEFAULT_VOCABULARY = VOCABULARY_DIR / "default.txt"
MAX_WORD_LENGTH = 100


class VocabularyError(ValueError):
    """A vocabulary that cannot be used: empty, or a word that is too long."""


def normalise_words(words: Iterable[str]) -> list[str]:
    """Collapse whitespace, lower-case, drop blanks and duplicates (first one wins)."""
    seen: set[str] = set()
    result: list[str] = []
    for raw in words:
        word = " ".join(str(raw).split()).lower()
        if not word or word in seen:
            continue
        if len(word) > MAX_WORD_LENGTH:
            raise VocabularyError(
                f"Concept word of {len(word)} characters is longer than the limit of "
                f"{MAX_WORD_LENGTH}: {word[:40]!r}..."
            )
        seen.add(word)
        result.append(word)
    return result


def parse_vocabulary(text: str) -> list[str]:
    words = normalise_words(text.splitlines())
    if not words:
        raise VocabularyError("The vocabulary has no words (every line is empty).")
    return words


def load_vocabulary(path: str | os.PathLike = DEFAULT_VOCABULARY) -> list[str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VocabularyError(f"Vocabulary file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise VocabularyError(f"Vocabulary file {path} is not UTF-8 text: {exc}") from None
    return parse_vocabulary(text)


def vocabulary_text(words: Sequence[str]) -> str:
    return "".join(f"{w}\n" for w in words)


def vocabulary_hash(words: Sequence[str]) -> str:
    """SHA-256 of the normalised word list: what workspaces and logs are stamped with."""
    return hashlib.sha256(vocabulary_text(words).encode("utf-8")).hexdigest()
