"""Every video carries its recipe: stamped in, read back exactly, or one clear sentence."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from PIL import Image, ImageSequence

from studio import recipe, secrets, video
from studio.errors import GenerationFailed, NotARecipe

TRICKY = "a = b; c # d \\ e\nf ü 🎞"
USED = {
    "backend": "local", "model": "svd-xt", "num_frames": 8, "width": 64, "height": 48, "fps": 7,
    "motion_bucket_id": 127, "noise_aug_strength": 0.02, "seed": 42, "min_guidance_scale": 1.0,
    "max_guidance_scale": 3.0, "memory_mode": "auto", "device": "cpu", "task_id": "abc",
    "elapsed_seconds": 3.2, "negative_prompt": TRICKY, "title": "Katze 猫 \"quoted\"",
    "segments": [{"seed": 1, "note": "x=1;y"}, {"seed": 2, "note": "\\n is not a newline"}],
}


def frames(n: int = 8) -> list[np.ndarray]:
    """A white square moving across black: real motion, so every frame differs."""
    out = []
    for i in range(n):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[10:26, 4 + 6 * i:20 + 6 * i] = 255
        out.append(frame)
    return out


@pytest.fixture
def mp4(tmp_path):
    return video.write_mp4(frames(), tmp_path / "clip.mp4", fps=7)


def ffmetadata(path) -> str:
    proc = subprocess.run([video.ffmpeg(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
                          capture_output=True, check=True)
    return proc.stdout.decode("utf-8")


def top_level_boxes(path) -> list[bytes]:
    data, boxes, at = path.read_bytes(), [], 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        if size == 1:  # 64-bit size follows the type
            size = int.from_bytes(data[at + 8:at + 16], "big")
        boxes.append(kind)
        at += size if size else len(data)
    return boxes


def expected(used: dict) -> dict:
    return json.loads(json.dumps(used))  # what JSON makes of it (no tuples, etc.)


def test_mp4_round_trip_keeps_frames_and_faststart(mp4):
    stamped = recipe.stamp(mp4, recipe.make(USED))
    assert stamped == mp4
    assert recipe.read(mp4) == expected(USED)
    assert recipe.read(str(mp4))["negative_prompt"] == TRICKY
    meta = ffmetadata(mp4)
    comment = [line for line in meta.splitlines() if line.startswith("comment=")]
    assert len(comment) == 1 and comment[0].startswith('comment={"made_with":"SVD Studio","recipe_version":1,')
    assert video.probe(mp4) == (8, 64, 48)
    boxes = top_level_boxes(mp4)
    assert boxes.index(b"moov") < boxes.index(b"mdat")


def test_restamping_replaces_the_recipe(mp4):
    recipe.stamp(mp4, recipe.make({"seed": 1}))
    recipe.stamp(mp4, recipe.make({"seed": 2}))
    assert recipe.read(mp4) == {"seed": 2}
    assert ffmetadata(mp4).count("comment=") == 1


@pytest.mark.parametrize("suffix", [".mov", ".mkv"])
def test_mov_and_mkv_round_trip(mp4, tmp_path, suffix):
    other = tmp_path / f"clip{suffix}"
    subprocess.run([video.ffmpeg(), "-v", "error", "-i", str(mp4), "-c", "copy", str(other)], check=True)
    recipe.stamp(other, recipe.make(USED))
    assert recipe.read(other) == expected(USED)
    assert video.probe(other)[0] == 8


def test_settings_too_long_for_a_tag_are_refused_and_the_file_kept(mp4):
    before = mp4.read_bytes()
    with pytest.raises(GenerationFailed, match="too long"):
        recipe.stamp(mp4, {"negative_prompt": "x" * 70_000})
    assert mp4.read_bytes() == before


def test_webm_round_trip(mp4, tmp_path):
    encoders = subprocess.run([video.ffmpeg(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    if "libvpx-vp9" not in encoders:
        pytest.skip("this ffmpeg build has no libvpx-vp9 encoder")
    webm = tmp_path / "clip.webm"
    subprocess.run([video.ffmpeg(), "-v", "error", "-i", str(mp4), "-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "40",
                    str(webm)], check=True)
    recipe.stamp(webm, recipe.make(USED))
    assert recipe.read(webm) == expected(USED)
    assert video.probe(webm)[0] == 8


def test_gif_round_trip_keeps_every_frame(mp4, tmp_path):
    gif = video.mp4_to_gif(mp4, tmp_path / "clip.gif")
    before = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(gif))]
    recipe.stamp_gif(gif, recipe.make(USED))
    recipe.stamp(gif, recipe.make(USED))  # again, through stamp(): still one comment
    with Image.open(gif) as image:
        assert json.loads(image.info["comment"]) == recipe.make(USED) | expected(USED)
        after = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)]
    assert len(after) == len(before) == 8
    assert all(np.array_equal(a, b) for a, b in zip(after, before, strict=True))
    assert gif.read_bytes().count(b"\x21\xfe") == 1
    assert recipe.read(gif) == expected(USED)
    cut = tmp_path / "cut.gif"  # header, comment and the first frames intact; the rest cut off
    cut.write_bytes(gif.read_bytes()[: int(gif.stat().st_size * 0.6)])
    assert refusal(cut) == "cut.gif is damaged or incomplete, so its settings cannot be restored."


def test_keys_and_tokens_never_enter_a_recipe():
    made = recipe.make({"backend": "novita", "api_key": "sk-123", "options": {"webhook_token": "t", "x": 1},
                        "Password": "p", "client_secret": "s", "seed": 1})
    assert made == {"made_with": "SVD Studio", "recipe_version": 1, "backend": "novita", "options": {"x": 1},
                    "seed": 1}
    assert list(made) == ["made_with", "recipe_version", "backend", "options", "seed"]


def test_a_remembered_key_is_masked_at_any_depth(monkeypatch, mp4):
    monkeypatch.setattr(secrets, "_known", set(secrets._known))  # forget it again after the test
    monkeypatch.setenv("RECIPE_TEST_API", "live-4f9a8b7c6d")
    secrets.remember_environment("RECIPE_TEST_API")
    made = recipe.make({"negative_prompt": "echo live-4f9a8b7c6d", "segments": [{"note": "live-4f9a8b7c6d"}]})
    assert made["negative_prompt"] == "echo ***" and made["segments"] == [{"note": "***"}]
    recipe.stamp(mp4, made)
    assert b"live-4f9a8b7c6d" not in mp4.read_bytes()


def refusal(path) -> str:
    with pytest.raises(NotARecipe) as caught:
        recipe.read(path)
    message = str(caught.value)
    assert str(path.parent) not in message and "Traceback" not in message
    return message


def test_a_video_from_elsewhere_has_no_recipe(mp4):
    assert refusal(mp4) == "clip.mp4 was not made by SVD Studio, so it carries no settings to restore."


def test_a_comment_without_the_mark_is_not_a_recipe(mp4, tmp_path):
    other = tmp_path / "other.mp4"
    subprocess.run([video.ffmpeg(), "-v", "error", "-i", str(mp4), "-c", "copy", "-metadata", 'comment={"seed":1}',
                    str(other)], check=True)
    assert refusal(other) == "other.mp4 was not made by SVD Studio, so it carries no settings to restore."


def test_files_that_are_not_videos_get_one_sentence(mp4, tmp_path):
    recipe.stamp(mp4, recipe.make(USED))
    data = mp4.read_bytes()
    text, empty, cut = tmp_path / "notes.mp4", tmp_path / "empty.mp4", tmp_path / "cut.mp4"
    text.write_text("this is a text file, not a video\n")
    empty.write_bytes(b"")
    cut.write_bytes(data[: int(len(data) * 0.4)])
    half = tmp_path / "half.mp4"  # faststart: the index and tag survive, half the frames do not
    mdat = data.index(b"mdat")
    half.write_bytes(data[: mdat + (len(data) - mdat) // 2])
    assert b'"made_with":"SVD Studio"' in half.read_bytes()
    noise = tmp_path / "noise.gif"
    noise.write_bytes(b"GIF89a" + np.random.default_rng(0).bytes(300))
    assert refusal(text) == "notes.mp4 is not a video, GIF or settings file that SVD Studio can read."
    assert refusal(empty) == "empty.mp4 is empty, so it carries no settings to restore."
    assert refusal(cut) == "cut.mp4 is damaged or incomplete, so its settings cannot be restored."
    assert refusal(half) == "half.mp4 is damaged or incomplete, so its settings cannot be restored."
    assert refusal(noise) == "noise.gif is damaged or incomplete, so its settings cannot be restored."


def test_oversized_files_are_refused_before_reading(tmp_path):
    big = tmp_path / "big.json"
    big.write_text('{"seed": 1, "pad": "' + "x" * recipe.MAX_JSON + '"}')
    assert refusal(big) == "big.json is too large to read settings from."


def test_settings_files_json(tmp_path):
    made = tmp_path / "recipe.json"
    made.write_text(json.dumps(recipe.make(USED)), encoding="utf-8")
    assert recipe.read(made) == expected(USED)
    plain = tmp_path / "plain.json"
    plain.write_text('{"fps": 6, "seed": 7, "api_key": "sk-1"}')
    assert recipe.read(plain) == {"fps": 6, "seed": 7}
    preset = tmp_path / "preset.json"
    preset.write_text(json.dumps({"name": "Calm", "description": "d", "parameters": {"motion_bucket_id": 40}}))
    assert recipe.read(preset) == {"motion_bucket_id": 40}
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert refusal(listed) == "list.json holds JSON, but not a settings object, so there is nothing to restore."
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert refusal(broken) == "broken.json is not a video, GIF or settings file that SVD Studio can read."


def test_settings_split_keeps_only_control_values():
    backend, values = recipe.settings(recipe.make(USED))
    assert backend == "local"
    assert values == {k: v for k, v in USED.items()
                      if k not in ("backend", "device", "task_id", "elapsed_seconds", "segments")}
    assert recipe.settings({"seed": 3, "backend": None}) == (None, {"seed": 3})


def test_a_failed_stamp_leaves_the_file_untouched(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video at all")
    with pytest.raises(GenerationFailed, match="Could not store the settings in fake.mp4"):
        recipe.stamp(fake, recipe.make(USED))
    assert fake.read_bytes() == b"not a video at all"
    assert [p.name for p in tmp_path.iterdir()] == ["fake.mp4"]
    gif = tmp_path / "fake.gif"
    gif.write_bytes(b"PNG?")
    with pytest.raises(GenerationFailed):
        recipe.stamp_gif(gif, recipe.make(USED))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.gif", "fake.mp4"]
