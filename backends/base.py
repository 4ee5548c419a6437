"""What every backend is: its declared parameters and one ``generate`` method.

The page is built from these declarations and never looks at a backend's name: which
controls show, their ranges, steps and defaults all come from ``Backend.limits``.
"""

from __future__ import annotations

import random
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Union

from PIL import Image

from studio import images
from studio.errors import Cancelled, InvalidParameter, QueueFull
from studio.request import PARAMETERS, GenerationRequest


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Range:
    """A number between ``lo`` and ``hi`` (inclusive), optionally a multiple of ``multiple``."""

    lo: float
    hi: float
    default: float | None
    step: float = 1
    multiple: int | None = None
    optional: bool = False  # None is allowed and means "automatic"/"off"
    integer: bool = True

    def rule(self) -> str:
        if self.lo == self.hi:
            text = f"exactly {_fmt(self.lo)}"
        elif self.multiple:
            text = f"a multiple of {self.multiple} from {_fmt(self.lo)} to {_fmt(self.hi)}"
        else:
            text = f"{_fmt(self.lo)}-{_fmt(self.hi)}"
        return f"{text} or empty" if self.optional else text

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and value != int(value):
            return False
        if self.multiple and int(value) % self.multiple:
            return False
        return self.lo <= value <= self.hi


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]
    default: str | None

    def rule(self) -> str:
        if len(self.options) == 1:
            return f"'{self.options[0]}'"
        return "one of " + ", ".join(f"'{o}'" for o in self.options)

    def ok(self, value: Any) -> bool:
        return value in self.options


@dataclass(frozen=True)
class Flag:
    default: bool

    def rule(self) -> str:
        return "true or false"

    def ok(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Text:
    default: str | None = None
    max_length: int = 1000
    url: bool = False  # must be an http(s) URL when given

    def rule(self) -> str:
        return "an http(s) URL or empty" if self.url else f"text of at most {self.max_length} characters"

    def ok(self, value: Any) -> bool:
        if value is None or value == "":
            return True
        if not isinstance(value, str) or len(value) > self.max_length:
            return False
        return not self.url or value.startswith(("https://", "http://"))


Limit = Union[Range, Choice, Flag, Text]
ProgressFn = Callable[[float | None, str], None]


@dataclass(frozen=True)
class Option:
    """A setting of one backend beyond SVD's own parameters (a provider's wire extra).

    Declared by the backend, shown by the page in its ``group``, accepted by ``/generate``
    under ``name``: a backend with options of its own touches no shared code. ``shown``
    False keeps an option for API callers only.
    """

    limit: Limit
    description: str
    group: str = "Service options"
    shown: bool = True


@dataclass
class Job:
    """What a backend gets besides the request: where to write, how to report, when to stop."""

    workdir: Path
    on_progress: ProgressFn = lambda fraction, text: None
    cancel: threading.Event = field(default_factory=threading.Event)
    api_key: str | None = None
    # Called with the provider's job id as soon as it exists, so the page can show it.
    on_job_id: Callable[[str], None] = lambda job_id: None
    # Called with an image file (in ``workdir``) that roughly shows the frames so far:
    # the local backend's live preview while it denoises.
    on_preview: Callable[[Path], None] = lambda path: None
    visitor: str | None = None  # who asked (``ui.visitor``): a line's per-visitor cap counts by it
    entry: str | None = None  # jobs of one batch share it, and count as one entry in a line

    def check_cancelled(self, job_id: str | None = None) -> None:
        if self.cancel.is_set():
            raise Cancelled("Cancelled: the job was stopped before it finished.", job_id=job_id)


@dataclass
class Result:
    """A finished video on disk and what the backend learned while making it.

    ``used`` holds only the backend's own facts (the size after 'fit', the seed a provider
    reports, the device...); ``orchestration.service`` merges them with the resolved request into
    the one account of the job that the page and the API both show.
    """

    video: Path  # an MP4 that plays in browsers
    used: dict[str, Any] = field(default_factory=dict)
    sent: dict[str, Any] | None = None  # the wire payload, key redacted (hosted backends)
    job_id: str | None = None
    gif: Path | None = None
    photo: Path | None = None  # a copy of the photo it was made from, so it can be made again


@dataclass(frozen=True)
class Framed:
    """The picture a video starts from, at the size the backend works at.

    ``note`` is empty when ``image`` is exactly what the backend sends; where the provider
    frames the photo on its side, ``image`` is the studio's copy of that framing and
    ``note`` says so in one sentence, so the page never passes a guess off as a fact.
    """

    image: Image.Image
    width: int
    height: int
    note: str = ""


# Standard frame sizes, largest first: SVD's native 1024x576 and its portrait twin, then
# smaller ones for capped backends. ``Backend.sizes`` keeps those a backend accepts, so the
# sizes that are not multiples of 64 only show for backends that take any size.
STANDARD_SIZES: tuple[tuple[str, int, int], ...] = (
    ("landscape 16:9", 1024, 576),
    ("portrait 9:16", 576, 1024),
    ("square", 768, 768),
    ("landscape 16:9", 768, 432),
    ("portrait 9:16", 432, 768),
    ("square", 512, 512),
    ("landscape 16:10", 512, 320),
    ("portrait 10:16", 320, 512),
    ("landscape 16:9", 512, 288),
    ("portrait 9:16", 288, 512),
    ("landscape 7:4", 448, 256),
    ("portrait 4:7", 256, 448),
)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, ... 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(eq=False)
class _Ticket:
    visitor: str | None
    entry: str | None  # jobs with one entry (a batch's) count once toward their visitor's cap


class Slots:
    """A first-come-first-served line: at most ``size`` jobs run at once, the rest wait in
    the order they came, each told their own place.

    The API, for every kind of worker (a backend's devices, a cluster, finishing)::

        slots = Slots(2, "a free GPU in the cluster")
        with slots.hold(job, visitor="203.0.113.7", cap=3):
            ...  # runs once the job is first in line and a slot is free

    While it waits, ``job.on_progress(None, ...)`` hears its place at least every half
    second: "Waiting for a free GPU in the cluster: you are 2nd in line, 4 running"
    (``line_text``). ``job.cancel`` leaves the line at once (``Cancelled``). ``cap``: how
    many entries one visitor may have waiting; one more is refused with ``QueueFull``,
    naming ``cap_name`` (the setting); jobs that share ``job.entry`` (a batch's photos)
    are one entry. Only the head of the line may take a free slot, so nobody overtakes,
    and the counts change only under the lock, so two jobs that arrive together never
    read a stale line.
    """

    def __init__(self, size: int, waiting_for: str, *, show_busy: bool = False) -> None:
        # show_busy is kept for callers of the earlier line: the running count is always shown now.
        self.size, self.waiting_for, self.show_busy = size, waiting_for, show_busy
        self._cond = threading.Condition()
        self._busy = 0
        self._line: list[_Ticket] = []

    @property
    def busy(self) -> int:
        return self._busy

    def resize(self, size: int) -> None:
        """A line whose workers come and go (a cluster that grows or shrinks): the waiting
        jobs look again."""
        with self._cond:
            self.size = max(1, size)
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._line)

    def line_text(self, place: int) -> str:
        return f"Waiting for {self.waiting_for}: you are {ordinal(place)} in line, {self._busy} running"

    @contextmanager
    def hold(self, job: Job, visitor: str | None = None, *, cap: int | None = None,
             cap_name: str = "LOCAL_QUEUE_PER_VISITOR") -> Iterator[None]:
        visitor = visitor if visitor is not None else getattr(job, "visitor", None)
        ticket = _Ticket(visitor, getattr(job, "entry", None))
        with self._cond:
            if cap is not None and visitor is not None and self._must_wait(len(self._line)):
                entries = {t.entry or id(t) for t in self._line if t.visitor == visitor}
                if ticket.entry not in entries and len(entries) >= cap:
                    raise QueueFull(f"You already have {len(entries)} jobs waiting for {self.waiting_for}, the most "
                                    f"one visitor may have in line ({cap_name} is {cap}); wait for one to start.")
            self._line.append(ticket)
            try:
                while self._line[0] is not ticket or self._busy >= self.size:
                    job.check_cancelled()
                    text = self.line_text(self._line.index(ticket) + 1)
                    self._cond.release()
                    try:  # report outside the lock: a progress callback may be slow
                        job.on_progress(None, text)
                    finally:
                        self._cond.acquire()
                    self._cond.wait(0.5)
                job.check_cancelled()
                self._busy += 1
            finally:
                self._line.remove(ticket)
                self._cond.notify_all()  # the next in line may be first now
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def _must_wait(self, ahead: int) -> bool:
        """A new job with ``ahead`` jobs in front of it would wait (only a waiting job counts toward a cap)."""
        return ahead > 0 or self._busy >= self.size


class Backend:
    """One way to generate. Subclasses declare capabilities as class attributes."""

    name: ClassVar[str]  # the id used by the API and the registry: "local", "modelslab", ...
    label: ClassVar[str]  # what people read: "Local GPU (diffusers)"
    blurb: ClassVar[str] = ""  # one sentence shown under the backend dropdown
    key_env: ClassVar[str | None] = None  # environment variable holding the API key, if any
    models: ClassVar[dict[str, str]]  # model id -> human label
    # How many of this backend's jobs run at once; the rest wait in line. Each backend has
    # its own line, so people waiting for the GPU never hold up a hosted job.
    concurrency: ClassVar[int] = 1
    waiting_for: ClassVar[str] = "a free slot"

    def __init__(self) -> None:
        self.slots = Slots(self.concurrency, self.waiting_for)

    def default_model(self) -> str:
        return next(iter(self.models))

    def model_choices(self) -> dict[str, str]:
        return dict(self.models)

    def model_for(self, model: str | None, *, lenient: bool = False) -> str:
        """The one answer to "this model, or the backend's default": empty means the
        default; an unknown name is refused, or (``lenient``, for a page whose dropdown
        still shows another backend's model) replaced by the default."""
        choices = self.model_choices()
        if model in choices:
            return model  # type: ignore[return-value]
        if model in (None, "") or lenient:
            return self.default_model()
        raise InvalidParameter("model", model, Choice(tuple(choices), None).rule(), self.label)

    def limits(self, model: str) -> dict[str, Limit]:
        """SVD's parameters this backend accepts for ``model``, with ranges and defaults."""
        raise NotImplementedError

    def options(self, model: str) -> dict[str, Option]:
        """This backend's own settings beyond SVD's parameters; none by default."""
        return {}

    def parameters(self, model: str) -> dict[str, Limit]:
        """Every value this backend takes for ``model``: SVD's parameters and its options."""
        return self.limits(model) | {name: option.limit for name, option in self.options(model).items()}

    def sizes(self, model: str) -> list[tuple[str, int, int]]:
        """(label, width, height) of the standard sizes this backend accepts for ``model``,
        checked against its declared width and height; none when it declares no size."""
        limits = self.limits(model)
        width, height = limits.get("width"), limits.get("height")
        if not isinstance(width, Range) or not isinstance(height, Range):
            return []
        return [(label, w, h) for label, w, h in STANDARD_SIZES if width.ok(w) and height.ok(h)]

    def frame(self, image: Image.Image, request: GenerationRequest) -> Framed:
        """The picture this backend starts the video from, for a request already passed
        through ``resolve``: the page previews it and ``generate`` sends it, so the two
        cannot drift apart. 'crop' fills width x height and trims the centre; 'fit' keeps
        the photo's aspect ratio inside width x height, in multiples of 64.

        A backend that declares no width and height frames in its own way and says how by
        overriding this.
        """
        if request.width is None or request.height is None:
            raise NotImplementedError(f"{self.label} declares no width and height, so it must say how it frames")
        size = (request.width, request.height)
        mode = request.resize_mode or "crop"
        if mode == "fit":
            size = images.fit_size(image.size, size)
        return Framed(images.frame(image, size, mode), *size)

    def estimate(self, request: GenerationRequest) -> str | None:
        """How long this request takes, in words ("about 3 min on this machine's CPU"),
        where this backend can tell before it starts; None where it cannot (a provider's
        queue, a GPU whose speed was never measured)."""
        return None

    def preflight(self, request: GenerationRequest) -> None:
        """Checks that need the machine (is there a CUDA GPU?), run before the job waits
        for a slot so that a person is not told after a long wait."""

    def generate(self, image: Image.Image, request: GenerationRequest, job: Job) -> Result:
        """Make a video from ``image`` with a request already passed through ``resolve``."""
        raise NotImplementedError

    def resume(self, job_id: str, job: Job) -> Result:
        """Wait again for a job the provider already has (its id pasted back in)."""
        raise InvalidParameter("task id", job_id, "used only with a hosted backend", self.label)

    @property
    def can_resume(self) -> bool:
        return type(self).resume is not Backend.resume

    def resolve(self, request: GenerationRequest) -> GenerationRequest:
        """Fill in this backend's defaults and reject any value outside its ranges.

        Never clamps: a wrong value is an ``InvalidParameter`` that names the parameter,
        the value, the allowed range and this backend. Options are checked the same way.
        """
        model = self.model_for(request.model)
        limits = self.limits(model)
        values: dict[str, Any] = {"model": model}
        for name in PARAMETERS:
            if name != "model":
                _fill(values, name, getattr(request, name), limits.get(name), self.label)
        options: dict[str, Any] = {}
        declared = self.options(model)
        for name in {**declared, **request.options}:
            option = declared.get(name)
            _fill(options, name, request.options.get(name), option.limit if option else None, self.label)
        lo, hi = values.get("min_guidance_scale"), values.get("max_guidance_scale")
        if lo is not None and hi is not None and lo > hi:
            raise InvalidParameter(
                "min_guidance_scale", lo, f"at most max_guidance_scale ({_fmt(hi)})", self.label
            )
        return GenerationRequest(**values, options=options)


def _fill(values: dict[str, Any], name: str, value: Any, limit: Limit | None, label: str) -> None:
    """Put ``name``'s checked value (or its default) into ``values``."""
    if limit is None:
        if value not in (None, ""):
            raise InvalidParameter(name, value, "left empty (this backend does not use it)", label)
        return
    if value is None or value == "":  # an empty box on the page means "not set"
        value = limit.default
    if name == "seed" and value in (None, -1):
        value = random.randint(0, 2**32 - 1)
    if not limit.ok(value):
        raise InvalidParameter(name, value, limit.rule(), label)
    if value is not None:
        values[name] = value
