"""Finishing a clip: in-between frames up to a smooth rate, a seamless loop, a WebM for the web.

SVD makes 14 or 25 frames at 6-8 fps: a 2-4 s clip that stutters. ``finish`` runs one
ffmpeg (the one imageio-ffmpeg ships) over the whole job, so frames never pass through
Python:

    decode -> even timestamps -> even size -> loop -> seam frame -> interpolate -> H.264

* **Interpolation** keeps the clip's length: n frames at f fps become round(n * F / f)
  frames at F fps, and every original frame comes out at its own timestamp, unchanged but
  for the re-encode. ``METHODS`` is a registry: each entry is an ffmpeg filter chain.
* **Loops**: ``pingpong`` plays forward then back without showing the turning frames twice
  (2n - 2 frames); ``crossfade`` fades the last k = n/4 frames into the first k (n - k
  frames, so about the same length) and the last frame leads into the first.
* **The seam is interpolated too**: before interpolating, a loop gets its own first frame
  appended (a plain clip gets its last one again, the way it is held on screen); the
  interpolator then fills the step from the end back to the start, and the appended frame
  is cut off again, so the loop is cyclic instead of jerking once per turn.

Progress comes from ffmpeg's ``-progress`` output; a cancel kills ffmpeg at once. Bad
files are refused with one sentence that names the file, never its folder.

Bounded, for a public page: a source larger than ``FINISH_MAX_PIXELS`` a frame (default
1920x1080) and a source or a result longer than ``FINISH_MAX_FRAMES`` (default 600) are
refused before ffmpeg starts, naming the setting. A ping-pong's ``reverse`` holds the
whole way back in memory: at most half the output's frames, so at most 300 frames of at
most 1920x1080 (yuv420p, about 0.9 GB) with the defaults; ``bench.finishing --pingpong``
measures it. How many finish at once is ``orchestration.service``'s line
(``FINISH_CONCURRENCY``).
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Callable

from studio import recipe
from studio.errors import BadSetting, BadVideo, Cancelled, GenerationFailed, InvalidParameter, NotARecipe, TimedOut
from studio.video import ffmpeg

ProgressFn = Callable[[float | None, str], None]

LOOPS = ("none", "pingpong", "crossfade")
MIN_FPS, MAX_FPS = 12, 60
OFFERED_FPS = (24, 30, 12, 48, 60)  # what the page offers, the usual choices first
MAX_FRAMES = 600  # FINISH_MAX_FRAMES's default: 20 s at 30 fps, far beyond SVD's 25
MAX_PIXELS = (1920, 1080)  # FINISH_MAX_PIXELS's default
MIN_CROSSFADE_FRAMES = 4  # k = n / 4 must leave at least one frame that is not faded
BACKEND = "finishing"  # how InvalidParameter names us: "target_fps must be 12-60 for finishing, got 99"
STALL_SECONDS = 300.0  # ffmpeg silent this long is stuck, not slow: one frame never takes minutes
CHECK_SECONDS = 120.0  # reading a file (at most MAX_FRAMES frames) takes seconds, not minutes
_FLUSH = 3  # clones after the last frame: minterpolate drops its final frames without look-ahead
_POLL = 0.1  # how often a running ffmpeg is checked for a cancel

_REFUSALS = {
    "missing": "{name} could not be opened.",
    "empty": "{name} is empty, so there is nothing to finish.",
    "not-video": "{name} is not a video, so it cannot be finished.",
    "damaged": "{name} is damaged or incomplete, so it cannot be finished.",
}
_VIDEO_MAGIC = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")  # MP4/MOV boxes at byte 4


@dataclass(frozen=True)
class Method:
    """One way to make in-between frames. ``chain(fps)`` is the ffmpeg filter chain that
    turns evenly timed frames into ``fps`` frames a second, passing every original frame
    through where its timestamp falls on the new grid. Adding a method is one entry in
    ``METHODS``; ``label`` and ``help`` are for the page."""

    name: str
    label: str
    help: str
    chain: Callable[[Fraction], str]


def _motion(fps: Fraction) -> str:
    # Motion-compensated interpolation. Measured with ``python -m bench.finishing --tune`` on
    # the scene of tests/test_finish.py (1024x576, 8 -> 24 fps, in-between frames against
    # the truth): bilateral motion estimation with overlapped blocks, ffmpeg's defaults,
    # scored best (35.6 dB) and no slower than the rest. Bidirectional estimation lost
    # 2.6 dB and took 30 % longer; adaptive overlapped blocks with variable-size blocks
    # (aobmc, vsbmc) lost 0.16 dB and showed slightly more error at block borders; the umh
    # search and 8-px blocks lost 1-3 dB. They are spelled out so a change of default in
    # ffmpeg cannot change our output. Scene-change detection (on by default) stays:
    # across a cut it repeats frames instead of morphing two shots into each other.
    return f"minterpolate=fps={fps}:mi_mode=mci:mc_mode=obmc:me_mode=bilat:me=epzs:mb_size=16:vsbmc=0"


def _blend(fps: Fraction) -> str:
    # The framerate filter cross-fades neighbours by their distance in time; it is
    # slice-threaded and 5-10 times faster than motion, with ghosting on fast movement.
    return f"framerate=fps={fps}"


METHODS: dict[str, Method] = {
    "motion": Method("motion", "motion", "follows movement: smooth, slower", _motion),
    "blend": Method("blend", "blend", "cross-fades neighbouring frames: fast, ghosts on fast movement", _blend),
}


@dataclass(frozen=True)
class Finished:
    """The finished file and what was done: ``info`` is also stored in its recipe as ``finish``."""

    video: Path
    info: dict


# ---------------------------------------------------------------- the caps


def max_frames() -> int:
    """``FINISH_MAX_FRAMES``: the most frames a source may have and a result may get."""
    raw = os.environ.get("FINISH_MAX_FRAMES", "").strip()
    if not raw:
        return MAX_FRAMES
    if not raw.isdigit() or int(raw) < 2:
        raise BadSetting(f"FINISH_MAX_FRAMES must be a whole number, 2 or more, got {raw!r}.")
    return int(raw)


def max_pixels() -> tuple[int, str]:
    """``FINISH_MAX_PIXELS`` as (pixels a frame, how to say it): ``1920x1080`` or a number."""
    raw = os.environ.get("FINISH_MAX_PIXELS", "").strip().lower() or "x".join(map(str, MAX_PIXELS))
    found = re.fullmatch(r"(\d+)x(\d+)", raw)
    if found and int(found[1]) > 0 and int(found[2]) > 0:
        return int(found[1]) * int(found[2]), raw
    if raw.isdigit() and int(raw) > 0:
        return int(raw), raw
    raise BadSetting(f"FINISH_MAX_PIXELS must be a size such as 1920x1080, or a number of pixels, got {raw!r}.")


def _check_size(name: str, width: int, height: int) -> None:
    pixels, said = max_pixels()
    if width * height > pixels:
        raise BadVideo(f"{name} is {width}x{height}; finishing takes at most {said} "
                       f"({pixels:,} pixels a frame, FINISH_MAX_PIXELS).")


def _check_output(name: str, count: int) -> None:
    limit = max_frames()
    if count > limit:
        raise BadVideo(f"Finishing {name} this way would make {count} frames; finishing makes at most {limit} "
                       "(FINISH_MAX_FRAMES): ask for a lower frame rate or another loop.")


# ---------------------------------------------------------------- running ffmpeg


def _drain(stream: IO[str], lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _run(args: list[str], *, on_frame: Callable[[int], None] = lambda n: None,
         cancel: threading.Event | None = None, stall: float = STALL_SECONDS) -> tuple[int, str, int]:
    """Run ffmpeg with ``-progress pipe:1``; (exit code, its log, the last ``frame=``).

    Its log goes to a temp file and its progress through a reader thread, so neither pipe
    can fill up and block it; this thread only waits on a queue, 0.1 s at a time, and so
    notices a cancel at once. ffmpeg is killed and reaped whatever happens here.
    """
    frames, lines = 0, queue.Queue()
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        proc = subprocess.Popen([ffmpeg(), "-hide_banner", "-nostdin", "-nostats", "-progress", "pipe:1",
                                 "-stats_period", "0.2", *args], stdout=subprocess.PIPE, stderr=log,
                                stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace")
        reader = threading.Thread(target=_drain, args=(proc.stdout, lines), daemon=True)
        reader.start()
        try:
            heard, ended = time.monotonic(), False
            while not ended or proc.poll() is None:  # its output ends a moment before it exits
                if cancel is not None and cancel.is_set():
                    raise Cancelled("Cancelled: finishing stopped.")
                if time.monotonic() - heard > stall:
                    raise TimedOut(f"ffmpeg did not answer for {stall:.0f} s, so finishing was stopped.")
                if ended:
                    try:
                        proc.wait(timeout=_POLL)
                    except subprocess.TimeoutExpired:
                        pass
                    continue
                try:
                    line = lines.get(timeout=_POLL)
                except queue.Empty:
                    continue
                heard = time.monotonic()
                if line is None:
                    ended = True
                elif line.startswith("frame=") and line[6:].strip().isdigit():
                    frames = int(line[6:])
                elif line.startswith("progress="):
                    on_frame(frames)
        finally:
            if proc.poll() is None:
                proc.kill()  # a cancel, a stall, or an exception in on_progress: never leave it running
            proc.wait()
            reader.join(timeout=5)
            proc.stdout.close()
        log.seek(0)
        return proc.returncode, log.read(), frames


# ---------------------------------------------------------------- checking the source


def _refuse(name: str, why: str) -> BadVideo:
    return BadVideo(_REFUSALS[why].format(name=name))


def _frame_rate(text: str) -> Fraction:
    """ffmpeg prints 24000/1001 as "23.98" and 1000 as "1k"; put the NTSC rates back exactly."""
    value = Fraction(text[:-1]) * 1000 if text.endswith("k") else Fraction(text)
    for base in (24, 30, 48, 60, 120):
        ntsc = Fraction(base * 1000, 1001)
        if abs(value - ntsc) < Fraction(1, 100):
            return ntsc
    return value.limit_denominator(1001)


def _stream(log: str) -> tuple[Fraction, int, int] | None:
    """(fps, width, height) of the first input video stream in ffmpeg's log, as displayed."""
    head = log.split("Stream mapping:")[0]
    found = re.search(r"Stream #0:\d+\S*: Video: .*?, (\d+)x(\d+)[ ,].*?([\d.]+k?) (?:fps|tbr)", head)
    if not found:
        return None
    width, height, rate = int(found[1]), int(found[2]), found[3]
    turned = re.search(r"rotation of (-?[\d.]+) degrees", head[found.end():])
    if turned and round(abs(float(turned[1]))) % 180 == 90:
        width, height = height, width  # ffmpeg turns the frames upright when it decodes them
    return _frame_rate(rate), width, height


def _inspect(path: Path, cancel: threading.Event | None = None) -> tuple[int, Fraction, int, int]:
    """Decode the whole first video stream (at most FINISH_MAX_FRAMES + 1 frames): a cut-off or
    corrupt file shows up as decoding errors, which the file's header alone would hide."""
    name = path.name
    limit = max_frames()
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        raise _refuse(name, "missing") from None
    if not head:
        raise _refuse(name, "empty")
    # "level" prefixes each log line with its severity, so errors can be told from chatter.
    # "passthrough" counts the frames decoded, not those a constant rate would duplicate or drop.
    code, log, frames = _run(["-loglevel", "level+info", "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough",
                              "-frames:v", str(limit + 1), "-f", "null", "-"], cancel=cancel, stall=CHECK_SECONDS)
    stream = _stream(log)
    looks_like_video = head[:4] == b"\x1a\x45\xdf\xa3" or head[4:8] in _VIDEO_MAGIC
    if stream is None:  # ffmpeg could not open it as a video: a cut-off MP4 that lost its index lands here too
        raise _refuse(name, "damaged" if looks_like_video else "not-video")
    # Errors from the file or its decoder mean damage; the null muxer's complaints about
    # odd timestamps do not (finishing re-times every frame anyway).
    errors = [line for line in re.findall(r"^.*\[(?:error|fatal|panic)\].*$", log, re.MULTILINE)
              if not line.startswith("[null @")]
    if code != 0 or errors:
        raise _refuse(name, "damaged")
    if frames > limit:  # decoding stopped early; counting packets gives the real number quickly
        _, _, frames = _run(["-loglevel", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"],
                            cancel=cancel, stall=CHECK_SECONDS)
        raise BadVideo(f"{name} has {frames} frames; finishing takes at most {limit} (FINISH_MAX_FRAMES).")
    if frames < 2:
        raise BadVideo(f"{name} has {frames} frame{'' if frames == 1 else 's'}; finishing needs at least 2.")
    fps, width, height = stream
    if fps <= 0:
        raise _refuse(name, "damaged")
    return frames, fps, width, height


def check(source: str | Path) -> tuple[int, float, int, int]:
    """(frames, fps, width, height) of a video ffmpeg can decode completely; anything else
    (not a video, empty, cut off, too long or too short) is refused with one sentence."""
    frames, fps, width, height = _inspect(Path(source))
    return frames, float(fps), width, height


# ---------------------------------------------------------------- validating the request


def _validate(target_fps: float | None, loop: str, interpolation: str) -> Fraction | None:
    if loop not in LOOPS:
        raise InvalidParameter("loop", loop, f"one of {', '.join(LOOPS)}", BACKEND)
    if interpolation not in METHODS:
        raise InvalidParameter("interpolation", interpolation, f"one of {', '.join(METHODS)}", BACKEND)
    if target_fps is None:
        return None
    number = isinstance(target_fps, (int, float)) and not isinstance(target_fps, bool)
    if not number or not MIN_FPS <= target_fps <= MAX_FPS:  # NaN fails the comparison too
        raise InvalidParameter("target_fps", target_fps, f"{MIN_FPS}-{MAX_FPS}", BACKEND)
    return Fraction(target_fps).limit_denominator(1001)


# ---------------------------------------------------------------- the filter graph


def _loop_graph(loop: str, n: int, fps: Fraction) -> tuple[str, int]:
    """Filters from [src] to [looped] (n evenly timed frames in); and how many frames come out."""
    if loop == "pingpong" and n > 2:
        # The way back leaves out both turning frames: 0..n-1, then n-2..1.
        return (f"[src]split[fw][bw];[bw]reverse,trim=start_frame=1:end_frame={n - 1}[back];"
                "[fw][back]concat=n=2:v=1:a=0[looped]"), 2 * n - 2
    if loop == "crossfade":
        k = max(1, round(n / 4))
        # Frames k..n-k-1 play as they are; then the tail n-k..n-1 fades into the head 0..k-1,
        # its weight falling (k - j) / (k + 1) for j = 0..k-1, so no output frame is an exact
        # copy of either end and the last one, mostly frame k-1, leads into frame k. j comes
        # from the timestamp: blend's frame counter N starts at 0 or 1 depending on the version.
        j = f"round(T*{fps})"
        fade = f"A*({k}-{j})/{k + 1}+B*({j}+1)/{k + 1}"
        return (f"[src]split=3[a][b][c];[a]trim=start_frame={k}:end_frame={n - k},setpts=PTS-STARTPTS[mid];"
                f"[b]trim=start_frame={n - k},setpts=PTS-STARTPTS[tail];"
                f"[c]trim=end_frame={k},setpts=PTS-STARTPTS[head];"
                f"[tail][head]blend=all_expr='{fade}'[faded];[mid][faded]concat=n=2:v=1:a=0[looped]"), n - k
    return "[src]null[looped]", n  # "none", and a two-frame ping-pong, which is the clip itself


def _graph(n: int, fps: Fraction, loop: str, target: Fraction | None, method: Method) -> tuple[str, int, Fraction]:
    """The whole filter graph, [0:v:0] to [out]; and the output's frame count and rate."""
    even = f"settb={1 / fps},setpts=N"  # frame i at i / fps exactly, whatever the file's timestamps said
    parts = [f"[0:v:0]{even},crop=trunc(iw/2)*2:trunc(ih/2)*2:0:0,format=yuv420p[src]"]
    loop_filters, m = _loop_graph(loop, n, fps)
    parts.append(loop_filters)
    if target is None or target == fps:
        parts.append(f"[looped]{even}[out]")
        return ";".join(parts), m, fps
    count = round(m * target / fps)
    if loop == "none":  # the last frame again, as it stays on screen for 1/fps, plus look-ahead
        parts.append(f"[looped]{even},tpad=stop={1 + _FLUSH}:stop_mode=clone[seamed]")
    else:  # the first frame after the last, so the step back to the start is interpolated too
        parts.append(f"[looped]split[all][first];[first]trim=end_frame=1[again];"
                     f"[all][again]concat=n=2:v=1:a=0,{even},tpad=stop={_FLUSH}:stop_mode=clone[seamed]")
    parts.append(f"[seamed]{method.chain(target)},trim=end_frame={count},settb={1 / target},setpts=N[out]")
    return ";".join(parts), count, target


# ---------------------------------------------------------------- finishing


def _stage(loop: str, target: Fraction | None, method: str) -> str:
    if target is not None:
        return f"Interpolating to {float(target):g} fps ({method})"
    return f"Making the {loop} loop" if loop != "none" else "Re-encoding"


def _number(value: Fraction) -> float:
    return round(float(value), 3)


def finish(source: str | Path, workdir: Path, *, target_fps: float | None = None, loop: str = "none",
           interpolation: str = "motion", on_progress: ProgressFn = lambda f, t: None,
           cancel: threading.Event | None = None) -> Finished:
    """Write ``workdir / "finished.mp4"``: ``source`` interpolated to ``target_fps`` (None
    keeps its rate) and looped, H.264 like every studio video, with the source's recipe
    (if it has one) plus ``finish``: what was done. The source is only read.

    Runs in the caller's thread; ``cancel`` stops ffmpeg within about 0.1 s and raises
    ``Cancelled``, leaving no finished file behind.
    """
    source, workdir = Path(source), Path(workdir)
    target = _validate(target_fps, loop, interpolation)
    name = source.name
    on_progress(None, f"Checking {name}")
    n, fps, width, height = _inspect(source, cancel)
    _check_size(name, width, height)
    if loop == "crossfade" and n < MIN_CROSSFADE_FRAMES:
        raise BadVideo(f"{name} has {n} frames; a crossfade loop needs at least {MIN_CROSSFADE_FRAMES}.")
    if target == fps:
        target = None  # nothing to interpolate: the clip keeps its rate
    graph, count, out_fps = _graph(n, fps, loop, target, METHODS[interpolation])
    _check_output(name, count)  # before ffmpeg: also what bounds a ping-pong's reverse

    workdir.mkdir(parents=True, exist_ok=True)
    out, partial = workdir / "finished.mp4", workdir / "finished.partial.mp4"
    if out.resolve() == source.resolve():
        raise ValueError("finish() needs a workdir other than the source's folder when the source is finished.mp4")
    stage = _stage(loop, target, interpolation)

    def on_frame(done: int) -> None:
        fraction = min(done / count, 1.0)
        on_progress(fraction, f"{stage}: {fraction:.0%}")

    try:
        on_progress(0.0, f"{stage}: 0%")
        code, log, _ = _run(["-loglevel", "error", "-i", str(source), "-filter_complex", graph, "-map", "[out]",
                             "-an", "-sn", "-map_metadata", "-1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                             "-crf", "18", "-preset", "veryfast", "-r", str(out_fps), "-movflags", "+faststart",
                             "-y", str(partial)], on_frame=on_frame, cancel=cancel)
        if code != 0:
            raise GenerationFailed(f"Could not finish {name}: ffmpeg failed ({log.strip()[-300:]}).")
        info = {"source": name, "input_frames": n, "input_fps": _number(fps), "output_frames": count,
                "output_fps": _number(out_fps), "interpolation": interpolation if target is not None else None,
                "loop": loop}
        try:
            base = recipe.read(source)
        except NotARecipe:
            base = {}  # not made here, or made before recipes: the output carries what finishing did
        recipe.stamp(partial, base | {"finish": info})
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    on_progress(1.0, f"Finished: {count} frames at {float(out_fps):g} fps")
    return Finished(video=out, info=info)


def export_webm(mp4: Path, dst: Path) -> Path:
    """A VP9 WebM of ``mp4`` for the web (about half the size of our crf-18 H.264), with
    the same recipe stamped in. Constant quality (crf 32 with ``-b:v 0``), row threading
    and ``-cpu-used 4``: libvpx's usual good-quality, reasonable-speed settings."""
    mp4, dst = Path(mp4), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.stem}.partial.webm")
    try:
        code, log, _ = _run(["-loglevel", "error", "-i", str(mp4), "-map", "0:v:0", "-an", "-map_metadata", "-1",
                             "-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-b:v", "0", "-crf", "32", "-row-mt", "1",
                             "-deadline", "good", "-cpu-used", "4", "-y", "-f", "webm", str(partial)])
        if code != 0:
            raise GenerationFailed(f"Could not make a WebM of {mp4.name}: ffmpeg failed ({log.strip()[-300:]}).")
        try:
            recipe.stamp(partial, recipe.read(mp4))
        except NotARecipe:
            pass  # an MP4 without settings gives a WebM without settings
        os.replace(partial, dst)
    finally:
        partial.unlink(missing_ok=True)
    return dst
