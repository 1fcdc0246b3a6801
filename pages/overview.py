"""What ConceptKD does, and what this build can already do (the core library)."""

import streamlit as st

st.title("ConceptKD")
st.write(
    "Explain an image classifier (the *teacher*) with one sparse linear *student* per class over "
    "human concept words, and steer those students by hand."
)
st.info(
    "This build ships the core library (workspace format, students with instant constrained "
    "re-fit, tuning with provenance, metrics). The coordinated views (setup, students, concepts, "
    "images, tuning, history) and the embedded demo workspace are the next milestones.",
    icon="🚧",
)
st.subheader("Try the core from a shell")
st.code("python -m conceptkd_core bench refit", language="bash")
