"""One module per panel of the page: a dataclass of its components with a ``build`` that
creates them where the page composer calls it, and nothing else: the events live in
``ui.handlers``."""
