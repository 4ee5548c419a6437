"""End to end through the launched app: /generate and /resume for each hosted backend,
against fake ModelsLab and Novita servers on 127.0.0.1; the key shows up nowhere."""

from __future__ import annotations

import json

import pytest
from gradio_client import Client, handle_file

from studio import video
from tests.conftest import EXAMPLES, launched_studio
from tests.fakes import FakeModelsLab, FakeNovita

KEY = "sk-canary-7f3a9c1e"


@pytest.fixture(scope="module")
def servers():
    with FakeModelsLab(api_key=KEY, processing_polls=2, eta=1) as ml, FakeNovita(api_key=KEY) as nv:
        yield ml, nv


@pytest.fixture(scope="module")
def client(servers, tiny_model):
    ml, nv = servers
    env = {"MODELSLAB_BASE_URL": ml.base_url, "NOVITA_BASE_URL": nv.base_url,
           "MODELSLAB_API_KEY": KEY, "NOVITA_API_KEY": None}
    with launched_studio(env) as url:
        yield Client(url, verbose=False)


def test_modelslab_through_generate(client, servers):
    ml, _ = servers
    path, used = client.predict(image=handle_file(str(EXAMPLES / "chelsea.png")), backend="modelslab",
                                width=256, height=256, num_frames=4, seed=5, api_name="/generate")
    frames, w, h = video.probe(path)
    assert frames == 4 and (w, h) == (64, 64)  # the fake serves a 64x64, 4-frame clip
    assert used["backend"] == "modelslab" and used["task_id"] and used["width"] == 256
    submit = [r for r in ml.requests if r.route == "submit"][-1].json
    assert submit["key"] == KEY and submit["model_id"] == "svd" and submit["num_frames"] == 4
    assert KEY not in json.dumps(used)


def test_novita_with_the_key_as_a_parameter(client, servers):
    _, nv = servers
    path, used = client.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), backend="novita",
                                model="svd", api_key=KEY, api_name="/generate")
    assert video.probe(path)[0] == 4
    assert used["num_frames"] == 14 and used["fps"] == 6 and used["task_id"]
    submit = [r for r in nv.requests if r.route == "submit"][-1]
    assert submit.headers["authorization"] == f"Bearer {KEY}"
    assert submit.json["model_name"] == "SVD" and submit.json["frames_num"] == 14
    assert KEY not in json.dumps(used)


def test_novita_without_a_key_names_the_variable(client):
    with pytest.raises(Exception) as info:
        client.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), backend="novita", api_name="/generate")
    assert "NOVITA_API_KEY" in str(info.value)


def test_a_failed_job_gives_the_reason_and_the_task_id(client, servers):
    _, nv = servers
    nv.fail_reason = "NSFW content detected"
    try:
        with pytest.raises(Exception) as info:
            client.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), backend="novita", api_key=KEY,
                           api_name="/generate")
    finally:
        nv.fail_reason = None
    assert "NSFW content detected" in str(info.value) and "task id" in str(info.value)
    assert KEY not in str(info.value)


def test_resume_by_task_id(client, servers):
    _, nv = servers
    _, used = client.predict(image=handle_file(str(EXAMPLES / "coffee.png")), backend="novita", api_key=KEY,
                             api_name="/generate")
    submits = len([r for r in nv.requests if r.route == "submit"])
    path, again = client.predict(task_id=used["task_id"], backend="novita", api_key=KEY, api_name="/resume")
    assert video.probe(path)[0] == 4 and again["task_id"] == used["task_id"]
    assert len([r for r in nv.requests if r.route == "submit"]) == submits, "resume must not submit again"
