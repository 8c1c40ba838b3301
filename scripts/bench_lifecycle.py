#!/usr/bin/env python3
"""The measuring half of scripts/bench-lifecycle (Python 3.11 standard library only).

Two figures, each beside a limit measured in the same run, all on 127.0.0.1 with a private
mosquitto per phase and a private temporary directory:

  escalation   Escalation latency while a backlog of N undelivered readings drains. The store is
               filled with `vigil-bench uplink-fill` (patient-0001); vigild starts on it with a
               simulated Masimo Rad-8 on a pty whose patient (bench-esc) has a care plan with one
               SpO2 threshold rule: below 90 %, severity emergency (emergencies are never held
               back by the re-alert interval, so every new episode is sent), hysteresis 1, no
               persistence (the first clean low reading raises). At S points spread over the
               drain a low line (SpO2 85 %) is written into the pty; the time from that write(2)
               to the `open` escalation's arrival at a subscriber on <prefix>/escalations is one
               sample; a normal line (97 %) then resolves the episode so the next low line opens
               a new one. Limit beside it: the same cycle with an empty outbox.
               The drain's progress is read from a second subscriber on <prefix>/readings that
               stamps every arrival (`mosquitto_sub -F '%U %t'`, unix time in ns): the readings
               lane is delivered in sequence order, so the first N readings to arrive are the
               backlog, and the drain rate is N over the time between its first and last arrival.
  cold start   A line waits in the pty (written while vigild is not running); the broker and a
               subscriber are up; vigild is exec'd; time from exec to the reading's arrival.
               R runs on one state directory (the first creates the database). Limit beside it:
               `mosquitto_pub -l` exec'd with a line waiting on its stdin (a pty), R runs; and,
               for reference, `mosquitto_pub -m LINE` (its `-l` loop sleeps 100 ms while the
               connection is being made, which `-m` does not).

Exit status 1 if an escalation does not arrive, arrives after the backlog's last reading
(escalations go first), a sample could not be taken during the drain, or a reading is lost.
"""
from __future__ import annotations

import argparse
import bisect
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from array import array

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_driver as bd  # noqa: E402  (Broker, Subscriber, Pty, spawn, stop, stop_all, wait_until, ...)

SITE, GATEWAY = "bench", "gw-bench"
PREFIX = f"vigil/v1/{SITE}/{GATEWAY}"
PATIENT = "bench-esc"
BACKLOG_MARKER = b"readings"

CONFIG = """outbox:
  max_in_flight: {max_in_flight}
devices:
  - id: {device}
    profile: masimo-rad8
    port: "{link}"
    patient: {patient}
"""

# One rule, so that every low line opens an episode and every normal line closes it.
CARE_PLAN = """patient: {patient}
version: 1
thresholds:
  - id: spo2-low
    vital: spo2
    below: 90
    severity: emergency
    hysteresis: 1
"""


def log(msg: str) -> None:
    print(f"bench-lifecycle: {msg}", file=sys.stderr, flush=True)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------------------------------
# Lines: Rad-8 ASCII 1, SpO2 only (one line = one reading), one device-second apart.


class Clock:
    """Hands out distinct device times, one second apart, starting a little before now (UTC),
    so every line is a distinct reading well inside vigild's one-day clock-skew window."""

    def __init__(self):
        self.t = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None) - dt.timedelta(minutes=30)

    def line(self, spo2: int) -> tuple[bytes, str, bytes]:
        """(line, measured_at as vigild prints it, the line's first 17 bytes)."""
        self.t += dt.timedelta(seconds=1)
        head = self.t.strftime("%m/%d/%y %H:%M:%S")
        data = (f"{head} SN=0000012345 SPO2={spo2:03d}% BPM=--- PI=--.--% SPCO=--.-% "
                "SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n").encode()
        return data, self.t.strftime("%Y-%m-%dT%H:%M:%S.000Z"), head.encode()


def write_line(pty: bd.Pty, data: bytes) -> int:
    """Writes one line; returns the wall time (ns) taken just before write(2)."""
    t = time.time_ns()
    pty.write_all(data)
    return t


# ---------------------------------------------------------------------------------------
# Subscribers: one that leaves every arrival stamp in a file (mosquitto_sub flushes after each
# message, and no Python runs per message while a million readings arrive), and bench_driver's
# in-memory one for the few escalations and cold-start readings.


class StampFile:
    STAMP = 20  # `1795635788.127199359`: %U is seconds, a dot and nanoseconds

    def __init__(self, broker: bd.Broker, topic: str, path: str, tag: str):
        self.path = path
        self.topic = topic.encode()
        probe_topic = f"bench/probe/{tag}"
        self.out = open(path, "wb")
        self.proc = bd.spawn(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                              "-i", f"bench-stamps-{tag}-{os.getpid()}", "-F", "%U %t",
                              "-t", topic, "-t", probe_topic], stdout=self.out, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while os.path.getsize(path) == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the stamping subscriber never received its probe message")
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                            "-t", probe_topic, "-m", "probe"], check=False)
            time.sleep(0.1)
        time.sleep(0.2)  # a second probe may still be on its way
        self.offset = os.path.getsize(path)
        self.line_len = self.STAMP + 1 + len(self.topic) + 1

    def count(self) -> int:
        """Messages on `topic` so far (from the file's size: every such line has one length)."""
        return max(0, os.path.getsize(self.path) - self.offset) // self.line_len

    def close(self) -> array:
        """Stops the subscriber; returns the arrival stamps (ns) on `topic`, in arrival order."""
        bd.stop(self.proc)
        self.out.close()
        stamps = array("q")
        with open(self.path, "rb") as f:
            for raw in f:
                stamp, _, topic = raw.rstrip(b"\n").partition(b" ")
                if topic != self.topic:
                    continue
                sec, _, frac = stamp.partition(b".")
                stamps.append(int(sec) * 1_000_000_000 + int(frac.ljust(9, b"0")[:9]))
        return stamps


def arrivals(sub: bd.Subscriber, suffix: str):
    with sub.lock:
        raw = list(sub.lines)
    for ns, _topic, payload in bd.parse_arrivals(raw, suffix):
        try:
            yield ns, json.loads(payload)
        except ValueError:
            continue


def wait_message(sub: bd.Subscriber, suffix: str, pred, timeout: float, what: str, alive=None):
    deadline = time.monotonic() + timeout
    while True:
        for ns, msg in arrivals(sub, suffix):
            if pred(msg):
                return ns, msg
        if alive:
            alive()
        if time.monotonic() > deadline:
            raise Failure(f"{what} did not arrive within {timeout:.0f} s")
        time.sleep(0.005)


class Failure(Exception):
    """A measured property failed (exit 1), as opposed to the method failing."""


# ---------------------------------------------------------------------------------------
# vigild


class Daemon:
    def __init__(self, args, work: str, port: int, link: str, device: str, care_plan: bool):
        self.args, self.work = args, work
        os.makedirs(os.path.join(work, "state"), exist_ok=True)
        os.makedirs(os.path.join(work, "care-plans"), exist_ok=True)
        if care_plan:
            with open(os.path.join(work, "care-plans", f"{PATIENT}.yaml"), "w") as f:
                f.write(CARE_PLAN.format(patient=PATIENT))
        self.config = os.path.join(work, "vigild.yaml")
        with open(self.config, "w") as f:
            f.write(bd.vigild_config(work, args.profiles, port,
                                     CONFIG.format(device=device, link=link, patient=PATIENT,
                                                   max_in_flight=args.max_in_flight),
                                     site=SITE, gateway=GATEWAY, reconnect_ms=(100, 250)))
        self.socket = os.path.join(work, "control.sock")
        self.device = device
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        r = subprocess.run([self.exe(), "--config", self.config, "--check-config"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"vigild --check-config refused the bench config: {r.stdout}{r.stderr}")

    def exe(self) -> str:
        return os.path.join(self.args.bin, "vigild")

    def start(self) -> int:
        """Execs vigild; returns the wall time (ns) taken just before."""
        self.starts += 1
        logf = open(os.path.join(self.work, f"vigild.{self.starts}.log"), "w")
        t = time.time_ns()
        self.proc = bd.spawn([self.exe(), "--config", self.config], stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        return t

    def alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"vigild exited with status {self.proc.returncode}; see {self.work}")

    def status(self) -> dict | None:
        r = subprocess.run([os.path.join(self.args.bin, "vigilctl"), "status", "--socket", self.socket, "--json"],
                           capture_output=True, timeout=30)
        try:
            return json.loads(r.stdout)["status"]
        except (ValueError, KeyError):
            return None

    def wait_open(self, timeout: float) -> dict:
        def ready():
            self.alive()
            s = self.status()
            if not s:
                return None
            devs = [d for d in s.get("devices", []) if d.get("id") == self.device]
            return s if devs and devs[0].get("state") == "open" and s.get("uplink", {}).get("connected") else None
        return bd.wait_until(ready, timeout, "vigild to open the device and connect", step=0.05)

    def stop(self) -> None:
        if self.proc:
            bd.stop(self.proc, grace=30)
            self.proc = None


# ---------------------------------------------------------------------------------------
# Escalation latency, with and without a backlog


def run_escalation(args, work: str, backlog: int, samples: int) -> dict:
    tag = "drain" if backlog else "idle"
    pwork = os.path.join(work, tag)
    os.makedirs(os.path.join(pwork, "state"))
    if backlog:
        t = time.monotonic()
        r = subprocess.run([os.path.join(args.bin, "vigil-bench"), "uplink-fill", "--database",
                            os.path.join(pwork, "state", "vigil.sqlite"), "--readings", str(backlog)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"uplink-fill failed: {r.stdout}{r.stderr}")
        log(f"{tag}: {r.stdout.strip()} in {time.monotonic() - t:.1f} s")
    broker = bd.Broker(pwork)
    esc = bd.Subscriber(broker, [f"{PREFIX}/escalations"], f"esc-{tag}")
    stamps = StampFile(broker, f"{PREFIX}/readings", os.path.join(pwork, "readings.stamps"), f"readings-{tag}")
    pty = bd.Pty(os.path.join(pwork, "rad8"))
    device = f"rad8-{tag}"
    clock = Clock()
    d = Daemon(args, pwork, broker.port, pty.link, device, care_plan=True)
    rows = []
    try:
        d.start()
        # The device opens while the backlog is already draining (the broker is up from the start).
        d.wait_open(120 + backlog / 10_000)
        if backlog:
            bd.wait_until(lambda: (d.alive(), stamps.count() > 0)[1], 60, "the drain to start")
            log(f"{tag}: vigild open, {backlog:,} readings draining; {samples} samples")
        for k in range(1, samples + 1):
            if backlog:
                target = backlog * k // (samples + 1)
                bd.wait_until(lambda: (d.alive(), stamps.count() >= target)[1], args.timeout,
                              f"the drain to reach {target} readings")
                if stamps.count() >= backlog:
                    raise Failure(f"the backlog drained before sample {k} could be written; "
                                  f"use a larger --readings or fewer --samples")
            else:
                time.sleep(0.2)
            low, low_at, _ = clock.line(85)
            t_write = write_line(pty, low)
            ns, opened = wait_message(esc, "/escalations",
                                      lambda m: m.get("state") == "open" and any(
                                          v.get("measured_at") == low_at for v in m.get("values", [])),
                                      args.timeout, f"{tag}: the escalation of sample {k}", d.alive)
            normal, _, _ = clock.line(97)
            t_normal = write_line(pty, normal)
            ns_res, _ = wait_message(esc, "/escalations",
                                     lambda m: m.get("state") == "resolved" and m.get("id") == opened.get("id"),
                                     args.timeout, f"{tag}: the resolution of sample {k}", d.alive)
            rows.append({"write_ns": t_write, "arrival_ns": ns, "latency_ms": (ns - t_write) / 1e6,
                         "resolve_ms": (ns_res - t_normal) / 1e6, "severity": opened.get("severity")})
            log(f"{tag}: sample {k}: escalation after {(ns - t_write) / 1e6:.1f} ms"
                + (f" (drain at about {stamps.count() / backlog:.0%})" if backlog else ""))
        expected = backlog + 2 * samples
        if backlog:
            bd.wait_until(lambda: (d.alive(), stamps.count() >= expected)[1], args.timeout,
                          f"all {expected} readings to arrive")
        else:
            time.sleep(0.5)
    finally:
        d.stop()
        esc.close()
        got = stamps.close()
        pty.close()
        bd.stop(broker.proc)
    lat = [r["latency_ms"] for r in rows]
    res = {"name": tag, "backlog": backlog, "samples": rows, "p50_ms": median(lat),
           "max_ms": max(lat) if lat else float("nan"), "resolve_p50_ms": median([r["resolve_ms"] for r in rows]),
           "readings_arrived": len(got)}
    if backlog:
        if len(got) < expected:
            raise Failure(f"{tag}: {expected - len(got)} readings never arrived")
        # The readings lane is delivered in sequence order: the backlog arrives first.
        drained = got[:backlog]
        first, last = drained[0], drained[-1]
        res["drain_s"] = (last - first) / 1e9
        res["drain_rate"] = (backlog - 1) / res["drain_s"] if last > first else float("nan")
        res["duplicates_or_extra"] = len(got) - expected
        for r in rows:
            r["progress_at_write"] = bisect.bisect_right(drained, r["write_ns"]) / backlog
            r["progress_at_arrival"] = bisect.bisect_right(drained, r["arrival_ns"]) / backlog
        late = [i + 1 for i, r in enumerate(rows) if r["arrival_ns"] > last]
        if late:
            raise Failure(f"{tag}: the escalation of sample(s) {late} arrived after the backlog's last reading")
    return res


# ---------------------------------------------------------------------------------------
# Cold start


def run_cold_vigild(args, work: str, runs: int) -> dict:
    pwork = os.path.join(work, "cold-vigild")
    os.makedirs(pwork)
    broker = bd.Broker(pwork)
    sub = bd.Subscriber(broker, [f"{PREFIX}/readings"], "cold-vigild")
    pty = bd.Pty(os.path.join(pwork, "rad8"))
    device = "rad8-cold"
    clock = Clock()
    d = Daemon(args, pwork, broker.port, pty.link, device, care_plan=False)
    times = []
    try:
        for k in range(runs):
            data, at, _ = clock.line(97)
            pty.write_all(data)  # waits in the tty queue: vigild is not running
            t0 = d.start()
            ns, _ = wait_message(sub, "/readings", lambda m: m.get("device") == device and m.get("measured_at") == at,
                                 args.timeout, f"cold start {k + 1}: the waiting reading", d.alive)
            times.append((ns - t0) / 1e6)
            log(f"cold start {k + 1}{' (creates the database)' if k == 0 else ''}: {times[-1]:.1f} ms")
            d.stop()
    finally:
        d.stop()
        sub.close()
        pty.close()
        bd.stop(broker.proc)
    return {"runs_ms": times, "first_ms": times[0], "p50_ms": median(times[1:]) if len(times) > 1 else float("nan")}


def run_cold_pub(args, work: str, runs: int, line_mode: bool) -> dict:
    """mosquitto_pub exec'd R times. line_mode: `-l` with the line waiting on its stdin (a pty),
    the limit the issue names; otherwise `-m LINE`, the same client with nothing to read: its
    `-l` loop sleeps 100 ms whenever it finds the connection still being made (pub_client.c,
    pub_stdin_line_loop), so `-m` shows how much of the `-l` figure that sleep is."""
    tag = "cold-pub-l" if line_mode else "cold-pub-m"
    pwork = os.path.join(work, tag)
    os.makedirs(pwork)
    broker = bd.Broker(pwork)
    topic = f"bench/baseline/{tag}"
    sub = bd.Subscriber(broker, [topic], tag)
    pty = bd.Pty(os.path.join(pwork, "tty"))
    clock = Clock()
    times = []
    try:
        for k in range(runs):
            data, _, head = clock.line(97)
            argv = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                    "-i", f"bench-pub-{tag}-{os.getpid()}", "-t", topic]
            if line_mode:
                pty.write_all(data)
                stdin = os.open(pty.link, os.O_RDONLY | os.O_NOCTTY)
                argv.append("-l")
            else:
                stdin = os.open(os.devnull, os.O_RDONLY)
                argv += ["-m", data.decode().rstrip("\r\n")]
            t0 = time.time_ns()
            pub = bd.spawn(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.close(stdin)
            deadline = time.monotonic() + args.timeout
            ns = None
            while ns is None:
                with sub.lock:
                    raw = list(sub.lines)
                ns = next((n for n, _t, p in bd.parse_arrivals(raw, topic) if p[:17] == head), None)
                if ns is None:
                    if time.monotonic() > deadline:
                        raise Failure(f"{tag} run {k + 1}: the line did not arrive")
                    time.sleep(0.002)
            times.append((ns - t0) / 1e6)
            bd.stop(pub)
    finally:
        sub.close()
        pty.close()
        bd.stop(broker.proc)
    return {"runs_ms": times, "p50_ms": median(times)}


# ---------------------------------------------------------------------------------------
# Output


def f1(x) -> str:
    return "n/a" if x is None or x != x else f"{x:,.1f}"


def report(args, idle: dict, drain: dict, cold: dict, pub: dict, pub_m: dict) -> dict:
    progress = ", ".join(f"{r['progress_at_write']:.0%}→{r['progress_at_arrival']:.0%}: {r['latency_ms']:.0f}"
                         for r in drain["samples"])
    rows = [
        (f"escalation latency while {drain['backlog']:,} readings drain, p50 / max (ms; {len(drain['samples'])} samples)",
         f"{f1(drain['p50_ms'])} / {f1(drain['max_ms'])}",
         f"{f1(idle['p50_ms'])} / {f1(idle['max_ms'])} (empty outbox, {len(idle['samples'])} samples)",
         f"{drain['p50_ms'] / idle['p50_ms']:.1f}×" if idle["p50_ms"] else ""),
        ("  drain progress at write→arrival: latency (ms)", progress, "", ""),
        ("  resolution (normal line → resolved) p50 (ms)", f1(drain["resolve_p50_ms"]), f1(idle["resolve_p50_ms"]), ""),
        ("readings drained per second during the drain", f"{drain['drain_rate']:,.0f} ({drain['drain_s']:.1f} s)", "", ""),
        (f"cold start → first reading forwarded, first run (creates the database) (ms)", f1(cold["first_ms"]),
         "", ""),
        (f"cold start → first reading forwarded, median of runs 2–{len(cold['runs_ms'])} (ms)", f1(cold["p50_ms"]),
         f"{f1(pub['p50_ms'])} (mosquitto_pub -l, median of {len(pub['runs_ms'])})",
         f"{cold['p50_ms'] / pub['p50_ms']:.1f}×" if pub["p50_ms"] else ""),
        ("  reference: mosquitto_pub -m LINE (no stdin, so no 100 ms poll), median (ms)", "",
         f"{f1(pub_m['p50_ms'])} (median of {len(pub_m['runs_ms'])})",
         f"{cold['p50_ms'] / pub_m['p50_ms']:.1f}×" if pub_m["p50_ms"] else ""),
    ]
    print()
    print(f"Escalation latency under backlog, and cold start: {args.build} build, max_in_flight {args.max_in_flight}, {os.cpu_count()} CPUs, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}")
    print("| figure | Vigil | limit measured beside it | Vigil/limit |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |")
    print(f"cold start runs (ms): vigild {', '.join(f'{x:.0f}' for x in cold['runs_ms'])}; "
          f"mosquitto_pub -l {', '.join(f'{x:.0f}' for x in pub['runs_ms'])}; "
          f"mosquitto_pub -m {', '.join(f'{x:.0f}' for x in pub_m['runs_ms'])}")
    return {
        "build": args.build, "backlog": drain["backlog"], "samples": len(drain["samples"]),
        "max_in_flight": args.max_in_flight, "escalation_p50_ms": drain["p50_ms"], "escalation_max_ms": drain["max_ms"],
        "escalation_idle_p50_ms": idle["p50_ms"], "escalation_idle_max_ms": idle["max_ms"],
        "escalation_samples_ms": [round(r["latency_ms"], 2) for r in drain["samples"]],
        "escalation_progress_at_write": [round(r["progress_at_write"], 4) for r in drain["samples"]],
        "escalation_progress_at_arrival": [round(r["progress_at_arrival"], 4) for r in drain["samples"]],
        "escalation_idle_samples_ms": [round(r["latency_ms"], 2) for r in idle["samples"]],
        "drain_rate": drain["drain_rate"], "drain_s": drain["drain_s"],
        "cold_start_first_ms": cold["first_ms"], "cold_start_p50_ms": cold["p50_ms"],
        "cold_start_runs_ms": [round(x, 2) for x in cold["runs_ms"]],
        "mosquitto_pub_cold_p50_ms": pub["p50_ms"], "mosquitto_pub_cold_runs_ms": [round(x, 2) for x in pub["runs_ms"]],
        "mosquitto_pub_m_cold_p50_ms": pub_m["p50_ms"],
        "mosquitto_pub_m_cold_runs_ms": [round(x, 2) for x in pub_m["runs_ms"]],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory holding vigild, vigilctl and vigil-bench")
    ap.add_argument("--profiles", required=True, help="the repository's devices/ folder")
    ap.add_argument("--build", default="release", help="label for the report")
    ap.add_argument("--readings", type=int, default=1_000_000, help="backlog size (default 1000000)")
    ap.add_argument("--samples", type=int, default=7, help="escalations during the drain, and with no backlog")
    ap.add_argument("--cold-runs", type=int, default=7, help="cold starts of vigild and of mosquitto_pub")
    ap.add_argument("--max-in-flight", type=int, default=256, help="outbox.max_in_flight (default 256, vigild's default)")
    ap.add_argument("--timeout", type=float, default=600, help="longest wait for any one step (s)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    args.profiles = os.path.abspath(args.profiles)
    if args.samples < 1 or args.cold_runs < 2 or args.readings < 1000:
        ap.error("need --samples ≥ 1, --cold-runs ≥ 2 and --readings ≥ 1000")
    def measure(work: str) -> int:
        try:
            idle = run_escalation(args, work, 0, args.samples)
            drain = run_escalation(args, work, args.readings, args.samples)
            cold = run_cold_vigild(args, work, args.cold_runs)
            pub = run_cold_pub(args, work, args.cold_runs, line_mode=True)
            pub_m = run_cold_pub(args, work, args.cold_runs, line_mode=False)
        except Failure as e:
            log(f"FAILED: {e}")
            print("RESULT " + json.dumps({"build": args.build, "failed": str(e)}))
            return 1
        result = report(args, idle, drain, cold, pub, pub_m)
        print("RESULT " + json.dumps(result))
        return 0

    return bd.in_workdir("vigil-bench-lifecycle.", args.keep, measure, log)


if __name__ == "__main__":
    sys.exit(main())
