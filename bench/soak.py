"""Soak: hundreds of hosted jobs through the launched app, watching what the server keeps.

Why: a public Space runs for weeks and serves strangers. Whatever one job leaves behind
(memory, an open file or socket, a thread, a child process, a file on disk) adds up.
This runs ``python app.py`` in a subprocess, as a Space does, against a fake Novita
server (in this process, ``--job-seconds`` per job), and sends ``--jobs`` jobs to
``/generate`` from ``--clients`` threads at once, each with its own
``gradio_client.Client`` and a new Gradio session for every job (each job is a new
visitor's page, as far as the server can tell; ``--sessions per-client`` keeps one
session per client, to tell what a session costs from what a job costs). It samples
the server process (``/proc/<pid>``: VmRSS, open file descriptors, threads, live child
processes) and the size of its output folder and of Gradio's cache:

- baseline: after a warm-up round (one job per client, all at once) and ``--settle`` s;
- peak: the largest value the sampler thread saw, every 0.5 s, during the jobs;
- after: ``--settle`` s after the last job (15 s by default: anyio drops idle worker
  threads after 10 s, so the thread count can only come back after that);
- late (not with ``--no-late``): a job's folder is kept for ``studio.outputs.GRACE_S``
  (30 s) after it ends (the page makes its GIF from it), so the sweeper cannot honour the
  cap during a burst; and ``ui.sessions`` slims a session's state once it has been idle
  ``SLIM_AFTER_S`` (5 s, checked every ``EVERY_S``, 5 s). Once both have passed, one more
  job (every job sweeps first) shows whether the folder and the memory come back.

Every job must end in a video (the file came back, starts like an MP4; every tenth is
decoded with ``studio.video.probe``) or in a clear refusal (an error of a few words on
a line or three, with no traceback and not the studio's "something went wrong"
apology; refusals that are not also a full sentence are counted apart). On purpose, some
jobs are refused: every 40th asks for ``motion_bucket_id=999`` (a bad value), every 40th
(offset) has the provider fail the job (a fake Novita that fails seed 4242), every 40th
(offset) types a wrong API key; and the last two clients share one visitor address
(``x-forwarded-for``) and together start more jobs than ``HOSTED_LIMIT_PER_HOUR`` allows
one visitor (set to one more than any other client starts), so the spend guard
refuses the rest. Every other client has its own address and never reaches the limit.

Settings of the app: ``BACKENDS=novita,modelslab`` (hosted only; ModelsLab is never
used), ``OUTPUT_DIR`` a temp folder, ``OUTPUT_MAX_MB`` (``--cap-mb``, 20),
``OUTPUT_MAX_AGE_MINUTES`` its default, ``SPACE_ID`` and ``HOSTED_LIMIT_PER_DAY`` unset
(no daily limit off a Space), ``GRADIO_TEMP_DIR`` a temp folder. Each job folder holds
the photo's copy (examples/astronaut.png, 0.79 MB) and the video, so 20 MB is about 25
jobs. Tolerances for "near baseline": RSS within +max(25 MB, 15 %), fds within +10,
threads within +5, child processes +0; the output folder is under the cap when it is at
most the cap plus one job's folder (the job just made), and during the run when it is at
most the cap plus one folder per client (jobs still running are never removed).

    python -m bench.soak [--jobs 200] [--clients 16] [--job-seconds 0.3] [--quick] [--no-late]
                         [--sessions per-job|per-client] [--real-video] [--app-env NAME=VALUE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import free_port, load_note, stop_app, table

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "astronaut.png"
BACKEND = "novita"
BACKENDS = "novita,modelslab"  # hosted only, Novita the default (ModelsLab has no key here and is never used)
FAIL_SEED = 4242
FAIL_REASON = "The soak test's provider failed this job on purpose"
BAD_VALUE = {"motion_bucket_id": 999}
WRONG_KEY = "sk-wrong-key-for-the-soak"
SHARED_VISITOR = "203.0.113.99"  # the last two clients: one visitor the spend guard counts together
JOB_TIMEOUT_S = 60.0  # a job takes 2-10 s here; a stuck one shows up as an "other error"
MB = 1024 * 1024  # as studio.outputs counts OUTPUT_MAX_MB

# Near baseline: after - baseline at most these.
RSS_TOLERANCE_MB, RSS_TOLERANCE_FRACTION = 25.0, 0.15
FD_TOLERANCE, THREAD_TOLERANCE, CHILD_TOLERANCE = 10, 5, 0


# --- the server process and its folders -----------------------------------------------


@dataclass
class Sample:
    rss_mb: float
    fds: int
    threads: int
    children: int
    output_mb: float
    cache_mb: float

    FIELDS = ("rss_mb", "fds", "threads", "children", "output_mb", "cache_mb")

    def peak(self, other: Sample) -> Sample:
        return Sample(*(max(getattr(self, f), getattr(other, f)) for f in self.FIELDS))


def tree_bytes(root: Path) -> int:
    """Apparent size of the files under ``root`` (st_size, as the sweeper counts), links not followed.
    Folders may vanish while we walk (the sweeper renames and removes them): those count as gone."""
    total = 0
    for folder, _dirs, files in os.walk(root, onerror=lambda _e: None):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def child_count(pid: int) -> int:
    """Live processes whose parent is ``pid`` (ffmpeg runs the server starts)."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] != "Z":
            count += 1
    return count


def sample(pid: int, output: Path, cache: Path) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kb = int(values["VmRSS"].split()[0])
    return Sample(rss_mb=rss_kb / 1024, fds=len(os.listdir(f"/proc/{pid}/fd")), threads=int(values["Threads"]),
                  children=child_count(pid), output_mb=tree_bytes(output) / MB, cache_mb=tree_bytes(cache) / MB)


class Sampler(threading.Thread):
    """Samples every ``every`` s until stopped; keeps the maximum of each measure."""

    def __init__(self, pid: int, output: Path, cache: Path, every: float = 0.5) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.pid, self.output, self.cache, self.every = pid, output, cache, every
        self.peak: Sample | None = None
        self.count = 0
        self.rss: list[tuple[float, float]] = []  # (time.monotonic(), RSS MB), to see a trend
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                now = sample(self.pid, self.output, self.cache)
            except (OSError, KeyError, ValueError):  # the server died: the jobs will say so
                break
            self.peak = now if self.peak is None else self.peak.peak(now)
            self.count += 1
            self.rss.append((time.monotonic(), now.rss_mb))
            self._stop_event.wait(self.every)

    def stop(self) -> Sample | None:
        self._stop_event.set()
        self.join()
        return self.peak


def start_app(env: dict[str, str], log_path: Path, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """``python app.py`` with ``env``; returns the process and its URL once ``GET /`` answers 200."""
    port = int(env["GRADIO_SERVER_PORT"])
    url = f"http://127.0.0.1:{port}/"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()  # the child has its own copy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with code {proc.returncode}:\n{log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    stop_app(proc)
    raise TimeoutError(f"app.py did not serve / within {timeout:.0f} s:\n{log_path.read_text()[-2000:]}")


# --- the jobs ----------------------------------------------------------------------------


@dataclass
class Planned:
    index: int
    kind: str  # video | bad-value | provider-fail | wrong-key
    params: dict[str, Any] = field(default_factory=dict)
    api_key: str | None = None


@dataclass
class Outcome:
    job: Planned
    client: int
    result: str  # video | refusal | error
    detail: str  # the refusal's text, the error, or the video's path
    probed: tuple[int, int, int] | None = None


def plan(index: int) -> Planned:
    slot = index % 40
    if slot == 7:
        return Planned(index, "bad-value", dict(BAD_VALUE))
    if slot == 23:
        return Planned(index, "provider-fail", {"seed": FAIL_SEED})
    if slot == 31:
        return Planned(index, "wrong-key", api_key=WRONG_KEY)
    return Planned(index, "video", {"seed": index})


def refusal_kind(text: str) -> str:
    if "an hour per visitor" in text:
        return "spend limit"
    if "motion_bucket_id" in text:
        return "bad value"
    if FAIL_REASON in text:
        return "provider failed the job"
    if "API key" in text:
        return "wrong key"
    return "other refusal"


def clear_refusal(text: str) -> bool:
    """A refusal a person can read: a few words on a line or three, no traceback, not the studio's
    apology for a bug. (Whether it is also a full sentence is counted apart: see ``full_sentence``.)"""
    text = text.strip()
    return (len(text) >= 15 and " " in text and text.count("\n") <= 2 and "Traceback" not in text
            and 'File "' not in text and "Something went wrong inside the studio" not in text)


def full_sentence(text: str) -> bool:
    text = text.strip()
    return bool(text) and text[0].isupper() and text[-1] in ".!?)"


def run_job(client: Any, number: int, job: Planned, probe: bool, new_session: bool = True) -> Outcome:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    from studio import video
    from tests.fakes.media import looks_like_mp4

    if new_session:
        client.reset_session()  # a new Gradio session: a new visitor's page, as the server sees it
    try:
        handle = client.submit(image=handle_file(str(IMAGE)), backend=BACKEND, api_key=job.api_key, **job.params,
                               api_name="/generate")
        path, _used = handle.result(timeout=JOB_TIMEOUT_S)
    except AppError as exc:
        text = str(exc)
        return Outcome(job, number, "refusal" if clear_refusal(text) else "error", text)
    except Exception as exc:  # a timeout, a dropped connection: not a clear ending
        return Outcome(job, number, "error", f"{type(exc).__name__}: {exc}"[:300])
    file = Path(path)
    if not file.is_file() or not looks_like_mp4(file.read_bytes()[:12]):
        return Outcome(job, number, "error", f"not an MP4 file: {path}")
    probed = None
    if probe:
        try:
            probed = video.probe(file)
        except Exception as exc:
            return Outcome(job, number, "error", f"does not decode: {exc}"[:300])
    return Outcome(job, number, "video", str(file), probed)


def run_round(clients: list[Any], lists: list[list[Planned]], new_session: bool = True) -> list[Outcome]:
    """Each client works through its list in order; all clients at once. Says every 25 jobs how far it is."""
    done = [0]
    lock = threading.Lock()
    total = sum(map(len, lists))

    def work(number: int) -> list[Outcome]:
        found = []
        for job in lists[number]:
            found.append(run_job(clients[number], number, job, probe=job.index % 10 == 0, new_session=new_session))
            with lock:
                done[0] += 1
                if done[0] % 25 == 0:
                    print(f"  {done[0]}/{total} jobs ended", file=sys.stderr, flush=True)
        return found

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return [o for found in pool.map(work, range(len(clients))) for o in found]


def expected(outcome: Outcome, clients: int) -> bool:
    """Whether the ending is the one planned (the shared visitor's jobs may also meet the spend limit)."""
    shared = outcome.client >= clients - 2
    kind = refusal_kind(outcome.detail) if outcome.result == "refusal" else ""
    if outcome.job.kind == "video":
        return outcome.result == "video" or (shared and kind == "spend limit")
    wanted = {"bad-value": "bad value", "provider-fail": "provider failed the job", "wrong-key": "wrong key"}
    return outcome.result == "refusal" and (kind == wanted[outcome.job.kind] or (shared and kind == "spend limit"))


# --- the report ---------------------------------------------------------------------------


def near(name: str, base: float, after: float) -> tuple[bool, str]:
    if name == "rss_mb":
        allowed = max(RSS_TOLERANCE_MB, RSS_TOLERANCE_FRACTION * base)
        return after - base <= allowed, f"+{allowed:.0f} MB"
    allowed = {"fds": FD_TOLERANCE, "threads": THREAD_TOLERANCE, "children": CHILD_TOLERANCE}[name]
    return after - base <= allowed, f"+{allowed}"


def largest_job_mb(output: Path) -> float:
    sizes = [tree_bytes(p) for p in output.iterdir() if p.is_dir() and not p.name.startswith(".")] \
        if output.is_dir() else []
    return max(sizes, default=0) / MB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--job-seconds", type=float, default=0.3, help="the fake provider's time per job")
    parser.add_argument("--cap-mb", type=float, default=20.0, help="OUTPUT_MAX_MB for the app")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before the baseline and after-samples")
    parser.add_argument("--no-late", action="store_true", help="skip the sample after the output folder's grace")
    parser.add_argument("--real-video", action="store_true", help="the provider serves 25 frames of 1024x576")
    parser.add_argument("--sessions", choices=("per-job", "per-client"), default="per-job",
                        help="a new Gradio session for every job (a new visitor each time), or one per client")
    parser.add_argument("--app-env", action="append", default=[], metavar="NAME=VALUE",
                        help="one more variable for the app's process (repeatable), e.g. MALLOC_ARENA_MAX=2")
    parser.add_argument("--quick", action="store_true", help="48 jobs from 8 clients, no late sample")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.clients, args.no_late = 48, 8, True
    if args.clients < 3:
        parser.error("--clients must be 3 or more (the last two share one visitor)")

    try:
        from gradio_client import Client

        from studio.outputs import GRACE_S
        from ui.sessions import EVERY_S, SLIM_AFTER_S
        from tests.fakes.media import make_mp4_bytes
        from tests.fakes.novita import FakeNovita
    except ImportError as exc:
        print(f"not available yet: {exc}")
        return

    class FailingNovita(FakeNovita):
        """Fails the jobs submitted with ``FAIL_SEED`` (the fake's own switch fails every job)."""

        def _poll(self, req: Any) -> Any:
            reply = super()._poll(req)
            with self.lock:
                task = self.tasks.get(req.query.get("task_id", ""))
            body = reply.json if isinstance(reply.json, dict) else {}
            if task is not None and task.request.get("seed") == FAIL_SEED \
                    and body.get("task", {}).get("status") == "TASK_STATUS_SUCCEED":
                body["task"].update(status="TASK_STATUS_FAILED", reason=FAIL_REASON)
                body["videos"] = []
            return reply

    # Jobs: job i goes to client i % clients. The hourly limit: one more than any client with its own
    # address starts (its warm-up job, its video and provider-fail jobs, the late job); the last two
    # clients, one visitor together, start more than that.
    lists: list[list[Planned]] = [[] for _ in range(args.clients)]
    for i in range(args.jobs):
        lists[i % args.clients].append(plan(i))
    charged = [1 + sum(j.kind in ("video", "provider-fail") for j in jobs) + (k == 0) for k, jobs in enumerate(lists)]
    limit = max(charged[:-2]) + 1
    if charged[-2] + charged[-1] <= limit:
        print("note: with these --jobs/--clients the shared visitor stays within the hourly limit", file=sys.stderr)

    load_before = load_note()
    clip = make_mp4_bytes(frames=25, width=1024, height=576) if args.real_video else None
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp_name, \
            FailingNovita(api_key="sk-soak-key", job_seconds=args.job_seconds, queued_polls=0, processing_polls=0,
                          video_bytes=clip) as server:
        tmp = Path(tmp_name)
        output, cache, downloads = tmp / "out" / "svd-studio", tmp / "gradio-cache", tmp / "downloads"
        env = {k: v for k, v in os.environ.items()
               if k not in ("SPACE_ID", "HOSTED_LIMIT_PER_DAY", "OUTPUT_MAX_AGE_MINUTES", "MODELSLAB_API_KEY")}
        env |= {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(free_port()),
                "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(cache),
                "BACKENDS": BACKENDS, "NOVITA_BASE_URL": server.base_url, "NOVITA_API_KEY": server.api_key,
                "OUTPUT_DIR": str(tmp / "out"), "OUTPUT_MAX_MB": f"{args.cap_mb:g}",
                "HOSTED_LIMIT_PER_HOUR": str(limit)}
        env |= dict(item.split("=", 1) for item in args.app_env)
        log_path = tmp / "app.log"
        try:
            proc, url = start_app(env, log_path)
        except (RuntimeError, TimeoutError) as exc:
            print(f"not available yet: the app did not start: {exc}")
            return
        try:
            addresses = [f"198.51.100.{k + 1}" for k in range(args.clients - 2)] + [SHARED_VISITOR] * 2

            def connect(k: int) -> Any:
                return Client(url, verbose=False, headers={"x-forwarded-for": addresses[k]},
                              download_files=str(downloads / f"client{k}"))

            print(f"app pid {proc.pid} at {url}; warming up ({args.clients} jobs)...", file=sys.stderr, flush=True)
            with ThreadPoolExecutor(max_workers=args.clients) as pool:
                clients = list(pool.map(connect, range(args.clients)))
            per_job = args.sessions == "per-job"
            warm = run_round(clients, [[Planned(-1 - k, "video", {"seed": 1000 + k})] for k in range(args.clients)],
                             per_job)
            time.sleep(args.settle)
            baseline = sample(proc.pid, output, cache)

            print(f"soak: {args.jobs} jobs from {args.clients} clients...", file=sys.stderr, flush=True)
            sampler = Sampler(proc.pid, output, cache)
            sampler.start()
            start = time.perf_counter()
            outcomes = run_round(clients, lists, per_job)
            wall = time.perf_counter() - start
            last_job_end = time.monotonic()
            peak = sampler.stop() or baseline
            time.sleep(args.settle)
            after = sample(proc.pid, output, cache)
            one_job_mb = largest_job_mb(output)
            load_after = load_note()

            late = None
            if not args.no_late:
                wait = max(0.0, last_job_end + max(GRACE_S, SLIM_AFTER_S + EVERY_S) + 5 - time.monotonic())
                print(f"waiting {wait:.0f} s for the output folder's grace and the sessions' tidying, "
                      "then one more job...",
                      file=sys.stderr, flush=True)
                time.sleep(wait)
                late_outcome = run_job(clients[0], 0, Planned(-100, "video", {"seed": 99}), probe=True,
                                       new_session=per_job)
                time.sleep(1.0)
                late = (sample(proc.pid, output, cache), late_outcome)
            for client in clients:
                client.close()
        finally:
            stop_app(proc)
        server_log = log_path.read_text(errors="replace")
        submits = len(server.requests_for("submit"))

    report(args, limit, warm, outcomes, baseline, peak, after, late, one_job_mb, wall, sampler, server_log,
           submits, load_before, load_after)


def report(args: argparse.Namespace, limit: int, warm: list[Outcome], outcomes: list[Outcome], baseline: Sample,
           peak: Sample, after: Sample, late: tuple[Sample, Outcome] | None, one_job_mb: float, wall: float,
           sampler: Sampler, server_log: str, submits: int, load_before: str, load_after: str) -> None:
    names = {"rss_mb": "RSS MB", "fds": "open fds", "threads": "threads", "children": "child processes",
             "output_mb": "output folder MB", "cache_mb": "Gradio cache MB"}
    cap_ok = args.cap_mb + one_job_mb
    cap_busy = args.cap_mb + args.clients * one_job_mb  # running jobs are never swept, and 16 run at once
    rows = []
    for f in Sample.FIELDS:
        b, p, a = getattr(baseline, f), getattr(peak, f), getattr(after, f)
        lt = getattr(late[0], f) if late else ""
        if f in ("rss_mb", "fds", "threads", "children"):
            ok, tol = near(f, b, a)
            verdict = f"after: {'yes' if ok else 'NO'}"
            if late:
                verdict += f", late: {'yes' if near(f, b, getattr(late[0], f))[0] else 'NO'}"
            verdict += f" (tolerance {tol})"
        elif f == "output_mb":
            verdict = (f"peak {'<=' if p <= cap_busy else '>'} cap + {args.clients} running jobs ({cap_busy:.1f}); "
                       f"after {'<=' if a <= cap_ok else '>'} cap + one job ({cap_ok:.1f})"
                       + (f", late {'<=' if late[0].output_mb <= cap_ok else '>'} it" if late else ""))
        else:
            verdict = "not bounded by OUTPUT_MAX_MB (Gradio's own cache, swept hourly)"
        rows.append([names[f], b, p, a, lt, verdict])

    video = "1024x576, 25 frames" if args.real_video else "64x64, 4 frames"
    extra = "".join(f", {item}" for item in args.app_env) + f", sessions {args.sessions}"
    print(f"## Soak: {args.jobs} jobs from {args.clients} clients, fake Novita {args.job_seconds} s per job, "
          f"served video {video}, OUTPUT_MAX_MB={args.cap_mb:g}, HOSTED_LIMIT_PER_HOUR={limit}{extra}\n")
    print(table(["server process", "baseline", "peak", f"after {args.settle:g} s", "late", "near baseline?"],
                rows))
    print(f"\n{sampler.count} samples during the run; one job's folder {one_job_mb:.2f} MB; \"late\": "
          f"{'not taken' if late is None else 'after the grace, the sessions tidied, and one more job'}")
    if late is not None:
        print(f"late job: {late[1].result} {late[1].detail[:120]}")

    counts = {r: sum(o.result == r for o in outcomes) for r in ("video", "refusal", "error")}
    kinds: dict[str, int] = {}
    for o in outcomes:
        if o.result == "refusal":
            kinds[refusal_kind(o.detail)] = kinds.get(refusal_kind(o.detail), 0) + 1
    probed = [o for o in outcomes if o.probed is not None]
    unexpected = [o for o in outcomes if not expected(o, args.clients)]
    tracebacks = server_log.count("Traceback")
    errors_logged = sum(" ERROR " in line for line in server_log.splitlines())
    job_rows = [
        ["videos", counts["video"], f"{len(probed)} decoded with studio.video.probe, all MP4 files checked"],
        ["clear refusals", counts["refusal"], ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))],
        ["other errors", counts["error"], "no clear ending (no sentence, a traceback, a timeout, a bad file)"],
        ["ended otherwise than planned", len(unexpected), "video jobs refused, or refusals of the wrong kind"],
        ["warm-up jobs (not counted above)", len(warm), f"{sum(o.result == 'video' for o in warm)} videos"],
        ["provider submits received", submits, "warm-up, soak and late jobs that reached the provider"],
        ["wall time, s", wall, f"{len(outcomes) / wall:.2f} jobs/s"],
        ["server log", f"{tracebacks} tracebacks", f"{errors_logged} ERROR lines"],
    ]
    print()
    print(table(["jobs", "count", "notes"], job_rows))
    print(f"\nmachine: {load_before} before, {load_after} after")
    if sampler.rss:
        t0, t1 = sampler.rss[0][0], sampler.rss[-1][0]
        marks = [min(sampler.rss, key=lambda s, t=t0 + q * (t1 - t0): abs(s[0] - t))[1] for q in (0, .25, .5, .75, 1)]
        print("- RSS MB during the run at 0/25/50/75/100 % of it: " + " / ".join(f"{m:.0f}" for m in marks))
    loose = [o for o in outcomes if o.result == "refusal" and not full_sentence(o.detail)]
    if loose:
        print(f"- {len(loose)} refusals are clear but not a full sentence (lower-case start or no final stop), "
              f"e.g. {loose[0].detail[:150]!r}")
    shown = unexpected + [o for o in outcomes if o.result == "error" and o not in unexpected]
    for o in shown[:6]:
        print(f"- job {o.job.index} ({o.job.kind}, client {o.client}): {o.result}: {o.detail[:200]}")
    for kind in sorted(kinds):
        example = next(o.detail for o in outcomes if o.result == "refusal" and refusal_kind(o.detail) == kind)
        print(f"- e.g. {kind}: {example[:220]}")
    sizes = sorted({o.probed for o in probed if o.probed is not None})
    if sizes:
        print(f"- decoded (frames, width, height): {', '.join(map(str, sizes))}")

if __name__ == "__main__":
    main()
