"""The worker of a Ray cluster: one actor holding one loaded pipeline, running one job at a time.

Ray lists these actors by class, so ``ray list actors`` shows the studio's GPU workers as
``SVDWorker``. Each is a local backend of its own in the worker's process, on the device
Ray gave it (``LocalBackend`` with an ``OnDevices`` place of one default device: the GPU
that CUDA_VISIBLE_DEVICES leaves, or the CPU), so a job runs there exactly as it runs on
one machine: the same pipeline code, out-of-memory retry, speed modes and previews.

A job is ``run``, which blocks for the job's length in the actor's default concurrency
group (one at a time); what it reports on the way (progress, previews) is kept in order and
fetched by the studio with ``events``, and ``cancel`` sets the job's cancel flag; those two
run in a group of their own, beside the job. Errors come back as values (the class name and
the sentence), never as a Ray traceback: a person reads the worker's own sentence.

This module imports Ray: only ``backends.raypool`` loads it, once Ray is asked for.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

import ray
from PIL import Image

from studio.errors import StudioError

CONTROL = "control"  # the concurrency group of events/cancel/where: never behind a running job


@ray.remote(concurrency_groups={CONTROL: 2})
class SVDWorker:
    def __init__(self) -> None:
        self._backend: Any = None
        self._lock = threading.Lock()
        self._token: str | None = None
        self._events: list[tuple[str, Any]] = []
        self._cancel = threading.Event()

    @ray.method(concurrency_group=CONTROL)
    def where(self) -> dict[str, Any]:
        """The node and process this worker runs on (answers as soon as the actor is placed)."""
        context = ray.get_runtime_context()
        return {"node": ray.util.get_node_ip_address(), "node_id": context.get_node_id(),
                "hostname": socket.gethostname(), "pid": os.getpid(), "gpus": [str(g) for g in ray.get_gpu_ids()]}

    def warm(self, model: str) -> str | None:
        """Load ``model`` before the first job asks; its sentence when it cannot be loaded."""
        try:
            self._local()._pipeline(model, "auto")
        except StudioError as exc:
            return str(exc)
        return None

    def run(self, token: str, image: Image.Image, request: dict[str, Any]) -> dict[str, Any]:
        """Make one video; ``{"mp4": bytes, "used": {...}}`` or ``{"error": class name, "message": sentence}``."""
        from backends.base import Job
        from studio.request import GenerationRequest

        with self._lock:
            self._token, self._events, self._cancel = token, [], threading.Event()
        workdir = Path(tempfile.mkdtemp(prefix="svd-worker-"))
        job = Job(workdir=workdir, cancel=self._cancel,
                  on_progress=lambda fraction, text: self._post(token, "progress", (fraction, text)),
                  on_preview=lambda path: self._post(token, "preview", (path.name, path.read_bytes())))
        try:
            result = self._local().generate(image, GenerationRequest(**request), job)
            return {"mp4": result.video.read_bytes(), "used": result.used}
        except StudioError as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
        except Exception as exc:  # anything else still reaches the person as one sentence
            return {"error": "BackendError",
                    "message": f"The worker on {socket.gethostname()} failed: {type(exc).__name__}: {exc}"}
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    @ray.method(concurrency_group=CONTROL)
    def events(self, token: str, after: int) -> list[tuple[str, Any]]:
        """What job ``token`` reported after the first ``after`` events."""
        with self._lock:
            return self._events[after:] if token == self._token else []

    @ray.method(concurrency_group=CONTROL)
    def cancel(self, token: str) -> None:
        with self._lock:
            if token == self._token:
                self._cancel.set()

    def _post(self, token: str, kind: str, payload: Any) -> None:
        with self._lock:
            if token == self._token:
                self._events.append((kind, payload))

    def _local(self) -> Any:
        if self._backend is None:
            from backends import devices, places
            from backends.local import LocalBackend

            self._backend = LocalBackend(place=places.OnDevices(devices.DevicePool(None)))
        return self._backend
