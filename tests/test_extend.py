"""Extending a clip: segments chained from each one's last frame, on the tiny local
pipeline and against the fake Novita server, checked by decoding what was made and
what was sent."""

from __future__ import annotations

import base64
import io
import threading
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from backends.base import Result
from studio import recipe, video
from orchestration import extend
from studio.errors import Cancelled, InvalidParameter
from tests.fakes import FakeNovita
from tests.fakes.media import make_frames

SMALL = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 2}
KEY = "sk-canary-extend-9c2"


def frames_of(path: Path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]


def pixels(path_or_bytes: Path | bytes) -> np.ndarray:
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(source) as image:
        return np.asarray(image.convert("RGB"))


def run(image: Path, backend: str, params: dict, **kwargs) -> tuple[Result, list[Result]]:
    """``extend.extend`` with its finished segments collected in order."""
    segments: list[Result] = []
    result = extend.extend(image, backend, params, on_segment=lambda i, r: segments.append(r), **kwargs)
    return result, segments


@pytest.fixture
def novita(monkeypatch):
    """The fake answers the first poll with the finished clip (4 frames, 64x64)."""
    with FakeNovita(api_key=KEY, queued_polls=0, processing_polls=0) as nv:
        monkeypatch.setenv("NOVITA_BASE_URL", nv.base_url)
        monkeypatch.setenv("NOVITA_API_KEY", KEY)
        yield nv


# --- the local pipeline ---------------------------------------------------------------


@pytest.mark.parametrize("same_seed, seed", [(True, None), (False, 7)])
def test_three_local_segments_chain_from_each_last_frame(tiny_model, photo, same_seed, seed):
    result, segments = run(photo, "local", {**SMALL, "seed": seed}, segments=3, same_seed=same_seed)

    assert video.probe(result.video) == (4 + 2 * 3, 128, 64)  # each later segment's first frame is the seam
    saved = recipe.read(result.video)
    seeds = [s["seed"] for s in saved["segments"]]
    assert len(seeds) == 3 and seeds == [s.used["seed"] for s in segments]
    if same_seed:
        assert len(set(seeds)) == 1  # one seed, drawn once because none was given
    else:
        assert len(set(seeds)) == 3 and seeds[0] == 7  # the given seed starts; every later one is new
    assert saved["seed"] == seeds[0] and saved["extended"] == 3 and saved["num_frames_total"] == 10
    assert saved["same_seed"] is same_seed and saved["smooth_seams"] is False
    assert all(s["num_frames"] == 4 and s["width"] == 128 for s in saved["segments"])

    for before, after in zip(segments, segments[1:], strict=False):
        last = frames_of(before.video)[-1]
        png = before.video.parent / extend.LAST_FRAME
        assert np.array_equal(pixels(png), last)  # the seam is saved losslessly...
        assert after.photo is not None and after.photo.parent != before.video.parent
        assert np.array_equal(pixels(after.photo), last)  # ...and is exactly what the next segment started from

    # The joined clip is the segments' frames without the repeated seam frames (up to re-encoding).
    clips = [frames_of(s.video) for s in segments]
    expected = clips[0] + clips[1][1:] + clips[2][1:]
    joined = frames_of(result.video)
    assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(joined, expected, strict=True)) < 8

    assert result.job_id is None and result.photo is not None
    assert result.photo.read_bytes() == photo.read_bytes() and result.photo.parent == result.video.parent


# --- a hosted backend -------------------------------------------------------------------


def test_a_hosted_segment_uploads_the_last_frame_of_the_one_before(novita, photo):
    progress: list[tuple[float | None, str]] = []
    job_ids: list[str] = []
    result, segments = run(photo, "novita", {"model": "svd", "seed": 77}, segments=2, same_seed=True,
                           on_progress=lambda f, t: progress.append((f, t)), on_job_id=job_ids.append)

    submits = novita.requests_for("submit")
    assert len(submits) == 2
    first_sent = pixels(base64.b64decode(submits[0].json["image_file"]))
    second_sent = pixels(base64.b64decode(submits[1].json["image_file"]))
    assert first_sent.shape == pixels(photo).shape  # 'crop' sends the photo as it is
    assert np.array_equal(second_sent, frames_of(segments[0].video)[-1])
    # And that really is the clip's last frame (the fake's gradient clip, through H.264), not its first.
    source = make_frames(4, 64, 64)
    assert np.abs(second_sent.astype(int) - source[-1]).mean() < 6 < np.abs(second_sent.astype(int) - source[0]).mean()
    assert [s.json["seed"] for s in submits] == [77, 77]

    assert video.probe(result.video) == (4 + 3, 64, 64)
    saved = recipe.read(result.video)
    assert [s["seed"] for s in saved["segments"]] == [77, 77]
    assert [s["task_id"] for s in saved["segments"]] == job_ids and len(set(job_ids)) == 2
    assert "task_id" not in saved  # the joined video is no single provider task
    assert KEY not in str(saved) and KEY.encode() not in result.video.read_bytes()

    texts = [t for _, t in progress]
    assert any(t.startswith("segment 1 of 2 · ") for t in texts)
    assert any(t.startswith("segment 2 of 2 · ") for t in texts)
    assert texts.index(next(t for t in texts if t.startswith("segment 2"))) > max(
        i for i, t in enumerate(texts) if t.startswith("segment 1"))
    fractions = [f for f, _ in progress if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert 0.5 in fractions  # segment 1 done is half of the whole run


@pytest.mark.parametrize("segments", [1, 9])
def test_a_segment_count_out_of_range_is_refused(novita, photo, segments):
    with pytest.raises(InvalidParameter) as info:
        extend.extend(photo, "novita", {}, segments=segments, same_seed=True)
    assert str(info.value) == f"segments must be 2 to 8 for Novita AI, got {segments}"
    assert novita.requests == []


def test_a_bad_value_is_refused_before_anything_is_sent(novita, photo):
    with pytest.raises(InvalidParameter) as info:
        extend.extend(photo, "novita", {"motion_bucket_id": 300}, segments=3, same_seed=False)
    assert str(info.value) == "motion_bucket_id must be 1-255 for Novita AI, got 300"
    assert novita.requests == []


def test_cancel_during_segment_two_starts_nothing_more(novita, photo):
    cancel = threading.Event()

    def on_progress(fraction: float | None, text: str) -> None:
        if text.startswith("segment 2 of 3 · ") and "task" in text:  # segment 2 was submitted
            cancel.set()

    with pytest.raises(Cancelled):
        extend.extend(photo, "novita", {}, segments=3, same_seed=False, on_progress=on_progress, cancel=cancel)
    assert len(novita.requests_for("submit")) == 2


# --- joining ---------------------------------------------------------------------------------


def flat(value: int, count: int, size: tuple[int, int] = (4, 6)) -> list[np.ndarray]:
    return [np.full((*size, 3), value, np.uint8) for _ in range(count)]


def test_stitch_keeps_each_seam_frame_once():
    clips = [[np.full((4, 6, 3), 10 * c + i, np.uint8) for i in range(4)] for c in range(3)]
    joined = extend.stitch(clips)
    assert len(joined) == 4 + 2 * 3
    assert [int(f[0, 0, 0]) for f in joined] == [0, 1, 2, 3, 11, 12, 13, 21, 22, 23]


def test_smooth_seams_eases_in_the_frames_after_each_seam():
    clips = [flat(0, 5), flat(200, 5), flat(40, 5)]
    plain = extend.stitch(clips)
    smooth = extend.stitch(clips, smooth=True)
    assert len(smooth) == len(plain) == 5 + 2 * 4
    values = [int(f[0, 0, 0]) for f in smooth]
    # From the seam frame toward the new clip; each clip's own last frame stays as made.
    assert values == [0, 0, 0, 0, 0, 50, 100, 150, 200, 160, 120, 80, 40]
    assert [int(f[0, 0, 0]) for f in plain] == [0] * 5 + [200] * 4 + [40] * 4


def test_a_segment_of_another_size_is_resized_to_the_first():
    joined = extend.stitch([flat(0, 3, (4, 6)), flat(9, 3, (8, 12))])
    assert len(joined) == 5 and {f.shape for f in joined} == {(4, 6, 3)}
    assert int(joined[-1][0, 0, 0]) == 9


def test_continuing_an_existing_video_keeps_it_as_the_first_segment(tiny_model, photo):
    from orchestration import service

    made = service.generate(photo, "local", {**SMALL, "seed": 21})
    result, segments = run(photo, "local", {**SMALL, "seed": 21}, segments=3, same_seed=True, first=made)

    assert segments[0] is made  # not made again: the run continues from its last frame
    assert np.array_equal(pixels(made.video.parent / extend.LAST_FRAME), frames_of(made.video)[-1])
    assert np.array_equal(pixels(segments[1].photo), frames_of(made.video)[-1])
    assert video.probe(result.video) == (4 + 2 * 3, 128, 64)
    joined, original = frames_of(result.video), frames_of(made.video)
    assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(joined[:4], original, strict=True)) < 8
    assert [s["seed"] for s in recipe.read(result.video)["segments"]] == [21, 21, 21]
