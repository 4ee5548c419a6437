"""A stand-in for Hugging Face's ``spaces`` package, for tests: put its parent folder on
``sys.path`` and set SPACES_ZERO_GPU.

``GPU`` behaves as the real one does on ZeroGPU (spaces 0.51.3, ``spaces/zero/wrappers.py``
and ``client.py``) wherever the studio could tell the difference, and records what it was
asked:

* the duration, seconds or a function of the call's own arguments, is worked out before
  each call and recorded in ``asked``;
* a refusal set with ``refuse_next`` is raised then, before anything runs, as the scheduler
  does; ``quota_exceeded`` and ``illegal_duration`` build its two refusals with their real
  titles and texts;
* the call runs as in a forked worker: its arguments and its result are pickled on the way
  (a lambda or a threading.Event among them fails the call, as it would there) and an
  exception other than ``gr.Error`` comes back as a ``gr.Error`` carrying only its class name.

It runs the function in the caller's thread and process: no GPU, no fork.
"""

from __future__ import annotations

import pickle
from typing import Any, Callable

import gradio as gr

asked: list[float] = []  # seconds asked for, one per call, in order
decorated: list[Callable] = []  # every function given to GPU
_refusal: Exception | None = None


def reset() -> None:
    global _refusal
    asked.clear()
    _refusal = None


def refuse_next(error: Exception) -> None:
    global _refusal
    _refusal = error


def quota_exceeded(requested: int, left: int) -> gr.Error:
    return gr.Error(f"You have exceeded your free ZeroGPU quota ({requested}s requested vs. {left}s left). "
                    "Try again in 0:12:34. ", title="ZeroGPU quota exceeded", print_exception=False)


def illegal_duration(requested: int) -> gr.Error:
    return gr.Error(f"The requested GPU duration ({requested}s) is larger than the maximum allowed",
                    title="ZeroGPU illegal duration", print_exception=False)


def task_aborted() -> gr.Error:
    """What a call that ran past its duration ends with: the worker is stopped mid-way."""
    return gr.Error("GPU task aborted", title="ZeroGPU worker error", print_exception=False)


def GPU(task: Callable | None = None, *, duration: Any = None, size: str | None = None) -> Any:
    if task is None:
        return lambda fn: GPU(fn, duration=duration, size=size)
    decorated.append(task)

    def call(*args: Any, **kwargs: Any) -> Any:
        global _refusal
        seconds = duration(*args, **kwargs) if callable(duration) else (duration or 60)
        asked.append(seconds)
        if _refusal is not None:
            error, _refusal = _refusal, None
            raise error
        args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))  # into the worker
        try:
            result = task(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise gr.Error(type(exc).__name__, title="ZeroGPU worker error", print_exception=False) from None
        return pickle.loads(pickle.dumps(result))  # and back

    return call
