"""Local jobs on a Ray cluster (RAY_ADDRESS): a real local cluster started with ``ray start``.

The cluster is started once for the module, from an environment without the studio's
variables (no LOCAL_SVD_MODEL, no HF_HUB_OFFLINE), so what the workers know reached them
through Ray's runtime_env. Workers are CPU workers (RAY_GPUS_PER_WORKER=0) on the tiny
model. The cluster is lost on purpose in the last test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import imageio_ffmpeg
import pytest

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt to run these tests")

import backends  # noqa: E402
from backends import devices, offer, places, raypool  # noqa: E402
from backends.base import Job  # noqa: E402
from backends.local import LocalBackend  # noqa: E402
from orchestration import service  # noqa: E402
from studio import images, outputs, recipe, video  # noqa: E402
from studio.errors import BackendError, Cancelled  # noqa: E402
from tests.conftest import EXAMPLES, ROOT  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
PARAMS = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 4, "seed": 7}
WAIT = 180  # seconds: CPU workers on a busy two-core machine
STUDIO_VARS = ("LOCAL_SVD_MODEL", "HF_HUB_OFFLINE", "RAY_ADDRESS", "BACKENDS", "LOCAL_DEVICES", "SVD_PREVIEW")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_pids(temp_dir: str, port: int) -> set[int]:
    """The cluster's processes: those naming its temp folder or its address, and their children."""
    import psutil

    found: set[int] = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info["cmdline"] or []
        ours = temp_dir in " ".join(args) or any(a.endswith(f":{port}") for a in args)
        if ours and proc.info["pid"] != os.getpid():
            found.add(proc.info["pid"])
            try:
                found |= {child.pid for child in proc.children(recursive=True)}
            except psutil.Error:
                pass
    return found


def kill_cluster(temp_dir: str, port: int) -> None:
    for pid in cluster_pids(temp_dir, port):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture(scope="module")
def cluster(tiny_model):
    """A head node with 2 CPUs on free ports (its dashboard serves the state API), started without
    the studio's variables; the
    local backend joined to it as the studio joins it (``backends.start_up``)."""
    port = free_port()
    temp_dir = f"/tmp/rsvd{port}"  # short: Ray's socket paths must stay under 108 characters
    env = {k: v for k, v in os.environ.items() if k not in STUDIO_VARS and not k.startswith("RAY_")}
    env["RAY_DISABLE_USAGE_STATS"] = "1"
    subprocess.run(
        [RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=true",
         "--disable-usage-stats", f"--temp-dir={temp_dir}", f"--ray-client-server-port={free_port()}",
         f"--dashboard-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}"],
        env=env, check=True, capture_output=True, timeout=120,
    )
    address = f"127.0.0.1:{port}"
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_ADDRESS", address)
    mp.setenv("RAY_GPUS_PER_WORKER", "0")
    mp.setenv("RAY_MIN_WORKERS", "1")
    mp.setenv("RAY_MAX_WORKERS", "2")
    mp.setenv("RAY_IDLE_S", "3")  # a worker above the minimum stops after 3 s idle (the default is 300)
    mp.delenv("BACKENDS", raising=False)
    mp.delenv("LOCAL_DEVICES", raising=False)
    mp.setattr(backends, "_INSTANCES", {})
    try:
        backends.start_up()
        yield {"address": address, "temp_dir": temp_dir, "port": port}
    finally:
        ray.shutdown()
        kill_cluster(temp_dir, port)
        mp.undo()


@pytest.fixture
def on_ray(cluster):
    """The module's local backend; ``backends._INSTANCES`` holds it for the module."""
    local = backends.get_backend("local")
    assert isinstance(local.place, raypool.OnRay)
    return local


def svd_workers() -> list:
    from ray.util.state import list_actors

    return [a for a in list_actors(filters=[("class_name", "=", "SVDWorker")], limit=100) if a.state == "ALIVE"]


def frame_count(path) -> int:
    reader = imageio_ffmpeg.read_frames(str(path))
    next(reader)
    try:
        return sum(1 for _ in reader)
    finally:
        reader.close()


def run(backend: LocalBackend, params: dict, **hooks):
    """What ``service.generate`` does with a backend that is not the registry's."""
    request = backend.resolve(service.build_request(params, backend))
    backend.preflight(request)
    image = images.load_image(EXAMPLES / "chelsea.png")
    return backend.generate(image, request, Job(workdir=outputs.job_dir("test"), **hooks))


def test_a_job_runs_on_a_worker_of_the_cluster_with_progress_and_previews(on_ray, photo):
    from ray.util.state import list_nodes

    progress, previews = [], []
    result = service.generate(photo, "local", PARAMS, on_progress=lambda f, t: progress.append(t),
                              on_preview=lambda p: previews.append(p.read_bytes()[:6]))
    assert video.probe(result.video) == (4, 128, 64) and frame_count(result.video) == 4
    workers = svd_workers()
    assert workers, "no SVDWorker actor in the cluster"
    ips = {n.node_id: n.node_ip for n in list_nodes()}
    assert result.used["node"] in {ips[w.node_id] for w in workers}
    assert all(w.pid != os.getpid() for w in workers)
    assert "Denoising step 4/4" in progress and progress[-1] == "Encoding the video"
    assert previews and previews[0] == b"GIF89a"  # a live preview came back from the worker


def test_the_recipe_holds_what_an_in_process_job_holds(on_ray, photo, monkeypatch):
    on_cluster = service.generate(photo, "local", PARAMS)
    here = LocalBackend(place=places.OnDevices(devices.DevicePool(None)))
    monkeypatch.setitem(backends._INSTANCES, "local", here)
    in_process = service.generate(photo, "local", PARAMS)
    a, b = recipe.read(on_cluster.video), recipe.read(in_process.video)
    assert a.pop("node") == on_cluster.used["node"] and "node" not in b
    a.pop("elapsed_seconds"), b.pop("elapsed_seconds")
    assert a == b
    assert frame_count(on_cluster.video) == frame_count(in_process.video) == 4


def test_two_jobs_run_at_once_and_a_third_is_told_its_place(on_ray):
    both_running = threading.Barrier(2, timeout=WAIT)
    third_waiting = threading.Event()
    lines: dict[int, list[str]] = {0: [], 1: [], 2: []}
    results: dict[int, object] = {}
    steps = {**PARAMS, "num_inference_steps": 6}

    def report(i: int):
        def on_progress(fraction, text):
            lines[i].append(text)
            if i == 2 and "in line" in text:
                third_waiting.set()
            if i < 2 and text == "Denoising step 1/6":
                both_running.wait()  # both hold a worker now: the third must wait
                assert third_waiting.wait(WAIT), "the third job was never told it waits"
        return on_progress

    def job(i: int) -> None:
        try:
            results[i] = service.generate(EXAMPLES / "rocket.jpg", "local", steps, on_progress=report(i))
        except BaseException as exc:  # checked below
            results[i] = exc

    first = [threading.Thread(target=job, args=(i,)) for i in range(2)]
    for t in first:
        t.start()
    from tests.conftest import wait_for

    wait_for(lambda: all("Denoising step 1/6" in lines[i] for i in range(2)), WAIT, "two jobs running")
    third = threading.Thread(target=job, args=(2,))
    third.start()
    for t in (*first, third):
        t.join(WAIT * 2)
    for i in range(3):
        assert video.probe(results[i].video) == (4, 128, 64), results[i]
    assert "Waiting for a free worker in the cluster: you are 1st in line, 2 running" in lines[2]
    assert len(svd_workers()) == 2


def test_the_pool_grows_for_jobs_at_once_and_shrinks_back_when_idle(on_ray, photo):
    from tests.conftest import wait_for

    made: list = []
    jobs = [threading.Thread(target=lambda: made.append(service.generate(photo, "local", PARAMS))) for _ in range(2)]
    for t in jobs:
        t.start()
    wait_for(lambda: len(svd_workers()) == 2, WAIT, "a second worker for the second job")
    for t in jobs:
        t.join(WAIT)
    assert len(made) == 2 and all(frame_count(r.video) == 4 for r in made)
    # RAY_IDLE_S later, the worker above RAY_MIN_WORKERS stops and its share of the cluster is free again.
    wait_for(lambda: len(svd_workers()) == 1, 120, "the idle worker above the minimum to stop")
    assert frame_count(service.generate(photo, "local", PARAMS).video) == 4  # the one left still works


def test_cancel_stops_the_worker_between_steps(on_ray, photo):
    cancel = threading.Event()
    steps = []

    def on_progress(fraction, text):
        if text.startswith("Denoising"):
            steps.append(text)
            cancel.set()

    with pytest.raises(Cancelled) as info:
        service.generate(photo, "local", {**PARAMS, "num_inference_steps": 40}, on_progress=on_progress, cancel=cancel)
    assert str(info.value) == "Cancelled: generation stopped between denoising steps."
    assert 1 <= len(steps) < 40
    assert video.probe(service.generate(photo, "local", PARAMS).video) == (4, 128, 64)  # the worker goes on


def test_a_model_that_cannot_load_on_the_worker_gives_the_workers_sentence(on_ray, photo):
    with pytest.raises(BackendError) as info:
        service.generate(photo, "local", {**PARAMS, "model": "svd"})
    message = str(info.value)
    assert message.startswith("Could not load the model 'stabilityai/stable-video-diffusion-img2vid'")
    assert "LOCAL_SVD_MODEL" in message and "Traceback" not in message and "ray" not in message.lower()


def test_a_worker_killed_mid_job_is_replaced_and_the_job_runs_again(on_ray, photo):
    progress = []
    killed: list[int] = []

    def on_progress(fraction, text):
        progress.append(text)
        if text.startswith("Denoising") and not killed:
            for worker in svd_workers():  # whichever runs this job is among them
                killed.append(worker.pid)
                os.kill(worker.pid, signal.SIGKILL)

    result = service.generate(photo, "local", {**PARAMS, "num_inference_steps": 8}, on_progress=on_progress)
    assert killed
    assert video.probe(result.video) == (4, 128, 64)
    said = [t for t in progress if "stopped mid-job" in t]
    assert len(said) == 1 and said[0].endswith("running the job once more on another worker")
    assert not {w.pid for w in svd_workers()} & set(killed)
    assert video.probe(service.generate(photo, "local", PARAMS).video) == (4, 128, 64)  # the next job works


def test_a_job_no_worker_can_take_ends_within_the_placement_timeout(cluster, monkeypatch):
    monkeypatch.setenv("RAY_GPUS_PER_WORKER", "1")  # the cluster has no GPU
    monkeypatch.setenv("RAY_MIN_WORKERS", "0")
    monkeypatch.setenv("RAY_PLACEMENT_TIMEOUT_S", "3")
    backend = LocalBackend()
    backend.warm_up()
    with pytest.raises(BackendError) as info:
        run(backend, PARAMS)
    assert str(info.value) == (
        "No worker could start in the Ray cluster within 3 s: each needs 1 GPU(s) (RAY_GPUS_PER_WORKER) and "
        "the cluster has 0 GPU(s) in all. Add a machine with `ray start --address=…`, or pick a hosted backend."
    )


def test_an_unreachable_cluster_at_start_up_leaves_the_hosted_backends(monkeypatch):
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    monkeypatch.delenv("BACKENDS", raising=False)
    monkeypatch.setattr(backends, "_INSTANCES", {})
    monkeypatch.setattr(offer, "_withdrawn", {})
    sentence = (f"The Ray cluster at {address} (RAY_ADDRESS) cannot be reached: "
                "nothing answers there (Connection refused).")
    backends.start_up()
    assert backends.names() == ["modelslab", "novita"]
    with pytest.raises(BackendError) as info:
        backends.get_backend("local")
    assert str(info.value) == sentence

    monkeypatch.setattr(offer, "_withdrawn", {})
    monkeypatch.setattr(backends, "_INSTANCES", {})
    monkeypatch.setenv("BACKENDS", "local")
    with pytest.raises(BackendError) as info:
        backends.start_up()
    assert str(info.value) == sentence


def test_the_app_stops_with_the_sentence_when_only_local_is_offered_and_its_cluster_is_away():
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "RAY_ADDRESS": address, "BACKENDS": "local"}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"The Ray cluster at {address} (RAY_ADDRESS) cannot be reached: nothing answers there (Connection refused)."
    )


def test_the_cluster_lost_mid_job_ends_local_jobs_with_a_sentence(on_ray, cluster, photo):
    """Last: the module's cluster goes away for good."""
    progress = []

    def on_progress(fraction, text):
        progress.append(text)
        if text.startswith("Denoising") and len(progress) < 100:
            kill_cluster(cluster["temp_dir"], cluster["port"])

    sentence = (f"The Ray cluster at {cluster['address']} can no longer be reached, so this local job stopped. "
                "The studio tries to reconnect every 30 s; hosted backends still work.")
    with pytest.raises(BackendError) as info:
        service.generate(photo, "local", {**PARAMS, "num_inference_steps": 20}, on_progress=on_progress)
    assert str(info.value) == sentence
    with pytest.raises(BackendError) as info:  # the next local job is told at once
        service.generate(photo, "local", PARAMS)
    assert str(info.value) == sentence
    assert backends.names() == ["local", "modelslab", "novita"]  # hosted jobs go on
