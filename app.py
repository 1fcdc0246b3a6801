"""ConceptKD: explain and steer an image classifier with human concepts.

Entry point: declares the pages and the shared sidebar; all logic lives in conceptkd_core.
"""

import streamlit as st

from pages.common import sidebar

st.set_page_config(page_title="ConceptKD", page_icon="🧩", layout="wide")

pages = [
    st.Page("pages/setup.py", title="Setup", icon="🗂️", default=True),
    st.Page("pages/students.py", title="Students", icon="📊"),
    st.Page("pages/concepts.py", title="Concepts", icon="🧩"),
    st.Page("pages/images.py", title="Images", icon="🖼️"),
    st.Page("pages/tune.py", title="Tune", icon="🎚️"),
    st.Page("pages/history.py", title="History", icon="🕘"),
]
navigation = st.navigation(pages)
sidebar()
navigation.run()
