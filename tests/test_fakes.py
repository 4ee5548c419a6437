"""Quick checks that the fake provider servers speak the wire format in docs/hosted-apis.md.

Plain httpx against the real sockets, no app code: if these pass, a failure in an app
test is the app's fault, not the fake's.
"""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from tests.fakes import (
    FakeModelsLab,
    FakeNovita,
    Reply,
    looks_like_gif,
    looks_like_mp4,
    make_gif_bytes,
    make_mp4_bytes,
    modelslab_error,
    modelslab_error_cases,
    novita_error,
    novita_error_cases,
)

KEY = "test-key"
ML_BODY = {"key": KEY, "model_id": "svd", "init_image": "https://example.invalid/cat.png",
           "output_type": "mp4", "num_frames": 4, "fps": 6, "instant_response": False, "temp": False}
NV_BODY = {"model_name": "SVD-XT", "image_file": base64.b64encode(b"\x89PNG fake").decode(),
           "frames_num": 25, "frames_per_second": 6, "image_file_resize_mode": "CROP_TO_ASPECT_RATIO",
           "steps": 20, "seed": 42, "motion_bucket_id": 127, "cond_aug": 0.02}
BEARER = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=5) as c:
        yield c


def test_media_is_real_and_cached():
    mp4, gif = make_mp4_bytes(), make_gif_bytes()
    assert looks_like_mp4(mp4) and looks_like_gif(gif)
    assert make_mp4_bytes() is mp4  # cached


# ----- ModelsLab ---------------------------------------------------------------

def test_modelslab_instant_success(client):
    with FakeModelsLab() as ml:
        assert ml.base_url.endswith("/api/v1/enterprise")
        r = client.post(ml.base_url + "/video/img2video", json=ML_BODY)
        body = r.json()
        assert r.status_code == 200 and body["status"] == "success"
        assert isinstance(body["id"], int) and isinstance(body["generationTime"], float)
        assert body["meta"]["instant_response"] == "no" and body["meta"]["temp"] == "no"
        assert body["proxy_links"] and body["future_links"]
        video = client.get(body["output"][0])
        assert video.headers["content-type"] == "video/mp4" and looks_like_mp4(video.content)
        assert client.get(body["proxy_links"][0]).content == video.content
        sid = str(body["id"])
        assert ml.downloaded_at[sid] >= ml.ready_at[sid]
        req = ml.requests[0]
        assert (req.method, req.route, req.json["key"]) == ("POST", "submit", KEY)
        assert req.headers["content-type"] == "application/json"


def test_modelslab_instant_response_answers_processing_at_once(client):
    """§1.4: instant_response makes even a job that is done at once answer 'processing'
    (id, eta, future_links); the next fetch says success."""
    with FakeModelsLab() as ml:
        sub = client.post(ml.base_url + "/video/img2video", json={**ML_BODY, "instant_response": True}).json()
        assert sub["status"] == "processing" and sub["output"] == []
        assert isinstance(sub["id"], int) and sub["eta"] == 1 and sub["future_links"]
        assert sub["meta"]["instant_response"] == "yes"
        f = client.post(f"{ml.base_url}/video/fetch/{sub['id']}", json={"key": KEY}).json()
        assert f["status"] == "success" and f["output"] == sub["future_links"]
        assert looks_like_mp4(client.get(f["output"][0]).content)


def test_modelslab_processing_then_fetch(client):
    with FakeModelsLab(processing_polls=2, eta=3) as ml:
        sub = client.post(ml.base_url + "/video/img2video", json=ML_BODY).json()
        assert sub["status"] == "processing" and sub["output"] == [] and sub["eta"] == 3
        assert sub["fetch_result"].endswith(f"/api/v6/video/fetch/{sub['id']}")
        future = sub["future_links"][0]
        pending = client.get(future)
        assert pending.status_code == 404 and "<!DOCTYPE html>" in pending.text
        fetch_url = f"{ml.base_url}/video/fetch/{sub['id']}"
        f1 = client.post(fetch_url, json={"key": KEY}).json()
        assert f1["status"] == "processing" and f1["output"] == "" and "message" in f1
        f2 = client.post(fetch_url, json={"key": KEY}).json()
        assert f2 == {"status": "success", "id": sub["id"], "output": [future],
                      "proxy_links": [f2["proxy_links"][0]]}
        assert looks_like_mp4(client.get(future).content)
        assert len(ml.requests_for("fetch")) == 2
        assert client.post(f"{ml.base_url}/video/fetch/999", json={"key": KEY}).status_code == 404


def test_modelslab_base64_and_gif(client):
    with FakeModelsLab(base64_data_prefix=True) as ml:
        body = client.post(ml.base_url + "/video/img2video", json={**ML_BODY, "output_type": "base64"}).json()
        assert body["output"][0].endswith(".base64") and body["meta"]["base64"] == "yes"
        text = client.get(body["output"][0]).text
        assert text.startswith("data:video/mp4;base64,")
        assert base64.b64decode(text.split(",", 1)[1]) == make_mp4_bytes()
        gif = client.post(ml.base_url + "/video/img2video", json={**ML_BODY, "output_type": "gif"}).json()
        assert looks_like_gif(client.get(gif["output"][0]).content)
    with FakeModelsLab(inline_base64=True, base64_data_prefix=False) as ml:
        body = client.post(ml.base_url + "/video/img2video", json={**ML_BODY, "output_type": "base64"}).json()
        assert base64.b64decode(body["output"][0]) == make_mp4_bytes()


def test_modelslab_auth_legacy_and_failure(client):
    with FakeModelsLab(legacy_messege=True, processing_polls=1) as ml:
        r = client.post(ml.base_url + "/video/img2video", json={**ML_BODY, "key": "nope"})
        assert r.status_code == 401 and r.json() == {"status": "error", "messege": "Invalid API key"}
        ml.fail_reason = "CUDA out of memory"
        sub = client.post(ml.base_url + "/video/img2video", json=ML_BODY).json()
        assert "messege" in sub and "message" not in sub
        f = client.post(f"{ml.base_url}/video/fetch/{sub['id']}", json={"key": KEY}).json()
        assert f == {"status": "failed", "id": sub["id"], "messege": "CUDA out of memory"}


def test_modelslab_scripted_faults(client):
    with FakeModelsLab() as ml:
        ml.script("submit", modelslab_error(429, "Rate limit exceeded.", retry_after=2),
                  Reply(close=True))
        r = client.post(ml.base_url + "/video/img2video", json=ML_BODY)
        assert r.status_code == 429 and r.json()["retry_after"] == 2
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(ml.base_url + "/video/img2video", json=ML_BODY)
        assert client.post(ml.base_url + "/video/img2video", json=ML_BODY).json()["status"] == "success"
        ml.script("submit", Reply(delay=0.5, passthrough=True))
        with pytest.raises(httpx.ReadTimeout):
            client.post(ml.base_url + "/video/img2video", json=ML_BODY, timeout=0.1)
        assert ml.pending_scripts("submit") == 0


def test_modelslab_stuck_and_download_faults(client):
    with FakeModelsLab(processing_polls=1) as ml:
        early = client.post(ml.base_url + "/video/img2video", json=ML_BODY).json()["future_links"][0]
        assert client.get(early).status_code == 404  # not ready until a fetch says success
        ml.stuck = True
        sub = client.post(ml.base_url + "/video/img2video", json=ML_BODY).json()
        for _ in range(3):
            r = client.post(f"{ml.base_url}/video/fetch/{sub['id']}", json={"key": KEY}).json()
            assert r["status"] == "processing"
        ml.stuck = False
        url = client.post(f"{ml.base_url}/video/fetch/{sub['id']}", json={"key": KEY}).json()["output"][0]
        ml.truncate_downloads = True
        assert len(client.get(url).content) == len(make_mp4_bytes()) // 2
        ml.truncate_downloads, ml.expire_downloads = False, True
        r = client.get(url)
        assert r.status_code == 403 and "Request has expired" in r.text
        ml.expire_downloads, ml.download_not_video = False, True
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert str(sub["id"]) not in ml.downloaded_at


@pytest.mark.parametrize("case", modelslab_error_cases(), ids=lambda c: c.name)
def test_modelslab_error_table(client, case):
    with FakeModelsLab(processing_polls=1) as ml:
        sub = client.post(ml.base_url + "/video/img2video", json=ML_BODY).json()
        ml.script(case.route, case.reply)
        url = ml.base_url + ("/video/img2video" if case.route == "submit" else f"/video/fetch/{sub['id']}")
        r = client.post(url, json=ML_BODY)
        assert r.status_code == case.reply.status
        if case.reply.json is not None:
            assert r.json()["status"] in ("error", "failed")
        else:
            assert r.text.startswith("<!DOCTYPE html>")


# ----- Novita --------------------------------------------------------------------

def test_novita_auth_and_wrong_method(client):
    with FakeNovita() as nv:
        url = nv.base_url + "/v3/async/img2video"
        r = client.post(url, json=NV_BODY)
        assert r.status_code == 400 and r.json()["reason"] == "MISSING_API_KEY"
        assert set(r.json()) == {"code", "reason", "message", "metadata"}
        r = client.post(url, json=NV_BODY, headers={"Authorization": KEY})  # JS-SDK style, no Bearer
        assert r.status_code == 403 and r.json()["reason"] == "INVALID_API_KEY"
        r = client.get(url, headers=BEARER)
        assert r.status_code == 404 and r.json()["reason"] == "API_NOT_FOUND"
        r = client.post(url, json={**NV_BODY, "frames_num": 14}, headers=BEARER)
        assert r.status_code == 400 and r.json()["reason"] == "INVALID_REQUEST_BODY"
        r = client.get(nv.base_url + "/v3/async/task-result", params={"task_id": "nope"}, headers=BEARER)
        assert r.status_code == 404 and r.json()["reason"] == "TASK_NOT_FOUND"


def test_novita_happy_path(client):
    with FakeNovita(queued_polls=1, processing_polls=2) as nv:
        task_id = client.post(nv.base_url + "/v3/async/img2video", json=NV_BODY, headers=BEARER).json()["task_id"]
        seen = []
        for _ in range(4):
            res = client.get(nv.base_url + "/v3/async/task-result", params={"task_id": task_id},
                             headers=BEARER).json()
            seen.append((res["task"]["status"], res["task"]["progress_percent"]))
        assert [s for s, _ in seen] == ["TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING",
                                        "TASK_STATUS_PROCESSING", "TASK_STATUS_SUCCEED"]
        assert seen[1][1] < seen[2][1]
        assert res["task"]["task_type"] == "IMG_TO_VIDEO" and res["extra"]["seed"] == "42"
        video = res["videos"][0]
        assert video["video_url_ttl"] == "3600" and video["video_type"] == "mp4"
        assert "X-Amz-Expires=3600" in video["video_url"]
        r = client.get(video["video_url"])
        assert r.headers["content-type"] == "video/mp4" and r.content == make_mp4_bytes()
        assert client.get(video["video_url"].split("?")[0]).status_code == 403  # query stripped
        assert nv.downloaded_at[task_id] >= nv.ready_at[task_id]
        assert nv.requests_for("poll")[0].query == {"task_id": task_id}


def test_novita_gif_ttl_int_and_failure(client):
    with FakeNovita(queued_polls=0, processing_polls=0, ttl_as_int=True) as nv:
        body = {**NV_BODY, "extra": {"response_video_type": "gif"}}
        tid = client.post(nv.base_url + "/v3/async/img2video", json=body, headers=BEARER).json()["task_id"]
        res = client.get(nv.base_url + "/v3/async/task-result", params={"task_id": tid}, headers=BEARER).json()
        assert res["videos"][0]["video_url_ttl"] == 3600
        assert looks_like_gif(client.get(res["videos"][0]["video_url"]).content)
        nv.fail_reason = "NSFW content detected"
        tid = client.post(nv.base_url + "/v3/async/img2video", json=NV_BODY, headers=BEARER).json()["task_id"]
        r = client.get(nv.base_url + "/v3/async/task-result", params={"task_id": tid}, headers=BEARER)
        assert r.status_code == 200 and r.json()["task"]["status"] == "TASK_STATUS_FAILED"
        assert r.json()["task"]["reason"] == "NSFW content detected" and r.json()["videos"] == []


def test_novita_job_seconds_and_scripted_poll(client):
    with FakeNovita(job_seconds=0.3) as nv:
        tid = client.post(nv.base_url + "/v3/async/img2video", json=NV_BODY, headers=BEARER).json()["task_id"]
        nv.script("poll", novita_error(429, "RATE_LIMIT_EXCEEDED", headers={"Retry-After": "1"}))
        r = client.get(nv.base_url + "/v3/async/task-result", params={"task_id": tid}, headers=BEARER)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        res = client.get(nv.base_url + "/v3/async/task-result", params={"task_id": tid}, headers=BEARER).json()
        assert res["task"]["status"] in ("TASK_STATUS_QUEUED", "TASK_STATUS_PROCESSING")
        time.sleep(0.35)
        res = client.get(nv.base_url + "/v3/async/task-result", params={"task_id": tid}, headers=BEARER).json()
        assert res["task"]["status"] == "TASK_STATUS_SUCCEED"
        assert abs(nv.ready_at[tid] - nv.tasks[tid].created - 0.3) < 1e-6


@pytest.mark.parametrize("case", novita_error_cases(), ids=lambda c: c.name)
def test_novita_error_table(client, case):
    with FakeNovita() as nv:
        nv.script(case.route, case.reply)
        if case.route == "submit":
            r = client.post(nv.base_url + "/v3/async/img2video", json=NV_BODY, headers=BEARER)
        else:
            r = client.get(nv.base_url + "/v3/async/task-result", params={"task_id": "x"}, headers=BEARER)
        assert r.status_code == case.reply.status
        if case.reply.json is not None:
            assert r.json()["reason"] == case.reply.json["reason"]


def test_shutdown_is_quick_even_with_pending_delay():
    nv = FakeNovita().start()
    nv.script("poll", Reply(delay=30))
    with httpx.Client(timeout=0.2) as c, pytest.raises(httpx.ReadTimeout):
        c.get(nv.base_url + "/v3/async/task-result", params={"task_id": "x"}, headers=BEARER)
    t0 = time.monotonic()
    nv.stop()
    assert time.monotonic() - t0 < 1.0


def test_concurrent_jobs():
    """16 jobs at once with a fixed job time, as the benchmark will do."""
    import concurrent.futures as cf

    with FakeModelsLab(job_seconds=0.2) as ml, httpx.Client(timeout=5) as c:
        def run(_: int) -> bytes:
            sub = c.post(ml.base_url + "/video/img2video", json=ML_BODY).json()
            while True:
                f = c.post(f"{ml.base_url}/video/fetch/{sub['id']}", json={"key": KEY}).json()
                if f["status"] == "success":
                    return c.get(f["output"][0]).content
                time.sleep(0.05)

        with cf.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(run, range(16)))
        assert all(looks_like_mp4(r) for r in results)
        assert len(ml.downloaded_at) == 16
        assert all(0 <= ml.downloaded_at[k] - ml.ready_at[k] < 1 for k in ml.downloaded_at)
