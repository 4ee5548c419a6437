"""Iterating through the API: every video carries its recipe (read back by /read_settings),
sweeps come back in the order of their values, hosted sweeps overlap, bad sweeps are
refused before anything starts, and the API is offered as MCP tools when asked."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from studio import video
from tests.conftest import EXAMPLES, launched_studio
from tests.fakes import FakeModelsLab, FakeNovita

KEY = "sk-canary-iterate-5d1"
JOB_SECONDS = 3.0
SMALL = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 2}


@pytest.fixture(scope="module")
def servers():
    with FakeModelsLab(api_key=KEY) as ml, FakeNovita(api_key=KEY, job_seconds=JOB_SECONDS) as nv:
        yield ml, nv


@pytest.fixture(scope="module")
def client(servers, tiny_model):
    ml, nv = servers
    env = {"MODELSLAB_BASE_URL": ml.base_url, "NOVITA_BASE_URL": nv.base_url,
           "MODELSLAB_API_KEY": KEY, "NOVITA_API_KEY": KEY}
    with launched_studio(env) as url:
        yield Client(url, verbose=False)


def comment_tag(path: str) -> str:
    """The comment tag as ffmpeg itself reports it."""
    out = subprocess.run([video.ffmpeg(), "-v", "error", "-i", path, "-f", "ffmetadata", "-"],
                         capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if line.lower().startswith("comment="))


@pytest.mark.parametrize("backend, extra", [
    ("local", {**SMALL, "motion_bucket_id": 33, "seed": 1234}),
    ("modelslab", {"width": 256, "height": 256, "num_frames": 4, "seed": 5, "negative_prompt": "blurry"}),
    ("novita", {"model": "svd", "seed": 77, "motion_bucket_id": 90}),
])
def test_every_backend_writes_its_recipe_into_the_video(client, backend, extra):
    path, used = client.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), backend=backend, **extra,
                                api_name="/generate")
    tag = comment_tag(path)
    assert '"made_with":"SVD Studio"' in tag
    assert KEY not in tag and KEY.encode() not in Path(path).read_bytes()
    settings = client.predict(handle_file(path), api_name="/read_settings")
    assert settings == used  # the recipe is exactly the parameters used
    assert settings["backend"] == backend and settings["seed"] == extra["seed"]
    assert all(settings[k] == v for k, v in extra.items())
    assert video.probe(path)[0] >= 4  # still a playable video after stamping


def test_a_foreign_video_gets_one_sentence(client, tmp_path):
    foreign = tmp_path / "holiday.mp4"
    video.write_mp4([np.full((48, 64, 3), i * 30, np.uint8) for i in range(5)], foreign, 8)
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(foreign)), api_name="/read_settings")
    assert "holiday.mp4 was not made by SVD Studio, so it carries no settings to restore." in str(info.value)
    assert str(tmp_path) not in str(info.value)


def test_a_settings_json_reads_back_too(client, tmp_path):
    saved = tmp_path / "settings.json"
    saved.write_text(json.dumps({"backend": "local", "motion_bucket_id": 12, "seed": 3}))
    assert client.predict(handle_file(str(saved)), api_name="/read_settings") == {
        "backend": "local", "motion_bucket_id": 12, "seed": 3}


def test_a_local_sweep_comes_back_in_the_order_of_its_values(client):
    values = [200, 40, 120]
    videos, used = client.predict(image=handle_file(str(EXAMPLES / "coffee.png")), backend="local",
                                  parameter="motion_bucket_id", values=values, **SMALL, api_name="/sweep")
    assert [u["motion_bucket_id"] for u in used] == values
    assert len({u["seed"] for u in used}) == 1  # one seed for all: only the swept value differs
    for path, u in zip(videos, used, strict=True):
        assert video.probe(path) == (4, 128, 64)
        assert client.predict(handle_file(path), api_name="/read_settings")["motion_bucket_id"] == \
            u["motion_bucket_id"]


def test_a_hosted_sweep_runs_its_values_side_by_side(client, servers):
    seeds = [11, 22, 33, 44]
    started = time.monotonic()
    videos, used = client.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), backend="novita",
                                  parameter="seed", values=seeds, api_name="/sweep")
    total = time.monotonic() - started
    assert [u["seed"] for u in used] == seeds and all(video.probe(p)[0] == 4 for p in videos)
    assert len({u["task_id"] for u in used}) == 4
    # One after another they would need at least 4 x 3 s = 12 s.
    assert total < 0.6 * len(seeds) * JOB_SECONDS, f"the sweep took {total:.1f} s: its values did not overlap"


@pytest.mark.parametrize("backend, parameter, values, message", [
    ("local", "motion_bucket_id", [40, 300],
     "motion_bucket_id must be 1-255 for Local GPU (diffusers), got 300"),
    ("local", "seed", list(range(9)),
     "values of seed must be 2 to 8 values for Local GPU (diffusers), got [0, 1, 2, 3, 4, 5, 6, 7, 8]"),
    ("local", "seed", [5], "values of seed must be 2 to 8 values for Local GPU (diffusers), got [5]"),
    ("novita", "fps", [6, 7], "sweep parameter must be one of 'seed', 'motion_bucket_id', 'noise_aug_strength', "
                              "'num_inference_steps' for Novita AI, got 'fps'"),
    ("modelslab", "width", [256, 576], "width must be a multiple of 64 from 64 to 512 for ModelsLab, got 576"),
])
def test_a_bad_sweep_is_refused_before_anything_starts(client, servers, backend, parameter, values, message):
    ml, nv = servers
    before = len(ml.requests) + len(nv.requests)
    with pytest.raises(Exception) as info:
        client.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), backend=backend, parameter=parameter,
                       values=values, api_name="/sweep")
    assert message in str(info.value)
    assert len(ml.requests) + len(nv.requests) == before  # nothing was submitted, nothing paid for


def test_mcp_tools_are_the_studio_endpoints_without_resume(tiny_model):
    """What an agent sees: the tool list over the MCP protocol itself."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def list_tools(url: str) -> list:
        async with streamablehttp_client(f"{url.rstrip('/')}/gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return (await session.list_tools()).tools

    with launched_studio({"MCP_SERVER": "1"}) as url:
        tools = {tool.name: tool for tool in asyncio.run(list_tools(url))}
    assert set(tools) == {"generate", "sweep", "read_settings", "finish", "extend", "batch"}
    assert {"images", "name_template", "seed_per_photo", "preset_b", "gifs", "seed"} <= set(
        tools["batch"].inputSchema["properties"])
    assert "one video per value" in tools["sweep"].description
    properties = tools["sweep"].inputSchema["properties"]
    assert {"image", "backend", "parameter", "values", "motion_bucket_id", "api_key"} <= set(properties)
    assert "Motion amount: Higher moves more" in properties["motion_bucket_id"]["description"]
    assert "video made by this studio" in tools["read_settings"].description


# --- finishing and extending through the API ------------------------------------------------


def test_finish_smooths_and_loops_a_studio_video_and_keeps_its_recipe(client):
    path, used = client.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), backend="local",
                                **{**SMALL, "num_frames": 6, "fps": 8, "seed": 5}, api_name="/generate")
    before = Path(path).read_bytes()
    finished, info = client.predict(handle_file(path), target_fps=24, loop="pingpong", interpolation="blend",
                                     api_name="/finish")
    assert info["input_frames"] == 6 and info["input_fps"] == 8 and info["output_fps"] == 24
    assert info["loop"] == "pingpong" and info["interpolation"] == "blend"
    frames, width, height = video.probe(finished)
    assert frames == info["output_frames"] and (width, height) == (128, 64)
    # 6 frames ping-pong to 10 (the turning frames once), then 8 to 24 fps: three times as many.
    assert frames == 30
    settings = client.predict(handle_file(finished), api_name="/read_settings")
    assert settings["seed"] == 5 and settings["backend"] == "local" and settings["finish"] == info
    assert Path(path).read_bytes() == before  # the source is never changed


def test_finish_refuses_what_it_cannot_finish_in_one_sentence(client, tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video at all")
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(notes)), target_fps=24, api_name="/finish")
    assert "notes.mp4" in str(info.value) and "Traceback" not in str(info.value)
    assert str(tmp_path) not in str(info.value)
    clip = tmp_path / "clip.mp4"
    video.write_mp4([np.full((48, 64, 3), i * 30, np.uint8) for i in range(5)], clip, 8)
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(clip)), target_fps=99, api_name="/finish")
    assert "target_fps must be 12-60 for finishing, got 99" in str(info.value)


def test_extend_chains_segments_and_lists_each_one(client):
    path, segments = client.predict(image=handle_file(str(EXAMPLES / "coffee.png")), backend="local",
                                    segments=3, same_seed=False, **SMALL, seed=9, api_name="/extend")
    assert video.probe(path) == (4 + 2 * 3, 128, 64)  # each later segment's first frame is the seam
    assert len(segments) == 3 and segments[0]["seed"] == 9 and len({s["seed"] for s in segments}) == 3
    settings = client.predict(handle_file(path), api_name="/read_settings")
    assert [s["seed"] for s in settings["segments"]] == [s["seed"] for s in segments]
    with pytest.raises(Exception) as info:
        client.predict(image=handle_file(str(EXAMPLES / "coffee.png")), backend="local", segments=9,
                       api_name="/extend")
    assert "segments must be 2 to 8 for Local GPU (diffusers), got 9" in str(info.value)
