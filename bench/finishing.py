"""Finishing: ``studio.finish`` against plain ffmpeg command lines doing the same work.

Why: finishing is what a person waits for after the video is already made, and motion
interpolation is the slow part (ffmpeg's ``minterpolate`` runs on one core). Our call
adds a full decode of the source to check it, the filter graph around the interpolator
(even timestamps and size, the held last frame), progress reading and the recipe stamp;
the plain command line is the same filter and the same H.264 settings with none of that,
so ours/plain is what the studio's wrapping costs. The clip is 25 frames of 1024x576 at
8 fps (SVD-XT's output), the same moving gradients with noise as ``bench.encoding``,
interpolated to 24 fps (75 frames). Also timed: the loop modes at the clip's own rate, a
ping-pong interpolated to 24 fps, and the WebM (VP9) export of the 24 fps clip against
the same libvpx command line.

``--tune`` instead measures the interpolation settings on the scene of
``tests/test_finish.py`` at 1024x576 (a textured disc crossing a panning textured
background): rendered at 24 fps as the truth and at 8 fps as the input, each candidate
filter interpolates 8 -> 24 fps through plain ffmpeg and its in-between frames are
compared with the truth (PSNR). This is how ``studio.finish``'s settings were chosen.

``--pingpong`` measures the peak memory of the largest ping-pong the caps allow
(``FINISH_MAX_PIXELS`` 1920x1080, ``FINISH_MAX_FRAMES`` 600: a 300-frame 1080p source,
598 frames out), where ffmpeg's ``reverse`` holds the whole way back: the peak resident
size of the ffmpeg that finishes, read from the kernel (``ru_maxrss`` of the children of
a fresh process, which runs nothing else).

    python -m bench.finishing [--runs 3] [--quick] [--tune] [--pingpong]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from bench._common import load_note, median, table
from bench.encoding import make_frames
from studio import finish, video

FPS, TARGET = 8, 24
X264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-preset", "veryfast", "-movflags", "+faststart"]
VP9 = ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-b:v", "0", "-crf", "32", "-row-mt", "1", "-deadline", "good",
       "-cpu-used", "4"]


def plain(src: Path, dst: Path, *args: str) -> None:
    """What a script would run: one ffmpeg command line."""
    subprocess.run([video.ffmpeg(), "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


CANDIDATES = {
    "framerate (blend)": "framerate=fps=24",
    "minterpolate blend": "minterpolate=fps=24:mi_mode=blend",
    "mci: obmc, bilat, epzs, 16-px blocks (ours)": finish.METHODS["motion"].chain(24),
    "mci, aobmc + vsbmc, bilat": "minterpolate=fps=24:mi_mode=mci:mc_mode=aobmc:vsbmc=1",
    "mci, bidir": "minterpolate=fps=24:mi_mode=mci:me_mode=bidir",
    "mci, aobmc + vsbmc, bilat, umh search": "minterpolate=fps=24:mi_mode=mci:mc_mode=aobmc:vsbmc=1:me=umh",
    "mci, aobmc + vsbmc, bilat, 8-px blocks": "minterpolate=fps=24:mi_mode=mci:mc_mode=aobmc:vsbmc=1:mb_size=8",
}


def tune() -> None:
    """PSNR of each candidate's in-between frames against the truth, and its time."""
    from tests.test_finish import decode, psnr, render  # the scene the tests measure

    with tempfile.TemporaryDirectory(prefix="bench-tune-") as name:
        tmp = Path(name)
        truth = [render(i / 24, 1024, 576) for i in range(49)]
        video.write_mp4(truth, tmp / "truth.mp4", 24)
        video.write_mp4(truth[::3], tmp / "clip.mp4", 8)
        truth = decode(tmp / "truth.mp4")[0]
        rows = []
        for label, chain in CANDIDATES.items():
            seconds = timed(lambda c=chain: plain(tmp / "clip.mp4", tmp / "out.mp4", "-vf", c, *X264))
            frames = decode(tmp / "out.mp4")[0]  # minterpolate drops its last frames: compare what is there
            between = [psnr(frames[i], truth[i]) for i in range(min(len(frames), 48)) if i % 3]
            rows.append([label, float(np.mean(between)), float(min(between)), seconds])
    print("## Interpolation settings, 8 -> 24 fps, 1024x576, in-between frames against the truth\n")
    print(table(["filter", "mean PSNR dB", "worst PSNR dB", "s"], rows))
    print(f"\nmachine: {load_note()}")


def pingpong_peak() -> None:
    """The largest allowed ping-pong, in a child process so its children's peak is its own."""
    import json
    import sys

    load_before = load_note()
    code = ("import json, resource, sys, time; from pathlib import Path; from studio import finish; "
            "t = time.monotonic(); done = finish.finish(Path(sys.argv[1]), Path(sys.argv[2]), loop='pingpong'); "
            "print(json.dumps({'s': time.monotonic() - t, 'frames': done.info['output_frames'], "
            "'peak_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")
    with tempfile.TemporaryDirectory(prefix="bench-pingpong-") as name:
        src = Path(name) / "src.mp4"
        width, height = finish.MAX_PIXELS
        frames = finish.MAX_FRAMES // 2  # 2n - 2 <= 600
        plain_make = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30", "-frames:v", str(frames),
                      "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        subprocess.run([video.ffmpeg(), "-hide_banner", "-loglevel", "error", *plain_make, "-y", str(src)], check=True)
        out = subprocess.run([sys.executable, "-c", code, str(src), str(Path(name) / "job")], check=True,
                             capture_output=True, text=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    held = frames * width * height * 1.5 / 2**20  # yuv420p: what reverse must keep, in MiB
    print(table(["ping-pong (ours)", "output frames", "s", "ffmpeg peak RSS MiB", "frames held by reverse, MiB"], [
        [f"{frames} frames of {width}x{height}", got["frames"], got["s"], got["peak_kb"] / 1024, held]]))
    print(f"machine: {load_before} before, {load_note()} after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each job (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run of each")
    parser.add_argument("--tune", action="store_true", help="compare interpolation settings by PSNR instead")
    parser.add_argument("--pingpong", action="store_true", help="peak memory of the largest ping-pong allowed")
    args = parser.parse_args()
    if args.tune:
        return tune()
    if args.pingpong:
        return pingpong_peak()
    runs = 1 if args.quick else args.runs

    load_before = load_note()
    with tempfile.TemporaryDirectory(prefix="bench-finish-") as name:
        tmp = Path(name)
        clip = video.write_mp4(make_frames(), tmp / "clip.mp4", FPS)
        work = iter(range(10**6))  # a fresh folder for every call, as the studio gives one per job

        def ours(**kwargs) -> Callable[[], object]:
            return lambda: finish.finish(clip, tmp / f"job{next(work)}", **kwargs)

        motion = finish.METHODS["motion"].chain(TARGET)
        blend = finish.METHODS["blend"].chain(TARGET)
        smooth = tmp / "smooth.mp4"
        jobs: dict[str, Callable[[], object]] = {
            "ours_motion": ours(target_fps=TARGET, interpolation="motion"),
            "plain_motion": lambda: plain(clip, smooth, "-vf", motion, *X264),
            "ours_blend": ours(target_fps=TARGET, interpolation="blend"),
            "plain_blend": lambda: plain(clip, tmp / "blend.mp4", "-vf", blend, *X264),
            "ours_pingpong": ours(loop="pingpong"),
            "ours_crossfade": ours(loop="crossfade"),
            "ours_pingpong_motion": ours(target_fps=TARGET, loop="pingpong", interpolation="motion"),
            "ours_webm": lambda: finish.export_webm(smooth, tmp / "ours.webm"),
            "plain_webm": lambda: plain(smooth, tmp / "plain.webm", "-an", *VP9),
        }
        times: dict[str, list[float]] = {k: [] for k in jobs}
        for _ in range(runs):  # interleaved, so a burst of load on the shared machine hits both sides
            for key, job in jobs.items():  # the WebM jobs read the plain motion output made just before
                times[key].append(timed(job))
        sizes = {p.name: p.stat().st_size / 1e6 for p in (smooth, tmp / "ours.webm")}

    t = {k: median(v) for k, v in times.items()}
    print(f"## Finishing 25 frames of 1024x576 at {FPS} fps (median of {runs} run(s))\n")
    print(table(["job", "ours s", "plain ffmpeg s", "ours/plain"], [
        [f"interpolate to {TARGET} fps, motion (75 frames)", t["ours_motion"], t["plain_motion"],
         t["ours_motion"] / t["plain_motion"]],
        [f"interpolate to {TARGET} fps, blend (75 frames)", t["ours_blend"], t["plain_blend"],
         t["ours_blend"] / t["plain_blend"]],
        [f"WebM (VP9) of the {TARGET} fps clip", t["ours_webm"], t["plain_webm"], t["ours_webm"] / t["plain_webm"]],
    ]))
    print()
    print(table(["loop (ours)", "output frames", "s"], [
        ["pingpong at 8 fps", 48, t["ours_pingpong"]],
        ["crossfade at 8 fps", 25 - round(25 / 4), t["ours_crossfade"]],
        [f"pingpong + motion to {TARGET} fps", 48 * TARGET // FPS, t["ours_pingpong_motion"]],
    ]))
    print(f"\nsizes: {TARGET} fps H.264 {sizes['smooth.mp4']:.2f} MB, VP9 WebM {sizes['ours.webm']:.2f} MB")
    print(f"machine: {load_before} before, {load_note()} after")


if __name__ == "__main__":
    main()
