"""Gradio's cache (uploads and the copies of outputs that pages play) has a byte cap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from studio import uploads


def _file(folder: Path, name: str, size: int, age_s: float, now: float) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (now - age_s, now - age_s))
    return path


def test_the_oldest_files_go_until_the_cache_is_under_its_cap(tmp_path: Path):
    now = 1_000_000.0
    oldest = _file(tmp_path, "a1/photo.png", 400, 3000, now)
    older = _file(tmp_path, "b2/video.mp4", 400, 2000, now)
    newer = _file(tmp_path, "c3/video.mp4", 400, 1000, now)
    fresh = _file(tmp_path, "d4/video.mp4", 400, 5, now)  # a page may be fetching it right now
    outside = tmp_path.parent / f"{tmp_path.name}-outside.bin"
    outside.write_bytes(b"y" * 5000)
    (tmp_path / "link.bin").symlink_to(outside)

    removed = uploads.cap_cache(tmp_path, max_bytes=900, now=now)

    assert removed == [oldest, older]
    assert newer.exists() and fresh.exists() and outside.exists() and (tmp_path / "link.bin").is_symlink()
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()) <= 900


def test_young_files_are_kept_even_over_the_cap(tmp_path: Path):
    now = 1_000_000.0
    young = [_file(tmp_path, f"{i}/video.mp4", 1000, 10, now) for i in range(3)]
    assert uploads.cap_cache(tmp_path, max_bytes=100, now=now) == []
    assert all(p.exists() for p in young)


def test_the_cap_follows_the_output_cap_unless_set(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GRADIO_CACHE_MAX_MB", raising=False)
    monkeypatch.setenv("OUTPUT_MAX_MB", "20")
    assert uploads.cache_max_bytes() == 20 * 1024 * 1024
    monkeypatch.setenv("GRADIO_CACHE_MAX_MB", "5")
    assert uploads.cache_max_bytes() == 5 * 1024 * 1024
    monkeypatch.setenv("GRADIO_CACHE_MAX_MB", "lots")
    with pytest.raises(Exception, match="GRADIO_CACHE_MAX_MB must be a number, 0 or more, got 'lots'."):
        uploads.cache_max_bytes()
