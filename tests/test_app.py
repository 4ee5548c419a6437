"""The launched app, driven through gradio_client exactly as another tool would use it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from gradio_client import Client, handle_file

import backends
from studio import video
from studio.request import PARAMETERS
from tests.conftest import EXAMPLES, ROOT, launched_studio


@pytest.fixture(scope="module")
def client(tiny_model):
    with launched_studio() as url:
        yield Client(url, verbose=False)


def test_generate_endpoint_names_every_request_field(client):
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]
    names = [p["parameter_name"] for p in info["parameters"]]
    assert names == ["image", "backend", *PARAMETERS, *backends.all_options(), "api_key"]
    # Every provider's own options are accepted by name, the API-only one included.
    assert {"negative_prompt", "enable_frame_interpolation", "instant_response", "webhook"} <= set(names)
    assert all(p["parameter_default"] is None for p in info["parameters"][2:])


def test_generate_returns_the_video_then_the_parameters_used(client):
    path, used = client.predict(
        image=handle_file(str(EXAMPLES / "rocket.jpg")), backend="local",
        width=192, height=128, num_frames=6, num_inference_steps=2, seed=11, fps=8,
        api_name="/generate",
    )
    assert video.probe(path) == (6, 192, 128)
    assert used["seed"] == 11 and used["num_frames"] == 6 and used["fps"] == 8
    assert used["backend"] == "local" and used["width"] == 192


def test_random_seed_comes_back_in_the_parameters(client):
    _, used = client.predict(image=handle_file(str(EXAMPLES / "coffee.png")), width=64, height=64,
                             num_inference_steps=1, api_name="/generate")
    assert isinstance(used["seed"], int) and 0 <= used["seed"] < 2**32


@pytest.mark.parametrize(
    "params, message",
    [
        ({"fps": 99}, "fps must be 1-30 for Local GPU (diffusers), got 99"),
        ({"width": 1000}, "width must be a multiple of 64 from 64 to 2048 for Local GPU (diffusers), got 1000"),
        ({"backend": "dalle"}, "backend must be one of 'local'"),
    ],
)
def test_out_of_range_values_are_refused_with_a_clear_message(client, params, message):
    with pytest.raises(Exception) as info:
        client.predict(image=handle_file(str(EXAMPLES / "coffee.png")), **params, api_name="/generate")
    assert message in str(info.value)
    # The app keeps serving after a refusal.
    assert client.predict(image=handle_file(str(EXAMPLES / "coffee.png")), width=64, height=64,
                          num_inference_steps=1, seed=1, api_name="/generate")[1]["seed"] == 1


def test_not_an_image_gets_a_sentence_not_a_traceback(client, tmp_path):
    junk = tmp_path / "notes.png"
    junk.write_text("not a picture")
    with pytest.raises(Exception) as info:
        client.predict(image=handle_file(str(junk)), api_name="/generate")
    assert "not an image this studio can read" in str(info.value)
    assert "Traceback" not in str(info.value)


def test_page_is_served_before_torch_is_imported():
    code = (
        "import sys, app; demo = app.build_demo(); "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
