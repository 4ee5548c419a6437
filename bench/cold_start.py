"""Cold start: seconds from ``python app.py`` to the first HTTP 200 on ``GET /``.

Why: the page should appear about as fast as any Gradio app; heavy imports (torch,
diffusers) belong to the first generation, not to start-up. The reference is a bare
Gradio hello-world (one Textbox) launched the same way; runs are interleaved so drift
on the machine hits both alike. A separate, untimed run of the app under an import
watcher reports whether ``torch`` was imported by the time the page was served.

    python -m bench.cold_start [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench._common import free_port, load_note, median, stop_app, table

ROOT = Path(__file__).resolve().parents[1]
HELLO = """\
import gradio as gr

with gr.Blocks() as demo:
    gr.Textbox(label="hello")
demo.launch()
"""
# Runs app.py as __main__ and reports on stderr the moment anything imports torch.
WATCHED_APP = """\
import os, runpy, sys

class _Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print("BENCH-WATCH: torch imported", file=sys.stderr, flush=True)
        return None

sys.meta_path.insert(0, _Watch())
sys.path.insert(0, os.getcwd())  # the app's folder, as when app.py is run directly
sys.argv = ["app.py"]
runpy.run_path("app.py", run_name="__main__")
"""


def time_to_200(script: Path, stderr_path: Path, timeout: float = 60.0) -> float:
    """Start ``python script`` on a free port; seconds until GET / answers 200."""
    port = free_port()
    env = os.environ | {"GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    err = open(stderr_path, "w")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        while time.perf_counter() - start < timeout:
            if proc.poll() is not None:
                tail = stderr_path.read_text()[-1500:]
                raise RuntimeError(f"{script.name} exited with code {proc.returncode} before serving:\n{tail}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.02)
        raise TimeoutError(f"{script.name} did not serve / within {timeout} s")
    finally:
        stop_app(proc, grace=10)
        err.close()


def torch_imported_when_served(tmp: Path) -> bool:
    """Serve the app once under the import watcher; True if torch was imported by then."""
    watched, log = tmp / "watched_app.py", tmp / "watched.err"
    watched.write_text(WATCHED_APP)
    # runpy resolves "app.py" against the working directory, which time_to_200 sets to ROOT.
    time_to_200(watched, log)
    return "BENCH-WATCH: torch imported" in log.read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="launches of each script (default 3)")
    parser.add_argument("--quick", action="store_true", help="one launch of each")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    load_before = load_note()

    with tempfile.TemporaryDirectory(prefix="bench-cold-") as name:
        tmp = Path(name)
        hello = tmp / "hello.py"
        hello.write_text(HELLO)
        scripts = {"app.py (SVD Studio)": ROOT / "app.py", "hello-world gr.Blocks": hello}
        times: dict[str, list[float]] = {k: [] for k in scripts}
        for i in range(runs):
            order = list(scripts) if i % 2 == 0 else list(reversed(scripts))  # alternate who goes first
            for label in order:
                times[label].append(time_to_200(scripts[label], tmp / "stderr.txt"))
        torch_at_serve = torch_imported_when_served(tmp)

    ours, ref = (median(times[k]) for k in scripts)
    rows = [[k, median(v), min(v), max(v), len(v)] for k, v in times.items()]
    print(f"## Cold start: `python app.py` to first HTTP 200 on GET / ({runs} run(s) each, interleaved)\n")
    print(table(["script", "median s", "min s", "max s", "runs"], rows))
    ratio = ours / ref
    print(f"\nratio app / hello-world: **{ratio:.2f}x** (target <= 1.30x: {'met' if ratio <= 1.3 else 'NOT met'})")
    print(f"torch imported by the time the page was served: **{'yes' if torch_at_serve else 'no'}**")
    print(f"machine: {load_before} before, {load_note()} after")


if __name__ == "__main__":
    main()
