"""Which folders a visitor of the app may open as workspaces, and how paths are shown to them.

Whoever opens the app types a workspace folder into it; the server's other files are not theirs
to browse or probe. Workspaces are opened from *allowed roots* only: the app's ``data/`` and
``workspaces/`` folders and the folder holding the default workspace, or the folders listed
(separated by ``os.pathsep``) in the ``CONCEPTKD_WORKSPACE_ROOTS`` environment variable, which
replaces them. A visitor sees and types paths as ``<root name>/<path inside it>`` (e.g.
``data/demo/workspace``), never the server's absolute paths. A typed path is accepted only when
it is short (``MAX_PATH_CHARS``; ``MAX_NAME_CHARS`` for one folder name), holds no control
character, names an allowed root, and stays inside it once ``..`` and symbolic links are
resolved; every refusal reads the same whether the folder exists or not.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

ROOTS_VARIABLE = "CONCEPTKD_WORKSPACE_ROOTS"
MAX_PATH_CHARS = 400
MAX_NAME_CHARS = 255  # of one folder name: what file systems allow


class PathRefused(ValueError):
    """A typed path the app will not open; the message says why without revealing the server's files."""


def allowed_roots(
    app_folder: Path, default_workspace: Path, environ: Mapping[str, str] = os.environ
) -> tuple[Path, ...]:
    """The folders workspaces may be opened from (see the module docstring), resolved, outermost only."""
    configured = [p for p in environ.get(ROOTS_VARIABLE, "").split(os.pathsep) if p.strip()]
    listed = configured or [app_folder / "data", app_folder / "workspaces", default_workspace.parent]
    resolved = list(dict.fromkeys(Path(p).resolve() for p in listed))
    return tuple(r for r in resolved if not any(other in r.parents for other in resolved))


def _root_of(path: Path, roots: Sequence[Path]) -> Path | None:
    return next((root for root in roots if path == root or root in path.parents), None)


def resolve_typed_path(text: str, roots: Sequence[Path]) -> Path:
    """The folder a visitor typed (``<root name>/<path>``, or an absolute path), resolved;
    PathRefused if it is too long, holds a control character, or is not inside an allowed root."""
    if len(text) > MAX_PATH_CHARS:
        raise PathRefused(f"the path has {len(text):,} characters; the limit is {MAX_PATH_CHARS}")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise PathRefused("the path holds a control character; expected a folder path")
    longest = max((len(part) for part in PurePosixPath(text).parts), default=0)
    if longest > MAX_NAME_CHARS:
        raise PathRefused(f"a folder name in the path has {longest:,} characters; the limit is {MAX_NAME_CHARS}")
    text = text.strip()
    # The typed text is quoted (shortened), never what it resolves to: the refusal reads the same for
    # an existing and a missing server folder. Worded for any folder box, not only the workspace's.
    quoted = repr(text if len(text) <= 80 else text[:79] + "…")
    refused = PathRefused(
        f"{quoted} is outside the folders this server allows: {', '.join(root.name + '/' for root in roots)} "
        f"(the server's {ROOTS_VARIABLE} sets them)"
    )
    if not text:
        raise PathRefused(f"no folder given; expected one inside {', '.join(root.name + '/' for root in roots)}")
    if os.path.isabs(text):
        candidate = Path(text)
    else:
        first, *rest = PurePosixPath(text).parts
        root = next((r for r in roots if r.name == first), None)
        if root is None:
            raise refused
        candidate = root.joinpath(*rest)
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise refused from None
    if _root_of(resolved, roots) is None:
        raise refused
    return resolved


def display_path(path: str | os.PathLike, roots: Sequence[Path]) -> str:
    """``path`` as a visitor sees it: ``<root name>/<path inside it>``; a folder outside every
    allowed root (opened by the server itself, e.g. in tests) by its name alone."""
    path = Path(path).resolve()
    root = _root_of(path, roots)
    if root is None:
        return path.name
    return str(PurePosixPath(root.name, *path.relative_to(root).parts))


def without_server_paths(message: str, roots: Sequence[Path], app_folder: Path) -> str:
    """``message`` with the absolute paths of the allowed roots written as visitors see them, and
    the app's own folder left out."""
    folders = [Path(root) for root in roots if Path(root) != Path(Path(root).anchor)]  # never "/" itself
    replacements = {str(root): root.name for root in folders} | {str(Path(app_folder).resolve()): "."}
    for absolute in sorted(replacements, key=len, reverse=True):
        message = message.replace(absolute, replacements[absolute])
    return message
