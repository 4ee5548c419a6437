"""Keys, files and URLs: a planted canary key (the environment's, and one typed for a job)
shows up nowhere; the server fetches no URL a person types from loopback; only the
studio's own outputs are served; uploads are limited in size."""

from __future__ import annotations

import http.server
import json
import logging
import threading

import httpx
import pytest
from gradio_client import Client, handle_file

import backends
from studio import outputs, recipe
from studio.request import PARAMETERS
from tests.conftest import EXAMPLES, launched_studio
from tests.fakes import FakeModelsLab, FakeNovita, Reply

CANARY = "sk-CANARY-5d1e0c9b7a"
TYPED = "sk-TYPED-0b8e2f4a6c"  # a visitor's own key: not the environment's, so masked only in its job


@pytest.fixture(scope="module")
def servers():
    with FakeModelsLab(api_key=CANARY) as ml, FakeNovita(api_key=CANARY) as nv:
        yield ml, nv


@pytest.fixture(scope="module")
def studio(servers, tiny_model):
    ml, nv = servers
    env = {"MODELSLAB_BASE_URL": ml.base_url, "NOVITA_BASE_URL": nv.base_url, "MODELSLAB_API_KEY": CANARY,
           "NOVITA_API_KEY": CANARY, "HOSTED_TIMEOUT_SECONDS": "10"}
    with launched_studio(env) as url:
        yield url, Client(url, verbose=False)


def everything_said(caplog, capfd, *texts: str) -> str:
    out, err = capfd.readouterr()
    return "\n".join([caplog.text, out, err, *texts])


def test_canary_key_appears_nowhere(studio, servers, caplog, capfd):
    url, client = studio
    ml, nv = servers
    caplog.set_level(logging.DEBUG)
    said: list[str] = []
    photo = handle_file(str(EXAMPLES / "chelsea.png"))
    # Success on both backends.
    for backend in ("modelslab", "novita"):
        path, used = client.predict(image=photo, backend=backend, api_name="/generate")
        said.append(json.dumps(used))
    # A provider that echoes the key back in its error, with and without JSON.
    ml.script("submit", Reply(status=401, json={"status": "error", "message": f"Invalid API key: {CANARY}"}))
    nv.script("submit", Reply(status=403, json={"code": 403, "reason": "INVALID_API_KEY",
                                                "message": f"bad key {CANARY}"}))
    nv.script("poll", Reply(status=500, body=f"<html>upstream saw Bearer {CANARY}</html>", content_type="text/html"))
    for backend in ("modelslab", "novita"):
        with pytest.raises(Exception) as info:
            client.predict(image=photo, backend=backend, api_name="/generate")
        said.append(str(info.value))
    # A job stuck past the deadline, and a key pasted on the page that the provider refuses.
    nv.stuck = True
    try:
        with pytest.raises(Exception) as info:
            client.predict(image=photo, backend="novita", api_name="/generate")
        said.append(str(info.value))
    finally:
        nv.stuck = False
    nv.script("submit", Reply(status=403, json={"code": 403, "reason": "INVALID_API_KEY",
                                                "message": f"bad key {TYPED}"}))
    with pytest.raises(Exception) as info:
        client.predict(image=photo, backend="novita", api_key=TYPED, api_name="/generate")
    said.append(str(info.value))
    assert any("Invalid API key" in s or "API key" in s for s in said)
    # The page, its config and API description, the logs, every error, every output file.
    said += [httpx.get(url).text, httpx.get(f"{url}config").text,
             json.dumps(client.view_api(return_format="dict", print_info=False))]
    for file in outputs.run_dir().rglob("*"):
        if file.is_file():
            said.append(file.read_bytes().decode("latin-1"))
    everything = everything_said(caplog, capfd, *said)
    assert CANARY not in everything and TYPED not in everything


@pytest.fixture
def loopback_image_server():
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            body = (EXAMPLES / "chelsea.png").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "169.254.169.254", "10.0.0.1", "[::1]"])
def test_a_typed_url_to_a_private_address_is_never_fetched(studio, loopback_image_server, host):
    _, client = studio
    base, hits = loopback_image_server
    port = base.rsplit(":", 1)[1]
    with pytest.raises(Exception) as info:
        client.predict(image=handle_file(f"http://{host}:{port}/photo.png"), backend="local", api_name="/generate")
    # Gradio's own guard refuses the address before any request is made, in these words.
    assert str(info.value) == f"Hostname {host.strip('[]')} failed validation"
    assert hits == []


@pytest.mark.parametrize("path", ["/etc/passwd", "app.py", "README.md", "backends/local.py"])
def test_only_outputs_are_served(studio, path):
    url, _ = studio
    assert httpx.get(f"{url}gradio_api/file={path}").status_code in (403, 404)


def test_a_server_path_smuggled_into_the_api_is_refused(studio):
    url, _ = studio
    fields = len(PARAMETERS) + len(backends.all_options()) + 1  # request fields, options, api_key
    data = [{"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}, "local"] + [None] * fields
    event = httpx.post(f"{url}gradio_api/call/generate", json={"data": data}).json()["event_id"]
    answer = httpx.get(f"{url}gradio_api/call/generate/{event}", timeout=60).text
    assert "event: error" in answer and "not uploaded by a user" in answer


def test_uploads_are_limited_in_size(studio, tmp_path):
    url, _ = studio
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG" + b"\0" * (51 * 1024 * 1024))
    with big.open("rb") as fh:
        answer = httpx.post(f"{url}gradio_api/upload", files={"files": ("huge.png", fh, "image/png")}, timeout=60)
    assert answer.status_code == 413
    assert "maximum allowed size of 52428800 bytes" in answer.text


def test_a_webhook_token_reaches_the_provider_and_is_masked_everywhere_else(studio, servers, caplog, capfd):
    url, client = studio
    ml, nv = servers
    caplog.set_level(logging.DEBUG)
    photo = handle_file(str(EXAMPLES / "chelsea.png"))
    hook = "https://hooks.example.org/done?token=HOOK-SECRET-91c2&run=7"
    signed_in = "https://bob:PW-SECRET-3f0a@hooks.example.org:8443/x#frag-SECRET-77"
    shown = {}
    for backend, given, fake in (("novita", hook, nv), ("modelslab", signed_in, ml)):
        path, used = client.predict(image=photo, backend=backend, webhook=given, api_name="/generate")
        submitted = json.dumps([r.json for r in fake.requests if r.route == "submit"][-1])
        assert json.dumps(given)[1:-1] in submitted  # the provider gets the whole URL
        kept = recipe.read(path)
        assert kept["webhook"] == used["webhook"]
        assert recipe.settings(kept)[1].get("webhook") is None  # a masked URL is never restored
        shown[backend] = used["webhook"]
    assert shown == {"novita": "https://hooks.example.org/done?…",
                     "modelslab": "https://…@hooks.example.org:8443/x#…"}
    everything = everything_said(caplog, capfd, json.dumps(shown))
    assert "HOOK-SECRET" not in everything and "PW-SECRET" not in everything and "frag-SECRET" not in everything
    files = "".join(f.read_bytes().decode("latin-1") for f in outputs.run_dir().rglob("*") if f.is_file())
    assert "HOOK-SECRET" not in files and "PW-SECRET" not in files
