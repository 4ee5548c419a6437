"""A key typed on the page is its visitor's alone, and the operator's log.

A typed key is masked in its own job's messages and log lines and nowhere else: a
visitor whose "key" is an ordinary word never changes what another visitor reads, and
once the job ends the studio holds the key nowhere. The environment's keys stay masked
everywhere. Every job, whatever started it, leaves one INFO line when it starts and one
when it ends on logger "svd_studio".

Jobs run against a fake Novita on 127.0.0.1, through the launched app (``gradio_client``,
two clients for two visitors) or through the page's own runner; local jobs on the tiny
real pipeline.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import threading
from contextvars import ContextVar
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from backends.base import Result
from studio import outputs, recipe, secrets
from orchestration import service
from studio.errors import (BadImage, Cancelled, GenerationFailed, InvalidParameter, LimitReached, MissingKey,
                           ProviderError, TimedOut)
from tests.conftest import EXAMPLES, launched_studio, wait_for
from tests.fakes import FakeNovita, Reply, novita_error
from ui import page
from ui.jobs import OUTCOMES, Runner, outcome_of

WORD = "motion"  # typed as a key: a word the studio's own messages use
SECRET = "typed-9c4e1a7f2b"  # a typed key that looks like one
ENV_KEY = "env-5b8d2e0a91c3"
PHOTO = EXAMPLES / "chelsea.png"
SMALL = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 2}
WORD_REFUSAL = "motion_bucket_id must be 1-255 for Novita AI, got 999"


@pytest.fixture(scope="module")
def novita():
    # No queued or processing polls: a job is done at its first poll, about 2 s after its submit.
    with FakeNovita(api_key=WORD, queued_polls=0, processing_polls=0) as nv:
        yield nv


@pytest.fixture(scope="module")
def app(novita):
    env = {"NOVITA_BASE_URL": novita.base_url, "NOVITA_API_KEY": None, "MODELSLAB_API_KEY": None,
           "HOSTED_TIMEOUT_SECONDS": "30"}
    with launched_studio(env) as url:
        yield url


@pytest.fixture
def accepting(novita):
    """``accepting(key)``: the fake takes ``key`` for this test; its switches are reset after."""
    yield lambda key: setattr(novita, "api_key", key)
    novita.api_key, novita.fail_reason, novita.stuck = WORD, None, False



def refused(client: Client, **values) -> str:
    with pytest.raises(Exception) as info:
        client.predict(image=handle_file(str(PHOTO)), backend="novita", api_name="/generate", **values)
    return str(info.value)


def run(task, session: str = "ops") -> list:
    """A job through the page's runner, as the page runs it: its status lines, then its Result."""
    async def collect() -> list:
        return [item async for item in Runner().run(task, session)]

    return asyncio.run(collect())


def held_by_secrets(text: str) -> list[str]:
    """The names in ``studio.secrets`` whose value (a context variable's, in this thread)
    holds ``text``."""
    found = []
    for name, value in vars(secrets).items():
        if name.startswith("__"):
            continue
        if isinstance(value, ContextVar):
            value = value.get()
        if isinstance(value, (set, frozenset, list, tuple, dict)):
            value = " ".join(map(str, value))
        if isinstance(value, str) and text in value:
            found.append(name)
    return found


def masked_anywhere(text: str) -> bool:
    """Whether ``redact`` masks ``text`` here or in a fresh thread, outside any job."""
    seen: list[str] = []
    worker = threading.Thread(target=lambda: seen.append(secrets.redact(text)))
    worker.start()
    worker.join()
    return seen != [text] or secrets.redact(text) != text


@pytest.fixture
def log_filter(caplog):
    """The app's log filter on pytest's capturing handler, as ``app.main`` puts it on the root's."""
    caplog.set_level(logging.DEBUG)
    masking = secrets.RedactingFilter()
    caplog.handler.addFilter(masking)
    yield caplog
    caplog.handler.removeFilter(masking)


# --- a typed key is its visitor's alone ------------------------------------------------------


def test_a_word_typed_as_a_key_stays_intact_in_another_visitors_messages(app, novita):
    alice, bob = Client(app, verbose=False), Client(app, verbose=False)
    polls = len(novita.requests_for("poll"))
    novita.script("poll", Reply(delay=4, passthrough=True))  # Alice's job waits here, her key in use
    job = alice.submit(image=handle_file(str(PHOTO)), backend="novita", api_key=WORD, api_name="/generate")
    wait_for(lambda: len(novita.requests_for("poll")) > polls, 20, "Alice's job to be polled")
    during = refused(bob, motion_bucket_id=999)
    assert not job.done(), "Bob's refusal must come while Alice's job runs"
    _, used = job.result(timeout=60)
    after = refused(bob, motion_bucket_id=999)
    assert used["backend"] == "novita" and used["task_id"] in novita.tasks
    assert WORD_REFUSAL in during and WORD_REFUSAL in after
    assert not masked_anywhere(WORD) and held_by_secrets(WORD) == []


def test_a_typed_key_shows_up_in_no_log_error_output_or_answer(app, novita, accepting, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # raw records, no filter: nothing may even try to log the key
    client = Client(app, verbose=False)
    said: list[str] = []
    accepting(SECRET)
    path, used = client.predict(image=handle_file(str(PHOTO)), backend="novita", api_key=SECRET,
                                api_name="/generate")
    assert used["backend"] == "novita" and recipe.read(path)["backend"] == "novita"
    said += [json.dumps(used), Path(path).read_bytes().decode("latin-1"), json.dumps(recipe.read(path))]
    # The job fails with the key in the provider's reason: masked in this job's error as it leaves the job.
    novita.fail_reason = f"the worker was handed {SECRET}"
    failed = refused(client, api_key=SECRET)
    assert "Novita could not generate the video: the worker was handed *** (task id " in failed
    novita.fail_reason = None
    # The provider rejects the key and echoes it in its error answer.
    accepting(WORD)
    novita.script("submit", novita_error(403, "INVALID_API_KEY", f"invalid api key {SECRET}"))
    rejected = refused(client, api_key=SECRET)
    assert "Novita rejected the API key: invalid api key *** (INVALID_API_KEY)." in rejected
    said += [failed, rejected, httpx.get(app).text, httpx.get(f"{app}config").text,
             json.dumps(client.view_api(return_format="dict", print_info=False))]
    for file in outputs.run_dir().rglob("*"):
        if file.is_file():
            said.append(file.read_bytes().decode("latin-1"))
    out, err = capfd.readouterr()
    assert SECRET not in "\n".join([caplog.text, out, err, *said])
    assert held_by_secrets(SECRET) == [] and not masked_anywhere(SECRET)


def test_what_a_job_reports_and_says_holds_no_typed_key(app, novita, accepting):
    accepting(SECRET)
    novita.script("poll", novita_error(500, "GET_RESULT_FAILED", f"backend saw {SECRET}"))  # retried once
    items = run(functools.partial(service.generate, PHOTO, "novita", {"seed": 7}, api_key=SECRET))
    result = items[-1]
    assert isinstance(result, Result) and result.used["seed"] == 7
    assert any("backend saw ***" in str(line) for line in items[:-1])
    assert result.sent is not None and result.sent["image_file"].startswith("<base64 PNG, ")
    assert SECRET not in json.dumps([result.used, result.sent, [str(i) for i in items[:-1]]])
    assert SECRET not in json.dumps(recipe.read(result.video))
    assert held_by_secrets(SECRET) == [] and not masked_anywhere(SECRET)


def test_inside_a_job_its_key_is_masked_and_only_there(log_filter):
    log = logging.getLogger("svd_studio")
    inside, other_said = threading.Event(), threading.Event()

    def job() -> None:
        with secrets.job_secret(WORD):
            log.warning("the provider echoed motion back")
            inside.set()
            other_said.wait(5)
            log.warning("still motion here")

    worker = threading.Thread(target=job)
    worker.start()
    assert inside.wait(5)
    log.warning("motion_bucket_id must be 1-255")  # another visitor's line, at the same moment
    other_said.set()
    worker.join()
    assert [r.getMessage() for r in log_filter.records] == [
        "the provider echoed *** back", "motion_bucket_id must be 1-255", "still *** here"]
    assert held_by_secrets(WORD) == [] and not masked_anywhere(WORD)


def test_an_error_leaves_its_job_scrubbed_causes_and_traceback_included():
    with pytest.raises(GenerationFailed) as info:
        with secrets.job_secret(SECRET):
            try:
                raise httpx.HTTPError(f"https://provider.example/?key={SECRET}")
            except httpx.HTTPError as exc:
                raise GenerationFailed(f"the provider said {SECRET}", job_id="t-1") from exc
    error = info.value
    assert str(error) == "the provider said *** (task id t-1)" and error.job_id == "t-1"
    assert str(error.__cause__) == "https://provider.example/?…"
    assert SECRET not in logging.Formatter().formatException((type(error), error, error.__traceback__))


def test_environment_keys_are_masked_in_a_line_logged_outside_any_job(monkeypatch, log_filter):
    monkeypatch.setattr(secrets, "_known", set(secrets._known))  # forget it again after the test
    monkeypatch.setenv("NOVITA_API_KEY", ENV_KEY)
    page.build_demo()  # remembers every backend's key variable, as the app does when it starts
    log = logging.getLogger("svd_studio")
    log.info("sent Bearer %s", ENV_KEY)
    worker = threading.Thread(target=lambda: log.info("polled with %s", ENV_KEY))
    worker.start()
    worker.join()
    assert [r.getMessage() for r in log_filter.records if r.name == "svd_studio"] == [
        "sent Bearer ***", "polled with ***"]
    assert secrets.redact(f"{ENV_KEY} in a message") == "*** in a message"


# --- the operator's log ----------------------------------------------------------------------


def job_lines(caplog) -> list[str]:
    """The operator's lines, with each job's seconds replaced by S."""
    return [re.sub(r"seconds=\d+\.\d\b", "seconds=S", r.getMessage()) for r in caplog.records
            if r.name == "svd_studio" and re.match(r"job \d+ (start|end):", r.getMessage())]


def test_each_job_logs_one_line_as_it_starts_and_one_as_it_ends(tiny_model, caplog):
    caplog.set_level(logging.INFO, logger="svd_studio")
    made = run(functools.partial(service.generate, PHOTO, "local", SMALL))[-1]
    with pytest.raises(InvalidParameter):
        run(functools.partial(service.generate, PHOTO, "local", {**SMALL, "motion_bucket_id": 999}))
    run(functools.partial(service.finish_video, made.video, loop="pingpong"))
    lines = job_lines(caplog)
    first = int(re.match(r"job (\d+) ", lines[0]).group(1))
    n = range(first, first + 3)
    assert lines == [
        f"job {n[0]} start: backend=local", f"job {n[0]} end: backend=local seconds=S outcome=video",
        f"job {n[1]} start: backend=local", f"job {n[1]} end: backend=local seconds=S outcome=refused",
        f"job {n[2]} start: backend=finish", f"job {n[2]} end: backend=finish seconds=S outcome=video",
    ]


def test_a_cancelled_job_is_logged_with_its_task_id_and_no_key(app, novita, accepting, caplog):
    caplog.set_level(logging.INFO, logger="svd_studio")
    accepting(SECRET)
    novita.stuck = True
    runner = Runner()

    async def cancel_once_submitted() -> None:
        async for item in runner.run(functools.partial(service.generate, PHOTO, "novita", {}, api_key=SECRET),
                                     "ops-cancel"):
            if str(item).startswith("Submitted."):
                runner.cancel_session("ops-cancel")

    with pytest.raises(Cancelled):
        asyncio.run(cancel_once_submitted())
    task_id = list(novita.tasks)[-1]
    lines = job_lines(caplog)
    number = re.match(r"job (\d+) ", lines[0]).group(1)
    assert lines == [f"job {number} start: backend=novita",
                     f"job {number} end: backend=novita task={task_id} seconds=S outcome=cancelled"]
    assert SECRET not in caplog.text


@pytest.mark.parametrize(("error", "outcome"), [
    (LimitReached("This studio's Novita AI key allows 6 videos an hour per visitor."), "limit"),
    (Cancelled("Cancelled while waiting for Novita.", job_id="t-1"), "cancelled"),
    (InvalidParameter("fps", 24, "exactly 6", "Novita AI"), "refused"),
    (BadImage("photo.png is not an image."), "refused"),
    (MissingKey("Novita AI needs an API key."), "refused"),
    (ProviderError("Novita rejected the API key.", status=403), "refused"),
    (ProviderError("Novita kept failing while submitting the job (5 tries).", status=429), "failed"),
    (ProviderError("Novita did not answer the submit request."), "failed"),
    (GenerationFailed("Novita could not generate the video.", job_id="t-2"), "failed"),
    (TimedOut("Novita did not finish within 600 s.", job_id="t-3"), "failed"),
    (RuntimeError("a bug"), "failed"),
])
def test_every_way_a_job_ends_has_one_word(error, outcome):
    assert outcome_of(error) == outcome and outcome in OUTCOMES
