"""The studio's work, above the backends: one generation from start to finish
(``service``), sweeps, extends, the spend guard (``limits``) and presets.

The layers point one way: ``ui`` imports this package, this package imports ``backends``,
and ``backends`` imports only the core in ``studio``. Nothing here imports gradio.
"""
