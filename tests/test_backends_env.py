"""What the owner sets in the environment: BACKENDS (which backends the page and the API
offer, in which order) and LOCAL_CPU_MAX_SECONDS (the longest local run a machine without
a GPU accepts, estimated before anything is loaded)."""

from __future__ import annotations

import gradio as gr
import pytest
from gradio_client import Client, handle_file

import backends
from orchestration import service
from studio.errors import BackendError, BadSetting, InvalidParameter
from tests.conftest import EXAMPLES, launched_studio
from tests.fakes import FakeNovita

KEY = "sk-canary-backends-env"


# --- BACKENDS -----------------------------------------------------------------------------


@pytest.mark.parametrize("value, offered", [
    (None, ["local", "modelslab", "novita"]),
    ("", ["local", "modelslab", "novita"]),
    ("novita,modelslab", ["novita", "modelslab"]),
    (" Novita , novita,, local ", ["novita", "local"]),
])
def test_backends_limits_and_orders_what_is_offered(monkeypatch, value, offered):
    if value is None:
        monkeypatch.delenv("BACKENDS", raising=False)
    else:
        monkeypatch.setenv("BACKENDS", value)
    assert backends.names() == offered
    assert backends.all_options()  # every caller of names() still works


def test_an_unknown_name_stops_the_app_at_start_up(monkeypatch):
    monkeypatch.setenv("BACKENDS", "novita,dalle")
    message = ("BACKENDS must list backends of this studio, separated by commas ('local', 'modelslab', 'novita'), "
               "got 'novita,dalle': 'dalle' is not one of them.")
    with pytest.raises(BadSetting) as info:
        backends.start_up()  # the first thing app.main does
    assert str(info.value) == message
    with pytest.raises(BadSetting):
        backends.names()


def test_a_backend_not_offered_is_refused(monkeypatch, photo):
    monkeypatch.setenv("BACKENDS", "novita,modelslab")
    with pytest.raises(InvalidParameter) as info:
        backends.get_backend("local")
    assert str(info.value) == "backend must be one of 'novita', 'modelslab' for this studio, got 'local'"
    with pytest.raises(InvalidParameter):
        service.generate(photo, "local", {"width": 64, "height": 64})


@pytest.fixture(scope="module")
def hosted_only():
    with FakeNovita(api_key=KEY) as nv:
        env = {"BACKENDS": "novita,modelslab", "NOVITA_BASE_URL": nv.base_url, "NOVITA_API_KEY": KEY,
               "MODELSLAB_API_KEY": None, "SPACE_ID": None, "SPACES_ZERO_GPU": None}
        with launched_studio(env) as url:
            yield Client(url, verbose=False)


def test_the_launched_app_defaults_to_the_first_backend_offered(hosted_only):
    info = hosted_only.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]
    backend = next(p for p in info["parameters"] if p["parameter_name"] == "backend")
    assert backend["parameter_default"] == "novita"
    _, used = hosted_only.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), model="svd",
                                  api_name="/generate")  # no backend given
    assert used["backend"] == "novita" and used["task_id"]


def test_the_launched_app_refuses_a_backend_not_offered(hosted_only):
    with pytest.raises(Exception) as info:
        hosted_only.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), backend="local", api_name="/generate")
    assert "backend must be one of 'novita', 'modelslab' for this studio, got 'local'" in str(info.value)


# --- LOCAL_CPU_MAX_SECONDS ------------------------------------------------------------------


@pytest.fixture
def cpu_only(monkeypatch):
    """A machine with no CUDA and no MPS and 2 torch threads (so the estimates are exact);
    the local backend as the page offers it, with the hub's svd-xt as its default model."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    for name in ("LOCAL_SVD_MODEL", "LOCAL_CPU_MAX_SECONDS", "BACKENDS", "SPACES_ZERO_GPU"):
        monkeypatch.delenv(name, raising=False)
    return backends.get_backend("local")


def preflight(backend, params: dict) -> None:
    backend.preflight(backend.resolve(service.build_request(params, backend)))


def test_a_full_size_video_on_the_cpu_is_refused_with_settings_that_fit(cpu_only, photo):
    with pytest.raises(BackendError) as info:
        service.generate(photo, "local", {"model": "svd-xt"})  # 1024x576, 25 frames, 25 steps by default
    assert str(info.value) == (
        "On this machine's CPU this video would take about 11 h 36 min (1024x576, 25 frames, 25 steps); "
        "at 384x192, 8 frames and 6 steps it would take about 6 min. "
        "Lower the size, frames or steps, or pick a hosted backend."
    )  # refused before loading: svd-xt is a hub id, and the hub is offline here


def test_a_small_video_on_the_cpu_passes(cpu_only):
    preflight(cpu_only, {"model": "svd-xt", "width": 256, "height": 128, "num_frames": 4, "num_inference_steps": 4})


def test_the_tiny_model_is_not_estimated(cpu_only, tiny_model, monkeypatch):
    # A limit of one second refuses any estimated video (even the tiny model's FLOP count
    # comes to about a minute here), so only the exemption lets this one through.
    monkeypatch.setenv("LOCAL_CPU_MAX_SECONDS", "1")
    big = {"width": 1024, "height": 576, "num_frames": 25, "num_inference_steps": 25}
    with pytest.raises(BackendError):
        preflight(cpu_only, {"model": "svd-xt", **big})  # the limit holds for a model that is estimated
    monkeypatch.setenv("LOCAL_SVD_MODEL", str(tiny_model))
    preflight(cpu_only, big)


def test_the_limit_is_the_owners(cpu_only, monkeypatch):
    small = {"model": "svd-xt", "width": 256, "height": 128, "num_frames": 4, "num_inference_steps": 4}
    monkeypatch.setenv("LOCAL_CPU_MAX_SECONDS", "1")
    monkeypatch.setenv("BACKENDS", "local")
    with pytest.raises(BackendError) as info:
        preflight(cpu_only, small)
    assert str(info.value) == (  # nothing smaller fits in a second, and there is no hosted backend to offer
        "On this machine's CPU this video would take about 62 s (256x128, 4 frames, 4 steps). "
        "Lower the size, frames or steps."
    )
    monkeypatch.setenv("LOCAL_CPU_MAX_SECONDS", "86400")
    preflight(cpu_only, {"model": "svd-xt"})  # a day: the full-size video (11.6 h) is accepted


def test_a_bad_limit_names_the_variable(cpu_only, monkeypatch):
    monkeypatch.setenv("LOCAL_CPU_MAX_SECONDS", "ten minutes")
    with pytest.raises(BadSetting) as info:
        preflight(cpu_only, {"model": "svd-xt"})
    assert str(info.value) == "LOCAL_CPU_MAX_SECONDS must be a number of seconds above 0, got 'ten minutes'."


def test_a_page_offering_only_novita_builds_and_has_no_size_controls(monkeypatch):
    """Novita takes no width or height: the page must still build without them."""
    monkeypatch.setenv("BACKENDS", "novita")
    from ui import page

    with gr.Blocks():
        s = page.build_studio()
    assert "width" not in s.params.controls and "seed" in s.params.controls
    page.build_demo()  # wiring included
