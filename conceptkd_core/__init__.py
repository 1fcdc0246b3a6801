"""ConceptKD core: concept-based knowledge distillation, with no Streamlit in it.

Data flows one way: images -> extraction -> workspace on disk -> students/tuning -> views.
Heavy dependencies (torch, open_clip) are imported only by the extraction modules, so
browsing an extracted workspace stays light.
"""

__version__ = "0.1.0"
