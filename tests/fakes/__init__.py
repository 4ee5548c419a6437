"""Fake ModelsLab / Novita HTTP servers for tests (real sockets on 127.0.0.1).

Test infrastructure only: nothing here imports app code. See ``_server.FakeServer``
for the shared request log and fault switches, and each provider module for its
wire quirks (taken from docs/hosted-apis.md).
"""

from ._server import ErrorCase, FakeServer, RecordedRequest, Reply, html_error, s3_error
from .media import looks_like_gif, looks_like_mp4, make_gif_bytes, make_mp4_bytes
from .modelslab import FakeModelsLab, modelslab_error, modelslab_error_cases
from .novita import FakeNovita, novita_error, novita_error_cases

__all__ = [
    "ErrorCase", "FakeServer", "RecordedRequest", "Reply", "html_error", "s3_error",
    "looks_like_gif", "looks_like_mp4", "make_gif_bytes", "make_mp4_bytes",
    "FakeModelsLab", "modelslab_error", "modelslab_error_cases",
    "FakeNovita", "novita_error", "novita_error_cases",
]
