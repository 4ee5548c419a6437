"""Local jobs on a Ray cluster against the same jobs in process (the tiny model, CPU workers).

Why: RAY_ADDRESS sends each local job to a worker actor (``backends.raypool``). Two
questions: what does one job pay for the trip (photo out through the object store,
progress polled, MP4 bytes back), and how does throughput change with a second worker?

A local head node is started with ``ray start`` on free ports (``--num-cpus`` = the
machine's cores) and stopped afterwards. The tiny random SVD pipeline (``tests.tiny_svd``)
runs at a size that takes several seconds a job on a CPU. Each side is warmed once (model
load excluded). "In process" is the local backend without Ray; its torch uses every core,
while each Ray CPU worker gets one (Ray sets OMP_NUM_THREADS=1 for a 1-CPU actor).

    python -m bench.ray_cluster [--jobs 8] [--size 128x64] [--frames 4] [--steps 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench._common import free_port, load_note, table

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "chelsea.png"
RAY = str(Path(sys.executable).with_name("ray"))


def timed_jobs(params: dict, jobs: int) -> float:
    """Seconds for ``jobs`` jobs submitted at once through the service (the registry's local backend)."""
    from orchestration import service

    errors: list[BaseException] = []

    def one() -> None:
        try:
            service.generate(IMAGE, "local", params)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(jobs)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def fresh_local(env: dict[str, str | None]) -> None:
    """A new local backend reading ``env``, started as the app starts it."""
    import backends

    for name, value in env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    backends._INSTANCES.clear()
    backends.start_up()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--size", default="128x64")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    params = {"width": width, "height": height, "num_frames": args.frames, "num_inference_steps": args.steps,
              "seed": 1}

    from tests.tiny_svd import build_tiny_pipeline

    os.environ.update(HF_HUB_OFFLINE="1", RAY_DISABLE_USAGE_STATS="1", SVD_PREVIEW="1")
    os.environ["LOCAL_SVD_MODEL"] = str(build_tiny_pipeline(Path(tempfile.mkdtemp()) / "tiny"))
    port = free_port()
    temp_dir = f"/tmp/rsvdb{port}"
    cores = os.cpu_count() or 2
    subprocess.run([RAY, "start", "--head", f"--port={port}", f"--num-cpus={cores}", "--include-dashboard=false",
                    "--disable-usage-stats", f"--temp-dir={temp_dir}", f"--ray-client-server-port={free_port()}",
                    f"--dashboard-port={free_port()}"], check=True, capture_output=True)
    rows = []
    try:
        fresh_local({"RAY_ADDRESS": None})
        timed_jobs(params, 1)  # warm: the model loads
        here_one = min(timed_jobs(params, 1) for _ in range(2))
        here_all = timed_jobs(params, args.jobs)
        rows.append(("in process", 1, f"{here_one:.1f}", f"{here_all:.1f}", f"{args.jobs / here_all * 60:.1f}"))
        results = {}
        for workers in (1, 2):
            fresh_local({"RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_GPUS_PER_WORKER": "0",
                         "RAY_MIN_WORKERS": str(workers), "RAY_MAX_WORKERS": str(workers)})
            timed_jobs(params, workers)  # warm: each worker loads the model
            one = min(timed_jobs(params, 1) for _ in range(2))
            every = timed_jobs(params, args.jobs)
            results[workers] = (one, every)
            rows.append((f"Ray, {workers} CPU worker(s)", workers, f"{one:.1f}", f"{every:.1f}",
                         f"{args.jobs / every * 60:.1f}"))
    finally:
        import ray

        ray.shutdown()
        _kill(temp_dir, port)
    print(f"{args.jobs} jobs of {width}x{height}, {args.frames} frames, {args.steps} steps; {load_note()}")
    print(table(("where", "workers", "one job (s)", f"{args.jobs} jobs (s)", "jobs/min"), rows))
    print(f"throughput, 2 workers / 1 worker: {results[1][1] / results[2][1]:.2f}x")
    print(f"one job, Ray (1 worker) / in process: {results[1][0] / here_one:.2f}x")


def _kill(temp_dir: str, port: int) -> None:
    """Stop the head node started here (its processes name its temp folder or address), and only it."""
    import signal

    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        args = proc.info["cmdline"] or []
        if proc.pid != os.getpid() and (temp_dir in " ".join(args) or any(a.endswith(f":{port}") for a in args)):
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except OSError:
                    pass


if __name__ == "__main__":
    main()
