"""Core of the SVD studio: the request model, errors, presets, images and video files.

Nothing in this package imports gradio, torch or diffusers, so the page can be served
before any heavy library is loaded.
"""
