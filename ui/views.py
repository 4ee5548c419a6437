"""What the page shows, as plain values: the parameters table, the clip's length line.

Pure functions of data (no components), so handlers and tests share them.
"""

from __future__ import annotations

import html
from typing import Any

import backends
from studio.request import PARAMETERS, describe, title_of

# What the non-parameter entries of a job's "used" mean.
EXTRAS = {
    "backend": "Where the video was made.",
    "task_id": "The service's id for this job: paste it in Resume to fetch the video again.",
    "elapsed_seconds": "How long the job took, in seconds.",
    "node": "The machine of the cluster that made the video.",
}


def _meaning(name: str) -> tuple[str, str]:
    """(everyday name, what it means) for an entry of ``used``."""
    if name in PARAMETERS:
        return title_of(name), describe(name)
    option = backends.all_options().get(name)
    if option is not None:
        return name.replace("_", " ").capitalize(), option.description
    return name.replace("_", " ").capitalize(), EXTRAS.get(name, "")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def parameters_table(used: dict[str, Any] | None) -> str:
    """An HTML table of a job's parameters: setting (with diffusers' name), value, meaning.

    HTML rather than Markdown so that every value is escaped (a provider's text, a
    prompt) and a screen reader announces a real table with headers.
    """
    if not used:
        return ""
    rows = []
    for name, value in used.items():
        title, meaning = _meaning(name)
        rows.append(f"<tr><th scope='row'>{html.escape(title)}<br><code>{html.escape(name)}</code></th>"
                    f"<td>{html.escape(_value(value))}</td><td>{html.escape(meaning)}</td></tr>")
    return ("<table class='used-table'><caption>Parameters used</caption><thead><tr><th scope='col'>setting</th>"
            "<th scope='col'>value</th><th scope='col'>what it means</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def length_line(frames: Any, fps: Any, estimate: str | None = None) -> str:
    """'**3.6 s** of video (25 frames at 7 fps) · about 2 min to make on this machine's CPU'."""
    try:
        seconds = float(frames) / float(fps)
    except (TypeError, ValueError, ZeroDivisionError):
        return ""
    line = f"**{seconds:.1f} s** of video ({int(frames)} frames at {int(fps)} fps)"
    return line + (f" · {estimate} to make" if estimate else "")
