"""Shared page helpers: the page registry, the cached workspace, this browser session's tuning,
and the sidebar. Drawing helpers the views share are in ``views/draw.py``.

The views live in ``views/``, not ``pages/``: a folder named ``pages`` beside ``app.py`` switches
Streamlit into its legacy multipage mode on a cold server (see README, "Using the app").
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import NamedTuple

import streamlit as st

from conceptkd_core.explorer import Explorer, open_explorer, owner_of, session_for_link
from conceptkd_core.markdown_text import literal
from conceptkd_core.store.locations import (
    MAX_PATH_CHARS,
    PathRefused,
    allowed_roots,
    display_path,
    resolve_typed_path,
    without_server_paths,
)
from conceptkd_core.store.workspace import WorkspaceError
from conceptkd_core.students.session import TuningSession

ROOT = Path(__file__).resolve().parent.parent


class View(NamedTuple):
    """One page of the app: its script, title (also its heading), Material icon, navigation
    section and URL path ("" for the landing page, which is the default)."""

    script: str
    title: str
    icon: str
    section: str
    url_path: str
    help: str


# The app's pages, in navigation order. app.py, the app benchmark and the page tests read this.
PAGES = (
    View("views/home.py", "Start here", ":material/flag:", "", "", "What ConceptKD does, in three steps"),
    View("views/students.py", "Students", ":material/leaderboard:", "Explore", "students", "Teacher vs students"),
    View("views/concepts.py", "Concepts", ":material/hub:", "Explore", "concepts", "What drives each class"),
    View("views/images.py", "Images", ":material/photo_library:", "Explore", "images", "Why one image is a yes"),
    View("views/predict.py", "Predict", ":material/online_prediction:", "Explore", "predict", "Score a new image"),
    View("views/tune.py", "Tune", ":material/tune:", "Steer", "tune", "Steer a student by hand"),
    View("views/history.py", "History", ":material/history:", "Steer", "history", "Undo, revert, export"),
    View("views/setup.py", "Setup", ":material/folder_open:", "Workspace", "setup", "Images, vocabulary, model"),
)


@st.cache_resource(show_spinner="Loading CLIP…", max_entries=2)
def get_clip(model: str, checkpoint: str = "", pretrained: str = ""):
    """One CLIP per server, shared by every session, page and job (loading ViT-B/16 takes seconds
    and hundreds of MB: the Predict, Students and Setup pages must not each hold a copy)."""
    from conceptkd_core.extract.clip_backend import load_clip  # imports torch: only when a page needs CLIP

    return load_clip(model, pretrained=pretrained or None, checkpoint=checkpoint or None)


@st.cache_resource(show_spinner="Preparing the vocabulary…", max_entries=2)
def get_predictor(workspace_id: str, _workspace):
    """The workspace's CLIP (``get_clip``'s) with its vocabulary's text embeddings, once per server
    (keyed by the workspace's id: a workspace rebuilt in the same folder gets its own)."""
    from conceptkd_core.predict import Predictor, clip_source

    return Predictor(_workspace, get_clip(*clip_source(_workspace)))


@st.cache_data(show_spinner=False)
def teacher_spec(root: str, workspace_id: str, _workspace) -> str | None:
    """Where this server finds the workspace's teacher (``teacher_registry.find_teacher``), None if
    nowhere, without loading torch. Finding hashes the candidate files: once per workspace, keyed by
    its folder as well as its id (a copied workspace keeps the id but not what lies beside it)."""
    from conceptkd_core.extract.teacher_registry import find_teacher

    return find_teacher(_workspace, ALLOWED_ROOTS)


@st.cache_resource(show_spinner="Loading the teacher…", max_entries=2)
def get_teacher(root: str, workspace_id: str, _workspace, _clip):
    """The workspace's teacher rebuilt to score new images (``_clip``: the workspace's own CLIP,
    ``get_clip``'s), or the one-line reason it cannot be. One cache for the Predict and Setup
    pages, so both find the teacher by the same rule (``teacher_registry.teacher_for_workspace``)."""
    from conceptkd_core.extract.teacher_registry import teacher_for_workspace
    from conceptkd_core.extract.teachers import TeacherError

    try:
        return teacher_for_workspace(_workspace, ALLOWED_ROOTS, clip=_clip)
    except TeacherError as exc:
        return str(exc)


def view(title: str) -> View:
    return next(v for v in PAGES if v.title == title)


def navigation_sections() -> dict[str, list]:
    """``st.navigation``'s sections: {section: [st.Page, ...]}; the unnamed section comes first."""
    sections: dict[str, list] = {}
    for v in PAGES:
        page = st.Page(
            v.script, title=v.title, icon=v.icon, url_path=v.url_path or None, default=not v.url_path, help=v.help
        )
        sections.setdefault(v.section, []).append(page)
    return sections


DEFAULT_WORKSPACE = Path(os.environ.get("CONCEPTKD_WORKSPACE", ROOT / "data" / "demo" / "workspace"))
# Where a visitor may open workspaces from (store.locations: the app's data/ and workspaces/ folders
# and the default workspace's folder, or $CONCEPTKD_WORKSPACE_ROOTS).
ALLOWED_ROOTS = allowed_roots(ROOT, DEFAULT_WORKSPACE)


@st.cache_resource(show_spinner="Loading workspace…", max_entries=4)
def get_explorer(root: str) -> Explorer:
    """One read-only copy per workspace, shared by every session of this server."""
    return open_explorer(root)


def shown(message: object) -> str:
    """A message as a visitor may read it: no absolute path of the server's folders (the allowed
    roots, the open workspace's folder, the app's), and as Markdown that shows it as typed (every
    message goes to an alert, and a folder or file name may hold Markdown's characters)."""
    # The open workspace's parent counts only outside the allowed roots (a test's copy): inside one,
    # shortening it to its name would turn data/demo/x into demo/x, a folder the visitor cannot type.
    parent = Path(st.session_state.get("workspace_root", DEFAULT_WORKSPACE)).resolve().parent
    inside = any(parent == root or root in parent.parents for root in ALLOWED_ROOTS)
    return literal(without_server_paths(str(message), (*ALLOWED_ROOTS, *(() if inside else (parent,))), ROOT))


def _workspace_typed() -> None:
    """Callback of the workspace box: open what was typed if it is allowed and is a workspace, else
    say why and keep the workspace (and the tuning session) that was open."""
    try:
        path = resolve_typed_path(st.session_state["workspace_input"], ALLOWED_ROOTS)
        get_explorer(str(path))
    except PathRefused as exc:
        st.session_state["workspace_refused"] = literal(exc)
        return
    except (WorkspaceError, OSError) as exc:
        st.session_state["workspace_refused"] = f"Not opened, the open workspace stays: {shown(exc)}"
        return
    st.session_state.pop("workspace_refused", None)
    st.session_state["workspace_root"] = str(path)
    st.session_state["workspace_shown"] = display_path(path, ALLOWED_ROOTS)


WORKSPACE_PARAM = "workspace"


def _workspace_from_address() -> None:
    """A reload starts a new Streamlit session, which knew only the default workspace (a workspace
    just created, re-scored or typed was silently swapped for the demo): the page address names the
    open one (``?workspace=<allowed root>/<path>``, as the box shows it), so a reload opens it again.
    Refused like a typed folder."""
    named = st.query_params.get(WORKSPACE_PARAM)
    if "workspace_root" in st.session_state or not named:
        return
    try:
        path = resolve_typed_path(named, ALLOWED_ROOTS)
        get_explorer(str(path))
    except PathRefused as exc:
        st.session_state["workspace_refused"] = f"The page address's workspace: {literal(exc)}"
        return
    except (WorkspaceError, OSError) as exc:
        st.session_state["workspace_refused"] = f"The page address's workspace was not opened: {shown(exc)}"
        return
    st.session_state["workspace_root"] = str(path)


# A chart's tooltip (Vega's, one element at the end of the page) outlives the chart: left by a page
# switch, it lost its style and stood below the app as a plain table, a long name in it making a
# phone's page scroll sideways. Shown only while it is shown over a chart.
STALE_TOOLTIP_CSS = (
    "<style>#vg-tooltip-element:not(.visible), body:not(:has(.vega-embed)) #vg-tooltip-element "
    "{ display: none; }</style>"
)


def sidebar() -> None:
    _workspace_from_address()
    st.html(STALE_TOOLTIP_CSS)
    with st.sidebar:
        # The box shows the open workspace as <allowed root>/<path>. When code switched the workspace
        # (at start, after adding images or re-scoring), the box is set here, before it is drawn:
        # a widget's value cannot be set once the widget exists in the run.
        folder = display_path(st.session_state.get("workspace_root", DEFAULT_WORKSPACE), ALLOWED_ROOTS)
        if st.session_state.get("workspace_shown") != folder:
            st.session_state["workspace_shown"] = st.session_state["workspace_input"] = folder
        st.text_input(
            "Workspace folder",
            key="workspace_input",
            max_chars=MAX_PATH_CHARS,
            on_change=_workspace_typed,
            help="A folder made by `python -m conceptkd_core extract`, inside one of the folders this server "
            f"allows ({', '.join(root.name + '/' for root in ALLOWED_ROOTS)}), e.g. data/demo/workspace.",
        )
        if st.session_state.get("workspace_refused"):
            st.error(st.session_state["workspace_refused"])
        state = current(notices=False)
        if state:
            explorer, session = state
            for notice in explorer.notices:
                st.warning(shown(notice))
            classes = list(explorer.classes)
            index = classes.index(st.session_state["class"]) if st.session_state.get("class") in classes else 0
            st.selectbox("Class", classes, index=index, key="class_input")
            st.session_state["class"] = st.session_state["class_input"]


BROWSER_COOKIE = "conceptkd_browser"
BROWSER_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")


def browser_key() -> str:
    """This browser's random key: it lists the browser's own tuning sessions. Kept in a cookie (a
    year), so that it survives a reload and is never part of a link that gets shared; a browser
    without it gets a new one, written by a line of JavaScript (Streamlit reads cookies, but only
    the page can set one)."""
    key = st.session_state.get("browser_key")
    if key:
        return key
    key = st.context.cookies.get(BROWSER_COOKIE)
    if not isinstance(key, str) or not BROWSER_KEY.fullmatch(key):
        key = secrets.token_urlsafe(24)
        st.html(
            f"<script>document.cookie = '{BROWSER_COOKIE}={key}; path=/; max-age=31536000; SameSite=Strict';</script>",
            unsafe_allow_javascript=True,
        )
    st.session_state["browser_key"] = key
    return key


def current(notices: bool = True) -> tuple[Explorer, TuningSession] | None:
    """The workspace and this session's tuning, or None (with a message) if there is no workspace.

    The session's id is kept in the page address (``?session=``): a reload or a shared link opens
    that session again (``explorer.session_for_link``); ``notices``: say (until the first edit)
    why the session the address named could not be restored."""
    root = st.session_state.get("workspace_root", str(DEFAULT_WORKSPACE))
    try:
        explorer = get_explorer(str(Path(root).resolve()))
    except (WorkspaceError, OSError) as exc:
        # The tuning session stays in memory (and on disk): it returns with its workspace.
        st.warning(f"No workspace to show: {shown(exc)}")
        st.caption(
            "Make one with `python -m conceptkd_core extract --images … --out WORKSPACE` "
            "(see README), then enter its folder in the sidebar."
        )
        return None
    session = st.session_state.get("tuning")
    if session is None or session.stamp.get("workspace_id") != explorer.workspace.workspace_id:
        session, problem = session_for_link(explorer, st.query_params.get("session"), owner_of(browser_key()))
        st.session_state["tuning"] = session
        st.session_state["link_problem"] = problem and shown(problem)
    if notices and st.session_state.get("link_problem") and not session.events:
        st.warning(st.session_state["link_problem"])
    if st.query_params.get("session") != session.session_id:
        st.query_params["session"] = session.session_id
    named = None if Path(root).resolve() == DEFAULT_WORKSPACE.resolve() else display_path(root, ALLOWED_ROOTS)
    if st.query_params.get(WORKSPACE_PARAM) != named:  # a reload opens this workspace again
        if named is None:
            del st.query_params[WORKSPACE_PARAM]
        else:
            st.query_params[WORKSPACE_PARAM] = named
    return explorer, session


def selected_class(explorer: Explorer) -> int:
    name = st.session_state.get("class")
    return explorer.classes.index(name) if name in explorer.classes else 0
