"""ffmpeg is started without Python code between fork and exec.

imageio-ffmpeg would pass ``preexec_fn=os.setpgrp`` to ``subprocess.Popen``, which Python
documents as unsafe in a program with threads (the child can deadlock before exec); a soak
run of the studio caught such a child spinning forever. ``studio.video`` turns it off.
"""

from __future__ import annotations

import subprocess

import numpy as np

from studio import video


def test_encoding_and_probing_start_ffmpeg_without_a_preexec_fn(tmp_path, monkeypatch):
    asked: list[object] = []
    real = subprocess.Popen

    class Recorded(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            asked.append(kwargs.get("preexec_fn"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    frames = [np.full((64, 96, 3), shade, np.uint8) for shade in (0, 80, 160, 240)]
    mp4 = video.write_mp4(frames, tmp_path / "clip.mp4", 6)
    assert video.probe(mp4) == (4, 96, 64)
    assert len(asked) >= 2 and all(fn is None for fn in asked)
