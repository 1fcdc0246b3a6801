"""Which folders a visitor of the app may open as workspaces, and how paths are shown to them.

Whoever opens the app types a workspace folder into it; the server's other files are not theirs
to browse or probe. A typed path is accepted only when it is short (``MAX_PATH_CHARS``), holds
no control character, and lies (after resolving ``..`` and symbolic links) under an allowed
root. Every refusal reads the same whether the folder exists or not. The allowed roots are the
app's ``data/`` and ``workspaces/`` folders and the folder holding the default workspace, or
the folders listed (separated by ``os.pathsep``) in the ``CONCEPTKD_WORKSPACE_ROOTS``
environment variable, which replaces them. Paths are shown relative to the app's folder, never
as the server's absolute paths.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOTS_VARIABLE = "CONCEPTKD_WORKSPACE_ROOTS"
MAX_PATH_CHARS = 400


class PathRefused(ValueError):
    """A typed path the app will not open; the message says why without revealing the server's files."""


def allowed_roots(
    app_folder: Path, default_workspace: Path, environ: Mapping[str, str] = os.environ
) -> tuple[Path, ...]:
    """The folders workspaces may be opened from (see the module docstring), resolved."""
    configured = [p for p in environ.get(ROOTS_VARIABLE, "").split(os.pathsep) if p.strip()]
    roots = (
        [Path(p) for p in configured]
        if configured
        else [app_folder / "data", app_folder / "workspaces", default_workspace.parent]
    )
    resolved = list(dict.fromkeys(Path(p).resolve() for p in roots))
    return tuple(r for r in resolved if not any(other in r.parents for other in resolved))  # outermost only


def resolve_typed_path(text: str, roots: Sequence[Path], base: Path) -> Path:
    """The folder a visitor typed (relative to ``base``, the app's folder, or absolute), resolved;
    PathRefused if it is too long, holds a control character, or is not under one of ``roots``."""
    if len(text) > MAX_PATH_CHARS:
        raise PathRefused(f"the path has {len(text):,} characters; the limit is {MAX_PATH_CHARS}")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise PathRefused("the path holds a control character; expected a folder path")
    text = text.strip()
    if not text:
        raise PathRefused("no folder given; expected a workspace folder such as data/demo/workspace")
    path = Path(text) if os.path.isabs(text) else base / text
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        resolved = None
    if resolved is None or not any(resolved == root or root in resolved.parents for root in roots):
        shown = ", ".join(display_path(root, base) for root in roots)
        raise PathRefused(
            f"workspaces can be opened from these folders only: {shown} (the server's {ROOTS_VARIABLE} sets them)"
        )
    return resolved


def display_path(path: str | os.PathLike, base: Path) -> str:
    """``path`` as a visitor sees it: relative to ``base`` (the app's folder)."""
    return os.path.relpath(Path(path), base)


def without_server_paths(message: str, base: Path, roots: Sequence[Path] = ()) -> str:
    """``message`` with the absolute paths of ``base`` and ``roots`` written relative to ``base``."""
    for folder in sorted({Path(base).resolve(), *roots}, key=lambda p: len(str(p)), reverse=True):
        shown = display_path(folder, base)
        message = message.replace(f"{folder}{os.sep}", "" if shown == "." else f"{shown}{os.sep}")
        message = message.replace(str(folder), shown)
    return message
