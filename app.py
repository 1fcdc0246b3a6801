"""ConceptKD: explain and steer an image classifier with human concepts.

Entry point: declares the pages (grouped in sections) and the shared sidebar; all logic lives in
conceptkd_core.
"""

import streamlit as st

from views.common import ROOT, navigation_sections, sidebar

# The tab icon is a file of the repository (conceptkd_tools/app_icon.py draws it): a Material icon here
# makes the browser fetch it from fonts.gstatic.com, off the machine, on every load.
st.set_page_config(page_title="ConceptKD", page_icon=str(ROOT / "data" / "app_icon.png"), layout="wide")

navigation = st.navigation(navigation_sections(), position="sidebar")
sidebar()
navigation.run()
