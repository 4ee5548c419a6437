"""The studio's small error tree.

Everything a person can cause or meet is one of these; `app.py` turns them into
`gr.Error` in exactly one place. Backends translate foreign exceptions (httpx, torch,
PIL) into these at their edge with ``raise ... from exc``.

    StudioError
    ├── InvalidParameter      a value outside a backend's documented range
    ├── BadImage              the upload cannot be used as an input image
    ├── PresetError           a preset file is broken (names the file and field)
    └── BackendError          anything that went wrong while generating
        ├── MissingKey        a hosted backend has no API key
        ├── ProviderError     the provider answered with an error (HTTP or in the body)
        ├── GenerationFailed  the job ran and failed
        ├── TimedOut          the job did not finish before the deadline
        ├── Cancelled         the person pressed Cancel
        └── OutOfMemory       the GPU ran out of memory
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class: its message is written for the person using the page."""


class InvalidParameter(StudioError, ValueError):
    def __init__(self, param: str, value: object, rule: str, backend: str) -> None:
        self.param, self.value, self.rule, self.backend = param, value, rule, backend
        super().__init__(f"{param} must be {rule} for {backend}, got {value!r}")


class BadImage(StudioError, ValueError):
    pass


class PresetError(StudioError, ValueError):
    pass


class BackendError(StudioError):
    """A generation problem; ``job_id`` is the provider's id where one exists."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        self.job_id = job_id
        if job_id:
            message = f"{message} (task id {job_id})"
        super().__init__(message)


class MissingKey(BackendError):
    pass


class ProviderError(BackendError):
    def __init__(self, message: str, *, status: int | None = None, job_id: str | None = None) -> None:
        self.status = status
        super().__init__(message, job_id=job_id)


class GenerationFailed(BackendError):
    pass


class TimedOut(BackendError):
    pass


class Cancelled(BackendError):
    pass


class OutOfMemory(BackendError):
    pass


class NotARecipe(StudioError, ValueError):
    """A dropped file carries no settings the studio can restore (names the file, never its folder)."""


class BadVideo(StudioError, ValueError):
    """A video given to finishing cannot be used: not a video, empty, damaged, too long or
    too short. One sentence that names the file, never its folder."""


class LimitReached(StudioError):
    """A hosted job would go past a limit on the owner's own API key (``orchestration.limits``).
    One sentence: which limit, when it frees up, and that pasting one's own key lifts it."""


class QueueFull(LimitReached):
    """One visitor already has as many jobs waiting in a line as a visitor may
    (``LOCAL_QUEUE_PER_VISITOR``, ``FINISH_CONCURRENCY``'s line): one sentence naming it."""


class VideoTooLarge(GenerationFailed):
    """A provider's video is over ``MAX_VIDEO_MB``: the download was stopped and nothing kept.
    A class of its own so that the other links to the same video are not tried as well."""


class BadSetting(StudioError, ValueError):
    """An environment variable holds a value the studio cannot use; names the variable."""
