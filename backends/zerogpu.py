"""Running the local backend on Hugging Face ZeroGPU, as its ``spaces`` package expects.

What the package does (read in the source of spaces 0.51.3), and what follows from it here:

* ZeroGPU is on when SPACES_ZERO_GPU is "1", "t" or "true", in any case (``spaces/config.py``);
  ``active`` asks the same question. Elsewhere ``spaces.GPU`` is a no-op and is not used.
* ``@spaces.GPU(duration=...)`` takes seconds, or a function of the decorated function's own
  arguments that is called before each call (``spaces/zero/wrappers.py``, ``static_duration``);
  60 s when unset. The scheduler refuses, before the call runs, one that asks for more than
  the visitor has left ("ZeroGPU quota exceeded": "You have exceeded your free ZeroGPU quota
  (95s requested vs. 60s left). Try again in ...", or "Space app has reached its GPU limit."
  for a visitor it cannot identify) or for more than one call may have ("ZeroGPU illegal
  duration": "The requested GPU duration (400s) is larger than the maximum allowed"). Both
  are ``gr.Error`` with those titles (``spaces/zero/client.py``); ``refusal`` reads them.
* The call runs in a worker process forked from the app: its arguments and its result are
  pickled, and an exception other than ``gr.Error`` comes back as its class name only
  ("ZeroGPU worker error"). So the GPU function gets the picture, the request and the job's
  folder; progress, previews and cancel go through files in that folder (``relayed``,
  ``worker_job``); and it returns its errors as values (``Failed``).
* Functions are decorated, and the model moved to "cuda", before the app launches: at launch
  ZeroGPU packs what was moved to CUDA for its workers and reports the decorated functions
  (``spaces/zero/__init__.py``, ``startup``).
* Its GPU is an H200 MIG slice, "3g.71gb" with 60 SMs (``spaces/config.py``; a whole H200
  has 132). On the newer RTX Pro 6000 nodes the package itself multiplies the time asked
  by 1.5 (``spaces/zero/configs.json``, ``duration_factor``).

The Hub's ZeroGPU page (docs/hub/spaces-zerogpu.md) adds the daily quotas (2 minutes
unauthenticated, 3.5 with a free account, 25 with PRO), the dynamic-duration form, and that
ZeroGPU does not support ``torch.compile``. It gives no maximum duration, which the
scheduler decides; ZeroGPU's maintainers answered "5 minutes is the maximum time that can
be requested at once" (huggingface.co/spaces/zero-gpu-explorers/README, discussion 7), so
``MAX_SECONDS`` is 300.

How long a call takes: work from ``backends.estimate`` over ``TFLOPS``, with a margin, plus
a fixed part. Public reports put plain diffusers SVD-XT (1024x576, 25 frames, 25 steps,
guided; 4,171 TFLOP) at about 30-50 s on an A100 or H100; we take 30 s for an H100-class
GPU (H200 compute is the same), 140 TFLOP/s effective. The slice has 60/132 = 0.45 of its
SMs: 0.45 x 140 = 63 TFLOP/s; we take 60, which is 0.09 s per unguided UNet step per
frame-megapixel and 70 s for that full-size video, asked as 102 s. Not measured on ZeroGPU.
``OVERHEAD_SECONDS`` covers what does not scale with the request: a fresh worker's CUDA
start and the ~4.5 GB of fp16 weights moved onto its GPU, encoding the photo (CLIP, VAE)
and writing the MP4. An extend run makes one call per segment, so each call asks for one
segment.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from backends.base import Job
from backends.estimate import say
from studio.errors import BackendError

MAX_SECONDS = 300  # the most one call may ask for (see above)
TFLOPS = 60.0  # effective fp16 rate of the ZeroGPU slice on SVD
MARGIN = 1.25  # a call that runs past what it asked for may be stopped: ask for a quarter more
OVERHEAD_SECONDS = 15

# Measured on this Space: once a model has run, the effective rate its denoising steps
# reached (TFLOP a step, from backends.estimate, over the median seconds a step took, as
# the worker's progress reported them) replaces TFLOPS for that model's later calls.
_measured: dict[str, float] = {}
_STEP = re.compile(r"^Denoising step (\d+)/(\d+)$")

EVENTS = ".gpu-events.jsonl"  # worker -> app: one JSON line per progress or preview
CANCEL = ".gpu-cancel"  # app -> worker: exists once the person pressed Cancel
POLL_SECONDS = 0.2


def active() -> bool:
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")


def rate(model: str | None = None) -> float:
    """The effective TFLOP/s to count with for ``model``: measured once it has run, else ``TFLOPS``."""
    return _measured.get(model or "", TFLOPS)


def calibrate(model: str, step_tflop: float, step_seconds: float) -> float:
    """Take ``model``'s measured step time as its rate from now on; the rate."""
    if step_tflop > 0 and step_seconds > 0:
        _measured[model] = step_tflop / step_seconds
    return rate(model)


def seconds_needed(work_tflop: float, model: str | None = None) -> float:
    """GPU seconds a call doing ``work_tflop`` asks for, before the cap."""
    return work_tflop / rate(model) * MARGIN + OVERHEAD_SECONDS


def seconds_asked(work_tflop: float, model: str | None = None) -> int:
    return min(MAX_SECONDS, math.ceil(seconds_needed(work_tflop, model)))


def gpu(fn: Callable, duration: Callable[..., int]) -> Callable:
    """``fn`` under ``spaces.GPU`` asking ``duration(*args)`` seconds for each call."""
    try:
        import spaces
    except ImportError as exc:
        raise BackendError(
            "SPACES_ZERO_GPU is set, so this is a ZeroGPU Space, but the spaces package is not installed; "
            "add spaces to requirements.txt."
        ) from exc
    return spaces.GPU(duration=duration)(fn)


def refusal(exc: BaseException) -> str | None:
    """'quota' or 'duration' for ZeroGPU's two refusals of a call, 'aborted' for a call it
    stopped for running past the time it asked for ("GPU task aborted"), None for anything else."""
    text = f"{getattr(exc, 'title', '')} {exc}".lower()
    if "gpu task aborted" in text:
        return "aborted"
    if "illegal duration" in text or "larger than the maximum allowed" in text:
        return "duration"
    if "quota" in text or "gpu limit" in text:
        return "quota"
    return None


def refusal_sentence(kind: str, seconds: int, hosted: bool) -> str:
    """The sentence a person reads instead of ZeroGPU's refusal."""
    need = f"this video would need about {say(seconds)}"
    if kind == "aborted":
        head = (f"ZeroGPU stopped this video because it ran past the {say(seconds)} of GPU time it asked for "
                "(the GPU was slower than expected, or busy).")
        ways = ["Try again", "lower the size, frames or steps"]
    elif kind == "duration":
        head = f"ZeroGPU does not give you that much GPU time in one go ({need})."
        ways = ["Log in to Hugging Face for more", "lower the size, frames or steps"]
    else:
        head = f"The free GPU time of this Space is used up for you for now ({need})."
        ways = ["Log in to Hugging Face for more", "wait a while"]
    if hosted:
        ways.append("pick a hosted backend")
    return f"{head} {', '.join(ways[:-1])}, or {ways[-1]}."


@dataclass(frozen=True)
class Failed:
    """An error of the GPU function, returned rather than raised so that its sentence
    survives the way back from ZeroGPU's worker."""

    kind: type[BackendError]
    message: str

    def throw(self) -> None:
        raise self.kind(self.message)


@contextmanager
def relayed(job: Job, on_step_seconds: Callable[[float], None] | None = None) -> Iterator[None]:
    """While a GPU call runs in ZeroGPU's worker, pass its progress and previews on to
    ``job``, and ``job``'s cancel to it. ``on_step_seconds`` hears the median time between
    its "Denoising step" reports once the call is over (for ``calibrate``)."""
    events, cancel = job.workdir / EVENTS, job.workdir / CANCEL
    stop = threading.Event()
    steps: list[float] = []  # when each step's report was written

    def pump() -> None:
        offset = 0
        while True:
            last = stop.wait(POLL_SECONDS)
            if job.cancel.is_set():
                cancel.touch()
            offset = _deliver(events, offset, job, steps)
            if last:
                return

    thread = threading.Thread(target=pump, daemon=True, name="zerogpu-relay")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        events.unlink(missing_ok=True)  # the job's folder keeps its video, not the plumbing
        cancel.unlink(missing_ok=True)
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    if on_step_seconds is not None and gaps:
        on_step_seconds(statistics.median(gaps))


def _deliver(events: Path, offset: int, job: Job, steps: list[float] | None = None) -> int:
    """Hand the complete lines after ``offset`` to ``job``; the new offset."""
    try:
        with events.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next round
    for line in data[:end].splitlines():
        event: dict[str, Any] = json.loads(line)
        if "progress" in event:
            if steps is not None and _STEP.match(str(event["progress"][1])):
                steps.append(float(event.get("at", time.time())))
            job.on_progress(*event["progress"])
        elif "preview" in event:
            job.on_preview(Path(event["preview"]))
    return offset + end


class _CancelFile(threading.Event):
    """Set once the app has made the cancel file (or this process set it)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def is_set(self) -> bool:
        return super().is_set() or self.path.exists()


def worker_job(workdir: Path) -> Job:
    """The job as the GPU function sees it in ZeroGPU's worker: progress and previews
    written to the events file, cancel read from the cancel file."""
    events = workdir / EVENTS

    def post(**event: Any) -> None:
        with events.open("a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")

    # "at": when the worker reported it (time.time: the worker is another process), so step
    # times are the worker's own, not when the relay happened to read them.
    return Job(workdir=workdir, cancel=_CancelFile(workdir / CANCEL),
               on_progress=lambda fraction, text: post(progress=[fraction, text], at=time.time()),
               on_preview=lambda path: post(preview=str(path)))
