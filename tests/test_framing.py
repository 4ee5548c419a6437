"""The framing preview: the picture the page shows before anything is spent is the picture
each backend really starts from, checked where it leaves the studio (the diffusers
pipeline's call, the fake providers' wire), plus the standard sizes and the portrait preset.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import backends
from backends import http
from backends.base import Job
from backends.modelslab import ModelsLabBackend
from backends.novita import NovitaBackend
from studio import images
from orchestration import presets, service
from studio.errors import InvalidParameter
from studio.request import PARAMETERS, GenerationRequest
from tests.conftest import EXAMPLES, ROOT
from tests.fakes import FakeModelsLab, FakeNovita

KEY = "test-key"
FAST = dict(poll_interval=0.01, max_poll_interval=0.05, deadline=5.0, backoff=0.01, max_backoff=0.05, retries=3)
NOVITA_NOTE = "Novita crops the photo to 1024x576 on its side; this preview is the studio's copy of that crop."


@pytest.fixture
def portrait(tmp_path: Path) -> Path:
    """rocket.jpg (640x427) turned upright: a 427x640 portrait photo."""
    path = tmp_path / "portrait.png"
    Image.open(EXAMPLES / "rocket.jpg").transpose(Image.Transpose.ROTATE_90).save(path)
    return path


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def decoded(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))


def request(**params) -> GenerationRequest:
    return GenerationRequest(**{k: v for k, v in params.items() if k in PARAMETERS},
                             options={k: v for k, v in params.items() if k not in PARAMETERS})


# --- the local backend ----------------------------------------------------------------------


def test_local_crop_gives_exactly_the_chosen_size(portrait):
    shot = service.framing(portrait, "local", {"width": 1024, "height": 576, "resize_mode": "crop"})
    assert (shot.width, shot.height, shot.image.size, shot.note) == (1024, 576, (1024, 576), "")


def test_local_fit_keeps_the_aspect_ratio(portrait):
    shot = service.framing(portrait, "local", {"width": 1024, "height": 576, "resize_mode": "fit"})
    assert (shot.width, shot.height) == shot.image.size == (384, 576)  # 427x640 inside 1024x576
    assert abs(shot.width - shot.height * 427 / 640) < 64 and shot.width % 64 == shot.height % 64 == 0


@pytest.mark.parametrize("params", [
    {"width": 64, "height": 128, "resize_mode": "crop"},
    {"width": 128, "height": 128, "resize_mode": "fit"},  # 427x640 inside 128x128: 64x128, stretched
])
def test_the_pipeline_receives_the_previewed_picture(tiny_model, portrait, monkeypatch, params):
    from diffusers import StableVideoDiffusionPipeline

    received: list[tuple[Image.Image, int, int]] = []
    original = StableVideoDiffusionPipeline.__call__

    def spy(self, image, *args, **kwargs):
        received.append((image, kwargs["width"], kwargs["height"]))
        return original(self, image, *args, **kwargs)

    monkeypatch.setattr(StableVideoDiffusionPipeline, "__call__", spy)
    values = {"num_frames": 4, "num_inference_steps": 2, "seed": 1, **params}
    result = service.generate(portrait, "local", values)
    shot = service.framing(portrait, "local", values)
    [(image, width, height)] = received
    assert (width, height) == (shot.width, shot.height) == (result.used["width"], result.used["height"])
    assert np.array_equal(pixels(image), pixels(shot.image))


# --- hosted backends: what the fake servers received ------------------------------------------


@pytest.fixture(scope="module")
def client():
    with http.default_client() as c:
        yield c


@pytest.fixture
def modelslab(monkeypatch):
    with FakeModelsLab(KEY) as fake:
        monkeypatch.setenv("MODELSLAB_BASE_URL", fake.base_url)
        yield fake


@pytest.fixture
def novita(monkeypatch):
    with FakeNovita(KEY, queued_polls=0, processing_polls=0) as fake:
        monkeypatch.setenv("NOVITA_BASE_URL", fake.base_url)
        yield fake


def send(backend, photo: Path, tmp_path: Path, params: dict) -> None:
    backend.generate(images.load_image(photo), backend.resolve(request(**params)), Job(workdir=tmp_path, api_key=KEY))


@pytest.mark.parametrize("params", [
    {"width": 256, "height": 192, "resize_mode": "crop"},
    {"width": 512, "height": 512, "resize_mode": "fit"},
    {"width": 320, "height": 512, "resize_mode": "crop"},
])
def test_modelslab_sends_the_previewed_picture(client, modelslab, portrait, tmp_path, params):
    params = {"num_frames": 4, "seed": 7, **params}
    send(ModelsLabBackend(client, **FAST), portrait, tmp_path, params)
    body = modelslab.requests_for("submit")[0].json
    shot = service.framing(portrait, "modelslab", params)
    sent = decoded(body["init_image"].removeprefix("data:image/png;base64,"))  # PNG: lossless
    assert (body["width"], body["height"]) == (shot.width, shot.height) == sent.size
    assert np.array_equal(pixels(sent), pixels(shot.image)) and shot.note == ""


def test_novita_fit_sends_the_previewed_picture(client, novita, photo, tmp_path):
    send(NovitaBackend(client, **FAST), photo, tmp_path, {"resize_mode": "fit", "seed": 7})
    body = novita.requests_for("submit")[0].json
    shot = service.framing(photo, "novita", {"resize_mode": "fit"})
    sent = decoded(body["image_file"])  # PNG: lossless
    assert body["image_file_resize_mode"] == "ORIGINAL_RESOLUTION"
    assert sent.size == (shot.width, shot.height) == (832, 576) and shot.note == ""
    assert np.array_equal(pixels(sent), pixels(shot.image))


def test_novita_crop_previews_its_crop_of_the_photo_sent(client, novita, portrait, tmp_path):
    send(NovitaBackend(client, **FAST), portrait, tmp_path, {"seed": 7})
    body = novita.requests_for("submit")[0].json
    shot = service.framing(portrait, "novita", {"resize_mode": "crop"})
    sent = decoded(body["image_file"])
    assert body["image_file_resize_mode"] == "CROP_TO_ASPECT_RATIO" and sent.size == (427, 640)  # the whole photo
    assert (shot.width, shot.height) == shot.image.size == (1024, 576)
    assert shot.note == NOVITA_NOTE
    assert np.array_equal(pixels(shot.image), pixels(images.frame(sent, (1024, 576), "crop")))


def test_novita_crop_preview_of_a_large_photo_is_made_from_the_shrunk_photo_sent(client):
    big = Image.new("RGB", (3000, 1000), (200, 30, 30))
    backend = NovitaBackend(client)
    r = backend.resolve(GenerationRequest())
    assert backend.sent_image(big, r).size == (2048, 683)
    assert backend.frame(big, r).image.size == (1024, 576)


# --- standard sizes -----------------------------------------------------------------------------


def test_sizes_follow_each_backends_declared_width_and_height():
    local = backends.get_backend("local").sizes("svd-xt")
    assert ("portrait 9:16", 576, 1024) in local and ("landscape 16:9", 1024, 576) in local
    assert all(w % 64 == 0 and h % 64 == 0 for _, w, h in local)  # the local backend needs multiples of 64
    modelslab = backends.get_backend("modelslab").sizes("svd")
    assert ("square", 512, 512) in modelslab and (576, 1024) not in [(w, h) for _, w, h in modelslab]
    assert all(w <= 512 and h <= 512 and w % 64 == h % 64 == 0 for _, w, h in modelslab)
    assert any(h > w for _, w, h in modelslab)  # a portrait within 512
    assert backends.get_backend("novita").sizes("svd-xt") == []  # it takes no width or height


def test_every_offered_size_resolves_on_its_backend():
    for name in backends.names():
        backend = backends.get_backend(name)
        model = backend.default_model()
        for _, width, height in backend.sizes(model):
            resolved = backend.resolve(GenerationRequest(model=model, width=width, height=height))
            assert (resolved.width, resolved.height) == (width, height)


# --- refusals, speed --------------------------------------------------------------------------


@pytest.mark.parametrize("backend, params, text", [
    ("modelslab", {"width": 576, "height": 1024},
     "width must be a multiple of 64 from 64 to 512 for ModelsLab, got 576"),
    ("local", {"width": 4096}, "width must be a multiple of 64 from 64 to 2048 for Local GPU (diffusers), got 4096"),
    ("novita", {"width": 576}, "width must be left empty (this backend does not use it) for Novita AI, got 576"),
])
def test_framing_refuses_what_generate_refuses(photo, backend, params, text):
    with pytest.raises(InvalidParameter) as framed:
        service.framing(photo, backend, params)
    with pytest.raises(InvalidParameter) as generated:
        service.generate(photo, backend, params, api_key=KEY)
    assert str(framed.value) == str(generated.value) == text


def test_framing_needs_no_torch_and_no_network():
    code = (
        "import socket, sys\n"
        "def refuse(*args): raise AssertionError('framing opened a connection')\n"
        "socket.socket.connect = refuse\n"
        "from orchestration import service\n"
        "for name in ('local', 'modelslab', 'novita'):\n"
        "    for mode in ('crop', 'fit'):\n"
        "        service.framing('examples/chelsea.png', name, {'resize_mode': mode})\n"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LOCAL_SVD_MODEL"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


# --- the portrait preset --------------------------------------------------------------------------


def test_the_portrait_preset_loads_and_is_an_offered_size():
    preset = presets.load_presets()["Portrait (576x1024)"]
    assert preset.values() == {"width": 576, "height": 1024, "resize_mode": "crop"}
    local = backends.get_backend("local")
    resolved = local.resolve(service.build_request({"model": "svd-xt", **preset.values()}, local))
    assert (resolved.width, resolved.height) == (576, 1024)
    assert (576, 1024) in [(w, h) for _, w, h in local.sizes("svd-xt")]
