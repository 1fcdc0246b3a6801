"""The workspace's metadata file (``conceptkd.json``): read it and check every field's type and
range, and refuse machine paths in it (a workspace stores only paths relative to itself)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..vocabulary import MAX_WORDS
from .strict_json import StrictJSONError, loads_strict
from .validation import (
    CONCEPT_DTYPES,
    CONCEPTS_FILE,
    MANIFEST_FILE,
    META_FILE,
    SEGMENT_FILES,
    TEACHER_LOGITS_FILE,
    WorkspaceError,
    check,
    is_absolute_path,
)

VOCABULARY_FILE = "vocabulary.txt"
DATA_FILES = (MANIFEST_FILE, VOCABULARY_FILE, CONCEPTS_FILE, TEACHER_LOGITS_FILE)
_HEX64 = re.compile(r"[0-9a-f]{64}")

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MAX_META_BYTES = 4 * 2**20
MAX_CLASSES = 10000
MAX_NAME_LENGTH = 200
_WORKSPACE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _refuse_absolute_paths(value: Any, meta_path: Path, where: str) -> None:
    if isinstance(value, str) and is_absolute_path(value):
        raise WorkspaceError(
            meta_path,
            f"{where} holds the absolute path {value[:200]!r}; workspace metadata may only hold paths "
            "relative to the workspace",
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_absolute_paths(item, meta_path, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_absolute_paths(item, meta_path, where)


def read_meta(root: str | os.PathLike) -> dict:
    """The workspace's metadata, every field checked for its type and range (``WorkspaceError`` if not)."""
    root = Path(root)
    path = root / META_FILE
    if not root.is_dir():
        raise WorkspaceError(root, "workspace folder does not exist")
    try:
        meta = loads_strict(path.read_bytes(), MAX_META_BYTES)
    except FileNotFoundError:
        raise WorkspaceError(path, f"missing: {root} is not a ConceptKD workspace (no {META_FILE})") from None
    except StrictJSONError as exc:
        raise WorkspaceError(path, f"not valid: {exc}") from None
    except OSError as exc:
        raise WorkspaceError(path, f"cannot read ({exc.strerror or exc})") from None
    check(isinstance(meta, dict), path, "expected a JSON object")
    version = meta.get("schema_version")
    check(
        version in SUPPORTED_SCHEMA_VERSIONS and not isinstance(version, bool),
        path,
        f"unknown schema version {version!r}; this ConceptKD reads {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}",
    )
    for key in ("workspace_id", "vocabulary_sha256", "classes", "n_images", "n_concepts", "files", "model", "teacher"):
        check(key in meta, path, f"missing key {key!r}")
    _check_meta_fields(meta, path)
    return meta


def _is_count(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_meta_fields(meta: dict, path: Path) -> None:
    """Types and ranges of the metadata's fields: a hand-edited or damaged file is refused here,
    before any of its values reaches a path, an allocation or a page."""
    check(
        isinstance(meta["workspace_id"], str) and bool(_WORKSPACE_ID.fullmatch(meta["workspace_id"])),
        path,
        f"workspace_id {str(meta['workspace_id'])[:80]!r} must be 1-64 letters, digits, '-' or '_'",
    )
    check(
        isinstance(meta["vocabulary_sha256"], str) and bool(_HEX64.fullmatch(meta["vocabulary_sha256"])),
        path,
        "vocabulary_sha256 must be 64 lower-case hex digits",
    )
    classes = meta["classes"]
    check(
        isinstance(classes, list)
        and 0 < len(classes) <= MAX_CLASSES
        and all(isinstance(c, str) and 0 < len(c) <= MAX_NAME_LENGTH for c in classes),
        path,
        f"classes must be a list of 1 to {MAX_CLASSES:,} names of 1 to {MAX_NAME_LENGTH} characters",
    )
    check(_is_count(meta["n_images"], 1, 2**40), path, f"n_images {meta['n_images']!r} must be a whole number >= 1")
    check(
        _is_count(meta["n_concepts"], 1, MAX_WORDS),
        path,
        f"n_concepts {meta['n_concepts']!r} must be a whole number from 1 to {MAX_WORDS:,}",
    )
    if "n_classes" in meta:
        check(meta["n_classes"] == len(classes), path, f"n_classes {meta['n_classes']!r} differs from the classes")
    check(
        meta.get("concept_dtype", "float16") in CONCEPT_DTYPES,
        path,
        f"concept_dtype {meta.get('concept_dtype')!r} must be one of {', '.join(CONCEPT_DTYPES)}",
    )
    image_root = meta.get("image_root")
    check(
        image_root is None
        or (isinstance(image_root, str) and not is_absolute_path(image_root) and "\0" not in image_root),
        path,
        f"image_root {str(image_root)[:200]!r} must be a path relative to the workspace folder",
    )
    for key in ("model", "teacher"):
        check(isinstance(meta[key], dict), path, f"{key} must be a JSON object")
    check(isinstance(meta.get("extra", {}), dict), path, "extra must be a JSON object")
    source = meta["teacher"].get("source")
    check(source is None or isinstance(source, str), path, "teacher.source must be a file path or null")
    files = meta["files"]
    check(isinstance(files, dict), path, "files must be a JSON object")
    for name, record in files.items():
        check(name in DATA_FILES + SEGMENT_FILES, path, f"files names {str(name)[:80]!r}, which is no workspace file")
        check(
            isinstance(record, dict)
            and _is_count(record.get("bytes"), 0, 2**50)
            and isinstance(record.get("sha256"), str)
            and bool(_HEX64.fullmatch(record["sha256"])),
            path,
            f"the record of {name} must hold bytes (a whole number) and sha256 (64 hex digits)",
        )
