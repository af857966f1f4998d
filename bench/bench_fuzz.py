"""A long fuzz run against the three services as real processes, and an authentication probe.

    .venv/bin/python bench/bench_fuzz.py                      # 100,000 calls (or --minutes)
    .venv/bin/python bench/bench_fuzz.py --calls 2000 --minutes 5      # a smoke run

Starts the embedder, matcher and mixer with devkit.localstack (insecure development mode, the
mixer taking stored analyses from the matcher) and sends `--calls` requests from the
strategies of tests/fuzz_strategies.py (generic, near-valid and raw wire requests of every RPC,
the RPC drawn uniformly) from `--clients` concurrent clients, each call with a `--deadline-s`
deadline. Counted per RPC: every status code, hangs (no answer by the deadline), undocumented
statuses (UNKNOWN and INTERNAL above all; the first few examples of each are kept), and
crashes (a service process that exits). A good Analyze, UpsertSong + GetSong and
RenderTransition run in a loop beside the fuzzing and must answer exactly as before it; the
services' peak RSS (each process with its children) is sampled every second.

The authentication probe starts the stack again with a token file: a DeleteSong without a
token, and with fuzzed or garbage tokens, must be UNAUTHENTICATED, and the song still there.

Results: bench/results/fuzz_<date>.md and .json (bench/report.py's header).
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import grpc  # noqa: E402
import psutil  # type: ignore[import-untyped, unused-ignore]  # noqa: E402
from fuzz_strategies import (  # noqa: E402
    RPCS,
    SERVICES,
    Call,
    Material,
    Witness,
    calls,
    problems,
    seed_analyses,
    send,
)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bench import report as rep  # noqa: E402
from bench.process_memory import tree_rss_mb  # noqa: E402
from devkit.localstack import Stack, running_stack  # noqa: E402
from segue.audio import decode  # noqa: E402
from segue.music import find_music  # noqa: E402
from segue.v1 import matcher_pb2  # noqa: E402

RATE_HZ = 22050
TRACK = "happy_electronic_1"
CLIP_START_S, CLIP_S = 10.0, 8.0
SEEDED_SONGS = 4
# Examples drawn per Hypothesis run (a fresh run, and seed, for every batch keeps the
# generator's memory bounded over 100,000 calls).
BATCH = 500
# Examples kept of each distinct problem (RPC and status).
EXAMPLES_KEPT = 3
OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
LOWER = {"Embedder": "embedder", "Matcher": "matcher", "Mixer": "mixer"}


# ---- what a run counts --------------------------------------------------------------------


@dataclass
class Tally:
    """Everything counted while fuzzing, shared by the client threads (under `lock`)."""

    codes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    kinds: Counter[str] = field(default_factory=Counter)
    hangs: Counter[str] = field(default_factory=Counter)
    undocumented: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    calls: int = 0
    slowest_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, call: Call, code: grpc.StatusCode, details: str, elapsed_s: float,
               found: list[str]) -> None:
        with self.lock:
            self.calls += 1
            self.codes[call.rpc.name][code.name] += 1
            self.kinds[call.kind] += 1
            self.slowest_s = max(self.slowest_s, elapsed_s)
            if not found:
                return
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                self.hangs[call.rpc.name] += 1
            else:
                self.undocumented[f"{call.rpc.name} {code.name}"] += 1
            key = f"{call.rpc.name} {code.name}"
            if sum(e["key"] == key for e in self.examples) < EXAMPLES_KEPT:
                self.examples.append({"key": key, "rpc": call.rpc.name, "kind": call.kind,
                                      "status": code.name, "details": details[:500],
                                      "problems": found, "request": repr(call)[:2000],
                                      "wire_hex": [b.hex() for b in call.wire
                                                   if len(b) <= 2048]})


# ---- generation: Hypothesis in one thread, the calls in others ------------------------------


def any_call(material: Material) -> st.SearchStrategy[Call]:
    """A request of an RPC drawn uniformly."""
    return st.sampled_from(RPCS).flatmap(lambda rpc: calls(rpc, material))


def produce(material: Material, out: queue.Queue[Call | None], total: int, base_seed: int,
            stop: threading.Event, clients: int, failures: list[str]) -> None:
    """Puts `total` generated calls on `out` (then one None per client), in batches. If the
    generator fails, the run stops (and says why) rather than leave the clients waiting."""
    try:
        _produce(material, out, total, base_seed, stop)
    except Exception as e:
        failures.append(f"the request generator failed: {e!r}"[:500])
        stop.set()
        raise
    finally:
        for _ in range(clients):
            with contextlib.suppress(queue.Full):  # the clients stopped without them
                out.put(None, timeout=5)


def _produce(material: Material, out: queue.Queue[Call | None], total: int, base_seed: int,
             stop: threading.Event) -> None:
    made = 0
    strategy = any_call(material)
    batch = 0
    while made < total and not stop.is_set():
        want = min(BATCH, total - made)

        @hypothesis_seed(base_seed + batch)
        @settings(max_examples=want, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def put(call: Call) -> None:
            nonlocal made
            while made < total and not stop.is_set():
                try:
                    out.put(call, timeout=1.0)
                except queue.Full:
                    continue  # the clients are busy (or have stopped: see `stop`)
                made += 1
                return

        put()
        batch += 1


def client(stack: Stack, work: queue.Queue[Call | None], tally: Tally, deadline_s: float,
           stop: threading.Event) -> None:
    """Sends calls from `work` until it says None (or the run stops)."""
    channels = {name: grpc.insecure_channel(stack.grpc[LOWER[name]], options=OPTIONS)
                for name in SERVICES}
    try:
        while not stop.is_set():
            call = work.get()
            if call is None:
                return
            outcome = send(channels[call.rpc.service], call, deadline_s)
            tally.record(call, outcome.code, outcome.details, outcome.elapsed_s,
                         problems(call, outcome))
    finally:
        for channel in channels.values():
            channel.close()


# ---- watching the services --------------------------------------------------------------------


def monitor(stack: Stack, tally: Tally, stop: threading.Event) -> None:
    """Samples each service's RSS every second; a service that exits is a crash (and stops
    the run)."""
    procs = {r.service: psutil.Process(r.pid) for rs in stack.replicas.values() for r in rs}
    while not stop.wait(1.0):
        for name, proc in procs.items():
            if not _alive(proc):
                with tally.lock:
                    tally.crashes.append(f"{name} exited during the run")
                stop.set()
                return
            tally.peak_rss_mb[name] = max(tally.peak_rss_mb.get(name, 0.0), tree_rss_mb(proc))


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def beside(witness: Witness, reseed: Callable[[], object], stop: threading.Event) -> None:
    """The good requests, again and again until the run stops; between rounds the songs
    near-valid requests name are stored again (fuzzed DeleteSongs remove them)."""
    while not stop.is_set():
        witness.check()
        try:
            reseed()
        except grpc.RpcError:
            witness.mismatches.append("storing the seed songs again failed")


# ---- setting up ---------------------------------------------------------------------------


def store_seeds(channel: grpc.Channel, analysis: Any) -> tuple[str, ...]:
    """Stores the songs near-valid requests name; returns their ids."""
    upsert = channel.unary_unary(
        "/segue.v1.Matcher/UpsertSong",
        request_serializer=matcher_pb2.UpsertSongRequest.SerializeToString,
        response_deserializer=matcher_pb2.UpsertSongResponse.FromString)
    ids = []
    for song in seed_analyses(analysis, SEEDED_SONGS):
        upsert(matcher_pb2.UpsertSongRequest(analysis=song), timeout=30)
        ids.append(song.song_id)
    return tuple(ids)


def material_for(channels: dict[str, grpc.Channel]) -> tuple[Material, Witness]:
    """The real clip, its reference answers, and the songs near-valid requests name."""
    track = next(p for p in find_music() if p.stem == TRACK)
    audio = decode(track, RATE_HZ)
    clip = audio[int(CLIP_START_S * RATE_HZ):int((CLIP_START_S + CLIP_S) * RATE_HZ)]
    witness = Witness(channels, clip, RATE_HZ)
    witness.take_reference()
    ids = store_seeds(channels["Matcher"], witness.analysis)
    material = Material(clip, RATE_HZ, witness.analysis, track.read_bytes(), ids,
                        witness.resume_token, witness.song_id)
    return material, witness


def _threads(targets: list[Callable[[], None]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    return threads


def fuzz_stack(args: argparse.Namespace) -> dict[str, Any]:
    """The fuzz run proper; returns its figures."""
    tally = Tally()
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as tmp, running_stack(Path(tmp), auth=False) as stack:
        channels = {name: grpc.insecure_channel(stack.grpc[LOWER[name]], options=OPTIONS)
                    for name in SERVICES}
        material, witness = material_for(channels)

        def reseed() -> object:
            return store_seeds(channels["Matcher"], witness.analysis)

        work: queue.Queue[Call | None] = queue.Queue(maxsize=4 * args.clients)
        started = time.perf_counter()
        helpers = _threads([lambda: monitor(stack, tally, stop),
                            lambda: beside(witness, reseed, stop)])
        producer = _threads([lambda: produce(material, work, args.calls, args.seed, stop,
                                             args.clients, tally.crashes)])
        clients = _threads([lambda: client(stack, work, tally, args.deadline_s, stop)
                            for _ in range(args.clients)])
        end = started + 60 * args.minutes
        while any(t.is_alive() for t in clients) and time.perf_counter() < end:
            time.sleep(0.5)
            _progress(tally, args.calls, started)
        elapsed = time.perf_counter() - started
        stop.set()
        _drain(work)
        for t in [*clients, *producer, *helpers]:
            t.join(args.deadline_s + 60)
        after = witness.check()
        for channel in channels.values():
            channel.close()
    return {"elapsed_s": elapsed, "tally": tally, "witness_rounds": witness.rounds,
            "witness_mismatches": witness.mismatches, "witness_after": after}


def _drain(work: queue.Queue[Call | None]) -> None:
    while True:
        try:
            work.get_nowait()
        except queue.Empty:
            return


_last_print = [0.0]


def _progress(tally: Tally, total: int, started: float) -> None:
    now = time.perf_counter()
    if now - _last_print[0] >= 30:
        _last_print[0] = now
        print(f"  {tally.calls}/{total} calls, {now - started:.0f} s, "
              f"{sum(tally.undocumented.values())} undocumented, {sum(tally.hangs.values())} "
              f"hangs", flush=True)


# ---- the authentication probe ------------------------------------------------------------------


# Tokens a client can send: gRPC sends only printable ASCII in a text header (its library
# refuses anything else before a byte leaves the process).
HEADER_TEXT = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
GARBAGE_TOKENS = st.one_of(
    st.text(HEADER_TEXT, max_size=64),
    st.text(HEADER_TEXT, min_size=4000, max_size=5000),
    st.binary(max_size=64).map(lambda b: b.hex()),
    st.sampled_from(["", " ", "null", "Bearer", "Bearer x", "x" * 5000, "a b c", "*",
                     "localstack"]),
)


def _token_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def auth_probe(tries: int, seed: int) -> dict[str, Any]:
    """DeleteSong without a token and with `tries` fuzzed ones: every one UNAUTHENTICATED (or
    refused by the client library before sending), and the song still stored."""
    results: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp, \
            running_stack(Path(tmp), services=("matcher",), auth=True) as stack:
        assert stack.token is not None
        channel = grpc.insecure_channel(stack.grpc["matcher"])
        good = _token_metadata(stack.token)
        song = seed_analyses(_probe_song(), 1, prefix="auth-probe-")[0]
        upsert = channel.unary_unary("/segue.v1.Matcher/UpsertSong", request_serializer=None,
                                     response_deserializer=None)
        upsert(matcher_pb2.UpsertSongRequest(analysis=song).SerializeToString(), timeout=30,
               metadata=good)
        delete = matcher_pb2.DeleteSongRequest(song_id=song.song_id).SerializeToString()
        results[f"no token: {_delete(channel, delete, None)}"] += 1
        for token in _tokens(tries, seed, stack.token):
            results[f"fuzzed token: {_delete(channel, delete, _token_metadata(token))}"] += 1
        get = channel.unary_unary("/segue.v1.Matcher/GetSong", request_serializer=None,
                                  response_deserializer=None)
        try:
            get(matcher_pb2.GetSongRequest(song_id=song.song_id).SerializeToString(),
                timeout=30, metadata=good)
            still_there = True
        except grpc.RpcError:
            still_there = False
        channel.close()
    passed = still_there and all(k.endswith("UNAUTHENTICATED") for k in results)
    return {"results": dict(results), "song_still_there": still_there, "passed": passed}


def probe_or_failure(tries: int, seed: int) -> dict[str, Any]:
    """The probe's results, or why it could not run (a failed probe)."""
    try:
        return auth_probe(tries, seed)
    except (grpc.RpcError, RuntimeError, AssertionError) as e:
        return {"results": {f"probe failed: {e!r}"[:300]: 1}, "song_still_there": False,
                "passed": False}


def _probe_song() -> Any:
    from segue.v1 import common_pb2

    analysis = common_pb2.SongAnalysis(song_id="probe", duration_s=8.0,
                                       feel=[1.0] + [0.0] * 31)
    analysis.segments.add(index=0, start_s=0.0, end_s=8.0, entry=[1.0] + [0.0] * 63,
                          exit=[0.0, 1.0] + [0.0] * 62)
    return analysis


def _tokens(tries: int, seed: int, real: str) -> Iterator[str]:
    """Fuzzed tokens: the real one with a character changed, cut short or doubled, and
    Hypothesis's garbage."""
    yield real[:-1] + ("A" if real[-1] != "A" else "B")
    yield real[: len(real) // 2]
    yield real + real
    yield real.upper() if real.upper() != real else real.lower()
    drawn: list[str] = []

    @hypothesis_seed(seed)
    @settings(max_examples=tries, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(GARBAGE_TOKENS)
    def keep(token: str) -> None:
        drawn.append(token)

    keep()
    yield from (t for t in drawn if t != real)


def _delete(channel: grpc.Channel, request: bytes,
            metadata: tuple[tuple[str, str], ...] | None) -> str:
    method = channel.unary_unary("/segue.v1.Matcher/DeleteSong", request_serializer=None,
                                 response_deserializer=None)
    try:
        method(request, timeout=30, metadata=metadata)
    except grpc.RpcError as e:
        failed: Any = e
        return str(failed.code().name)
    return "OK"


# ---- the report ----------------------------------------------------------------------------


def verdict(result: dict[str, Any]) -> tuple[bool, list[str]]:
    tally: Tally = result["tally"]
    checks = {
        "no UNKNOWN or INTERNAL (or any undocumented status)": not tally.undocumented,
        "no hangs": not tally.hangs,
        "no crashes (and the generator ran to the end)": not tally.crashes,
        "good requests kept their exact answers": not result["witness_mismatches"]
        and not result["witness_after"],
    }
    return all(checks.values()), [f"- {'PASS' if ok else 'FAIL'}: {name}"
                                  for name, ok in checks.items()]


def per_rpc_rows(tally: Tally) -> tuple[list[str], list[list[object]]]:
    codes = sorted({c for counts in tally.codes.values() for c in counts})
    columns = ["RPC", "calls", *codes, "hangs", "undocumented"]
    rows: list[list[object]] = []
    for rpc in RPCS:
        counts = tally.codes.get(rpc.name, Counter())
        bad = sum(n for key, n in tally.undocumented.items() if key.startswith(rpc.name + " "))
        rows.append([rpc.name, sum(counts.values()), *(counts.get(c, 0) for c in codes),
                     tally.hangs.get(rpc.name, 0), bad])
    return columns, rows


def markdown(run: rep.RunInfo, args: argparse.Namespace, result: dict[str, Any],
             probe: dict[str, Any] | None) -> str:
    tally: Tally = result["tally"]
    passed, checks = verdict(result)
    columns, rows = per_rpc_rows(tally)
    rate = tally.calls / max(result["elapsed_s"], 1e-9)
    lines = [
        *rep.header("Fuzzing every RPC against real service processes", run, [
            "The clients, the generator and the three services share the machine's cores."]),
        f"{tally.calls} calls of {args.calls} asked for, in {result['elapsed_s']:.0f} s "
        f"({rate:.1f} calls/s) from {args.clients} concurrent clients, deadline "
        f"{args.deadline_s:g} s per call; RPCs drawn uniformly; request kinds: "
        + ", ".join(f"{k} {n}" for k, n in sorted(tally.kinds.items())) + ". Slowest answer "
        f"{tally.slowest_s:.1f} s. Good requests beside the fuzzing: "
        f"{result['witness_rounds']} rounds.",
        "",
        f"Acceptance: {'PASSED' if passed else 'FAILED'}",
        *checks,
        "",
        "## Statuses per RPC",
        "",
        *rep.table(columns, rows, "l" + "r" * (len(columns) - 1)),
        "",
        "Peak RSS (each service process with its children): "
        + ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(tally.peak_rss_mb.items())) + ".",
    ]
    lines += _problem_lines(tally, result)
    if probe is not None:
        lines += ["", "## Authentication probe", "",
                  f"{'PASSED' if probe['passed'] else 'FAILED'}: DeleteSong answers "
                  + ", ".join(f"{k} x{n}" for k, n in sorted(probe["results"].items()))
                  + f"; the song {'is still' if probe['song_still_there'] else 'is NOT'} "
                  "stored."]
    return "\n".join(lines) + "\n"


def _problem_lines(tally: Tally, result: dict[str, Any]) -> list[str]:
    lines = []
    if tally.crashes:
        lines += ["", "Crashes: " + "; ".join(tally.crashes)]
    mismatches = [*result["witness_mismatches"], *result["witness_after"]]
    if mismatches:
        lines += ["", "Good requests that changed: " + "; ".join(sorted(set(mismatches)))]
    if tally.examples:
        lines += ["", f"## First examples of each problem ({len(tally.examples)})", ""]
        for e in tally.examples:
            lines += [f"- {e['rpc']} ({e['kind']}): {e['status']} {e['details']!r}",
                      f"  request: `{e['request'][:400]}`"]
    return lines


def as_json(run: rep.RunInfo, args: argparse.Namespace, result: dict[str, Any],
            probe: dict[str, Any] | None) -> dict[str, Any]:
    tally: Tally = result["tally"]
    return {
        **run.as_dict(), "calls_asked": args.calls, "minutes_cap": args.minutes,
        "clients": args.clients, "deadline_s": args.deadline_s, "seed": args.seed,
        "calls": tally.calls, "elapsed_s": result["elapsed_s"],
        "codes": {k: dict(v) for k, v in tally.codes.items()}, "kinds": dict(tally.kinds),
        "hangs": dict(tally.hangs), "undocumented": dict(tally.undocumented),
        "crashes": tally.crashes, "peak_rss_mb": tally.peak_rss_mb,
        "slowest_s": tally.slowest_s, "examples": tally.examples,
        "witness_rounds": result["witness_rounds"],
        "witness_mismatches": [*result["witness_mismatches"], *result["witness_after"]],
        "passed": verdict(result)[0], "auth_probe": probe,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=120.0,
                        help="stop after this long even if fewer calls were made")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--deadline-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--auth-tries", type=int, default=200)
    parser.add_argument("--skip-auth-probe", action="store_true")
    parser.add_argument("--date", help="the results file's date (default today)")
    parser.add_argument("--out", type=Path, default=rep.RESULTS)
    args = parser.parse_args()
    run = rep.capture_run(args.date)
    result = fuzz_stack(args)
    probe = None if args.skip_auth_probe else probe_or_failure(args.auth_tries, args.seed)
    text = markdown(run, args, result, probe)
    print(text)
    rep.write_results(rep.results_stem(args.out, "fuzz", run.date), text,
                      as_json(run, args, result, probe))
    passed = verdict(result)[0] and (probe is None or probe["passed"])
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
