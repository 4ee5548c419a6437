"""The one line every local job waits in (``backends.base.Slots``): first come, first
served; each job told its own place; a per-visitor cap where a batch is one entry.

Real threads and real waiting; the order of arrival is made certain by starting each
job only once the line shows the one before it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from backends.base import Job, Slots, ordinal
from studio.errors import Cancelled, QueueFull
from tests.conftest import wait_for


def job(heard: list[str], visitor: str | None = None, entry: str | None = None) -> Job:
    return Job(workdir=Path("."), on_progress=lambda f, text: heard.append(text), visitor=visitor, entry=entry)


def test_ordinals():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th"]


def test_first_come_first_served_and_each_hears_its_own_place():
    slots = Slots(1, "a free GPU in the cluster")
    release = threading.Event()
    order: list[int] = []
    heard: dict[int, list[str]] = {i: [] for i in range(5)}

    def run(i: int) -> None:
        with slots.hold(job(heard[i])):
            order.append(i)
            if i == 0:
                release.wait(30)

    threads = [threading.Thread(target=run, args=(0,))]
    threads[0].start()
    wait_for(lambda: slots.busy == 1, 10, "the first job to run")
    for i in range(1, 5):  # each arrives once the one before it is in line
        threads.append(threading.Thread(target=run, args=(i,)))
        threads[-1].start()
        wait_for(lambda i=i: slots.waiting == i, 10, f"job {i} to be in line")
    wait_for(lambda: all(heard[i] for i in range(1, 5)), 10, "every waiting job to hear its place")
    assert [heard[i][0] for i in range(1, 5)] == [
        f"Waiting for a free GPU in the cluster: you are {ordinal(i)} in line, 1 running" for i in range(1, 5)]
    release.set()
    for t in threads:
        t.join(30)
    assert order == [0, 1, 2, 3, 4]  # nobody overtook, however the threads were woken
    assert slots.busy == 0 and slots.waiting == 0


def test_a_visitor_may_have_only_so_many_waiting_and_a_batch_is_one_entry():
    slots = Slots(1, "the GPU")
    release = threading.Event()
    started: list[str] = []

    def run(name: str, visitor: str, entry: str | None = None) -> None:
        with slots.hold(job([], visitor, entry), cap=2):
            started.append(name)
            release.wait(30)

    threads = [threading.Thread(target=run, args=("running", "A"))]
    threads[0].start()
    wait_for(lambda: slots.busy == 1, 10, "the first job to run")
    for n, (name, entry) in enumerate([("a1", None), ("batch-1", "b"), ("batch-2", "b")], start=1):
        threads.append(threading.Thread(target=run, args=(name, "A", entry)))
        threads[-1].start()
        wait_for(lambda n=n: slots.waiting == n, 10, f"{name} to be in line")
    with pytest.raises(QueueFull) as info:  # a1 and the batch: two entries waiting already
        with slots.hold(job([], "A"), cap=2):
            pass
    assert str(info.value) == ("You already have 2 jobs waiting for the GPU, the most one visitor may have in line "
                               "(LOCAL_QUEUE_PER_VISITOR is 2); wait for one to start.")
    threads.append(threading.Thread(target=run, args=("other", "B")))  # someone else still gets in line
    threads[-1].start()
    wait_for(lambda: slots.waiting == 4, 10, "the other visitor's job to be in line")
    release.set()
    for t in threads:
        t.join(30)
    assert started == ["running", "a1", "batch-1", "batch-2", "other"]


def test_a_cancelled_job_leaves_the_line_and_the_next_moves_up():
    slots = Slots(1, "the GPU")
    release = threading.Event()
    heard: list[str] = []
    waiting = job(heard)
    outcome: list[BaseException] = []

    def hold_it() -> None:
        with slots.hold(job([])):
            release.wait(30)

    def wait_in_line() -> None:
        try:
            with slots.hold(waiting):
                pass
        except Cancelled as exc:
            outcome.append(exc)

    first = threading.Thread(target=hold_it)
    first.start()
    wait_for(lambda: slots.busy == 1, 10, "the first job to run")
    second = threading.Thread(target=wait_in_line)
    second.start()
    wait_for(lambda: slots.waiting == 1, 10, "the second job to be in line")
    waiting.cancel.set()
    second.join(10)
    assert outcome and slots.waiting == 0
    release.set()
    first.join(10)


@pytest.mark.parametrize("space, value, local, hosted", [
    (True, None, 3, None), (False, None, None, None), (True, "unlimited", None, None), (False, "5", 5, None)])
def test_the_local_queue_cap_comes_from_the_environment(monkeypatch, space, value, local, hosted):
    import backends
    from orchestration import limits

    monkeypatch.setenv("SPACE_ID", "someone/svd-studio") if space else monkeypatch.delenv("SPACE_ID", raising=False)
    if value is None:
        monkeypatch.delenv("LOCAL_QUEUE_PER_VISITOR", raising=False)
    else:
        monkeypatch.setenv("LOCAL_QUEUE_PER_VISITOR", value)
    assert limits.queue_cap(backends.get_backend("local")) == local
    assert limits.queue_cap(backends.get_backend("novita")) == hosted  # a provider keeps its own queue


def test_finishing_waits_in_its_own_line_one_at_a_time(tmp_path):
    """FINISH_CONCURRENCY (1): a second finish waits, told its place, until the first is done."""
    import numpy as np

    from orchestration import service
    from studio import video

    clip = tmp_path / "clip.mp4"
    video.write_mp4([np.full((32, 32, 3), i * 30, np.uint8) for i in range(6)], clip, 8)
    first_inside, let_go = threading.Event(), threading.Event()
    heard: list[str] = []
    done: list[str] = []

    def first_progress(fraction, text):
        if text.startswith("Checking"):  # inside the slot: hold it until the second is seen waiting
            first_inside.set()
            let_go.wait(60)

    def run(name: str, progress) -> None:
        service.finish_video(clip, loop="pingpong", on_progress=progress)
        done.append(name)

    one = threading.Thread(target=run, args=("first", first_progress))
    one.start()
    assert first_inside.wait(60)
    two = threading.Thread(target=run, args=("second", lambda f, t: heard.append(t)))
    two.start()
    wait_for(lambda: heard, 30, "the second finish to hear its place")
    assert heard[0] == "Waiting for a free finishing slot: you are 1st in line, 1 running" and not done
    let_go.set()
    one.join(60)
    two.join(60)
    assert done == ["first", "second"]
