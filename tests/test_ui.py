"""The page's handlers and the job runner, called as plain functions: no browser, no server.

A ``Studio`` is built inside a ``gr.Blocks`` (never launched); handlers get dicts keyed
by component, as Gradio hands them over, and return updates keyed by component.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace

import gradio as gr
import pytest

from backends.base import Result
from studio.errors import Cancelled
from tests.conftest import EXAMPLES
from ui import entries, layout, page, views
from ui.handlers import layout as shaping
from ui.handlers import run
from ui.jobs import Runner
from ui.panels import parameters
from ui.state import Studio


@pytest.fixture(scope="module")
def studio() -> Studio:
    with gr.Blocks():
        return page.build_studio()


def page_values(s: Studio, backend: str, **overrides) -> dict:
    """What the page holds after it loaded ``backend``, with ``overrides`` typed in."""
    loaded = layout.reshape(s, backend, None, None)
    data = {s.input.backend: backend, s.input.model: loaded[s.input.model]["value"],
            s.params.preset: parameters.NO_PRESET, s.shaped: loaded[s.shaped]}
    data |= {control: loaded[control].get("value") for control in s.params.controls.values()}
    for name, value in overrides.items():
        data[s.params.controls[name]] = value
    return data


def test_changing_the_model_keeps_the_key_and_every_valid_value(studio):
    s = studio
    data = page_values(s, "local", motion_bucket_id=40, width=512, seed=7)
    data[s.input.model] = "svd"
    updates = shaping.on_model(s, data)
    assert s.input.api_key not in updates  # the typed key is never touched
    values = {name: updates[c].get("value") for name, c in s.params.controls.items()}
    assert (values["motion_bucket_id"], values["width"], values["seed"]) == (40, 512, 7)
    assert values["num_frames"] == 14  # frames follow the model


def test_a_preset_keeps_the_key_and_what_it_does_not_set(studio):
    s = studio
    data = page_values(s, "local", width=128, num_inference_steps=3)
    data[s.params.preset] = "Subtle motion"
    updates = shaping.on_preset(s, data)
    assert s.input.api_key not in updates
    values = {name: updates[c].get("value") for name, c in s.params.controls.items()}
    assert values["motion_bucket_id"] == 40 and values["width"] == 128 and values["num_inference_steps"] == 3


def test_a_new_backend_clears_the_key_and_shows_its_own_options(studio):
    s = studio
    updates = shaping.on_backend(s, page_values(s, "local") | {s.input.backend: "modelslab"})
    assert updates[s.input.api_key]["value"] == "" and updates[s.input.api_key]["visible"] is True
    shown = {name for name, c in s.params.controls.items() if updates[c]["visible"]}
    assert {"negative_prompt", "output_format"} <= shown
    assert "instant_response" not in s.params.controls  # a transport detail: never on the page
    assert "memory_mode" not in shown and "enable_frame_interpolation" not in shown
    assert updates[s.params.controls["width"]]["maximum"] == 512


async def _collect(agen) -> list:
    return [item async for item in agen]


def slow_task(started: threading.Event, stopped: threading.Event, job_id: str | None = "task-42"):
    def task(cancel, on_progress, on_job_id, **_):
        if job_id:
            on_job_id(job_id)
        started.set()
        while not cancel.wait(0.02):
            on_progress(None, "working")
        stopped.set()
        raise Cancelled("stopped")
    return task


def test_a_closed_page_stops_its_job_and_logs_the_task_id_not_an_error(caplog):
    caplog.set_level(logging.INFO, logger="svd_studio")
    runner, started, stopped = Runner(), threading.Event(), threading.Event()

    async def close_after_first_lines() -> None:
        agen = runner.run(slow_task(started, stopped), "session-a")
        assert (await agen.__anext__()).startswith("Submitted. Provider task id: `task-42`")
        await agen.__anext__()
        await agen.aclose()  # what Gradio does when the page is gone

    asyncio.run(close_after_first_lines())
    assert stopped.wait(5), "the worker kept running for nobody"
    assert runner.running("session-a") == 0 and "session-a" not in runner._jobs
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.INFO, "A job was left by its page or client and told to stop; resume it with task id "
                          "task-42.") in messages
    assert not [m for level, m in messages if level >= logging.WARNING]


def test_a_client_that_goes_away_stops_its_job():
    runner, started, stopped = Runner(), threading.Event(), threading.Event()
    here = {"alive": True}

    async def main() -> list:
        agen = runner.run(slow_task(started, stopped, job_id=None), "api-b", alive=lambda: here["alive"])
        seen = []
        async for item in agen:
            seen.append(item)
            here["alive"] = False  # the client disconnects; the runner notices on its next tick
        return seen

    seen = asyncio.run(main())
    assert stopped.wait(5) and seen and not any(isinstance(i, Result) for i in seen)


def test_cancel_reaches_only_that_sessions_jobs():
    runner = Runner()
    flags = {name: (threading.Event(), threading.Event()) for name in ("mine", "other")}

    async def main() -> None:
        gens = {name: runner.run(slow_task(*flags[name]), name) for name in flags}
        for agen in gens.values():
            await agen.__anext__()
        assert runner.cancel_session("mine") == 1
        with pytest.raises(Cancelled):
            await _collect(gens["mine"])
        assert not flags["other"][1].is_set()
        runner.cancel_session("other")
        with pytest.raises(Cancelled):
            await _collect(gens["other"])

    asyncio.run(main())
    assert runner._jobs == {}


def test_the_page_and_the_api_report_the_same_fields(studio, tiny_model, photo):
    """One job through the page's handler, one through the API's path: same account."""
    from orchestration import service

    s = studio
    data = page_values(s, "local", width=128, height=64, num_frames=4, num_inference_steps=2, seed=5)
    data |= {s.input.image: str(photo), s.input.api_key: "", s.params.randomize: False, s.history.entries: []}
    request = SimpleNamespace(session_hash="page-session")

    async def main() -> list[dict]:
        return await _collect(run.on_generate(s, data, request, progress=lambda *a, **k: None))

    updates = asyncio.run(main())
    shown = next(u[s.output.used_json] for u in updates if s.output.used_json in u)
    table = next(u[s.output.used] for u in updates if s.output.used in u)
    assert "<code>seed</code></th><td>5</td>" in table  # the readable table holds the seed used
    params = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 2, "seed": 5}
    api = service.generate(photo, "local", params).used
    assert set(shown) == set(api)
    assert {k: v for k, v in shown.items() if k != "elapsed_seconds"} == \
        {k: v for k, v in api.items() if k != "elapsed_seconds"}
    assert any(s.history.gallery in u for u in updates)


def test_restoring_a_recipe_sets_backend_model_every_control_and_keeps_the_seed(studio):
    s = studio
    data = page_values(s, "local", motion_bucket_id=90)
    recipe = {"model": "svd-xt", "num_frames": 25, "motion_bucket_id": 12, "noise_aug_strength": 0.3,
              "seed": 4242, "num_inference_steps": 30, "negative_prompt": "blurry"}
    updates, said = layout.restore(s, "novita", recipe, data)
    assert updates[s.input.backend] == "novita"
    assert updates[s.input.api_key]["value"] == ""  # a key typed for another backend is not carried over
    values = {name: updates[c].get("value") for name, c in s.params.controls.items() if updates[c].get("visible")}
    assert values["motion_bucket_id"] == 12 and values["noise_aug_strength"] == 0.3 and values["seed"] == 4242
    assert values["num_inference_steps"] == 30
    assert updates[s.params.randomize] is False  # the next run repeats the seed
    assert said == ("Restored 6 settings for Novita AI (model svd-xt, seed 4242). "
                    "Not used by Novita AI: negative_prompt.")


def test_a_recipe_from_an_unknown_backend_restores_onto_the_current_one(studio):
    s = studio
    updates, said = layout.restore(s, "dalle", {"motion_bucket_id": 7}, page_values(s, "local"))
    assert s.input.backend not in updates
    assert updates[s.params.controls["motion_bucket_id"]]["value"] == 7
    assert said == "Restored 1 settings for Local GPU (diffusers). It was made on 'dalle', which this studio " \
                   "does not offer here."


def test_a_history_entry_whose_file_is_gone_says_so_and_keeps_its_settings(studio, tmp_path):
    from ui.handlers import history

    s = studio
    gone = {"id": "abc", "video": str(tmp_path / "video.mp4"), "gif": None, "poster": None, "photo": None,
            "used": {"backend": "local", "motion_bucket_id": 61, "seed": 9}, "sent": None, "caption": "local · seed 9"}
    picked = history.on_pick(s, SimpleNamespace(index=0), [gone])
    assert picked[s.history.note] == entries.GONE and s.output.video not in picked
    assert entries.gallery_items([gone])[0][1] == "local · seed 9 (file removed)"
    data = page_values(s, "local") | {s.history.entries: [gone], s.history.selected: "abc"}
    reused = history.on_reuse(s, data)
    assert reused[s.params.controls["motion_bucket_id"]]["value"] == 61
    assert reused[s.history.note].startswith("Restored 2 settings for Local GPU (diffusers)")


def test_the_framing_preview_is_the_frame_sent_at_the_chosen_size(studio):
    from ui.handlers import framing

    s = studio
    data = page_values(s, "local", width=576, height=1024) | {s.input.image: str(EXAMPLES / "rocket.jpg")}
    shown = framing.on_change(s, data)
    assert shown[s.framing.picture].size == (576, 1024)
    assert shown[s.framing.caption] == "Local GPU (diffusers) gets this frame: **576x1024** (crop)."
    data[s.params.controls["width"]] = 1000
    assert "width must be a multiple of 64" in framing.on_change(s, data)[s.framing.caption]
    assert framing.on_size(s, "576x1024") == {s.params.controls["width"]: 576, s.params.controls["height"]: 1024}


def test_saving_a_preset_adds_it_to_the_list_without_the_seed_when_random(studio, tmp_path, monkeypatch):
    from orchestration import presets
    from ui.handlers import presets as saved

    monkeypatch.setenv("USER_PRESETS_DIR", str(tmp_path))
    s = studio
    data = page_values(s, "local", motion_bucket_id=66, seed=5) | {
        s.params.randomize: True, s.presets.name: "My slow pan", s.presets.description: ""}
    updates = saved.on_save(s, data)
    assert "My slow pan" in [c[0] if isinstance(c, tuple) else c for c in updates[s.params.preset]["choices"]]
    stored = presets.load_all()["My slow pan"].values()
    assert stored["motion_bucket_id"] == 66 and "seed" not in stored
    with pytest.raises(Exception) as info:
        saved.on_save(s, data)
    assert "A preset named 'My slow pan' already exists; pick another name." in str(info.value)


def test_a_sweep_suggests_values_and_refuses_a_bad_one_before_starting(studio):
    from ui.handlers import sweep
    from ui.panels.sweep import ONE_PARAMETER

    s = studio
    data = page_values(s, "local") | {s.sweep.parameter: "motion_bucket_id"}
    shaped_for = data[s.shaped]["sweep"]
    assert shaped_for != "motion_bucket_id"
    # tabbing through the picker (or code setting it) leaves the values the person typed
    assert sweep.on_parameter(s, data | {s.sweep.parameter: shaped_for}) == gr.skip()
    picked = sweep.on_parameter(s, data)
    assert picked[s.shaped]["sweep"] == "motion_bucket_id"
    suggested = picked[s.sweep.values]
    assert [int(v) for v in suggested.split(", ")] == [52, 103, 153, 204]
    data |= {s.input.image: str(EXAMPLES / "rocket.jpg"), s.input.api_key: "", s.params.randomize: True,
             s.sweep.mode: ONE_PARAMETER, s.sweep.values: "40, 400"}
    with pytest.raises(Exception) as info:
        sweep.plan(s, data)
    assert "motion_bucket_id must be 1-255 for Local GPU (diffusers), got 400" in str(info.value)


def test_the_worker_sees_the_context_of_the_event_that_started_it():
    """Gradio's request context must reach the job's thread: ZeroGPU finds the visitor there."""
    import contextvars

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="none")
    seen = {}

    def task(cancel, on_progress, on_job_id, **_):
        seen["marker"] = marker.get()
        return Result(video=None, used={})  # type: ignore[arg-type]

    async def main() -> None:
        marker.set("visitor-7")
        await _collect(Runner().run(task, "s"))

    asyncio.run(main())
    assert seen["marker"] == "visitor-7"


def test_a_pick_reshapes_the_page_once_whichever_way_it_came(studio):
    """Keyboard and mouse picks both fire .change, and so does code setting a value: the
    handlers reshape only for a value the page is not already shaped for."""
    s = studio
    data = page_values(s, "local")
    assert shaping.on_backend(s, data) == gr.skip()  # set by code (a restore), or picked again
    assert shaping.on_model(s, data) == gr.skip()
    assert shaping.on_preset(s, data) == gr.skip()  # "(none)"
    hosted = shaping.on_backend(s, data | {s.input.backend: "novita"})
    assert hosted[s.shaped]["backend"] == "novita"
    assert hosted[s.input.api_key]["visible"] is True and hosted[s.input.api_key]["value"] == ""
    assert "Novita AI" in hosted[s.input.blurb]["value"]
    assert hosted[s.params.controls["memory_mode"]]["visible"] is False  # a local-only setting
    preset = shaping.on_preset(s, data | {s.params.preset: "Subtle motion"})
    assert preset[s.shaped]["preset"] == "Subtle motion"
    again = data | {s.params.preset: "Subtle motion", s.shaped: preset[s.shaped]}
    assert shaping.on_preset(s, again) == gr.skip()


def test_the_parameters_table_is_readable_and_escapes_what_it_shows():
    table = views.parameters_table({"backend": "local", "motion_bucket_id": 127, "seed": 42,
                                    "negative_prompt": "<b>blur</b>", "elapsed_seconds": 3.5})
    assert "<th scope='row'>Motion amount<br><code>motion_bucket_id</code></th><td>127</td>" in table
    assert "<code>seed</code></th><td>42</td>" in table
    assert "Higher moves more; too high can warp faces and objects." in table
    assert "&lt;b&gt;blur&lt;/b&gt;" in table and "<b>blur" not in table
    assert views.parameters_table({}) == ""


def test_the_length_line_says_seconds_and_the_estimate():
    assert views.length_line(25, 7) == "**3.6 s** of video (25 frames at 7 fps)"
    assert views.length_line(14, 6, "about 3 min on this machine's CPU") == (
        "**2.3 s** of video (14 frames at 6 fps) · about 3 min on this machine's CPU to make")
    assert views.length_line(None, 7) == ""


def test_the_page_says_how_long_a_video_takes_where_it_can(tiny_model, monkeypatch):
    """On the CPU the estimate counts the full-size model's work; a test-size model and a
    hosted service's queue are not estimated."""
    import re

    from orchestration import service

    monkeypatch.delenv("LOCAL_DEVICES", raising=False)
    short = service.estimate("local", {"model": "svd-xt", "num_frames": 4, "width": 256, "height": 128,
                                       "num_inference_steps": 2})
    long = service.estimate("local", {"model": "svd-xt", "num_frames": 25, "num_inference_steps": 25})
    found = [re.fullmatch(r"about (\d+) (s|min|h)(?: \d+ min)? on this machine's CPU", t or "") for t in (short, long)]
    assert all(found), (short, long)
    seconds = [int(m.group(1)) * {"s": 1, "min": 60, "h": 3600}[m.group(2)] for m in found]
    assert seconds[0] < seconds[1], (short, long)
    assert service.estimate("local", {"model": "custom"}) is None  # the tiny model
    assert service.estimate("novita", {}) is None
    assert service.estimate("local", {"model": "svd-xt", "fps": 999}) is None  # refused at Generate, with a sentence


def test_a_refused_job_says_why_under_the_player_too(studio, photo):
    s = studio
    data = page_values(s, "local", fps=99)
    data |= {s.input.image: str(photo), s.input.api_key: "", s.params.randomize: True, s.history.entries: []}
    seen: list[dict] = []

    async def main() -> None:
        async for update in run.on_generate(s, data, SimpleNamespace(session_hash="refused"),
                                            progress=lambda *a, **k: None):
            seen.append(update)

    with pytest.raises(gr.Error) as info:
        asyncio.run(main())
    said = "fps must be 1-30 for Local GPU (diffusers), got 99"
    assert said in info.value.message
    assert seen[-1][s.output.status] == f"**Not made.** {info.value.message}"
