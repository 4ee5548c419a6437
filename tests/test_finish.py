"""Finishing: interpolation measured against the truth, loops, cancel, bad files, recipes.

The quality tests render one synthetic scene twice: a textured disc crossing a slowly
panning textured background, sampled at 24 fps (the truth) and at 8 fps (every third
frame, what SVD would give). Interpolating the 8 fps clip back to 24 fps must bring the
frames in between close to the truth, and leave the original frames as they were.
"""

from __future__ import annotations

import subprocess
import threading
import time
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import psutil
import pytest

from studio import finish, recipe, video
from studio.errors import BadVideo, Cancelled, InvalidParameter


def render(t: float, width: int = 480, height: int = 288) -> np.ndarray:
    """The scene at time ``t`` seconds: every pixel computed from ``t``, so any frame rate
    samples the same motion exactly. Scaled so that 480x288 and 1024x576 look alike."""
    scale = width / 320
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) / scale
    bx = xs - 20.0 * t  # the background pans 20 px/s
    background = np.stack([
        128 + 50 * np.sin(bx / 9) * np.cos(ys / 13) + 30 * np.sin((bx + 2 * ys) / 23),
        128 + 45 * np.cos(bx / 17 + ys / 7) + 25 * np.sin(bx / 5),
        110 + 60 * np.sin((bx - ys) / 31) + 20 * np.cos(ys / 4),
    ], axis=-1)
    dx, dy = xs - (60 + 100 * t), ys - (96 + 30 * np.sin(np.pi * t))  # the disc: 100 px/s, bobbing
    dist = np.hypot(dx, dy)
    inside = np.clip((36 - dist) * scale + 0.5, 0, 1)[..., None]  # anti-aliased edge
    disc = np.stack([
        200 + 50 * np.sign(np.sin(6 * np.arctan2(dy, dx))) * (dist < 22),
        60 + 80 * (np.sin(dx / 4) > 0),
        40 + 100 * (np.cos(dy / 5) > 0),
    ], axis=-1)
    return np.clip(background * (1 - inside) + disc * inside + 0.5, 0, 255).astype(np.uint8)


def decode(path: Path) -> tuple[list[np.ndarray], dict]:
    """Every frame of a video as float arrays, and imageio-ffmpeg's metadata (fps, duration, codec)."""
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(f, np.uint8).reshape(height, width, 3).astype(np.float64) for f in reader]
    finally:
        reader.close()
    return frames, meta


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-10))


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference, in grey levels."""
    return float(np.mean(np.abs(a - b)))


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    """The truth (49 frames, 2 s at 24 fps), the 8 fps clip (17 frames) and both decoded."""
    folder = tmp_path_factory.mktemp("scene")
    truth = [render(i / 24) for i in range(49)]
    video.write_mp4(truth, folder / "truth.mp4", 24)
    video.write_mp4(truth[::3], folder / "clip.mp4", 8)
    return {"truth": decode(folder / "truth.mp4")[0], "low": decode(folder / "clip.mp4")[0],
            "clip": folder / "clip.mp4"}


@pytest.fixture(scope="module")
def interpolated(scene, tmp_path_factory) -> dict:
    """The 8 fps clip finished to 24 fps by each method: (Finished, frames, metadata, progress)."""
    done = {}
    for method in finish.METHODS:
        reports: list[tuple[float | None, str]] = []
        result = finish.finish(scene["clip"], tmp_path_factory.mktemp(method), target_fps=24,
                               interpolation=method, on_progress=lambda f, t, r=reports: r.append((f, t)))
        frames, meta = decode(result.video)
        done[method] = (result, frames, meta, reports)
    return done


# ---------------------------------------------------------------- interpolation quality


def test_motion_beats_blend_on_the_in_between_frames_and_both_keep_the_originals(scene, interpolated):
    truth, low = scene["truth"], scene["low"]
    scores = {}
    for method, (_, frames, _, _) in interpolated.items():
        between = [psnr(frames[i], truth[i]) for i in range(48) if i % 3]
        originals = [psnr(frames[3 * j], low[j]) for j in range(17)]
        scores[method] = (np.mean(between), min(between), min(originals))
        # The original frames come through at their own timestamps, changed only by the re-encode.
        assert min(originals) > 35, f"{method}: an original frame changed ({min(originals):.1f} dB)"
    # Measured here: motion 33.6 dB (worst frame 29.2), blend 27.8, the nearest original 26.3.
    nearest = np.mean([psnr(low[round(i / 3)], truth[i]) for i in range(48) if i % 3])
    motion, blend = scores["motion"][0], scores["blend"][0]
    assert motion > blend + 3, f"motion {motion:.1f} dB should clearly beat blend {blend:.1f} dB"
    assert scores["motion"][1] > blend, "motion's worst in-between frame should beat blend's average"
    assert blend > nearest + 1, "blending must beat showing the nearest original frame"


def test_interpolation_keeps_the_duration(scene, interpolated):
    for method, (result, frames, meta, _) in interpolated.items():
        # 17 frames at 8 fps last 2.125 s: 51 frames at 24 fps, the last original held for its 1/8 s.
        assert len(frames) == 51 and meta["fps"] == 24, method
        assert meta["duration"] == pytest.approx(51 / 24, abs=0.05)
        assert [psnr(frames[i], scene["low"][16]) > 35 for i in (48, 49, 50)] == [True] * 3
        assert result.info == {"source": "clip.mp4", "input_frames": 17, "input_fps": 8.0, "output_frames": 51,
                               "output_fps": 24.0, "interpolation": method, "loop": "none"}
        assert result.video.name == "finished.mp4"
        assert sorted(p.name for p in result.video.parent.iterdir()) == ["finished.mp4"]  # no partial files left


def test_progress_is_real_and_reaches_the_end(interpolated):
    for method, (_, _, _, reports) in interpolated.items():
        assert reports[0] == (None, "Checking clip.mp4")
        fractions = [f for f, _ in reports if f is not None]
        assert fractions == sorted(fractions), f"{method}: progress went back"
        assert fractions[0] == 0 and fractions[-1] == 1.0
        assert reports[-1][1] == "Finished: 51 frames at 24 fps"
        texts = [t for f, t in reports if f is not None and 0 < f < 1]
        # Motion takes a second or more here, so ffmpeg reports (every 0.2 s) on its way;
        # blend may be done before its first report on this short clip: the next test gives it a long one.
        assert texts or method == "blend", f"{method}: no report between the start and the end"
        assert all(t.startswith(f"Interpolating to 24 fps ({method}): ") and t.endswith("%") for t in texts)


def test_blend_reports_its_progress_on_the_way_too(tmp_path):
    """A clip long enough that encoding its 480 frames takes many of ffmpeg's 0.2 s report
    periods, however fast the machine: blend must report between the start and the end."""
    source = tmp_path / "long.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=1024x576:rate=8", "-frames:v", "160", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-y", str(source)], check=True)
    reports: list[tuple[float | None, str]] = []
    done = finish.finish(source, tmp_path / "out", target_fps=24, interpolation="blend",
                         on_progress=lambda f, t: reports.append((f, t)))
    assert done.info["output_frames"] == 480
    between = [(f, t) for f, t in reports if f is not None and 0 < f < 1]
    assert between, "blend: no report between the start and the end"
    assert all(t == f"Interpolating to 24 fps (blend): {f:.0%}" for f, t in between)
    fractions = [f for f, _ in between]
    assert fractions == sorted(fractions) and reports[-1] == (1.0, "Finished: 480 frames at 24 fps")


# ---------------------------------------------------------------- loops


def test_pingpong_plays_back_without_repeating_the_turns(scene, tmp_path):
    low = scene["low"]
    result = finish.finish(scene["clip"], tmp_path, loop="pingpong")
    frames, meta = decode(result.video)
    assert len(frames) == 32 and meta["fps"] == 8  # 2n - 2
    expected = low + low[-2:0:-1]  # 0..16, then 15..1
    assert min(psnr(a, b) for a, b in zip(frames, expected, strict=True)) > 35
    assert result.info["output_frames"] == 32 and result.info["interpolation"] is None


def test_interpolated_pingpong_fills_the_seam_back_to_the_start(scene, tmp_path):
    truth, low = scene["truth"], scene["low"]
    frames, meta = decode(finish.finish(scene["clip"], tmp_path, target_fps=24, loop="pingpong").video)
    assert len(frames) == 96 and meta["fps"] == 24  # 32 frames at 8 fps = 4 s
    # The loop ends on frame 1 (t = 1/8 s) and starts again on frame 0: the last two frames
    # are the motion in between, running backwards: the truth at t = 2/24 s and 1/24 s.
    for out, true in ((94, 2), (95, 1)):
        assert psnr(frames[out], truth[true]) > max(psnr(frames[out], low[0]), psnr(frames[out], low[1])) + 2
    assert psnr(frames[93], low[1]) > 35


def test_crossfade_loop_has_no_jump_and_about_the_same_length(scene, tmp_path):
    low = scene["low"]
    result = finish.finish(scene["clip"], tmp_path, loop="crossfade")
    frames, meta = decode(result.video)
    k = round(17 / 4)
    assert len(frames) == 17 - k == result.info["output_frames"] and meta["fps"] == 8
    assert frames[0].shape == low[0].shape
    # The clip itself jumps from its last frame back to its first ...
    jump = mad(low[-1], low[0])
    # ... the loop does not: its last frame is mostly the frame just before its first.
    seam = mad(frames[-1], frames[0])
    steps = [mad(frames[i], frames[i + 1]) for i in range(len(frames) - 1)]
    assert seam < jump / 2, f"seam {seam:.1f} against the clip's jump {jump:.1f}"
    assert seam < 1.5 * max(steps), "the seam should look like any other step of the loop"
    # The middle plays unchanged; the tail is the fade of the end into the start.
    assert min(psnr(frames[i], low[k + i]) for i in range(17 - 2 * k)) > 35
    fade = [(low[17 - k + j] * (k - j) + low[j] * (j + 1)) / (k + 1) for j in range(k)]
    assert min(psnr(frames[17 - 2 * k + j], fade[j]) for j in range(k)) > 35


def test_interpolated_crossfade_has_an_in_between_frame_at_the_seam(scene, tmp_path):
    plain = decode(finish.finish(scene["clip"], tmp_path / "plain", loop="crossfade").video)[0]
    frames, meta = decode(finish.finish(scene["clip"], tmp_path / "smooth", target_fps=24, loop="crossfade").video)
    assert len(frames) == 3 * len(plain) and meta["fps"] == 24
    last, first = plain[-1], plain[0]
    assert psnr(frames[-3], last) > 35 and psnr(frames[0], first) > 35
    for seam in frames[-2:]:  # between the loop's last frame and its first, not a copy of either
        assert mad(seam, last) > 0.2 * mad(last, first) and mad(seam, first) > 0.2 * mad(last, first)
        assert mad(seam, last) < mad(last, first) and mad(seam, first) < mad(last, first)


# ---------------------------------------------------------------- cancel


def _ffmpeg_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "ffmpeg" in p.name()]


def test_cancel_stops_ffmpeg_at_once_and_leaves_nothing(tmp_path):
    frames = [render(i / 8, 1024, 576) for i in range(25)]
    clip = video.write_mp4(frames, tmp_path / "big.mp4", 8)  # to 60 fps by motion: about a minute of work
    cancel, started, seen, when, fractions = threading.Event(), threading.Event(), [], [], []

    def on_progress(fraction: float | None, text: str) -> None:
        if fraction is not None:
            fractions.append(fraction)
            started.set()  # the interpolating ffmpeg runs from now on

    def press_cancel() -> None:
        if started.wait(30):
            time.sleep(1.0)
            seen.extend(_ffmpeg_children())
            when.append(time.monotonic())
            cancel.set()

    presser = threading.Thread(target=press_cancel, daemon=True)
    presser.start()
    with pytest.raises(Cancelled) as caught:
        finish.finish(clip, tmp_path / "work", target_fps=60, interpolation="motion", on_progress=on_progress,
                      cancel=cancel)
    stopped = time.monotonic() - when[0]
    presser.join()
    assert str(caught.value) == "Cancelled: finishing stopped."
    assert stopped < 2.0, f"took {stopped:.1f} s to stop"
    assert seen, "ffmpeg was not running when cancel was pressed"
    assert fractions[-1] < 0.5, "the cancel should have come early in the interpolation"
    assert not any(p.is_running() for p in seen), "ffmpeg still runs after the cancel"
    assert _ffmpeg_children() == []
    assert list((tmp_path / "work").iterdir()) == []  # neither finished.mp4 nor a partial file


def test_a_cancel_before_the_start_starts_nothing(scene, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        finish.finish(scene["clip"], tmp_path, target_fps=24, cancel=cancel)
    assert not (tmp_path / "finished.mp4").exists()


# ---------------------------------------------------------------- refusals


def _refusal(path: Path, **kwargs) -> str:
    with pytest.raises(BadVideo) as caught:
        finish.finish(path, path.parent / "work", **kwargs)
    message = str(caught.value)
    assert str(path.parent) not in message and "Traceback" not in message
    assert not (path.parent / "work" / "finished.mp4").exists()
    return message


def test_bad_files_are_refused_with_one_sentence(tmp_path):
    (tmp_path / "notes.mp4").write_text("these are my notes, not a video\n")
    assert _refusal(tmp_path / "notes.mp4") == "notes.mp4 is not a video, so it cannot be finished."

    (tmp_path / "empty.mp4").write_bytes(b"")
    assert _refusal(tmp_path / "empty.mp4") == "empty.mp4 is empty, so there is nothing to finish."

    good = video.write_mp4([render(i / 8, 160, 96) for i in range(12)], tmp_path / "good.mp4", 8).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(good[: len(good) * 2 // 3])  # the download stopped two thirds in
    assert _refusal(tmp_path / "cut.mp4") == "cut.mp4 is damaged or incomplete, so it cannot be finished."

    (tmp_path / "gone.mp4").write_bytes(good[-len(good) // 2:])  # only the second half: no header, no index
    assert _refusal(tmp_path / "gone.mp4") == "gone.mp4 is not a video, so it cannot be finished."

    video.write_mp4([render(0, 160, 96)], tmp_path / "still.mp4", 8)
    assert _refusal(tmp_path / "still.mp4") == "still.mp4 has 1 frame; finishing needs at least 2."

    video.write_mp4([render(i / 8, 160, 96) for i in range(3)], tmp_path / "three.mp4", 8)
    assert _refusal(tmp_path / "three.mp4", loop="crossfade") == (
        "three.mp4 has 3 frames; a crossfade loop needs at least 4.")

    assert _refusal(tmp_path / "missing.mp4") == "missing.mp4 could not be opened."


def test_too_long_a_video_is_refused_with_its_length(tmp_path):
    frames = [np.full((32, 32, 3), i % 256, np.uint8) for i in range(900)]
    video.write_mp4(frames, tmp_path / "long.mp4", 30)
    assert _refusal(tmp_path / "long.mp4") == (
        "long.mp4 has 900 frames; finishing takes at most 600 (FINISH_MAX_FRAMES).")


def test_a_frame_larger_than_the_cap_is_refused_naming_it(tmp_path, monkeypatch):
    frames = [np.full((48, 64, 3), i * 20, np.uint8) for i in range(4)]
    video.write_mp4(frames, tmp_path / "wide.mp4", 8)
    monkeypatch.setenv("FINISH_MAX_PIXELS", "32x32")
    with pytest.raises(BadVideo) as info:
        finish.finish(tmp_path / "wide.mp4", tmp_path / "out", loop="pingpong")
    assert str(info.value) == (
        "wide.mp4 is 64x48; finishing takes at most 32x32 (1,024 pixels a frame, FINISH_MAX_PIXELS).")
    assert not (tmp_path / "out").exists()  # refused before ffmpeg wrote anything
    monkeypatch.setenv("FINISH_MAX_PIXELS", "3072")  # a number of pixels works too: 64x48 fits exactly
    assert finish.finish(tmp_path / "wide.mp4", tmp_path / "out").info["output_frames"] == 4


def test_a_result_longer_than_the_cap_is_refused_before_ffmpeg_starts(tmp_path, monkeypatch):
    frames = [np.full((32, 32, 3), i * 20, np.uint8) for i in range(10)]
    video.write_mp4(frames, tmp_path / "short.mp4", 8)
    monkeypatch.setenv("FINISH_MAX_FRAMES", "40")
    with pytest.raises(BadVideo) as info:  # 10 frames at 8 fps to 60 fps: 75 frames
        finish.finish(tmp_path / "short.mp4", tmp_path / "out", target_fps=60)
    assert str(info.value) == ("Finishing short.mp4 this way would make 75 frames; finishing makes at most 40 "
                               "(FINISH_MAX_FRAMES): ask for a lower frame rate or another loop.")
    with pytest.raises(BadVideo):  # a ping-pong of 10 is 18: fine; to 60 fps it is 135
        finish.finish(tmp_path / "short.mp4", tmp_path / "out", target_fps=60, loop="pingpong")
    assert finish.finish(tmp_path / "short.mp4", tmp_path / "out", loop="pingpong").info["output_frames"] == 18


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target_fps": 99}, "target_fps must be 12-60 for finishing, got 99"),
    ({"target_fps": 11.5}, "target_fps must be 12-60 for finishing, got 11.5"),
    ({"target_fps": "fast"}, "target_fps must be 12-60 for finishing, got 'fast'"),
    ({"loop": "spiral"}, "loop must be one of none, pingpong, crossfade for finishing, got 'spiral'"),
    ({"interpolation": "rife"}, "interpolation must be one of motion, blend for finishing, got 'rife'"),
])
def test_bad_settings_are_refused_by_name(scene, tmp_path, kwargs, message):
    with pytest.raises(InvalidParameter) as caught:
        finish.finish(scene["clip"], tmp_path, **kwargs)
    assert str(caught.value) == message
    assert caught.value.backend == "finishing"


def test_the_source_is_never_changed(scene, tmp_path):
    before = scene["clip"].read_bytes()
    result = finish.finish(scene["clip"], tmp_path, target_fps=30, loop="pingpong", interpolation="blend")
    assert scene["clip"].read_bytes() == before
    assert result.video.parent == tmp_path and result.video != scene["clip"]


# ---------------------------------------------------------------- other formats and sizes


def _source(folder: Path, name: str) -> Path:
    """10 frames of the scene at 160x96 as H.265 in MOV, VP9 at an odd size in WebM, or H.264 at 23.976 fps."""
    frames = [render(i / 8, 160, 96) for i in range(10)]
    if name == "ntsc.mp4":
        return video.write_mp4(frames, folder / name, Fraction(24000, 1001))
    clip = video.write_mp4(frames, folder / "clip.mp4", 8)
    args = {"h265.mov": ["-c:v", "libx265", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p"],
            "odd.webm": ["-vf", "scale=157:93", "-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "30", "-cpu-used", "8"]}
    subprocess.run([video.ffmpeg(), "-v", "error", "-y", "-i", str(clip), *args[name], str(folder / name)], check=True)
    return folder / name


@pytest.mark.parametrize(("name", "size", "rate", "even"), [
    ("h265.mov", (160, 96), 8, (160, 96)),
    ("odd.webm", (157, 93), 8, (156, 92)),  # yuv420p needs even sizes: a row and a column are cut
    ("ntsc.mp4", (160, 96), 24000 / 1001, (160, 96)),
])
def test_h265_vp9_odd_sizes_and_ntsc_rates_finish(tmp_path, name, size, rate, even):
    source = _source(tmp_path, name)
    frames, fps, width, height = finish.check(source)
    assert (frames, (width, height)) == (10, size) and fps == pytest.approx(rate, abs=1e-6)
    result = finish.finish(source, tmp_path / "work", target_fps=30, interpolation="blend")
    out, meta = decode(result.video)
    assert len(out) == result.info["output_frames"] == round(10 * 30 / rate) and meta["fps"] == 30
    assert meta["size"] == even


# ---------------------------------------------------------------- recipes and WebM


def test_a_studio_video_keeps_its_recipe_plus_finish_and_the_webm_carries_it(scene, tmp_path):
    used = {"backend": "local", "model": "svd-xt", "seed": 42, "fps": 8, "motion_bucket_id": 127}
    source = tmp_path / "made-here.mp4"
    source.write_bytes(scene["clip"].read_bytes())
    recipe.stamp(source, recipe.make(used))
    result = finish.finish(source, tmp_path / "work", target_fps=24, loop="crossfade", interpolation="blend")
    stored = recipe.read(result.video)
    assert stored == used | {"finish": result.info}
    assert stored["finish"]["loop"] == "crossfade" and stored["finish"]["source"] == "made-here.mp4"

    webm = finish.export_webm(result.video, tmp_path / "made-here.webm")
    assert recipe.read(webm) == stored
    frames, meta = decode(webm)
    assert meta["codec"].startswith("vp9") and meta["fps"] == 24
    assert len(frames) == result.info["output_frames"]
    original = decode(result.video)[0]
    # VP9 at crf 32 is a little softer, but frame for frame the same video.
    assert min(psnr(a, b) for a, b in zip(frames, original, strict=True)) > 30
    assert webm.stat().st_size < result.video.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["made-here.mp4", "made-here.webm", "work"]


def test_a_foreign_video_gets_only_finish(scene, tmp_path):
    result = finish.finish(scene["clip"], tmp_path, loop="pingpong")
    assert recipe.read(result.video) == {"finish": result.info}
    webm = finish.export_webm(result.video, tmp_path / "loop.webm")
    assert recipe.read(webm) == {"finish": result.info}
