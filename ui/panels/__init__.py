"""One module per panel of the page: its components and the handlers that belong to it.

Each panel is a dataclass of components with a ``build`` that creates them where the
page composer calls it. Handlers are module-level functions that take the ``Studio``
(every panel) and the values Gradio hands over, and return updates keyed by component.
"""
