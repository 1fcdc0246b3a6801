"""ConceptKD: explain and steer an image classifier with human concepts.

Entry point: declares the pages and the shared sidebar; all logic lives in conceptkd_core.
"""

import streamlit as st

st.set_page_config(page_title="ConceptKD", page_icon="🧩", layout="wide")

pages = [st.Page("pages/overview.py", title="Overview", icon="🧩", default=True)]
st.navigation(pages).run()
