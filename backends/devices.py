"""Where local jobs run: the devices named by LOCAL_DEVICES, and what to do when one runs out of memory.

LOCAL_DEVICES lists the devices local jobs may use, separated by commas: ``cuda:0,cuda:1``,
``cpu``, ``mps``, ``cuda`` (the current CUDA device). Unset or empty: the first CUDA device,
else Apple MPS, else the CPU. Each listed device runs one job at a time with a pipeline of
its own, so the local backend runs as many jobs side by side as there are devices
(``cpu,cpu`` is two CPU jobs at once). The list is read when the backend is made (its
line is sized from it) and checked, with torch, when it is first used.

``DevicePool`` hands each running job a free device (a ``Seat``) for as long as it runs;
the backend's slots already keep the number of running jobs at or below the number of
devices, so a job that has its slot always finds a seat.

When a run runs out of memory, ``Settings.safer`` says what to try once more with: a
quarter of the decode_chunk_size and, on a CUDA GPU, the next offloading memory_mode.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from studio.errors import BadSetting

ENV = "LOCAL_DEVICES"
# Held while a pipeline loads. Loading empties models on the "meta" device by swapping
# torch.nn.Module functions for the whole process and putting them back afterwards; two
# loads at once (two devices' first jobs) can put back the wrong ones, and every later
# load then fails with "Cannot copy out of meta tensor".
LOADING = threading.Lock()
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def listed() -> list[str] | None:
    """The entries of LOCAL_DEVICES as written (lower case, no blanks), unchecked; None when
    unset, meaning the default device. Needs no torch, so it can size the line at start-up."""
    entries = [d.strip().lower() for d in os.environ.get(ENV, "").split(",") if d.strip()]
    return entries or None


def default_device() -> str:
    """The first CUDA device, else Apple MPS, else the CPU (what one unlisted device means)."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def check(entries: list[str]) -> None:
    """Refuse a LOCAL_DEVICES this machine cannot honour, in one sentence that says why."""
    raw = os.environ.get(ENV, "")
    unknown = [d for d in entries if not _DEVICE.match(d)]
    if unknown:
        raise BadSetting(
            f"{ENV} must list this machine's devices, separated by commas ('cpu', 'mps', 'cuda' or 'cuda:N', "
            f"e.g. 'cuda:0,cuda:1'), got {raw!r}: {', '.join(repr(d) for d in unknown)} "
            f"{'is' if len(unknown) == 1 else 'are'} not a device."
        )
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for device in entries:
        if device.startswith("cuda"):
            index = int(device.partition(":")[2] or 0)
            if index >= count:
                has = f"{count} CUDA GPU(s), cuda:0 to cuda:{count - 1}" if count else "no CUDA GPU"
                raise BadSetting(f"{ENV} names {device}, but this machine has {has} (got {raw!r}).")
        elif device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise BadSetting(f"{ENV} names mps, but this machine has no Apple MPS device (got {raw!r}).")


def kind(device: str) -> str:
    """'cuda', 'mps' or 'cpu': what a device is, whatever its index."""
    return device.partition(":")[0]


def dtype_for(device: str) -> Any:
    """fp16 on CUDA and MPS, fp32 on the CPU (where fp16 is slow and partly missing)."""
    import torch

    return torch.float32 if kind(device) == "cpu" else torch.float16


def free_cache(device: str) -> None:
    """Give ``device``'s cached, unused CUDA memory back (after an out-of-memory error or
    before loading another model), on that device and not on the current one."""
    torch = sys.modules.get("torch")
    if torch is None or kind(device) != "cuda" or not torch.cuda.is_available():
        return
    with torch.cuda.device(torch.device(device)):
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class Seat:
    """One device held by one running job; ``index`` tells two ``cpu`` entries apart."""

    index: int
    device: str


class DevicePool:
    """The devices of LOCAL_DEVICES, each lent to one running job at a time."""

    def __init__(self, entries: list[str] | None) -> None:
        self._entries = entries  # None: the default device, found at first use
        self._devices: list[str] | None = None
        self._busy: set[int] = set()
        self._cond = threading.Condition()
        self._held = threading.local()

    @classmethod
    def from_env(cls, *, single: bool = False) -> DevicePool:
        """The pool LOCAL_DEVICES describes; ``single``: the default device alone (ZeroGPU)."""
        return cls(None if single else listed())

    @property
    def size(self) -> int:
        return len(self._entries or [None])

    @property
    def all_cuda(self) -> bool:
        """Whether every listed device is a CUDA GPU (unknown, False, while none is listed)."""
        return bool(self._entries) and all(kind(d) == "cuda" for d in self._entries or [])

    def waiting_for(self) -> str:
        """What a queued job waits for, as the line says it."""
        if self.size == 1:
            return "a free GPU"
        return "a free GPU" if self.all_cuda else "a free device"

    def devices(self) -> list[str]:
        """The devices, checked on first use (``check``); the default one when none is listed."""
        if self._devices is None:
            if self._entries is None:
                self._devices = [default_device()]
            else:
                check(self._entries)
                self._devices = list(self._entries)
        return self._devices

    @contextmanager
    def seat(self) -> Iterator[Seat]:
        """Hold a free device for the calling thread until the block ends."""
        devices = self.devices()
        with self._cond:
            while len(self._busy) >= len(devices):  # only when called outside the backend's slots
                self._cond.wait()
            index = next(i for i in range(len(devices)) if i not in self._busy)
            self._busy.add(index)
        seat = Seat(index, devices[index])
        self._held.seat = seat
        try:
            yield seat
        finally:
            self._held.seat = None
            with self._cond:
                self._busy.discard(index)
                self._cond.notify()

    def current(self) -> Seat:
        """The seat the calling thread holds; outside a job (warming up, a ZeroGPU call), the first device."""
        return getattr(self._held, "seat", None) or Seat(0, self.devices()[0])


# --- out of memory ----------------------------------------------------------------------

SAFER_MODE = {"full_gpu": "model_offload", "model_offload": "sequential_offload"}


@dataclass(frozen=True)
class Retry:
    """Settings to try once more with, ``change`` saying what changed ("decode_chunk_size 8 → 2, ...")
    and ``note`` why something else could not change (empty when nothing to say)."""

    settings: Settings
    change: str
    note: str = ""

    def progress(self) -> str:
        text = f"Out of memory: trying once more with {self.change}"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class Settings:
    """What a run was made with, as far as memory goes."""

    device: str
    decode_chunk_size: int
    memory_mode: str
    fast: bool = False

    def safer(self) -> Retry | None:
        """A quarter of the decode_chunk_size (decoding many frames at once is the usual peak)
        and, on a CUDA GPU, the next offloading memory_mode; None when neither can go lower."""
        chunk = max(1, self.decode_chunk_size // 4)
        mode, note = self.memory_mode, ""
        if kind(self.device) != "cuda":
            note = f"on {self.device} only decode_chunk_size can change: offloading needs a CUDA GPU"
        elif self.fast:
            note = "fast_mode keeps the whole model on the GPU"
        else:
            mode = SAFER_MODE.get(self.memory_mode, self.memory_mode)
        changes = []
        if chunk != self.decode_chunk_size:
            changes.append(f"decode_chunk_size {self.decode_chunk_size} → {chunk}")
        if mode != self.memory_mode:
            changes.append(f"memory_mode {self.memory_mode} → {mode}")
        if not changes:
            return None
        safer = Settings(self.device, chunk, mode, self.fast)
        return Retry(safer, ", ".join(changes), note)
