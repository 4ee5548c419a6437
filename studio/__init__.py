"""Core of the SVD studio: the request model, errors, images, video files, recipes, the
output folder, secrets and the live preview.

``backends`` builds on this package and nothing here imports ``backends``; the work
above the backends (one generation, sweeps, extends, limits, presets) is ``orchestration``.
Nothing in this package imports gradio, torch or diffusers, so the page can be served
before any heavy library is loaded.
"""
