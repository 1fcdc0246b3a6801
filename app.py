"""ConceptKD: explain and steer an image classifier with human concepts.

Entry point: declares the pages and the shared sidebar; all logic lives in conceptkd_core.
"""

import streamlit as st

from pages.common import PAGES, sidebar

st.set_page_config(page_title="ConceptKD", page_icon="🧩", layout="wide")

pages = [st.Page(script, title=title, icon=icon, default=n == 0) for n, (script, title, icon) in enumerate(PAGES)]
navigation = st.navigation(pages)
sidebar()
navigation.run()
