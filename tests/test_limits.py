"""The spend guard on the owner's keys: the guard itself on a fake clock, the limits read
from the environment, who a visitor is, and the launched app refusing over-limit jobs
before any request reaches the (fake) provider."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio_client import Client, handle_file

from orchestration import limits
from studio.errors import BadSetting, LimitReached
from orchestration.limits import Limits, SpendGuard
from tests.conftest import EXAMPLES, launched_studio
from tests.fakes import FakeNovita
from ui.visitor import visitor

KEY = "sk-canary-limits-4e2"
SMALL = {"width": 128, "height": 64, "num_frames": 4, "num_inference_steps": 2}


def at(hhmmss: str, day: int = 14) -> float:
    return datetime.fromisoformat(f"2025-03-{day:02d}T{hhmmss}+00:00").timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def owner_key(monkeypatch):
    monkeypatch.setenv("NOVITA_API_KEY", KEY)


def refusal(guard: SpendGuard, who: str, jobs: int = 1, check: bool = False) -> str:
    with pytest.raises(LimitReached) as info:
        (guard.check if check else guard.charge)("novita", who, typed_key=False, jobs=jobs)
    return str(info.value)


def test_the_seventh_job_in_an_hour_is_refused_until_the_first_ages_out(owner_key):
    clock = Clock(at("13:05:00"))
    guard = SpendGuard(clock=clock, limits=lambda: Limits(6, None))
    guard.charge("novita", "A", typed_key=False)
    clock.now = at("13:20:00")
    for _ in range(5):
        guard.charge("novita", "A", typed_key=False)
    clock.now = at("13:30:00")
    assert refusal(guard, "A") == (
        "This studio's Novita AI key allows 6 videos an hour per visitor; you can start more at 14:05 UTC, "
        "or paste your own Novita AI API key to go on now.")
    guard.charge("novita", "B", typed_key=False)  # another visitor has an allowance of their own
    clock.now = at("14:05:00")
    guard.charge("novita", "A", typed_key=False)  # the 13:05 job is an hour old
    assert "you can start more at 14:20 UTC" in refusal(guard, "A")


def test_the_time_named_is_never_too_early(owner_key):
    clock = Clock(at("13:05:30"))
    guard = SpendGuard(clock=clock, limits=lambda: Limits(1, None))
    guard.charge("novita", "A", typed_key=False)
    assert "you can start more at 14:06 UTC" in refusal(guard, "A")


def test_the_daily_limit_counts_everyone_and_resets_at_midnight_utc(owner_key):
    clock = Clock(at("09:00:00"))
    guard = SpendGuard(clock=clock, limits=lambda: Limits(None, 3))
    for who in ("A", "B", "C"):
        guard.charge("novita", who, typed_key=False)
    clock.now = at("18:48:00")
    assert refusal(guard, "D") == (
        "This studio's Novita AI key allows 3 videos a day for everyone; you can start more after the count resets "
        "at 00:00 UTC (in 5 h 12 min), or paste your own Novita AI API key to go on now.")
    clock.now = at("23:59:30")
    assert "(in 1 min)" in refusal(guard, "A")
    clock.now = at("00:00:00", day=15)
    guard.charge("novita", "A", typed_key=False)


def test_the_limit_that_holds_longest_is_the_one_named(owner_key):
    clock = Clock(at("22:30:00"))
    guard = SpendGuard(clock=clock, limits=lambda: Limits(1, 1))
    guard.charge("novita", "A", typed_key=False)
    assert "resets at 00:00 UTC (in 1 h 30 min)" in refusal(guard, "A")  # not "more at 23:30"


def test_a_typed_key_is_never_counted_or_refused(owner_key):
    guard = SpendGuard(clock=Clock(at("12:00:00")), limits=lambda: Limits(1, 1))
    for _ in range(5):
        guard.charge("novita", "A", typed_key=True)
    guard.charge("novita", "A", typed_key=False)  # the typed ones took nothing
    refusal(guard, "A")
    guard.charge("novita", "A", typed_key=True)  # over the limit, still free to go on with one's own key


def test_no_key_in_the_environment_and_local_jobs_are_not_counted(monkeypatch):
    monkeypatch.delenv("NOVITA_API_KEY", raising=False)
    guard = SpendGuard(clock=Clock(at("12:00:00")), limits=lambda: Limits(1, 1))
    for _ in range(3):
        guard.charge("novita", "A", typed_key=False)  # the backend will ask for a key: nothing of the owner's spent
        guard.charge("local", "A", typed_key=False)


def test_a_sweep_is_checked_whole_without_being_counted(owner_key):
    clock = Clock(at("13:05:00"))
    guard = SpendGuard(clock=clock, limits=lambda: Limits(2, None))
    assert refusal(guard, "A", jobs=3, check=True) == (
        "This studio's Novita AI key allows 2 videos an hour per visitor, fewer than the 3 these need; "
        "make fewer at a time, or paste your own Novita AI API key.")
    guard.check("novita", "A", typed_key=False, jobs=2)
    guard.charge("novita", "A", typed_key=False)
    clock.now = at("13:10:00")
    assert refusal(guard, "A", jobs=2, check=True) == (
        "This studio's Novita AI key allows 2 videos an hour per visitor; these 2 videos need 2 of them and only 1 "
        "is left, so you can start them at 14:05 UTC, or paste your own Novita AI API key to go on now.")
    guard.charge("novita", "A", typed_key=False)  # the checks took nothing


def test_memory_stays_bounded(owner_key):
    clock = Clock(at("12:00:00"))
    guard = SpendGuard(clock=clock, limits=lambda: Limits(1, None), max_visitors=2)
    for who in ("A", "B", "C"):
        guard.charge("novita", who, typed_key=False)
    assert guard.tracked() == 2
    guard.charge("novita", "A", typed_key=False)  # the least recently active was forgotten
    refusal(guard, "C")
    clock.now = at("13:30:00")
    guard.charge("novita", "D", typed_key=False)  # past the cap: everyone idle for an hour goes
    assert guard.tracked() == 1


@pytest.mark.parametrize("space, hour, day, expected", [
    (None, None, None, Limits(None, None)),
    ("owner/studio", None, None, Limits(6, 200)),
    ("owner/studio", " Unlimited ", "50", Limits(None, 50)),
    (None, "3", None, Limits(3, None)),
])
def test_limits_from_the_environment(monkeypatch, space, hour, day, expected):
    for name, value in (("SPACE_ID", space), (limits.PER_HOUR_ENV, hour), (limits.PER_DAY_ENV, day)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert limits.from_environment() == expected


@pytest.mark.parametrize("value", ["0", "-3", "2.5", "six"])
def test_a_bad_setting_refuses_owner_key_jobs_at_first_use(monkeypatch, owner_key, value):
    monkeypatch.setenv(limits.PER_HOUR_ENV, value)
    guard = SpendGuard(clock=Clock(at("12:00:00")))
    with pytest.raises(BadSetting) as info:
        guard.charge("novita", "A", typed_key=False)
    assert str(info.value) == (
        f"HOSTED_LIMIT_PER_HOUR must be a positive whole number or 'unlimited', got {value!r} "
        "(left unset it is the default: a limit on a Space, none elsewhere).")
    guard.charge("novita", "A", typed_key=True)  # a visitor with their own key is not held up by it


def req(forwarded: str | None, host: str | None, session: str = "s1") -> SimpleNamespace:
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    return SimpleNamespace(headers=headers, client=SimpleNamespace(host=host), session_hash=session)


def test_a_visitor_is_the_address_our_proxy_saw_then_the_client_then_the_session():
    # Behind a proxy on a private network: the rightmost address that is not one of our proxies.
    assert visitor(req("203.0.113.7, 10.0.0.1", "10.0.0.1")) == "203.0.113.7"
    # A made-up address sent by the client sits to the left of what the proxy saw: ignored.
    assert visitor(req("198.51.100.99, 203.0.113.7", "10.16.3.80")) == "203.0.113.7"
    assert visitor(req("1.2.3.4, 5.6.7.8, 203.0.113.7, 172.17.0.5", "127.0.0.1")) == "203.0.113.7"
    assert visitor(req("2001:db8::7, fd00::1", "::1")) == "2001:db8::/64"  # IPv6: its /64
    assert visitor(req("192.168.1.20, 10.0.0.1", "10.0.0.1")) == "192.168.1.20"  # all on a LAN: the first
    # A connection from a public address had no proxy of ours in between: its header is not believed.
    assert visitor(req("203.0.113.7", "198.51.100.4")) == "198.51.100.4"
    assert visitor(req(None, "198.51.100.4")) == "198.51.100.4"
    assert visitor(req(None, "10.0.0.3")) == "10.0.0.3"
    assert visitor(SimpleNamespace(headers={}, client=None, session_hash="s1")) == "session s1"
    # gr.Request as the queue hands it over: plain dicts turned into objects
    request = gr.Request(session_hash="s2", headers={"x-forwarded-for": "203.0.113.9"},
                         client={"host": "10.0.0.2", "port": 1})
    assert visitor(request) == "203.0.113.9"
    assert visitor(gr.Request(session_hash="s3", headers={}, client={"host": None, "port": None})) == "session s3"


def test_an_ipv6_visitor_is_their_64_and_every_forwarded_line_counts():
    from starlette.datastructures import Headers

    # Any address in one /64 is one visitor, however the client picks it; the next /64 is another.
    assert visitor(req(None, "2001:db8:1:2::7")) == visitor(req(None, "2001:db8:1:2:ffff:1:2:3")) == "2001:db8:1:2::/64"
    assert visitor(req("2001:db8:1:2:aaaa::1, fd00::1", "::1")) == "2001:db8:1:2::/64"
    assert visitor(req(None, "2001:db8:1:3::7")) == "2001:db8:1:3::/64"
    assert visitor(req(None, "::ffff:203.0.113.7")) == "203.0.113.7"  # an IPv4 visitor in IPv6 dress
    assert visitor(req(None, "203.0.113.7")) == "203.0.113.7"  # IPv4 stays one address
    # A proxy that adds its own header line: the client's made-up line comes first and is ignored.
    lines = Headers(raw=[(b"x-forwarded-for", b"198.51.100.99"), (b"x-forwarded-for", b"203.0.113.7")])
    assert visitor(SimpleNamespace(headers=lines, client=SimpleNamespace(host="10.0.0.1"), session_hash="s")) == (
        "203.0.113.7")


# --- through the launched app -----------------------------------------------------------


@pytest.fixture(scope="module")
def novita():
    with FakeNovita(api_key=KEY, queued_polls=0, processing_polls=0) as nv:
        yield nv


@pytest.fixture(scope="module")
def app_url(novita, tiny_model):
    env = {"NOVITA_BASE_URL": novita.base_url, "NOVITA_API_KEY": KEY, "MODELSLAB_API_KEY": None, "SPACE_ID": None,
           limits.PER_HOUR_ENV: "2", limits.PER_DAY_ENV: None}
    with launched_studio(env) as url:
        yield url


def as_visitor(url: str, address: str) -> Client:
    """A client the app counts as ``address`` (each test its own, since the count lives as long as the process)."""
    return Client(url, verbose=False, headers={"x-forwarded-for": address})


def submits(nv: FakeNovita) -> int:
    return len(nv.requests_for("submit"))


def generate(client: Client, **extra) -> tuple:
    return client.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), backend="novita", model="svd", **extra,
                          api_name="/generate")


def next_minute(seconds: float) -> str:
    return f"{datetime.fromtimestamp(math.ceil(seconds / 60) * 60, timezone.utc):%H:%M}"


def test_the_third_hosted_job_is_refused_before_it_reaches_the_provider(app_url, novita):
    client = as_visitor(app_url, "203.0.113.10")
    before = submits(novita)
    started = time.time()
    generate(client)
    charged_by = time.time()
    generate(client)
    assert submits(novita) == before + 2
    with pytest.raises(Exception) as info:
        generate(client)
    assert submits(novita) == before + 2
    sentences = {f"This studio's Novita AI key allows 2 videos an hour per visitor; you can start more at "
                 f"{next_minute(t + 3600)} UTC, or paste your own Novita AI API key to go on now."
                 for t in (started, charged_by)}
    assert any(s in str(info.value) for s in sentences), str(info.value)
    _, used = generate(client, api_key=KEY)  # the visitor's own key: not the owner's credit
    assert used["task_id"] and submits(novita) == before + 3
    generate(as_visitor(app_url, "203.0.113.11"))  # someone else is not held up
    assert submits(novita) == before + 4


def test_a_sweep_or_extend_that_would_not_fit_is_refused_at_once(app_url, novita):
    client = as_visitor(app_url, "203.0.113.20")
    before = submits(novita)
    with pytest.raises(Exception) as info:
        client.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), backend="novita", model="svd",
                       parameter="motion_bucket_id", values=[40, 100, 180], api_name="/sweep")
    assert ("This studio's Novita AI key allows 2 videos an hour per visitor, fewer than the 3 these need; "
            "make fewer at a time, or paste your own Novita AI API key.") in str(info.value)
    started = time.time()
    generate(client)
    charged_by = time.time()
    with pytest.raises(Exception) as info:
        client.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), backend="novita", model="svd", segments=2,
                       api_name="/extend")
    sentences = {"This studio's Novita AI key allows 2 videos an hour per visitor; these 2 videos need 2 of them and "
                 f"only 1 is left, so you can start them at {next_minute(t + 3600)} UTC, or paste your own Novita AI "
                 "API key to go on now." for t in (started, charged_by)}
    assert any(s in str(info.value) for s in sentences), str(info.value)
    assert submits(novita) == before + 1  # only the one /generate reached the provider


def test_local_jobs_are_never_limited(app_url):
    client = as_visitor(app_url, "203.0.113.30")
    for seed in (1, 2, 3):
        path, used = client.predict(image=handle_file(str(EXAMPLES / "rocket.jpg")), backend="local", seed=seed,
                                    **SMALL, api_name="/generate")
        assert used["backend"] == "local" and used["seed"] == seed
