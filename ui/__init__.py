"""The page: panels (components), handlers (events), controls built from declarations, the
job runner, errors, the API.

With ``app.py``, the only code that imports gradio; ``studio/`` and ``backends/`` never do.
"""

from ui import theme
from ui.page import CSS, LAYOUT_CONCURRENCY, build_demo

__all__ = ["CSS", "LAYOUT_CONCURRENCY", "build_demo", "theme"]
