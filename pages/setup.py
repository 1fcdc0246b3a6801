"""Configuration view: the workspace's images, classes, vocabulary, model and teacher."""

import pandas as pd
import streamlit as st

from pages.common import current

st.title("Setup")
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
            "see README) and enter that workspace's folder in the sidebar.", icon="🧪")
    cols = st.columns(4)
    cols[0].metric("Images", f"{ws.n_images:,}")
    cols[1].metric("Classes", ws.n_classes)
    cols[2].metric("Concepts", ws.n_concepts)
    cols[3].metric("Splits", ", ".join(sorted(set(ws.splits))))
    model = ws.meta["model"]
    st.markdown(f"**CLIP:** `{model.get('name')}` · weights: `{model.get('pretrained') or 'local checkpoint'}` · "
                f"**teacher:** `{ws.meta['teacher'].get('kind')}`")
    st.subheader("Classes")
    st.dataframe(pd.DataFrame({"class": ws.classes, "images": ws.labels.sum(axis=0)}), hide_index=True)
    st.subheader("Vocabulary")
    st.dataframe(pd.DataFrame({"concept": ws.vocabulary}), hide_index=True, height=240)
