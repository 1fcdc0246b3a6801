"""Configuration view: the workspace's images, classes, vocabulary, model and teacher."""

from pathlib import Path

import pandas as pd
import streamlit as st

from conceptkd_core.datasets import DatasetError
from conceptkd_core.defaults import IMAGENET_MEAN, IMAGENET_STD, N_SEGMENTS, TEACHER_IMAGE_SIZE
from conceptkd_core.extract import jobs
from conceptkd_core.extract.add_images import (
    ALLOWED_SUFFIXES,
    LOGITS_UPLOAD_SUFFIXES,
    MAX_UPLOAD_BYTES,
    add_images,
    check_uploads,
    needs_uploaded_logits,
    skip_duplicates,
    uploaded_logits_teacher,
)
from conceptkd_core.extract.rescore import rescored_already, rescored_folder
from conceptkd_core.extract.teachers import TeacherError
from conceptkd_core.images import RESIZE_MODES, Preprocessing
from conceptkd_core.markdown_text import literal
from conceptkd_core.predict import PredictError, clip_source
from conceptkd_core.store.locations import PathRefused, display_path, resolve_typed_path
from conceptkd_core.vocabulary import (
    DEFAULT_VOCABULARY,
    MAX_VOCABULARY_BYTES,
    VOCABULARY_DIR,
    VocabularyError,
    read_vocabulary_text,
)
from views.common import ALLOWED_ROOTS, current, get_clip, get_teacher, shown, teacher_spec


@st.cache_data(show_spinner=False)
def clip_source_of(root: str, workspace_id: str, _workspace):
    """Hashing candidate checkpoints costs a read of each: once per workspace. Keyed by its folder
    as well as its id: a copied workspace keeps the id but finds its files beside its own folder."""
    try:
        return clip_source(_workspace)
    except PredictError:
        return None


def progress_bar():
    bar = st.progress(0.0, text="Loading CLIP…")

    def update(p):
        bar.progress(
            p.done / p.total, text=f"{p.done}/{p.total} images · {p.images_per_s:.1f} images/s · ETA {p.eta_s:.0f} s"
        )

    return bar, update


def workspace_clip(ws) -> tuple[str, str, str] | None:
    """``get_clip``'s arguments for the workspace's own CLIP (``predict.clip_source``: its open_clip
    pretrained tag, or its checkpoint found by hash); None when neither can be had."""
    return clip_source_of(str(ws.root), ws.workspace_id, ws)


def switch_to(workspace, message: str) -> None:
    """Open ``workspace`` and say so. The sidebar's folder box is already drawn in this run, so
    the box is left to the sidebar of the next run (``st.rerun``), which shows the message."""
    st.session_state["workspace_root"] = str(workspace.root)
    st.session_state["setup_notice"] = message
    st.rerun()


def change_words(words: list[str], verb: str) -> str:
    """ "2 added (cat, dog)", or "none removed" (not "0 removed ()"): the vocabulary editor's diff."""
    if not words:
        return f"none {verb}"
    return f"{len(words)} {verb} ({literal(', '.join(words[:8]))}{'…' if len(words) > 8 else ''})"


def image_adder(explorer) -> None:
    ws = explorer.workspace
    st.subheader("Add images")
    files = st.file_uploader(
        f"Images ({', '.join(s[1:] for s in ALLOWED_SUFFIXES)}; up to {MAX_UPLOAD_BYTES // 2**20} MiB each)",
        type=[s[1:] for s in ALLOWED_SUFFIXES],
        accept_multiple_files=True,
        key=f"upload_{ws.workspace_id}",
    )
    if not files:
        return
    checked = skip_duplicates(ws, check_uploads([(f.name, f.getvalue()) for f in files]))
    for name, reason in checked.refused:
        st.error(f"{literal(name)}: {reason}")
    for name, existing in checked.duplicates:
        st.warning(f"{literal(name)}: skipped, the same file as {literal(existing)}")
    if not checked.accepted:
        return
    present = st.multiselect("Classes these images show (their labels)", list(ws.classes), key="upload_labels")
    found = workspace_clip(ws)
    uploaded_teacher = None
    if needs_uploaded_logits(ws):  # a logits file has no logits for new images: the analyst gives them
        uploaded_teacher = uploaded_logits(ws, checked)
        if uploaded_teacher is None:
            return
    teacher = uploaded_teacher or teacher_spec(str(ws.root), ws.workspace_id, ws)
    if found is None or teacher is None:
        missing = " and ".join(x for x, ok in (("CLIP checkpoint", found), ("teacher model", teacher)) if ok is None)
        st.info(
            f"This server cannot find the workspace's {missing}, so new images cannot be scored here; "
            "use `python -m conceptkd_core extract` (see README)."
        )
        return
    target = ws.root.with_name(f"{ws.root.name}-plus-{ws.n_images + len(checked.accepted)}")
    if st.button(f"Add {len(checked.accepted)} images → {literal(target.name)}"):
        bar, update = progress_bar()
        try:
            clip = get_clip(*found)
            teacher = uploaded_teacher or get_teacher(str(ws.root), ws.workspace_id, ws, clip)
            if isinstance(teacher, str):
                raise TeacherError(teacher)
            merged = add_images(ws, checked.accepted, present, clip, teacher, target, update)
        except (ValueError, OSError, RuntimeError) as exc:
            st.error(f"Could not add the images: {shown(exc)}")
            return
        bar.progress(1.0, text="Done")
        switch_to(
            merged,
            f"New workspace {literal(merged.root.name)} with {merged.n_images} images; it is now open "
            "(the original is unchanged).",
        )


def uploaded_logits(ws, checked):
    """The teacher for the accepted uploads from the analyst's logits table; None (with why) until one fits."""
    classes = ", ".join(ws.classes[:6]) + (f", … ({len(ws.classes)} classes)" if len(ws.classes) > 6 else "")
    table = st.file_uploader(
        "Teacher logits for these images (CSV or Parquet: "
        f"an image_id column with each image's file name, and a column per class: {classes})",
        type=[s[1:] for s in LOGITS_UPLOAD_SUFFIXES],
        key=f"upload_logits_{ws.workspace_id}",
        help=f"Columns: image_id, {', '.join(ws.classes)}",
    )
    if table is None:
        st.info("This workspace's teacher is a logits file, which has no logits for new images: upload theirs.")
        return None
    try:
        return uploaded_logits_teacher(ws, checked, table.name, table.getvalue())
    except TeacherError as exc:
        st.error(shown(exc))
        return None


def vocabulary_editor(explorer) -> None:
    ws = explorer.workspace
    st.subheader("Vocabulary")
    text = st.text_area(
        "Concept words, one per line (edit, then re-score)",
        "\n".join(ws.vocabulary),
        height=220,
        max_chars=MAX_VOCABULARY_BYTES,
        key=f"vocab_{ws.workspace_id}",
    )
    try:
        words, duplicates = read_vocabulary_text(text)
    except VocabularyError as exc:
        st.error(literal(exc))
        return
    if duplicates:
        st.caption(f"{len(duplicates)} duplicate words dropped: {literal(', '.join(duplicates[:8]))}")
    added = [w for w in words if w not in ws.vocabulary]
    removed = [w for w in ws.vocabulary if w not in words]
    if not added and not removed:
        st.caption(f"{len(words)} concepts.")
        return
    st.write(f"{change_words(added, 'added')}, {change_words(removed, 'removed')}.")
    found = workspace_clip(ws)
    if found is None:
        model = ws.meta["model"]
        st.info(
            f"Concept scores need this workspace's CLIP ({literal(model.get('name'))}, "
            f"{literal(model.get('pretrained') or 'a local checkpoint')}), "
            "which this server cannot find, so they cannot be recomputed here. Save the words to a file and run "
            "`python -m conceptkd_core extract … --vocabulary FILE` (see README)."
        )
        return
    target = rescored_folder(ws, words)
    if st.button(f"Re-score {ws.n_images} images with this vocabulary → {literal(target.name)}"):
        rescore_in_background(ws, words, found, target)


def rescore_in_background(ws, words: list[str], found: tuple[str, str, str], target: Path) -> None:
    """Start re-scoring ``ws`` with ``words`` into ``target`` as a job (listed at the top of the page,
    found again after a reload, opened on Students when done); a workspace already re-scored so is opened."""
    done = rescored_already(ws, words)
    if done is not None:
        switch_to(done, f"{literal(target.name)} holds these words' scores already; it is now the open workspace.")
    try:
        status = jobs.read_status(target)
    except jobs.JobError:
        status = None
    if status is not None and status.state != "done":
        st.info(
            f"{literal(target.name)} has a re-scoring job with these words ({status.state}): see the top of this page."
        )
        return
    model, checkpoint, pretrained = found
    spec = jobs.RescoreSpec(str(ws.root), tuple(words), model, pretrained or None, checkpoint or None)
    try:
        jobs.start(target, spec, get_clip(*found))
    except (jobs.JobError, ValueError, OSError, RuntimeError) as exc:
        st.error(f"Could not re-score: {shown(exc)}")
        return
    watch(target)
    st.rerun()


TEACHER_KINDS = {
    "CLIP zero-shot": "clip-zero-shot",
    "TorchScript file": "torch",
    "Logits file (CSV, Parquet, NPY)": "logits",
}


def typed_path(label: str, key: str, help: str, optional: bool = False) -> Path | None:
    """A path typed as ``<allowed root>/<path>``; None (with the reason shown) if refused or empty."""
    text = st.text_input(label, key=key, help=help)
    if optional and not text.strip():
        return None
    try:
        return resolve_typed_path(text, ALLOWED_ROOTS)
    except PathRefused as exc:
        if text.strip():
            st.error(f"{label}: {literal(exc)}")
        return None


def numbers(text: str, label: str) -> tuple[float, float, float] | None:
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        values = ()
    if len(values) != 3:
        st.error(f"{label} {literal(repr(text))}: expected three numbers (R, G, B), e.g. 0.5, 0.5, 0.5")
        return None
    return values


def teacher_fields() -> tuple[str, Preprocessing | None] | None:
    """The teacher the analyst picked: (spec, preprocessing), or None while something is missing."""
    kind = TEACHER_KINDS[st.radio("Teacher", list(TEACHER_KINDS), horizontal=True, key="new_teacher_kind")]
    if kind == "clip-zero-shot":
        st.caption("CLIP scores each image against a prompt per class: no model file needed.")
        return "clip-zero-shot", None
    path = typed_path(
        "Teacher file",
        "new_teacher_path",
        "A file on this server, as <allowed folder>/<path>, e.g. data/models/teacher.pt",
    )
    if kind == "logits":
        return (str(path), None) if path else None
    cols = st.columns(4)
    size = cols[0].number_input("Image size (px)", 1, 4096, TEACHER_IMAGE_SIZE, key="new_teacher_size")
    mean = numbers(cols[1].text_input("Mean (R, G, B)", ", ".join(map(str, IMAGENET_MEAN)), key="new_mean"), "Mean")
    std = numbers(cols[2].text_input("Std (R, G, B)", ", ".join(map(str, IMAGENET_STD)), key="new_std"), "Std")
    resize = cols[3].selectbox("Resize", RESIZE_MODES, key="new_teacher_resize")
    st.caption(
        "How the teacher was trained to see images: made square at this size (squashed, centre-cropped or "
        "letterboxed), then (x − mean) / std per channel."
    )
    if path is None or mean is None or std is None:
        return None
    try:
        return str(path), Preprocessing(int(size), mean, std, resize)
    except ValueError as exc:
        st.error(literal(exc))
        return None


def vocabulary_fields() -> tuple[str, ...] | None:
    lists = sorted(VOCABULARY_DIR.glob("*.txt"), key=lambda p: (p != DEFAULT_VOCABULARY, p.name))
    chosen = st.selectbox("Vocabulary", lists, format_func=lambda p: p.stem, key="new_vocabulary_list")
    text = st.text_area(
        "Concept words, one per line (edit freely)",
        chosen.read_text(encoding="utf-8"),
        height=160,
        max_chars=MAX_VOCABULARY_BYTES,
        key=f"new_vocabulary_{chosen.stem}",
    )
    try:
        words, _ = read_vocabulary_text(text)
    except VocabularyError as exc:
        st.error(literal(exc))
        return None
    st.caption(f"{len(words)} concepts.")
    return tuple(words)


def clip_fields(state) -> tuple[str, str, str] | None:
    """``get_clip``'s arguments: the open workspace's CLIP, or an open_clip model and pretrained tag."""
    own = workspace_clip(state[0].workspace) if state else None
    choices = (["the open workspace's CLIP"] if own else []) + ["an open_clip model"]
    choice = st.radio("CLIP", choices, horizontal=True, key="new_clip")
    if choice != "an open_clip model":
        return own
    cols = st.columns(2)
    name = cols[0].text_input("Model", "ViT-B-16", key="new_clip_model")
    tag = cols[1].text_input(
        "Pretrained weights", "openai", key="new_clip_tag", help="open_clip's tag; needs them downloaded once"
    )
    return (name.strip(), "", tag.strip()) if name.strip() and tag.strip() else None


def create_workspace(state) -> None:
    """The form that starts a background extraction into a new workspace folder."""
    st.markdown("**Images**")
    source = st.radio("From", ["a folder on this server", "a zip I upload"], horizontal=True, key="new_source")
    folder, archive = None, None
    if source == "a folder on this server":
        folder = typed_path("Image folder", "new_images", "As <allowed folder>/<path>, e.g. data/my-images")
    else:
        archive = st.file_uploader(
            f"Zip of images (up to {MAX_UPLOAD_BYTES // 2**20} MiB; a larger set: a folder on this server)",
            type=["zip"],
            key="new_zip",
        )
    labels = typed_path(
        "Labels CSV (optional)",
        "new_labels",
        "Columns: image (path in the folder), optional image_id and split, and labels (;-separated) or one 0/1 "
        "column per class. Without it every image is taken, unlabelled.",
        optional=True,
    )
    classes: tuple[str, ...] = ()
    if labels is None:
        typed = st.text_input("Class names, in the teacher's output order (comma-separated)", key="new_classes")
        classes = tuple(c.strip() for c in typed.split(",") if c.strip())
    teacher = teacher_fields()
    words = vocabulary_fields()
    clip = clip_fields(state)
    out = typed_path("Folder for the new workspace", "new_out", "As <allowed folder>/<name>: a new or empty folder")
    segments = st.number_input("Segments per image", 1, 255, N_SEGMENTS, key="new_segments")
    needed = {"the images": folder or archive, "the teacher": teacher, "concept words": words, "a CLIP": clip}
    missing = [what for what, given in (needed | {"the folder for the new workspace": out}).items() if not given]
    if missing:  # a greyed-out button alone does not say what it waits for
        st.caption(f"To start, give {', '.join(missing)}.")
    started = st.session_state.pop("started_job", None)
    if started:  # the form is where the analyst looks; the progress is at the top of the page
        st.success(f"Started {literal(display_path(started, ALLOWED_ROOTS))}: its progress is at the top of this page.")
    if not st.button("Start extraction", type="primary", disabled=bool(missing), key="new_start"):
        return
    try:
        spec = jobs.JobSpec(
            images=str(folder or jobs.job_folder(out) / jobs.ARCHIVE_DIR),
            labels=str(labels) if labels else None,
            classes=classes,
            teacher=teacher[0],
            preprocessing=teacher[1],
            vocabulary=words,
            model=clip[0],
            checkpoint=clip[1] or None,
            pretrained=clip[2] or None,
            n_segments=int(segments),
        )
        jobs.start(out, spec, get_clip(*clip), archive=archive)
    except (jobs.JobError, DatasetError, ValueError, OSError, RuntimeError) as exc:
        st.error(f"Could not start: {shown(exc)}")
        return
    watch(out)
    st.session_state["started_job"] = str(out)
    st.rerun()


def clip_of(spec: jobs.JobSpec) -> tuple[str, str, str]:
    return spec.model, spec.checkpoint or "", spec.pretrained or ""


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


@st.fragment(run_every=1.0)
def job_panel(out: str) -> None:
    """One job's progress, re-read from its status file every second; opens the workspace when done."""
    try:
        status = jobs.read_status(out)
    except jobs.JobError as exc:
        st.error(shown(exc))
        return
    if status is None:
        return
    name = literal(display_path(out, ALLOWED_ROOTS))
    watched = st.session_state.setdefault("watched_jobs", [])
    if status.active:
        if out not in watched:
            watched.append(out)
        speed = f" · {status.images_per_s:.1f} images/s" if status.images_per_s else ""
        eta = f" · ETA {duration(status.eta_s)}" if status.eta_s is not None else ""
        st.progress(
            status.fraction, text=f"{name}: {status.done:,}/{status.total:,} images{speed}{eta} · {status.message}"
        )
        if st.button("Cancel", key=f"cancel_{out}", help="Stops after the batch in flight; resume later"):
            jobs.cancel(out)
        return
    if status.state == "done":
        if out in watched:  # finished while this session watched it: open it on Students
            watched.remove(out)  # (one that skipped images is drawn below, with them, and no longer polled)
            if not status.skipped:
                open_on_students(out)
        finished_job(out, status)
        return
    if out in watched:  # stopped while watched: drawn once, outside this poll, where a click cannot be lost
        watched.remove(out)
    st.rerun()


STOPPED = {"cancelled": "cancelled", "interrupted": "interrupted (the server restarted)", "failed": "failed"}


def stopped_job(out: str, status: jobs.JobStatus) -> None:
    """A cancelled, failed or interrupted job: what it did, Resume, and Discard (after a confirmation)."""
    name = literal(display_path(out, ALLOWED_ROOTS))
    shown_message = f": {shown(status.message)}" if status.state == "failed" else ""
    st.warning(f"{name}: {status.done:,}/{status.total:,} images, {STOPPED[status.state]}{shown_message}")
    actions = st.container(horizontal=True)
    if actions.button("Resume", key=f"resume_{out}", help="Continue where it stopped; finished batches are kept"):
        try:
            jobs.resume(out, get_clip(*clip_of(jobs.read_spec(out))))
        except (jobs.JobError, DatasetError, ValueError, OSError, RuntimeError) as exc:
            st.error(f"Could not resume: {shown(exc)}")
            return
        watch(out)
        st.rerun()
    with actions.popover("Discard", help="Delete this job and what it extracted, to free its folder"):
        extracted = f" and the {status.done:,} images extracted so far" if status.done else ""
        st.markdown(f"Delete the folder {name}{extracted}? This cannot be undone.")
        if st.button("Delete it", type="primary", key=f"discard_{out}"):
            try:
                jobs.discard(out)
            except jobs.JobError as exc:
                st.error(f"Could not discard: {shown(exc)}")
                return
            st.session_state["setup_notice"] = f"Discarded {name}: its folder is free again."
            st.rerun()


def finished_job(out: str, status: jobs.JobStatus) -> None:
    """A job that finished while no page of this session watched it, and a button that opens it."""
    skipped = f", {status.skipped:,} skipped ({shown(status.message)})" if status.skipped else ""
    st.success(
        f"{literal(display_path(out, ALLOWED_ROOTS))}: done, {status.done - status.skipped:,} images extracted{skipped}"
    )
    if st.button("Open it", key=f"open_{out}", help="Open the new workspace on the Students page"):
        open_on_students(out)


def watch(out: str | Path) -> None:
    """Follow the job in ``out`` in this session: its progress is polled, and it opens when done."""
    st.session_state.setdefault("watched_jobs", []).append(str(Path(out).resolve()))


def open_on_students(out: str) -> None:
    """Make the workspace a job made in ``out`` the open one, and show it on the Students page."""
    st.session_state["workspace_root"] = out
    st.switch_page("views/students.py")


def job_list() -> None:
    """The jobs of this server that are not finished or finished lately (found on disk: a reload
    finds them again, also one that finished while the page reloaded)."""
    found = {str(p.resolve()) for p in jobs.find_jobs(ALLOWED_ROOTS)} | set(st.session_state.get("watched_jobs", []))
    for out in sorted(found):
        try:
            status = jobs.read_status(out)
        except jobs.JobError:
            status = None
        watched = out in st.session_state.get("watched_jobs", [])
        if status is None or (status.state == "done" and not watched and not jobs.finished_recently(status)):
            continue
        if status.state == "done" and not watched:  # drawn once, not polled: nothing changes any more
            finished_job(out, status)
        elif status.state in STOPPED and not watched:  # changes only on a click here (or in another tab)
            stopped_job(out, status)
        else:
            job_panel(out)


st.title("Setup")
if "setup_notice" in st.session_state:  # set by switch_to before its rerun
    st.success(st.session_state.pop("setup_notice"))
state = current()
# The job list is drawn in a container that is always there: a job appearing above the form (this
# tab's, or one another tab started) must not shift the form's place on the page, which re-created
# it closed and hid the refusal it had just shown.
with st.container():
    job_list()
with st.expander("Create a workspace", expanded=not state, icon=":material/add:", key="create_workspace"):
    create_workspace(state)
if state:
    explorer, _ = state
    ws = explorer.workspace
    if ws.meta.get("extra", {}).get("demo"):
        st.info(
            "**This is the embedded demo, “Clipart Scenes”:** synthetic scenes of emoji clipart, a mini CLIP "
            "trained on them inside this project (no pretrained weights ship or can be downloaded here), and a "
            "small CNN as the teacher. Everything you see is computed for real, but it explains a toy classifier. "
            "For real work, extract your own images with a real CLIP (e.g. `--model ViT-B-16 --pretrained openai`, "
            "see README) and enter that workspace's folder in the sidebar.",
            icon=":material/science:",
        )
    cols = st.columns(4)
    cols[0].metric("Images", f"{ws.n_images:,}")
    cols[1].metric("Classes", ws.n_classes)
    cols[2].metric("Concepts", ws.n_concepts)
    cols[3].metric("Splits", ", ".join(sorted(set(ws.splits))))
    model = ws.meta["model"]
    st.markdown(
        f"**CLIP:** {literal(model.get('name'))} · weights: {literal(model.get('pretrained') or 'local checkpoint')} · "
        f"**teacher:** {literal(ws.meta['teacher'].get('kind'))}"
    )
    st.subheader("Classes")
    st.dataframe(
        pd.DataFrame({"class": ws.classes, "images": ws.labels.sum(axis=0)}),
        hide_index=True,
        column_config={
            "class": st.column_config.TextColumn("Class"),
            "images": st.column_config.NumberColumn("Images labelled", format="%d"),
        },
    )
    vocabulary_editor(explorer)
    image_adder(explorer)
