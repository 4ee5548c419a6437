"""A spend guard for the owner's API keys on a public page.

On a public Space, strangers make videos with the hosted keys the owner put in the
environment; nothing else stops one visitor from spending all of that credit. So every
hosted job that would use such a key is counted here, per key (per hosted backend):

- each visitor may start at most ``HOSTED_LIMIT_PER_HOUR`` jobs in any sliding hour;
- all visitors together may start at most ``HOSTED_LIMIT_PER_DAY`` jobs in one UTC day.
  A calendar day rather than a sliding 24 hours, so a refusal can name one reset time,
  00:00 UTC, that is the same for everybody.

Each variable: unset = the default (on a Space, where ``SPACE_ID`` is set, 6 an hour and
200 a day; elsewhere no limit); a positive whole number = that limit; ``unlimited`` = no
limit. Anything else, 0 included ("none allowed" and "no limit" are both fair readings), is
a mistake: ``BadSetting``, naming the variable, at the first job that would use the
owner's key, and such jobs stay refused until it is fixed: the guard fails closed.

Never counted: a job with a key the visitor typed (it spends their own credit), a backend
with no key in the environment (local jobs; a hosted one that will ask for a key), and
work that starts no new paid job (finishing, resuming a task). A job is counted as it
starts, after every check that refuses a bad value, so a refused value costs nothing;
sweeps and extends first ``check`` their whole size, so they are refused before anything
starts rather than halfway. Who a visitor is, is the caller's business (``ui.visitor``).

Memory stays bounded over weeks: a visitor keeps one start time per job of the last hour
(never more than the hourly limit), visitors idle for an hour are dropped, and at most
``MAX_VISITORS`` are tracked, the least recently active forgotten first.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Callable

import backends
from studio.errors import BadSetting, LimitReached

PER_HOUR_ENV, PER_DAY_ENV = "HOSTED_LIMIT_PER_HOUR", "HOSTED_LIMIT_PER_DAY"
UNLIMITED = "unlimited"
HOUR = 3600.0
MAX_VISITORS = 10_000
UNKNOWN = "unknown visitor"  # a caller that names no visitor shares one allowance: fail closed


@dataclass(frozen=True)
class Limits:
    """Jobs allowed with the owner's key; None is no limit."""

    per_hour: int | None
    per_day: int | None


SPACE_DEFAULTS = Limits(per_hour=6, per_day=200)
ELSEWHERE = Limits(per_hour=None, per_day=None)


def read_limit(name: str, default: int | None) -> int | None:
    """One variable under the rules above; a bad value names the variable and the value."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() == UNLIMITED:
        return None
    if re.fullmatch(r"[0-9]+", raw) and int(raw) > 0:
        return int(raw)
    raise BadSetting(f"{name} must be a positive whole number or '{UNLIMITED}', got {raw!r} "
                     "(left unset it is the default: a limit on a Space, none elsewhere).")


QUEUE_ENV = "LOCAL_QUEUE_PER_VISITOR"
SPACE_QUEUE = 3  # local jobs one visitor may have waiting on a Space


def queue_cap(backend: backends.Backend) -> int | None:
    """How many jobs one visitor may have waiting in ``backend``'s line (None: no cap).
    Only work on this machine's own devices is capped (a backend without a key to
    spend): a hosted provider keeps its own queue. ``LOCAL_QUEUE_PER_VISITOR``: 3 on a
    Space, no cap elsewhere; ``unlimited`` lifts it. A batch is one entry."""
    if getattr(backend, "key_env", None):
        return None
    default = SPACE_QUEUE if os.environ.get("SPACE_ID", "").strip() else None
    return read_limit(QUEUE_ENV, default)


def from_environment() -> Limits:
    """Read at every job, like the backends' base URLs, so a changed variable applies at once."""
    default = SPACE_DEFAULTS if os.environ.get("SPACE_ID", "").strip() else ELSEWHERE
    return Limits(read_limit(PER_HOUR_ENV, default.per_hour), read_limit(PER_DAY_ENV, default.per_day))


def owner_key(backend: backends.Backend) -> bool:
    """Whether a job on ``backend`` without a typed key would spend a key from the environment."""
    return bool(backend.key_env and os.environ.get(backend.key_env, "").strip())


class SpendGuard:
    """Counts the jobs started with the owner's keys and refuses those over a limit.

    ``clock`` gives seconds since the epoch (tests pass a fake one); ``limits`` is read at
    every call. ``check`` only asks; ``charge`` asks and, when allowed, counts the jobs, in
    one step under the lock so two jobs at once cannot both take the last one.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 limits: Callable[[], Limits] = from_environment, max_visitors: int = MAX_VISITORS) -> None:
        self._clock, self._limits, self._max_visitors = clock, limits, max_visitors
        self._lock = threading.Lock()
        # (backend, visitor) -> start times in the last hour, oldest first; least recently active first.
        self._recent: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._days: dict[str, tuple[date, int]] = {}  # backend -> (UTC day, jobs started that day)

    def check(self, backend: str, visitor: str | None, *, typed_key: bool, jobs: int = 1) -> None:
        """Raise ``LimitReached`` unless ``jobs`` more jobs fit now; counts nothing."""
        self._apply(backend, visitor, typed_key, jobs, charge=False)

    def charge(self, backend: str, visitor: str | None, *, typed_key: bool, jobs: int = 1) -> None:
        """Count ``jobs`` jobs starting now, or raise ``LimitReached`` and count none."""
        self._apply(backend, visitor, typed_key, jobs, charge=True)

    def tracked(self) -> int:
        """How many visitors are remembered (for tests of the memory bound)."""
        with self._lock:
            return len(self._recent)

    def _apply(self, backend: str, visitor: str | None, typed_key: bool, jobs: int, *, charge: bool) -> None:
        chosen = backends.get_backend(backend)
        if typed_key or jobs <= 0 or not owner_key(chosen):
            return
        limits = self._limits()
        who = (chosen.name, visitor or UNKNOWN)
        with self._lock:
            now = self._clock()
            stamps = [t for t in self._recent.get(who, ()) if t > now - HOUR]
            today = _utc(now).date()
            day, used = self._days.get(chosen.name, (today, 0))
            used_today = used if day == today else 0
            refusal = _refusal(chosen.label, limits, stamps, used_today, jobs, now)
            if refusal is not None:
                raise LimitReached(refusal)
            if not charge:
                return
            if limits.per_hour is not None:
                self._recent[who] = stamps + [now] * jobs
                self._recent.move_to_end(who)
                self._bound(now)
            if limits.per_day is not None:
                self._days[chosen.name] = (today, used_today + jobs)

    def _bound(self, now: float) -> None:
        """Past the cap, forget visitors idle for an hour, then the least recently active."""
        if len(self._recent) <= self._max_visitors:
            return
        for who in [w for w, stamps in self._recent.items() if stamps[-1] <= now - HOUR]:
            del self._recent[who]
        while len(self._recent) > self._max_visitors:
            self._recent.popitem(last=False)


def _refusal(label: str, limits: Limits, stamps: list[float], used_today: int, jobs: int, now: float) -> str | None:
    """The sentence for the limit that holds these jobs back longest, or None if they fit."""
    reasons = []  # (seconds until they fit, or inf for never; the sentence)
    if limits.per_hour is not None:
        lead = f"This studio's {label} key allows {_videos(limits.per_hour)} an hour per visitor"
        if jobs > limits.per_hour:
            reasons.append((math.inf, _never(lead, label, jobs)))
        elif len(stamps) + jobs > limits.per_hour:
            freed = stamps[len(stamps) + jobs - limits.per_hour - 1] + HOUR  # when enough have aged out
            when = f"at {_utc(math.ceil(freed / 60) * 60):%H:%M} UTC"
            reasons.append((freed - now, _later(lead, label, jobs, limits.per_hour - len(stamps), when)))
    if limits.per_day is not None:
        lead = f"This studio's {label} key allows {_videos(limits.per_day)} a day for everyone"
        if jobs > limits.per_day:
            reasons.append((math.inf, _never(lead, label, jobs)))
        elif used_today + jobs > limits.per_day:
            midnight = datetime.combine(_utc(now).date() + timedelta(days=1), datetime.min.time(), timezone.utc)
            wait = midnight.timestamp() - now
            when = f"after the count resets at 00:00 UTC (in {_duration(wait)})"
            reasons.append((wait, _later(lead, label, jobs, limits.per_day - used_today, when)))
    return max(reasons, key=lambda r: r[0])[1] if reasons else None


def _later(lead: str, label: str, jobs: int, left: int, when: str) -> str:
    if jobs == 1:
        return f"{lead}; you can start more {when}, or paste your own {label} API key to go on now."
    remaining = "none is left" if left <= 0 else f"only {left} {'is' if left == 1 else 'are'} left"
    return (f"{lead}; these {jobs} videos need {jobs} of them and {remaining}, so you can start them {when}, "
            f"or paste your own {label} API key to go on now.")


def _never(lead: str, label: str, jobs: int) -> str:
    return f"{lead}, fewer than the {jobs} these need; make fewer at a time, or paste your own {label} API key."


def _videos(count: int) -> str:
    return f"{count} video" if count == 1 else f"{count} videos"


def _duration(seconds: float) -> str:
    hours, minutes = divmod(max(1, math.ceil(seconds / 60)), 60)  # rounded up: never promise too early
    return " ".join(part for part in (f"{hours} h" if hours else "", f"{minutes} min" if minutes else "") if part)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


GUARD = SpendGuard()  # the one the service uses: one count per process, shared by the page and the API


def check(backend: str, visitor: str | None, *, typed_key: bool, jobs: int = 1) -> None:
    GUARD.check(backend, visitor, typed_key=typed_key, jobs=jobs)


def charge(backend: str, visitor: str | None, *, typed_key: bool, jobs: int = 1) -> None:
    GUARD.charge(backend, visitor, typed_key=typed_key, jobs=jobs)
