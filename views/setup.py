"""Configuration view: the workspace's images, classes, vocabulary, model and teacher."""

import re

import pandas as pd
import streamlit as st

from conceptkd_core.extract.add_images import ALLOWED_SUFFIXES, MAX_UPLOAD_BYTES, add_images, check_uploads
from conceptkd_core.extract.rescore import find_checkpoint, rescore, rescored_folder
from conceptkd_core.extract.teacher_registry import recorded_teacher_spec, teacher_from_workspace
from conceptkd_core.vocabulary import MAX_VOCABULARY_BYTES, VocabularyError, read_vocabulary_text
from views.common import current, shown


@st.cache_resource(show_spinner="Loading CLIP…", max_entries=1)
def get_clip(model: str, checkpoint: str):
    from conceptkd_core.extract.clip_backend import load_clip  # imports torch: only when re-scoring

    return load_clip(model, checkpoint=checkpoint)


@st.cache_data(show_spinner=False)
def checkpoint_of(workspace_id: str, _workspace):
    """Hashing candidate checkpoints costs a read of each: once per workspace (keyed by its id)."""
    return find_checkpoint(_workspace)


@st.cache_data(show_spinner=False)
def teacher_spec_of(workspace_id: str, _workspace):
    """Finding a teacher file hashes the candidates: once per workspace (keyed by its id)."""
    return recorded_teacher_spec(_workspace)


@st.cache_resource(show_spinner="Loading the teacher…", max_entries=1)
def get_teacher(workspace_id: str, _workspace, _clip):
    return teacher_from_workspace(_workspace, clip=_clip)  # torch is imported here: only when adding images


def progress_bar():
    bar = st.progress(0.0, text="Loading CLIP…")

    def update(p):
        bar.progress(
            p.done / p.total, text=f"{p.done}/{p.total} images · {p.images_per_s:.1f} images/s · ETA {p.eta_s:.0f} s"
        )

    return bar, update


def switch_to(workspace, message: str) -> None:
    """Open ``workspace`` and say so. The sidebar's folder box is already drawn in this run, so
    the box is left to the sidebar of the next run (``st.rerun``), which shows the message."""
    st.session_state["workspace_root"] = str(workspace.root)
    st.session_state["setup_notice"] = message
    st.rerun()


def plain(text: object) -> str:
    """``text`` with Markdown's special characters escaped: words and names from the data are shown, not rendered."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", str(text))


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
    checked = check_uploads([(f.name, f.getvalue()) for f in files])
    for name, reason in checked.refused:
        st.error(f"{name}: {reason}")
    if not checked.accepted:
        return
    present = st.multiselect("Classes these images show (their labels)", list(ws.classes), key="upload_labels")
    found = checkpoint_of(ws.workspace_id, ws)
    teacher = teacher_spec_of(ws.workspace_id, ws)
    if found is None or teacher is None:
        missing = " and ".join(x for x, ok in (("CLIP checkpoint", found), ("teacher model", teacher)) if ok is None)
        st.info(
            f"This server cannot find the workspace's {missing}, so new images cannot be scored here; "
            "use `python -m conceptkd_core extract` (see README)."
        )
        return
    target = ws.root.with_name(f"{ws.root.name}-plus-{ws.n_images + len(checked.accepted)}")
    if st.button(f"Add {len(checked.accepted)} images → {target.name}"):
        bar, update = progress_bar()
        try:
            clip = get_clip(*map(str, found))
            teacher = get_teacher(ws.workspace_id, ws, clip)
            merged = add_images(ws, checked.accepted, present, clip, teacher, target, update)
        except (ValueError, OSError, RuntimeError) as exc:
            st.error(f"Could not add the images: {shown(exc)}")
            return
        bar.progress(1.0, text="Done")
        switch_to(
            merged,
            f"New workspace {merged.root.name} with {merged.n_images} images; it is now open "
            "(the original is unchanged).",
        )


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
        st.error(str(exc))
        return
    if duplicates:
        st.caption(f"{len(duplicates)} duplicate words dropped: {plain(', '.join(duplicates[:8]))}")
    added = [w for w in words if w not in ws.vocabulary]
    removed = [w for w in ws.vocabulary if w not in words]
    if not added and not removed:
        st.caption(f"{len(words)} concepts.")
        return
    st.write(
        f"{len(added)} added ({plain(', '.join(added[:8]))}{'…' if len(added) > 8 else ''}), "
        f"{len(removed)} removed ({plain(', '.join(removed[:8]))}{'…' if len(removed) > 8 else ''})."
    )
    found = checkpoint_of(ws.workspace_id, ws)
    if found is None:
        model = ws.meta["model"]
        st.info(
            f"Concept scores need this workspace's CLIP ({plain(model.get('name'))}, "
            f"{plain(model.get('pretrained') or 'a local checkpoint')}), "
            "which this server cannot find, so they cannot be recomputed here. Save the words to a file and run "
            "`python -m conceptkd_core extract … --vocabulary FILE` (see README)."
        )
        return
    target = rescored_folder(ws, words)
    if st.button(f"Re-score {ws.n_images} images with this vocabulary → {target.name}"):
        bar, update = progress_bar()
        try:
            result = rescore(ws, words, get_clip(*map(str, found)), update)
        except (ValueError, OSError, RuntimeError) as exc:
            st.error(f"Could not re-score: {shown(exc)}")
            return
        bar.progress(1.0, text="Done")
        switch_to(
            result.workspace,
            f"New workspace {result.workspace.root.name} with {result.workspace.n_concepts} "
            "concepts; it is now the open workspace (the original is unchanged).",
        )


st.title("Setup")
if "setup_notice" in st.session_state:  # set by switch_to before its rerun
    st.success(st.session_state.pop("setup_notice"))
state = current()
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
        f"**CLIP:** {plain(model.get('name'))} · weights: {plain(model.get('pretrained') or 'local checkpoint')} · "
        f"**teacher:** {plain(ws.meta['teacher'].get('kind'))}"
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
