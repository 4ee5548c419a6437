"""Local jobs on a Ray cluster (RAY_ADDRESS): a small pool of ``SVDWorker`` actors.

The page, its queue, the spend guard and MCP stay in the studio's process; only the GPU
work goes to the cluster. Each worker (``backends.rayworker``) holds one loaded pipeline
on ``RAY_GPUS_PER_WORKER`` GPUs (default 1; 0 makes CPU workers, which the tests use) and
runs one job at a time. ``RAY_MIN_WORKERS`` (1) start with the studio; more start as jobs
need them, up to ``RAY_MAX_WORKERS`` (default: as many as the cluster's GPUs hold). The
backend's slots are that many seats, so a waiting job reads its place: "Waiting for a free
GPU in the cluster: you are 2nd in line, 4 running".

What a worker needs travels with the job through Ray's ``runtime_env``: the environment
variables in ``FORWARDED`` (the model source, Hub access, previews) and, from a source
checkout, the code itself as the ``working_dir`` (an installed ``svd-studio`` package on
the workers serves as well). The photo goes out once, through the object store; the video
comes back as MP4 bytes.

Faults, each one sentence:

* no worker can be placed within ``RAY_PLACEMENT_TIMEOUT_S`` (60): the job ends saying what
  a worker needs and what the cluster has;
* a worker dies mid-job: the pool drops it and the job runs once more on another worker,
  saying so; a second loss ends it;
* the cluster is lost: each running local job says so, the connection is closed (a Ray
  driver whose cluster stays away would otherwise end the whole process), and the studio
  tries to join again every ``RECONNECT_SECONDS``;
* the cluster cannot be reached at start-up: ``start`` raises, and the registry withdraws
  the local backend (``backends.offer``).
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from backends import devices
from backends.base import Job, Result, Slots
from studio import errors
from studio.errors import BackendError, BadSetting, Cancelled
from studio.request import GenerationRequest

FORWARDED = ("LOCAL_SVD_MODEL", "HF_HUB_OFFLINE", "HF_ENDPOINT", "SVD_PREVIEW", "PYTORCH_CUDA_ALLOC_CONF")
EXCLUDES = [".git", ".venv", "venv", "**/__pycache__", "*.mp4", "*.gif", ".ruff_cache", ".pytest_cache"]
RECONNECT_SECONDS = 30.0
POLL_SECONDS = 0.25  # how often a running job's progress is fetched
ANSWER_SECONDS = 15.0  # a cluster that does not answer a small question in this long is lost
ROOT = Path(__file__).resolve().parent.parent
_log = logging.getLogger(__name__)
_joined: str | None = None  # the address this process is joined to (Ray allows one cluster per process)
_names = itertools.count(1)  # worker names, unique in this process whatever pool starts them


def _number(name: str, default: float | None, *, integer: bool, low: float) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or value < low:
        kind = "a whole number" if integer else "a number"
        raise BadSetting(f"{name} must be {kind} of at least {low:g}, got {raw!r}.")
    return value


@dataclass(frozen=True)
class RayConfig:
    address: str
    gpus_per_worker: float = 1.0
    min_workers: int = 1
    max_workers: int | None = None  # None: as many as the cluster's GPUs (or CPUs) hold
    placement_timeout: float = 60.0
    idle_s: float = 300.0  # a worker above min_workers idle this long stops, freeing its GPU

    @classmethod
    def from_env(cls, address: str) -> RayConfig:
        gpus = _number("RAY_GPUS_PER_WORKER", 1.0, integer=False, low=0)
        low = _number("RAY_MIN_WORKERS", 1, integer=True, low=0)
        high = _number("RAY_MAX_WORKERS", None, integer=True, low=1)
        if high is not None and low is not None and high < low:
            raise BadSetting(f"RAY_MAX_WORKERS ({high:g}) must be at least RAY_MIN_WORKERS ({low:g}).")
        wait = _number("RAY_PLACEMENT_TIMEOUT_S", 60.0, integer=False, low=1)
        idle = _number("RAY_IDLE_S", 300.0, integer=False, low=1)
        return cls(address, float(gpus or 0), int(low or 0), None if high is None else int(high), float(wait or 60),
                   float(idle or 300))

    @property
    def unit(self) -> str:
        return "GPU" if self.gpus_per_worker else "worker"


@dataclass
class Worker:
    """One actor of the pool; ``info`` (node, pid...) once it is placed."""

    actor: Any
    name: str
    placed: Any  # the ref of its first ``where`` call
    info: dict[str, Any] = field(default_factory=dict)
    idle_since: float = 0.0  # time.monotonic() when its last job ended

    @property
    def node(self) -> str:
        return str(self.info.get("node", "?"))


class ClusterLost(Exception):
    """The cluster stopped answering (raised inside this module only)."""


class OnRay:
    """The ``Place`` of local jobs on a Ray cluster (``backends.places``)."""

    def __init__(self, address: str) -> None:
        self.config = RayConfig.from_env(address)
        size = self.config.max_workers or max(1, self.config.min_workers)
        what = f"a free {self.config.unit} in the cluster"
        self._slots = Slots(size, what)  # "Waiting for a free GPU in the cluster: you are 2nd in line, 4 running"
        self._lock = threading.Lock()
        self._workers: list[Worker] = []
        self._idle: list[Worker] = []
        self._connected = False
        self._lost: str | None = None  # the sentence local jobs get while the cluster is away
        self._reconnecting: threading.Thread | None = None
        self._model = ""
        self._trimmer: threading.Thread | None = None

    # --- the Place protocol ----------------------------------------------------------

    def slots(self) -> Slots:
        return self._slots

    def device_kinds(self) -> list[str]:
        return ["cuda"] if self.config.gpus_per_worker else ["cpu"]

    def current(self) -> devices.Seat:
        return devices.Seat(0, "cpu")  # nothing is generated in this process

    def start(self, backend: Any) -> None:
        """Join the cluster and start the first workers; a ``BackendError`` when it cannot be reached."""
        self._connect(backend.default_model())

    def run(self, backend: Any, image: Image.Image, request: GenerationRequest, job: Job) -> Result:
        import ray

        self._ensure(backend.default_model())
        try:
            photo = ray.put(image)  # once: a retry on another worker reads the same object
            lost: list[str] = []
            while True:
                worker = self._acquire(job)
                try:
                    return self._run_on(worker, photo, request, job)
                except ray.exceptions.RayActorError as exc:
                    self._discard(worker)
                    if not self._answers():
                        raise ClusterLost from exc
                    lost.append(worker.node)
                    if len(lost) > 1:
                        raise BackendError(
                            f"The cluster lost the worker running this job twice (on {lost[0]}, then on {lost[1]}); "
                            "nothing was made. Try again in a moment.") from None
                    job.on_progress(None, f"The worker on {worker.node} stopped mid-job; "
                                          "running the job once more on another worker")
        except ClusterLost:
            raise BackendError(self._lose()) from None
        except ray.exceptions.RaySystemError as exc:  # the connection itself broke
            if self._answers():
                raise BackendError(f"The Ray cluster failed this job: {type(exc).__name__}.") from None
            raise BackendError(self._lose()) from None

    # --- the pool ----------------------------------------------------------------------

    def _acquire(self, job: Job) -> Worker:
        """An idle worker that still answers, or a new one while the pool is below its size;
        placed, or a sentence within RAY_PLACEMENT_TIMEOUT_S. The job's slot guarantees room."""
        import ray

        while True:
            with self._lock:
                worker = self._idle.pop() if self._idle else self._new()
            if not worker.info:
                job.on_progress(None, f"Starting a worker in the cluster ({self._needs()})")
                return self._placed(worker)
            try:  # an idle worker may have died since its last job (its node went away, say)
                ray.get(worker.actor.where.remote(), timeout=ANSWER_SECONDS)
                return worker
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                self._discard(worker)
                if not self._answers():
                    raise ClusterLost from exc

    def _placed(self, worker: Worker) -> Worker:
        import ray

        try:
            worker.info = ray.get(worker.placed, timeout=self.config.placement_timeout)
        except ray.exceptions.GetTimeoutError:
            self._discard(worker)
            raise BackendError(self._no_room()) from None
        except ray.exceptions.RayActorError as exc:
            self._discard(worker)
            if not self._answers():
                raise ClusterLost from exc
            raise BackendError(f"A worker could not start in the cluster: {_first_line(exc)}.") from None
        return worker

    def _new(self) -> Worker:
        """Start one more worker actor (under the lock); placed by Ray in its own time."""
        from backends.rayworker import SVDWorker

        name = f"svd-worker-{next(_names)}"
        gpus = self.config.gpus_per_worker
        actor = SVDWorker.options(name=name, num_gpus=gpus, num_cpus=1, max_restarts=0).remote()
        worker = Worker(actor, name, actor.where.remote())
        self._workers.append(worker)
        return worker

    def _release(self, worker: Worker) -> None:
        with self._lock:
            if worker in self._workers:
                worker.idle_since = time.monotonic()
                self._idle.append(worker)

    def _trim(self) -> None:
        """Stop the workers above RAY_MIN_WORKERS that have been idle RAY_IDLE_S or longer,
        longest idle first: the pool shrinks back as it grew, and their GPUs go back to
        the cluster."""
        now = time.monotonic()
        with self._lock:
            spare = len(self._workers) - self.config.min_workers
            idle = sorted((w for w in self._idle if w.info and now - w.idle_since >= self.config.idle_s),
                          key=lambda w: w.idle_since)
            going = idle[:max(0, spare)]
        for worker in going:
            _log.info("Stopping the Ray worker on %s: idle for %.0f s.", worker.node, now - worker.idle_since)
            self._discard(worker)

    def _trim_forever(self) -> None:
        while True:
            time.sleep(min(30.0, self.config.idle_s / 2))
            if self._connected:
                try:
                    self._trim()
                except Exception:  # the cluster went away meanwhile: _lose says so to the next job
                    _log.debug("Trimming the Ray pool failed", exc_info=True)

    def _discard(self, worker: Worker) -> None:
        import ray

        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
            if worker in self._idle:
                self._idle.remove(worker)
        try:
            ray.kill(worker.actor, no_restart=True)
        except Exception:  # already gone, or the cluster with it
            pass

    def _needs(self) -> str:
        gpus = self.config.gpus_per_worker
        return f"each needs {gpus:g} GPU(s)" if gpus else "each needs 1 CPU"

    def _no_room(self) -> str:
        import ray

        try:
            total = ray.cluster_resources().get("GPU" if self.config.gpus_per_worker else "CPU", 0)
            has = f"the cluster has {total:g} {'GPU' if self.config.gpus_per_worker else 'CPU'}(s) in all"
        except Exception:
            has = "the cluster did not say what it has"
        return (f"No worker could start in the Ray cluster within {self.config.placement_timeout:g} s: "
                f"{self._needs()} (RAY_GPUS_PER_WORKER) and {has}. Add a machine with "
                "`ray start --address=…`, or pick a hosted backend.")

    # --- one job on one worker ---------------------------------------------------------

    def _run_on(self, worker: Worker, photo: Any, request: GenerationRequest, job: Job) -> Result:
        import ray

        token = uuid.uuid4().hex
        done = worker.actor.run.remote(token, photo, request.model_dump())
        seen, told_cancel = 0, False
        while True:
            finished = bool(ray.wait([done], timeout=POLL_SECONDS)[0])
            if job.cancel.is_set() and not told_cancel:
                worker.actor.cancel.remote(token)  # the worker stops between denoising steps
                told_cancel = True
            events = ray.get(worker.actor.events.remote(token, seen), timeout=ANSWER_SECONDS)
            seen += len(events)
            for kind, payload in events:
                self._deliver(kind, payload, job)
            if finished:
                break
        out = ray.get(done)
        self._release(worker)  # a worker that answered is good for the next job
        if "error" in out:
            raise _error(out["error"], out["message"])
        mp4 = job.workdir / "video.mp4"
        mp4.write_bytes(out["mp4"])
        return Result(video=mp4, used={**out["used"], "node": worker.node})

    def _deliver(self, kind: str, payload: Any, job: Job) -> None:
        if kind == "progress":
            job.on_progress(*payload)
        elif kind == "preview":
            name, data = payload
            path = job.workdir / name
            path.write_bytes(data)
            job.on_preview(path)
            previews = sorted(job.workdir.glob("preview-*.gif"), key=lambda p: p.stat().st_mtime)
            for old in previews[:-2]:  # the newest, and the one a browser may still be fetching
                old.unlink(missing_ok=True)

    # --- the connection ------------------------------------------------------------------

    def _connect(self, model: str) -> None:
        """Join the cluster (leaving another one this process joined) and start the first workers."""
        import ray

        global _joined
        self._model = model  # warmed on each worker the pool starts with (and again after a reconnect)
        why = _unreachable(self.config.address)
        if why is not None:  # asked before anything else: Ray itself would wait long for a dead address
            raise BackendError(f"The Ray cluster at {self.config.address} (RAY_ADDRESS) cannot be reached: {why}.")
        # A Ray driver whose cluster stays away for a minute ends its own process; the studio
        # notices sooner and closes the connection itself, so that the page lives on.
        os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", "86400")
        if ray.is_initialized() and _joined != self.config.address:
            ray.shutdown()
        if not ray.is_initialized():
            try:
                ray.init(address=self.config.address, runtime_env=runtime_env(), logging_level=logging.ERROR,
                         log_to_driver=False, configure_logging=False)
            except Exception as exc:
                _quietly(ray.shutdown)
                raise BackendError(f"The Ray cluster at {self.config.address} (RAY_ADDRESS) cannot be reached: "
                                   f"{_first_line(exc)}.") from None
            _joined = self.config.address
        with self._lock:
            self._workers, self._idle, self._connected, self._lost = [], [], True, None
            if self.config.max_workers is None:
                self._slots.resize(self._cluster_size())
            for _ in range(self.config.min_workers):
                worker = self._new()
                self._idle.append(worker)
                worker.actor.warm.remote(model)  # the model loads before the first job asks for it
        if self._trimmer is None:
            self._trimmer = threading.Thread(target=self._trim_forever, daemon=True, name="ray-trim")
            self._trimmer.start()
        _log.info("Local jobs run on the Ray cluster at %s: %d worker(s) at most, %s.",
                  self.config.address, self._slots.size, self._needs())

    def _cluster_size(self) -> int:
        import ray

        resources = ray.cluster_resources()
        per = self.config.gpus_per_worker
        fits = int(resources.get("GPU", 0) // per) if per else int(resources.get("CPU", 0))
        return max(1, self.config.min_workers, fits)

    def _ensure(self, model: str) -> None:
        if self._lost is not None:
            raise BackendError(self._lost)
        if not self._connected:
            with self._lock:
                connected = self._connected
            if not connected:
                self._connect(model)

    def _answers(self) -> bool:
        """Whether the cluster's GCS still takes a connection (within a few seconds).

        Asked over TCP, not through Ray: a Ray call to a GCS that has gone (``ray.nodes()``)
        blocks, and the client it leaves behind ends this whole process a minute later,
        however the studio's own connection was closed since.
        """
        import ray

        try:
            address = ray.get_runtime_context().gcs_address or self.config.address
        except Exception:  # not connected any more
            address = self.config.address
        return _unreachable(address) is None

    def _lose(self) -> str:
        """The cluster is gone: close the connection, try again every RECONNECT_SECONDS; the sentence."""
        import ray

        global _joined

        sentence = (f"The Ray cluster at {self.config.address} can no longer be reached, so this local job stopped. "
                    f"The studio tries to reconnect every {RECONNECT_SECONDS:g} s; hosted backends still work.")
        with self._lock:
            first = self._lost is None
            self._lost, self._connected = sentence, False
            self._workers, self._idle = [], []
        if first:
            _log.warning("%s", sentence)
            _quietly(ray.shutdown)
            _joined = None
            self._reconnecting = threading.Thread(target=self._reconnect, daemon=True, name="ray-reconnect")
            self._reconnecting.start()
        return sentence

    def _reconnect(self) -> None:
        while self._lost is not None:
            time.sleep(RECONNECT_SECONDS)
            try:
                self._connect(self._model)
            except BackendError as exc:
                _log.info("Still no Ray cluster: %s", exc)
                continue
            _log.info("Joined the Ray cluster at %s again.", self.config.address)
            return


def runtime_env() -> dict[str, Any]:
    """What every worker gets: the forwarded variables and, from a source checkout, the code."""
    env: dict[str, Any] = {"env_vars": {n: os.environ[n] for n in FORWARDED if os.environ.get(n)}}
    if (ROOT / "app.py").is_file() and (ROOT / "backends").is_dir() and (ROOT / "pyproject.toml").is_file():
        env |= {"working_dir": str(ROOT), "excludes": EXCLUDES}
    return env


def _unreachable(address: str) -> str | None:
    """Why nothing answers at ``address`` ("host:port" or "ray://host:port"), asked over TCP
    within a few seconds; None when something does, or for "auto" (Ray looks it up itself)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return None
    except OSError as exc:
        return f"nothing answers there ({exc.strerror or type(exc).__name__})"


def _error(kind: str, message: str) -> errors.StudioError:
    """The worker's error, as the class it was where the constructor takes a sentence."""
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, BackendError):
        return cls(message)
    if kind == "Cancelled":
        return Cancelled(message)
    return BackendError(message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")[:300]


def _quietly(fn: Any) -> None:
    try:
        fn()
    except Exception:
        pass
