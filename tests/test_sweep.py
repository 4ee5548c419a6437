"""Planning sweeps and backend comparisons, and running several jobs with lanes."""

from __future__ import annotations

import asyncio
import threading
import time

from backends.base import Result
from orchestration import sweep
from studio.errors import Cancelled
from ui.jobs import Runner


def test_compare_runs_where_a_key_exists_and_names_what_a_backend_lacks(monkeypatch):
    monkeypatch.setenv("NOVITA_API_KEY", "nv-key")
    monkeypatch.delenv("MODELSLAB_API_KEY", raising=False)
    params = {"model": "svd-xt", "width": 1024, "height": 576, "fps": 7, "motion_bucket_id": 90,
              "min_guidance_scale": 1.0, "seed": 5, "decode_chunk_size": 4}
    cells = {c.backend: c for c in sweep.compare(params, "local", None)}
    assert set(cells) == {"local", "novita"}  # ModelsLab has no key anywhere
    assert cells["local"].label == "Local GPU (diffusers)"
    assert cells["novita"].label == "Novita AI · no width, height, min_guidance_scale · fps 6 (7 not allowed)"
    assert cells["novita"].params == {"model": "svd-xt", "motion_bucket_id": 90, "seed": 5}
    # A key typed for the current backend brings that backend in.
    typed = {c.backend: c for c in sweep.compare(params, "modelslab", "ml-typed")}
    assert typed["modelslab"].api_key == "ml-typed" and typed["novita"].api_key is None


def test_a_random_seed_is_drawn_once_for_the_whole_sweep():
    cells = sweep.plan("local", "motion_bucket_id", "10, 20, 30", {"seed": None})
    assert len({c.params["seed"] for c in cells}) == 1 and cells[0].params["seed"] is not None
    assert [c.label for c in cells] == ["motion_bucket_id = 10", "motion_bucket_id = 20", "motion_bucket_id = 30"]


def _job(name: str, log: list, seconds: float):
    def task(cancel, on_progress, on_job_id, **_):
        log.append(("start", name, time.monotonic()))
        if cancel.wait(seconds):
            raise Cancelled("stopped")
        log.append(("end", name, time.monotonic()))
        return Result(video=None, used={"name": name})  # type: ignore[arg-type]
    return task


def test_one_lane_takes_turns_in_order_while_another_runs_beside_it():
    runner, log = Runner(), []
    tasks = [(_job("gpu-1", log, 0.3), "local"), (_job("gpu-2", log, 0.3), "local"),
             (_job("gpu-3", log, 0.3), "local"), (_job("cloud", log, 0.6), "novita")]

    async def main() -> list:
        return [(i, item) async for i, item in runner.run_many(tasks, "s", {"local": 1, "novita": 16})]

    results = [(i, item.used["name"]) for i, item in asyncio.run(main()) if isinstance(item, Result)]
    assert sorted(results) == [(0, "gpu-1"), (1, "gpu-2"), (2, "gpu-3"), (3, "cloud")]
    starts = [name for kind, name, _ in log if kind == "start" and name.startswith("gpu")]
    assert starts == ["gpu-1", "gpu-2", "gpu-3"]
    ends = {name: t for kind, name, t in log if kind == "end"}
    begins = {name: t for kind, name, t in log if kind == "start"}
    assert begins["gpu-2"] >= ends["gpu-1"] and begins["gpu-3"] >= ends["gpu-2"]  # one at a time on the GPU
    assert begins["cloud"] < ends["gpu-1"]  # the hosted job did not wait for the GPU


def test_cancel_stops_the_running_job_and_the_waiting_ones_never_start():
    runner, log = Runner(), []
    tasks = [(_job(f"gpu-{i}", log, 30), "local") for i in range(3)]
    seen: list = []

    async def main() -> None:
        async for i, item in runner.run_many(tasks, "s", {"local": 1}):
            seen.append((i, item))

    threading.Timer(0.5, runner.cancel_session, ["s"]).start()  # Cancel, pressed while the first one runs
    asyncio.run(main())
    assert [name for kind, name, _ in log if kind == "start"] == ["gpu-0"]
    assert sorted(i for i, item in seen if isinstance(item, Cancelled)) == [0, 1, 2]
