"""ConceptKD: explain and steer an image classifier with human concepts.

Entry point: declares the pages (grouped in sections) and the shared sidebar; all logic lives in
conceptkd_core.
"""

import streamlit as st

from views.common import navigation_sections, sidebar

st.set_page_config(page_title="ConceptKD", page_icon=":material/hub:", layout="wide")

navigation = st.navigation(navigation_sections(), position="sidebar")
sidebar()
navigation.run()
