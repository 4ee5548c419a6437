"""Where a local job runs: the one seam between the local backend and the hardware.

The local backend declares what it takes and knows how to make a video with a pipeline
(``LocalBackend._generate``); a ``Place`` decides where that happens, how many jobs run at
once there, and what a waiting job is told. One implementation per place:

* ``OnDevices``: in this process, on the default device or on each device LOCAL_DEVICES
  lists (``backends.devices``), one job per device.
* ``OnZeroGPU``: in ZeroGPU's worker process, one ``spaces.GPU`` call per job
  (``backends.zerogpu``).
* ``OnRay``: on a Ray cluster's workers (``backends.raypool``), when RAY_ADDRESS is set.

``choose`` picks one from the environment: RAY_ADDRESS wins over LOCAL_DEVICES (with a
warning), and ZeroGPU uses its one GPU whatever is listed.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from backends import devices, estimate, zerogpu
from backends.base import Job, Result, Slots
from studio.errors import BackendError
from studio.request import GenerationRequest

if TYPE_CHECKING:
    from backends.local import LocalBackend

RAY_ENV = "RAY_ADDRESS"
_log = logging.getLogger(__name__)


class Place(Protocol):
    def slots(self) -> Slots:
        """The backend's line: as many seats as jobs that can run at once here."""

    def device_kinds(self) -> list[str]:
        """'cuda', 'mps' or 'cpu' for each kind of device a job may land on (preflight refuses
        what one of them cannot do)."""

    def start(self, backend: LocalBackend) -> None:
        """Get ready before the app launches; a ``StudioError`` says why this place cannot work."""

    def current(self) -> devices.Seat:
        """The device the calling thread's job holds (where ``_pipeline`` loads)."""

    def run(self, backend: LocalBackend, image: Image.Image, request: GenerationRequest, job: Job) -> Result:
        """Make the video here; the job already holds one of ``slots``."""


class OnDevices:
    """In this process: one job per device of LOCAL_DEVICES (or the one default device)."""

    def __init__(self, pool: devices.DevicePool) -> None:
        self.pool = pool

    def slots(self) -> Slots:
        return Slots(self.pool.size, self.pool.waiting_for(), show_busy=self.pool.size > 1)

    def device_kinds(self) -> list[str]:
        return [devices.kind(d) for d in self.pool.devices()]

    def start(self, backend: LocalBackend) -> None:
        pass  # the model loads with the first job, so the page is served in seconds

    def current(self) -> devices.Seat:
        return self.pool.current()

    def run(self, backend: LocalBackend, image: Image.Image, request: GenerationRequest, job: Job) -> Result:
        with self.pool.seat():  # a free device: the job's slot guarantees one
            return backend._generate(image, request, job)


class OnZeroGPU(OnDevices):
    """In ZeroGPU's worker process: each job is one ``spaces.GPU`` call asking for the time it
    needs; the model was placed on its GPU at start-up."""

    def __init__(self) -> None:
        super().__init__(devices.DevicePool(None))  # its one GPU, whatever LOCAL_DEVICES lists

    def start(self, backend: LocalBackend) -> None:
        # Register the GPU function (it imports spaces, which must come before torch touches
        # CUDA) and load the default model onto "cuda": ZeroGPU hands what was placed there at
        # start-up to each GPU call, so that no call spends a visitor's GPU time loading it.
        backend._zerogpu_call()
        backend._pipeline(backend.default_model(), "auto")

    def run(self, backend: LocalBackend, image: Image.Image, request: GenerationRequest, job: Job) -> Result:
        call = backend._zerogpu_call()
        model = backend.models_source(request.model or backend.default_model())
        step = estimate.step_work(model, estimate.Run.of(request))
        try:  # the steps' measured time calibrates this model's later asks (backends.zerogpu)
            with zerogpu.relayed(job, lambda seconds: zerogpu.calibrate(model, step, seconds)):
                outcome = call(image, request, job.workdir)
        except Exception as exc:
            kind = zerogpu.refusal(exc)
            if kind is None:
                raise
            seconds = backend._gpu_seconds(image, request, job.workdir)
            raise BackendError(zerogpu.refusal_sentence(kind, seconds, bool(backend._or_hosted()))) from exc
        if isinstance(outcome, zerogpu.Failed):
            outcome.throw()
        return outcome


def ray_address() -> str | None:
    return os.environ.get(RAY_ENV, "").strip() or None


def choose() -> Place:
    """Where this environment runs local jobs (see the module's docstring)."""
    if zerogpu.active():
        return OnZeroGPU()
    address = ray_address()
    if address is not None:
        if devices.listed():
            _log.warning("%s is set, so local jobs run on the Ray cluster at %s; %s=%s is not used.",
                         RAY_ENV, address, devices.ENV, os.environ.get(devices.ENV))
        from backends.raypool import OnRay  # Ray is optional: loaded only when asked for

        return OnRay(address)
    return OnDevices(devices.DevicePool.from_env())
