"""The page's events, one module per area: plain functions of the page state (``ui.state``)
and the event's values, returning updates keyed by component. They share the modules
beside ``ui.state`` and never call one another."""
