"""Segue Studio under 50 concurrent annotators, on loopback: latency per request.

    .venv/bin/python bench/bench_studio.py                    # 50 annotators, 3 sets each
    .venv/bin/python bench/bench_studio.py --annotators 10 --sets 1      # a smoke run

A real matcher holds the library (indexed with `segue index --local`): the bundled tracks plus
the fetched training corpus (data/audio, `make data`) when it is there. The Studio
runs as its own process (`segue studio serve`, SQLite). Each simulated annotator is a bounded
async HTTP client that does what the page does: join through an invite (consent form), load
the set, fetch its three clips, report each clip played after the clip's length, and answer.
Clips are shortened (SEGUE_STUDIO_SHORT_CLIPS) so that the same 50 annotators send requests
several times faster than people would; the must-play rule still holds.

Targets (issue 13): p99 < 200 ms per request; a clip's first byte from the cache < 300 ms;
a page interactive in < 1 s (measured once in Chromium when it is installed). The peer in the
same run is the floor of the same server: GET /healthz under the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import report as rep  # noqa: E402
from devkit.localstack import free_port, running_stack  # noqa: E402
from segue.cli import main as segue_cli  # noqa: E402
from segue.music import bundled_tracks_dir  # noqa: E402

CORPUS = REPO / "data" / "audio"
TARGET_P99_MS = 200.0
TARGET_CLIP_FIRST_BYTE_MS = 300.0
TARGET_INTERACTIVE_MS = 1000.0
FIRST_CLIP = "GET clip (first: cut unless cached)"
CACHED_CLIP = "GET clip (play: range, cached)"


@dataclass
class Timings:
    """Milliseconds per request kind, and failures by kind and status."""

    ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, kind: str, started: float, response: httpx.Response, ok: set[int]) -> None:
        self.ms[kind].append(1000 * (time.perf_counter() - started))
        if response.status_code not in ok:
            self.failures[f"{kind} {response.status_code}"] += 1


class Annotator:
    """One simulated person: cookies kept by hand (Secure cookies on loopback, as browsers do)."""

    def __init__(self, http: httpx.AsyncClient, timings: Timings, clip_s: float) -> None:
        self.http = http
        self.timings = timings
        self.clip_s = clip_s
        self.cookies: dict[str, str] = {}

    async def call(self, kind: str, method: str, path: str, ok: set[int],
                   **kwargs: Any) -> httpx.Response:
        headers = {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
                   **kwargs.pop("headers", {})}
        started = time.perf_counter()
        response = await self.http.request(method, path, headers=headers, **kwargs)
        self.timings.add(kind, started, response, ok)
        for raw in response.headers.get_list("set-cookie"):
            name, value = raw.split(";", 1)[0].split("=", 1)
            self.cookies[name] = value
        return response

    async def join(self, invite: str) -> None:
        page = await self.call("GET /join", "GET", f"/join/{invite}", {200})
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, "no consent form"
        await self.call("POST /join", "POST", f"/join/{invite}", {303},
                        data={"csrf": csrf.group(1), "agree": "yes"})

    async def answer_set(self) -> bool:
        page = await self.call("GET /study", "GET", "/study", {200})
        item = re.search(r'data-item="([^"]+)"', page.text)
        csrf = re.search(r'data-csrf="([^"]+)"', page.text)
        if not (item and csrf):
            return False
        body = {"item_id": item.group(1)}
        headers = {"x-csrf-token": csrf.group(1)}
        for slot in range(3):  # the page preloads each clip (cut by ffmpeg unless cached) ...
            await self.call(FIRST_CLIP, "GET", f"/study/audio/{item.group(1)}/{slot}", {200})
        for slot in range(3):  # ... and play asks for it again (a range, from the cache)
            await self.call(CACHED_CLIP, "GET", f"/study/audio/{item.group(1)}/{slot}", {206},
                            headers={"range": "bytes=0-"})
        for slot in range(3):
            await asyncio.sleep(self.clip_s)  # listening, one clip after another
            await self.call("POST played", "POST", "/study/played", {200}, headers=headers,
                            json={**body, "slot": slot, "listened_s": self.clip_s})
        await self.call("POST answer", "POST", "/study/answer", {200}, headers=headers,
                        json={**body, "pick": secrets.randbelow(3)})
        return True


async def run_annotator(base: str, invite: str, sets: int, timings: Timings, clip_s: float,
                        start_delay_s: float) -> None:
    await asyncio.sleep(start_delay_s)  # people arrive over a few seconds, not in one tick
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        person = Annotator(http, timings, clip_s)
        await person.join(invite)
        for _ in range(sets):
            if not await person.answer_set():
                break


async def floor_probe(base: str, timings: Timings, stop: asyncio.Event) -> None:
    """GET /healthz twice a second under the same load: the server's own floor."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        while not stop.is_set():
            started = time.perf_counter()
            timings.add("GET /healthz (floor)", started, await http.get("/healthz"), {200})
            await asyncio.sleep(0.5)


async def load(base: str, invite: str, args: argparse.Namespace) -> tuple[Timings, float]:
    timings = Timings()
    stop = asyncio.Event()
    probe = asyncio.create_task(floor_probe(base, timings, stop))
    started = time.perf_counter()
    await asyncio.gather(*(
        run_annotator(base, invite, args.sets, timings, args.clip_s,
                      args.ramp_s * i / args.annotators) for i in range(args.annotators)))
    elapsed = time.perf_counter() - started
    stop.set()
    await probe
    return timings, elapsed


def interactive_ms(base: str, invite: str) -> float | None:
    """Chromium's time from navigation to an interactive set page, or None without Chromium."""
    if not Path("/usr/bin/chromium").exists():
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--mute-audio"])
        page = browser.new_page()
        page.goto(f"{base}/join/{invite}")
        page.check("input[name=agree]")
        page.click("#start")
        page.wait_for_selector("#play-0")
        value = page.evaluate("() => { const t = performance.getEntriesByType('navigation')[0];"
                              " return t.domInteractive - t.startTime; }")
        browser.close()
    return float(value)


def start_studio(workdir: Path, matcher: str, args: argparse.Namespace) -> tuple[
        subprocess.Popen[bytes], str]:
    password = workdir / "admin-password"
    password.write_text(secrets.token_urlsafe(18) + "\n")
    port = free_port()
    env = {**os.environ, "SEGUE_STUDIO_DATA_DIR": str(workdir), "SEGUE_STUDIO_SHORT_CLIPS": "1",
           "SEGUE_STUDIO_CLIP_S": str(args.clip_s), "SEGUE_STUDIO_METRICS_PORT": "0",
           "SEGUE_STUDIO_ADMIN_PASSWORD_FILE": str(password), "SEGUE_LOG_LEVEL": "warning",
           "SEGUE_STUDIO_WARM_CLIPS": "0" if args.cold else str(args.warm_clips)}
    log = (workdir / "studio.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "segue.cli", "studio", "serve",
                             "--matcher", matcher, "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the Studio did not start; see {workdir / 'studio.log'}")


def wait_for_warm_clips(base: str, limit_s: float = 900.0) -> dict[str, Any]:
    """Waits until the Studio has cut its library's clip grid ahead (/healthz says so), as an
    operator would before sending invites; the warm-up's figures and seconds taken."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        warm: dict[str, Any] = httpx.get(f"{base}/healthz", timeout=5).json()["clips_warm"]
        if warm["finished"]:
            return {**warm, "seconds": time.perf_counter() - started}
        time.sleep(0.5)
    raise RuntimeError(f"the clip warm-up did not finish in {limit_s:g} s")


def invite(workdir: Path, uses: int) -> str:
    os.environ["SEGUE_STUDIO_DATA_DIR"] = str(workdir)
    out = subprocess.run([sys.executable, "-m", "segue.cli", "studio", "invite", "--label",
                          "bench", "--uses", str(uses)], capture_output=True, text=True,
                         check=True, env={**os.environ, "SEGUE_STUDIO_DATA_DIR": str(workdir)})
    return out.stdout.strip().rsplit("/", 1)[1]


def summary(timings: Timings) -> list[list[object]]:
    rows: list[list[object]] = []
    for kind in sorted(timings.ms):
        ms = np.asarray(timings.ms[kind])
        rows.append([kind, len(ms), f"{np.median(ms):.1f}", f"{np.percentile(ms, 95):.1f}",
                     f"{np.percentile(ms, 99):.1f}", f"{ms.max():.1f}"])
    return rows


def verdicts(timings: Timings, interactive: float | None) -> list[tuple[str, bool]]:
    every = np.concatenate([np.asarray(v) for k, v in timings.ms.items() if "floor" not in k])
    clip = np.asarray(timings.ms[CACHED_CLIP])
    out = [(f"p99 over every annotator request {np.percentile(every, 99):.1f} ms < "
            f"{TARGET_P99_MS:.0f} ms", bool(np.percentile(every, 99) < TARGET_P99_MS)),
           (f"clip from the cache, p99 {np.percentile(clip, 99):.1f} ms < "
            f"{TARGET_CLIP_FIRST_BYTE_MS:.0f} ms",
            bool(np.percentile(clip, 99) < TARGET_CLIP_FIRST_BYTE_MS)),
           (f"0 failed requests ({sum(timings.failures.values())})",
            not timings.failures)]
    if interactive is not None:
        out.append((f"set page interactive in Chromium {interactive:.0f} ms < "
                    f"{TARGET_INTERACTIVE_MS:.0f} ms", interactive < TARGET_INTERACTIVE_MS))
    return out


def warm_line(warm: dict[str, Any] | None) -> str:
    if warm is None:
        return ("Cold start (--cold): no clip was cut ahead; every page's clips are cut when "
                "its annotator arrives.")
    return (f"Before the invites went out, the Studio cut its library's clip grid ahead: "
            f"{warm['done']} clips ({warm['failed']} failed) in {warm['seconds']:.0f} s; "
            "pages then find their clips in the cache.")


def write(args: argparse.Namespace, run: rep.RunInfo, timings: Timings, elapsed: float,
          interactive: float | None, warm: dict[str, Any] | None, songs: int) -> None:
    checks = verdicts(timings, interactive)
    requests = sum(len(v) for v in timings.ms.values())
    lines = [
        *rep.header(f"Segue Studio, {args.annotators} concurrent annotators", run, [
            "", f"{args.annotators} annotators, {args.sets} sets each, clips of {args.clip_s:g} s "
            f"(shortened: about {36 / (3 * args.clip_s):.0f}x the request rate of 12 s clips), "
            f"arriving over {args.ramp_s:g} s, over a library of {songs} songs; "
            f"{requests} requests in {elapsed:.0f} s "
            f"({requests / elapsed:.0f}/s). Studio (uvicorn, SQLite), matcher and load "
            "generator share the machine's cores.", "", warm_line(warm)]),
        "Acceptance: " + ("PASSED" if all(ok for _, ok in checks) else "FAILED"),
        *(f"- {'PASS' if ok else 'FAIL'}: {text}" for text, ok in checks), "",
        *rep.table(["request", "count", "median ms", "p95 ms", "p99 ms", "max ms"],
                   summary(timings), "lrrrrr"),
    ]
    if timings.failures:
        lines += ["", "Failures: " + ", ".join(f"{k} ×{v}" for k, v in timings.failures.items())]
    data = {"run": run.as_dict(), "args": vars(args) | {
                "out": str(args.out), "library": [str(p) for p in args.library]},
            "elapsed_s": elapsed, "interactive_ms": interactive, "warm": warm, "songs": songs,
            "ms": {k: v for k, v in timings.ms.items()}, "failures": dict(timings.failures),
            "checks": [{"check": t, "ok": ok} for t, ok in checks]}
    name = "studio" + (f"-clips{args.clip_s:g}s" if args.clip_s != 2.0 else "") + (
        "-cold" if args.cold else "")
    md, _ = rep.write_results(rep.results_stem(args.out, name, run.date), "\n".join(lines),
                              data)
    print("\n".join(lines))
    print(f"\nwritten {md}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--sets", type=int, default=3)
    parser.add_argument("--clip-s", type=float, default=2.0)
    parser.add_argument("--ramp-s", type=float, default=5.0)
    parser.add_argument("--library", type=Path, action="append",
                        help="a folder of music for the matcher (repeatable; default: the "
                        "bundled tracks, and data/audio when fetched)")
    parser.add_argument("--warm-clips", type=int, default=2000,
                        help="most clips the Studio cuts ahead before the invites go out")
    parser.add_argument("--cold", action="store_true",
                        help="no clip cut ahead: annotators arrive at a fresh Studio")
    parser.add_argument("--keep", action="store_true",
                        help="keep the working folder (database, clips, the Studio's log)")
    parser.add_argument("--date", help="the results file's date (default today)")
    parser.add_argument("--out", type=Path, default=rep.RESULTS)
    args = parser.parse_args()
    args.library = args.library or [bundled_tracks_dir(), *([CORPUS] if CORPUS.is_dir() else [])]
    run = rep.capture_run(args.date)
    folder = (contextlib.nullcontext(tempfile.mkdtemp(prefix="segue-bench-studio-"))
              if args.keep else tempfile.TemporaryDirectory(prefix="segue-bench-studio-"))
    with folder as tmp:
        work = Path(tmp)
        print(f"working in {work}" + (" (kept)" if args.keep else ""), flush=True)
        with running_stack(work / "stack", services=("matcher",)) as stack:
            matcher = stack.grpc["matcher"]
            for n, folder in enumerate(args.library):
                segue_cli(["index", str(folder), "--local", "--matcher", matcher,
                           "--manifest", str(work / f"index-{n}.json")])
            proc, base = start_studio(work, matcher, args)
            try:
                warm = None if args.cold else wait_for_warm_clips(base)
                token = invite(work, args.annotators + 1)
                timings, elapsed = asyncio.run(load(base, token, args))
                songs = int(httpx.get(f"{base}/healthz", timeout=5).json()["songs"])
                write(args, run, timings, elapsed, interactive_ms(base, token), warm, songs)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
