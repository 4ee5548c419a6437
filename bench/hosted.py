"""Hosted: 16 simultaneous jobs against a fake Novita server with a fixed job time.

Why: a hosted job spends almost all its time waiting on the provider, so what the
studio controls is how soon after the provider finishes a person gets the video (poll
interval, download, GIF) and whether 16 jobs at once serialize anywhere (a lock, a
shared client, a small thread pool). With each fake job taking ``--job-seconds``, the
ideal wall time for all of them is about one job time.

Per job: ``return - ready`` (our call returned minus when the server marked the job
finished), split into ``download - ready`` (until the server finished sending the video:
polling and transfer) and ``return - download`` (our checks of the file and the GIF).
Clocks are ``time.monotonic()`` on both sides (same process). By default the fake serves
its tiny 64x64 clip; ``--real-video`` serves 25 frames of 1024x576, as SVD-XT returns, so
the post-download work (decode check, GIF) costs what it would in production.

Needs ``backends/novita.py`` (registered as "novita", reading ``NOVITA_BASE_URL``) and
``tests/fakes``; until they exist it prints "not available yet: <reason>" and exits 0.

    python -m bench.hosted [--jobs 16] [--job-seconds 2.0] [--real-video]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench._common import load_note, median, table

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "astronaut.png"
BACKEND = "novita"
PARAMS: dict[str, Any] = {}  # the backend's defaults; adapt here when the backend lands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--job-seconds", type=float, default=2.0)
    parser.add_argument("--real-video", action="store_true", help="serve a 1024x576, 25-frame MP4")
    parser.add_argument("--quick", action="store_true", help="same as the defaults (already quick)")
    args = parser.parse_args()

    try:
        import backends
        from orchestration import service
        from tests.fakes.media import make_mp4_bytes
        from tests.fakes.novita import FakeNovita

        if BACKEND not in backends.names():
            raise LookupError(f"backend '{BACKEND}' is not registered (registered: {', '.join(backends.names())})")
    except (ImportError, LookupError) as exc:
        print(f"not available yet: {exc}")
        return

    load_before = load_note()
    clip = make_mp4_bytes(frames=25, width=1024, height=576) if args.real_video else None
    with FakeNovita(job_seconds=args.job_seconds, video_bytes=clip) as server:
        os.environ["NOVITA_BASE_URL"] = server.base_url

        def one(_: int) -> tuple[str | None, float, str | None]:
            try:
                result = service.generate(IMAGE, BACKEND, dict(PARAMS), api_key=server.api_key)
                return result.job_id, time.monotonic(), None
            except Exception as exc:  # a failed job is a result of the benchmark, not a crash
                return None, time.monotonic(), f"{type(exc).__name__}: {exc}"[:200]

        start, start_mono = time.perf_counter(), time.monotonic()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            outcomes = list(pool.map(one, range(args.jobs)))
        wall = time.perf_counter() - start
        ready, downloaded = dict(server.ready_at), dict(server.downloaded_at)
        submits = [r.time - start_mono for r in server.requests_for("submit")]

    done = [(job, returned) for job, returned, err in outcomes if err is None and job in ready]
    errors = [err for _, _, err in outcomes if err is not None]
    ret = [returned - ready[job] for job, returned in done]
    dl = [downloaded[job] - ready[job] for job, _ in done if job in downloaded]
    post = [returned - downloaded[job] for job, returned in done if job in downloaded]
    rows = [
        ["all jobs, wall", wall, args.job_seconds, wall / args.job_seconds, len(outcomes)],
        ["last submit received, s after start", max(submits, default=float("nan")), "", "", len(submits)],
        ["return - ready (median)", median(ret), "", "", len(ret)],
        ["return - ready (max)", max(ret, default=float("nan")), "", "", len(ret)],
        ["download - ready (median)", median(dl), "", "", len(dl)],
        ["download - ready (max)", max(dl, default=float("nan")), "", "", len(dl)],
        ["return - download (median)", median(post), "", "", len(post)],
        ["return - download (max)", max(post, default=float("nan")), "", "", len(post)],
    ]
    video = "1024x576, 25 frames" if args.real_video else "64x64, 4 frames"
    print(f"## Hosted: {args.jobs} concurrent jobs, fake Novita, {args.job_seconds} s per job, "
          f"served video {video} ({len(clip or server.video_bytes) / 1e3:.0f} kB)\n")
    print(table(["measure", "s", "ideal s", "x ideal", "jobs"], rows))
    print(f"\nsucceeded {len(done)}/{len(outcomes)}; machine: {load_before} before, {load_note()} after")
    for err in sorted(set(errors))[:5]:
        print(f"- error: {err}")


if __name__ == "__main__":
    main()
