#!/usr/bin/env python3
"""The measuring half of scripts/soak (Python 3.11 standard library only).

Pushes N readings through the whole pipeline -- simulated Masimo Rad-8 oximeters on real
pseudo-terminals, the real vigild (decode, SQLite commit with synchronous=FULL, the rule engine
with a care plan per patient, the two-lane outbox), MQTT QoS 1 to a private mosquitto on
127.0.0.1 and a subscriber counting what arrives -- while sampling vigild's memory every second
from /proc/PID/status. It answers one question: after warm-up, does vigild's resident memory
grow while readings keep flowing? (issue 8: "less than 1 MB").

How the lines are made (and why):
  * Each device writes Rad-8 ASCII 1 lines with only SpO2 set, so one line is one reading.
  * Device times advance one second per line, but vigild trusts a device time only within a
    day of its own clock, and a million device-seconds are 11.6 days. So each device's time
    runs through a cycle of CYCLE_S = 149,999 s (41.7 h) centred on now and then starts again.
    Reading IDs stay distinct: for a live stream without record numbers the ID includes the
    gateway's arrival time (Reading.swift), and two lines with the same device time are a
    cycle apart. The cycle is coprime with the low-SpO2 period, so no two escalations of a
    patient share an opening time (the escalation ID is derived from it).
  * Every 1000th line of a device (i % 1000 == 500) carries SpO2 80 %: the care plan's
    emergency threshold (below 88, immediate, never suppressed) opens an escalation on it and
    the next line (>= 90 %) resolves it, so the priority lane carries two messages per low line.
    A second, sustained rule (below 90 for 60 s) is assessed on every reading and never fires.
  * Lines are written at a steady paced rate (--rate, lines/s over all devices), in small
    slices every 10 ms. If vigild falls behind, the write into the pty blocks once the tty
    queue is full, so the backlog in front of vigild is bounded by the kernel's tty buffer and
    the pacer simply runs at the rate vigild sustains. --rate 0 writes as fast as the ptys
    accept the bytes (saturation).

What is counted:
  offered    lines written (= readings)
  committed  vigild's per-device reading counters (vigilctl status --json) and, at the end,
             the rows in its database (read with Python's sqlite3 after vigild stopped)
  delivered  reading messages that arrived at a QoS 1 subscriber, with an order-independent
             checksum of their reading IDs (sum of the 128-bit IDs) that must equal the same
             sum over the database: a loss hidden by a duplicate would not match. The
             subscriber keeps counts and the checksum only, never the payloads.

Memory: VmRSS, RssAnon, RssFile, RssShmem and VmHWM every second. Warm-up = the first
--warmup-fraction (10 %) of the readings offered. "After warm-up" is the median VmRSS over the
first --window samples taken once warm-up ended; "end" is the median over the last --window
samples taken while lines were still being written. Growth = end - after warm-up; the run fails
(exit 1) if growth >= 1 MiB (1,048,576 bytes) or if any reading or escalation is lost.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_driver as bd  # noqa: E402  (Broker, Pty, spawn, stop, stop_all, wait_until, free_port)

CYCLE_S = 149_999        # device-time cycle, seconds; coprime with LOW_EVERY
LOW_EVERY = 1000         # one low-SpO2 line per this many lines of a device
LOW_AT = 500             # ... at i % LOW_EVERY == LOW_AT
LOW_SPO2 = 80
GROWTH_LIMIT = 1_048_576  # bytes: 1 MiB

CONFIG = """devices:
{devices}"""

DEVICE = """  - id: {device}
    profile: masimo-rad8
    port: "{link}"
    patient: {patient}
"""

# An emergency (immediate, never suppressed) fires on every low line and resolves on the
# next; the sustained urgent rule is assessed on every reading and never confirms.
CARE_PLAN = """patient: {patient}
version: 1
thresholds:
  - id: spo2-soak-emergency
    vital: spo2
    below: 88
    severity: emergency
  - id: spo2-low-sustained
    vital: spo2
    below: 90
    sustained_seconds: 60
    hysteresis: 2
    severity: urgent
"""


def log(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Lines


class DeviceLines:
    """Line i of one device, made on demand (a million lines are never held in memory)."""

    def __init__(self, start: dt.datetime):
        self.start = start  # device time of line 0; naive UTC (clock_utc_offset 0)

    def line(self, i: int) -> bytes:
        t = self.start + dt.timedelta(seconds=i % CYCLE_S)
        spo2 = LOW_SPO2 if i % LOW_EVERY == LOW_AT else 90 + i % 10
        return (f"{t:%m/%d/%y %H:%M:%S} SN=0000012345 SPO2={spo2:03d}% BPM=--- PI=--.--% SPCO=--.-% "
                "SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n").encode()

    @staticmethod
    def expected_escalations(n: int) -> tuple[int, int]:
        """(opened, resolved) for a device that writes n lines."""
        lows = [i for i in range(LOW_AT, n, LOW_EVERY)]
        return len(lows), sum(1 for i in lows if i + 1 < n)


class Feeder(threading.Thread):
    """Writes `n` lines of one device into its pty at `rate` lines/s (0: as fast as the pty
    takes them), in slices every 10 ms; a blocked write is the back-pressure."""

    TICK = 0.01

    def __init__(self, pty: bd.Pty, lines: DeviceLines, n: int, rate: float, stop_event: threading.Event):
        super().__init__(daemon=True)
        self.pty, self.lines, self.n, self.rate, self.stop_event = pty, lines, n, rate, stop_event
        self.written = 0
        self.error: BaseException | None = None
        self.finished_at: float | None = None

    def run(self) -> None:
        try:
            t0 = time.monotonic()
            i = 0
            while i < self.n and not self.stop_event.is_set():
                if self.rate > 0:
                    due = min(self.n, int((time.monotonic() - t0) * self.rate) + 1)
                    if due <= i:
                        time.sleep(self.TICK)
                        continue
                    # Never more than a second's worth at once, so catching up stays smooth.
                    upto = min(due, i + max(1, int(self.rate)))
                else:
                    upto = min(self.n, i + 64)
                self.pty.write_all(b"".join(self.lines.line(k) for k in range(i, upto)))
                i = upto
                self.written = i
        except BaseException as e:  # reported by the main thread
            self.error = e
        finally:
            self.finished_at = time.monotonic()


# ---------------------------------------------------------------------------------------
# Subscriber: counts and an ID checksum, nothing else kept


class CountingSubscriber:
    def __init__(self, broker: bd.Broker, prefix: str):
        self.prefix = prefix
        self.tag = f"soak-{os.getpid()}"
        argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-i", self.tag,
                "-F", "%t %p", "-t", f"{prefix}/#", "-t", f"soak/probe/{self.tag}"]
        self.proc = bd.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lock = threading.Lock()
        self.readings = 0
        self.id_sum = 0
        self.escalations = {"open": 0, "resolved": 0, "other": 0}
        self.events = 0
        self.unparsed = 0
        self.probes = 0
        self.last_arrival = 0.0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while True:
            with self.lock:
                if self.probes:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the subscriber never received its probe message")
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                            "-t", f"soak/probe/{self.tag}", "-m", "probe"], check=False)
            time.sleep(0.1)

    def _read(self) -> None:
        readings_topic = f"{self.prefix}/readings ".encode()
        esc_topic = f"{self.prefix}/escalations ".encode()
        events_topic = f"{self.prefix}/events ".encode()
        for line in self.proc.stdout:
            now = time.monotonic()
            with self.lock:
                if line.startswith(readings_topic):
                    k = line.find(b'"id":"')
                    try:
                        self.id_sum += int(line[k + 6:k + 38], 16)
                        self.readings += 1
                        self.last_arrival = now
                    except ValueError:
                        self.unparsed += 1
                elif line.startswith(esc_topic):
                    if b'"state":"open"' in line:
                        self.escalations["open"] += 1
                    elif b'"state":"resolved"' in line:
                        self.escalations["resolved"] += 1
                    else:
                        self.escalations["other"] += 1
                elif line.startswith(events_topic):
                    self.events += 1
                elif line.startswith(b"soak/probe/"):
                    self.probes += 1

    def snapshot(self) -> dict:
        with self.lock:
            return {"readings": self.readings, "id_sum": self.id_sum % (1 << 128), "escalations": dict(self.escalations),
                    "events": self.events, "unparsed": self.unparsed, "last_arrival": self.last_arrival}

    def close(self) -> None:
        bd.stop(self.proc)
        self.thread.join(5)


# ---------------------------------------------------------------------------------------
# vigild


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/PID/status, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            parts = v.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[k] = int(parts[0]) * 1024
    return out


def smaps_rollup_by_mapping(pid: int) -> dict[str, int]:
    """Rss per mapping name from /proc/PID/smaps (bytes): where the memory lives."""
    out: dict[str, int] = {}
    name = "?"
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    parts = line.split()
                    name = parts[5] if len(parts) > 5 else "[anon]"
                    if name.startswith("/"):
                        name = os.path.basename(name)
                elif first == "Rss:":
                    out[name] = out.get(name, 0) + int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def anon_mappings(pid: int) -> dict[str, tuple[int, int, str]]:
    """Per mapping (keyed by its start address): (size, Rss, name) in bytes, from
    /proc/PID/smaps. A glibc malloc arena of a thread shows as an anonymous mapping inside a
    64 MiB reservation; the main arena is [heap]."""
    out: dict[str, tuple[int, int, str]] = {}
    key, size, name = None, 0, ""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    parts = line.split()
                    lo, hi = (int(x, 16) for x in first.split("-"))
                    # Keyed by start address: an arena heap grows in place (mprotect), which
                    # moves the end of its read-write part.
                    key, size = f"{lo:x}", hi - lo
                    name = parts[5] if len(parts) > 5 else "[anon]"
                    if name.startswith("/"):
                        name = os.path.basename(name)
                elif first == "Rss:" and key:
                    out[key] = (size, int(line.split()[1]) * 1024, name)
    except OSError:
        pass
    return out


def mapping_growth(before: dict, after: dict, top: int = 5) -> list[dict]:
    rows = []
    for k in set(before) | set(after):
        b = before.get(k, (0, 0, ""))
        a = after.get(k, (0, 0, b[2]))
        if a[1] != b[1]:
            rows.append({"mapping": k, "name": a[2] or b[2], "size_kib": (a[0] or b[0]) // 1024,
                         "rss_before_kib": b[1] // 1024, "rss_after_kib": a[1] // 1024,
                         "growth_kib": (a[1] - b[1]) // 1024, "new": k not in before})
    rows.sort(key=lambda r: -abs(r["growth_kib"]))
    return rows[:top]


class Vigild:
    def __init__(self, args, broker: bd.Broker, work: str, devices: list[dict]):
        self.args, self.work = args, work
        os.makedirs(os.path.join(work, "state"), exist_ok=True)
        os.makedirs(os.path.join(work, "care-plans"), exist_ok=True)
        for d in devices:
            with open(os.path.join(work, "care-plans", f"{d['patient']}.yaml"), "w") as f:
                f.write(CARE_PLAN.format(patient=d["patient"]))
        self.config = os.path.join(work, "vigild.yaml")
        with open(self.config, "w") as f:
            f.write(bd.vigild_config(work, args.profiles, broker.port,
                                     CONFIG.format(devices="".join(DEVICE.format(**d) for d in devices)),
                                     site="soak", gateway="gw-soak"))
        self.socket = os.path.join(work, "control.sock")
        self.database = os.path.join(work, "state", "vigil.sqlite")
        self.device_ids = [d["device"] for d in devices]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        logf = open(os.path.join(self.work, "vigild.log"), "w")
        env = dict(os.environ)
        for kv in self.args.vigild_env:
            k, _, v = kv.partition("=")
            env[k] = v
        self.proc = bd.spawn([os.path.join(self.args.bin, "vigild"), "--config", self.config],
                             stdout=logf, stderr=subprocess.STDOUT, env=env)

        def ready():
            self.check_alive()
            s = self.status()
            if not s or s.get("uplink", {}).get("connected") is not True:
                return False
            states = {d.get("id"): d.get("state") for d in s.get("devices", [])}
            return all(states.get(d) == "open" for d in self.device_ids)
        bd.wait_until(ready, 60, "vigild to open every device and connect", step=0.1)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"vigild exited with status {self.proc.returncode}; see {self.work}/vigild.log")

    def status(self) -> dict | None:
        try:
            r = subprocess.run([os.path.join(self.args.bin, "vigilctl"), "status", "--socket", self.socket, "--json"],
                               capture_output=True, timeout=20)
            return json.loads(r.stdout)["status"]
        except (ValueError, KeyError, subprocess.TimeoutExpired):
            return None

    def committed(self, s: dict | None) -> int | None:
        if not s:
            return None
        return sum(d.get("readings", 0) for d in s.get("devices", []) if d.get("id") in self.device_ids)


def database_figures(path: str) -> dict:
    """Counts and the ID checksum over the database (vigild stopped)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        total, delivered, id_sum = 0, 0, 0
        for rid, dlv in db.execute("SELECT reading_id, delivered FROM readings"):
            total += 1
            delivered += dlv
            id_sum += int(rid, 16)
        distinct = db.execute("SELECT count(DISTINCT reading_id) FROM readings").fetchone()[0]
        prio = dict(db.execute("SELECT kind, count(*) FROM priority_outbox GROUP BY kind").fetchall())
        undelivered_prio = db.execute("SELECT count(*) FROM priority_outbox WHERE delivered = 0").fetchone()[0]
        flagged = db.execute("SELECT count(*) FROM readings WHERE flags != 0").fetchone()[0]
        return {"rows": total, "distinct_ids": distinct, "delivered_rows": delivered, "id_sum": id_sum % (1 << 128),
                "priority": prio, "priority_undelivered": undelivered_prio, "flagged_rows": flagged}
    finally:
        db.close()


# ---------------------------------------------------------------------------------------
# The run


def median_of(samples: list[dict], key: str) -> float:
    return statistics.median(s[key] for s in samples) if samples else float("nan")


def run(args, work: str) -> tuple[dict, list[str]]:
    broker = bd.Broker(work)
    ndev = args.devices
    per_device = [args.readings // ndev + (1 if k < args.readings % ndev else 0) for k in range(ndev)]
    devices, ptys, feeders = [], [], []
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
    start = now - dt.timedelta(seconds=CYCLE_S // 2)
    for k in range(ndev):
        pty = bd.Pty(os.path.join(work, f"rad8-{k + 1}"))
        ptys.append(pty)
        devices.append({"device": f"rad8-soak-{k + 1}", "link": pty.link, "patient": f"soak-patient-{k + 1}"})
    sub = CountingSubscriber(broker, "vigil/v1/soak/gw-soak")
    vigild = Vigild(args, broker, work, devices)
    stop_event = threading.Event()
    samples: list[dict] = []
    try:
        vigild.start()
        pid = vigild.proc.pid
        smaps_start = smaps_rollup_by_mapping(pid)
        idle = proc_status(pid)
        log(f"vigild (pid {pid}) has {ndev} devices open; idle VmRSS {idle['VmRSS'] / 2**20:.1f} MiB; "
            f"writing {args.readings:,} lines " + (f"at {args.rate:g} lines/s" if args.rate else "as fast as the ptys take them"))
        rate_each = args.rate / ndev if args.rate else 0.0
        for k in range(ndev):
            feeders.append(Feeder(ptys[k], DeviceLines(start), per_device[k], rate_each, stop_event))
        t0 = time.monotonic()
        for fd in feeders:
            fd.start()
        warm_at = int(args.readings * args.warmup_fraction)
        warm_t = None
        next_sample = t0
        last_log = t0
        feeding = True
        smaps_warm = None
        while True:
            next_sample += 1.0
            delay = next_sample - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            vigild.check_alive()
            for fd in feeders:
                if fd.error:
                    raise RuntimeError(f"writing into the pty failed: {fd.error}")
            offered = sum(fd.written for fd in feeders)
            st = proc_status(pid)
            s = vigild.status()
            sub_now = sub.snapshot()
            t = time.monotonic() - t0
            feeding = any(fd.is_alive() for fd in feeders)
            sample = {"t": t, "offered": offered, "committed": vigild.committed(s), "delivered": sub_now["readings"],
                      "VmRSS": st["VmRSS"], "RssAnon": st["RssAnon"], "RssFile": st["RssFile"],
                      "RssShmem": st.get("RssShmem", 0), "VmHWM": st["VmHWM"], "feeding": feeding,
                      "threads": threads(pid),
                      "outbox_depth": (s or {}).get("outbox", {}).get("readings", {}).get("depth")}
            samples.append(sample)
            if warm_t is None and offered >= warm_at:
                warm_t = t
                smaps_warm = smaps_rollup_by_mapping(pid)
                maps_warm = anon_mappings(pid)
            if time.monotonic() - last_log >= 10:
                last_log = time.monotonic()
                log(f"{t:6.0f} s: offered {offered:,}, committed {sample['committed'] or 0:,}, delivered {sample['delivered']:,}, "
                    f"VmRSS {st['VmRSS'] / 2**20:.2f} MiB, RssAnon {st['RssAnon'] / 2**20:.2f} MiB")
            if not feeding:
                break
            if args.timeout and t > args.timeout:
                raise RuntimeError(f"still writing after {args.timeout:.0f} s (offered {offered:,})")
        feed_end = max(fd.finished_at for fd in feeders) - t0
        offered = sum(fd.written for fd in feeders)
        smaps_end = smaps_rollup_by_mapping(pid)
        maps_end = anon_mappings(pid)
        log(f"all {offered:,} lines written in {feed_end:.1f} s; waiting for commit and delivery")

        # Drain: committed == offered, outbox empty, subscriber has every reading.
        def drained():
            vigild.check_alive()
            s = vigild.status()
            c = vigild.committed(s)
            depth = (s or {}).get("outbox", {})
            return (c == offered and depth.get("readings", {}).get("depth") == 0
                    and depth.get("escalations", {}).get("depth") == 0 and sub.snapshot()["readings"] >= offered)
        drain_error = None
        try:
            bd.wait_until(drained, max(60.0, args.readings / 500), "every reading to be committed and delivered", step=0.25)
        except RuntimeError as e:
            drain_error = str(e)
            log(drain_error)
        time.sleep(1.0)  # any duplicate or late escalation still on its way
        final_status = vigild.status() or {}
        final = proc_status(pid)
        drained_t = time.monotonic() - t0
        bd.stop(vigild.proc)
        vigild_exit = vigild.proc.returncode
    finally:
        stop_event.set()
        for fd in feeders:
            fd.join(5)
        sub_final = sub.snapshot()
        sub.close()
        for p in ptys:
            p.close()
    db = database_figures(vigild.database)

    # ----- figures
    feeding_samples = [s for s in samples if s["t"] <= feed_end and s["feeding"]]
    post = [s for s in feeding_samples if warm_t is not None and s["t"] >= warm_t]
    # A short run (e.g. 30,000 readings at 3,000/s) gets narrower windows that do not overlap.
    args.window = max(1, min(args.window, len(post) // 3))
    after = post[:args.window]
    end = post[-args.window:]
    problems: list[str] = []
    if len(post) < 2:
        problems.append(f"too short to measure growth: {len(post)} samples after warm-up while feeding "
                        "(more readings or a lower --rate)")
    mem = {}
    for key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
        a, b = median_of(after, key), median_of(end, key)
        mem[key] = {"after_warmup": a, "end": b, "growth": b - a}
    growth = mem["VmRSS"]["growth"]
    esc_open, esc_resolved = 0, 0
    for k in range(ndev):
        o, r = DeviceLines.expected_escalations(per_device[k])
        esc_open, esc_resolved = esc_open + o, esc_resolved + r
    committed_status = vigild.committed(final_status)
    acked = final_status.get("uplink", {}).get("acknowledged")
    first_arrival_to_last = sub_final["last_arrival"] - t0 if sub_final["last_arrival"] else float("nan")
    result = {
        "readings": args.readings, "devices": ndev, "build": args.build, "rate_target": args.rate,
        "offered": offered, "committed": committed_status, "committed_rows": db["rows"], "distinct_ids": db["distinct_ids"],
        "delivered": sub_final["readings"], "ids_match": sub_final["id_sum"] == db["id_sum"] and db["rows"] > 0,
        "delivered_marked": db["delivered_rows"], "flagged_rows": db["flagged_rows"],
        "escalations_expected": {"open": esc_open, "resolved": esc_resolved},
        "escalations_arrived": sub_final["escalations"], "events_arrived": sub_final["events"],
        "priority_outbox": db["priority"], "priority_undelivered": db["priority_undelivered"],
        "uplink_acknowledged": acked, "evicted": final_status.get("store", {}).get("evicted_total"),
        "transactions": final_status.get("store", {}).get("transactions"),
        "db_bytes": final_status.get("store", {}).get("size_bytes"),
        "feed_seconds": feed_end, "drained_seconds": drained_t, "last_arrival_seconds": first_arrival_to_last,
        "offered_per_s": offered / feed_end if feed_end > 0 else float("nan"),
        "delivered_per_s": sub_final["readings"] / first_arrival_to_last if first_arrival_to_last > 0 else float("nan"),
        "warmup_readings": warm_at, "warmup_seconds": warm_t, "window_samples": args.window, "samples": len(samples),
        "idle_vmrss": idle["VmRSS"], "memory": mem, "growth_bytes": growth, "growth_limit_bytes": GROWTH_LIMIT,
        "max_vmrss": max(s["VmRSS"] for s in samples) if samples else None, "vmhwm_end": final["VmHWM"],
        "vmrss_after_drain": final["VmRSS"], "vigild_exit": vigild_exit, "unparsed": sub_final["unparsed"],
        # The names scripts/bench_table.py reads.
        "rss_growth_bytes": growth, "rss_after_warmup_bytes": mem["VmRSS"]["after_warmup"],
        "rss_end_bytes": mem["VmRSS"]["end"], "rss_anon_growth_bytes": mem["RssAnon"]["growth"],
        "lost": max(0, offered - min(db["rows"], db["distinct_ids"], sub_final["readings"], committed_status or 0)),
        "max_outbox_depth": max((s["outbox_depth"] or 0) for s in samples) if samples else None,
    }
    # Where any growth lives: per-mapping Rss, warm-up end -> end of feed.
    if smaps_warm is not None:
        delta = {k: smaps_end.get(k, 0) - smaps_warm.get(k, 0) for k in set(smaps_end) | set(smaps_warm)}
        result["smaps_delta"] = {k: v for k, v in sorted(delta.items(), key=lambda kv: -abs(kv[1]))[:6] if v}
        result["mapping_growth"] = mapping_growth(maps_warm, maps_end)
        result["threads_after_warmup_end"] = [after[0]["threads"] if after else None, end[-1]["threads"] if end else None]
    if smaps_warm is not None:
        grew = {k: smaps_warm.get(k, 0) - smaps_start.get(k, 0) for k in set(smaps_start) | set(smaps_warm)}
        result["smaps_idle_to_warm"] = {k: v for k, v in sorted(grew.items(), key=lambda kv: -abs(kv[1])) if v}

    if drain_error:
        problems.append(drain_error)
    if offered != args.readings:
        problems.append(f"only {offered:,} of {args.readings:,} lines were written")
    for name, v in (("committed (status)", committed_status), ("committed (database rows)", db["rows"]),
                    ("distinct reading IDs in the database", db["distinct_ids"]), ("delivered", sub_final["readings"]),
                    ("marked delivered in the database", db["delivered_rows"])):
        if v != offered:
            problems.append(f"{name} {v} != offered {offered}: readings lost or duplicated")
    if not result["ids_match"]:
        problems.append("the reading IDs that arrived are not the ones committed (checksum differs)")
    if (sub_final["escalations"]["open"], sub_final["escalations"]["resolved"]) != (esc_open, esc_resolved):
        problems.append(f"escalations arrived open/resolved {sub_final['escalations']['open']}/{sub_final['escalations']['resolved']}, "
                        f"expected {esc_open}/{esc_resolved}")
    if db["flagged_rows"]:
        problems.append(f"{db['flagged_rows']} readings carry quality flags (device clock not trusted?)")
    if vigild_exit not in (0, None):
        problems.append(f"vigild exited with status {vigild_exit} on SIGTERM")
    if growth == growth and growth >= GROWTH_LIMIT:
        problems.append(f"VmRSS grew by {growth:,.0f} bytes after warm-up (limit {GROWTH_LIMIT:,}): "
                        f"RssAnon {mem['RssAnon']['growth']:+,.0f}, RssFile {mem['RssFile']['growth']:+,.0f}, "
                        f"RssShmem {mem['RssShmem']['growth']:+,.0f}; per mapping {result.get('smaps_delta')}")
    return {"result": result, "samples": samples}, problems


# ---------------------------------------------------------------------------------------
# Output


def mib(b) -> str:
    return "n/a" if b is None or b != b else f"{b / 2**20:.2f}"


def signed_kib(b) -> str:
    return "n/a" if b is None or b != b else f"{b / 1024:+,.0f} KiB"


def report(out: dict, problems: list[str]) -> None:
    r, samples = out["result"], out["samples"]
    m = r["memory"]
    print()
    print(f"Vigil soak: {r['readings']:,} readings from {r['devices']} Rad-8 ptys, {r['build']} build, "
          f"{os.cpu_count()} CPUs, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    rate = f"paced at {r['rate_target']:g} lines/s" if r["rate_target"] else "as fast as the ptys accept"
    print(f"feed {rate}: {r['offered_per_s']:,.0f} lines/s achieved; warm-up = first {r['warmup_readings']:,} readings "
          f"({r['warmup_seconds'] or 0:.0f} s); medians over {r['window_samples']} one-second samples at each end")
    rows = [
        ("readings offered / committed / delivered", f"{r['offered']:,} / {r['committed'] or 0:,} / {r['delivered']:,}",
         f"database: {r['committed_rows']:,} rows, {r['distinct_ids']:,} distinct IDs, {r['delivered_marked']:,} marked delivered; "
         f"ID checksum {'matches' if r['ids_match'] else 'DIFFERS'}"),
        ("escalations open / resolved", f"{r['escalations_arrived']['open']:,} / {r['escalations_arrived']['resolved']:,}",
         f"expected {r['escalations_expected']['open']:,} / {r['escalations_expected']['resolved']:,}"),
        ("elapsed: feed / until all delivered (s)", f"{r['feed_seconds']:.1f} / {r['last_arrival_seconds']:.1f}", ""),
        ("readings/s: offered / delivered", f"{r['offered_per_s']:,.0f} / {r['delivered_per_s']:,.0f}", ""),
        ("largest readings outbox depth seen", f"{r['max_outbox_depth']:,}", "committed but not yet PUBACKed"),
        ("VmRSS idle (devices open) (MiB)", mib(r["idle_vmrss"]), ""),
        ("VmRSS after warm-up / end (MiB)", f"{mib(m['VmRSS']['after_warmup'])} / {mib(m['VmRSS']['end'])}", ""),
        ("VmRSS growth", signed_kib(r["growth_bytes"]), f"limit < {GROWTH_LIMIT / 1024:,.0f} KiB (1 MiB)"),
        ("  RssAnon after warm-up / end / growth", f"{mib(m['RssAnon']['after_warmup'])} / {mib(m['RssAnon']['end'])} MiB",
         signed_kib(m["RssAnon"]["growth"])),
        ("  RssFile after warm-up / end / growth", f"{mib(m['RssFile']['after_warmup'])} / {mib(m['RssFile']['end'])} MiB",
         signed_kib(m["RssFile"]["growth"])),
        ("  RssShmem after warm-up / end / growth", f"{mib(m['RssShmem']['after_warmup'])} / {mib(m['RssShmem']['end'])} MiB",
         signed_kib(m["RssShmem"]["growth"])),
        ("VmRSS max sampled / VmHWM (MiB)", f"{mib(r['max_vmrss'])} / {mib(r['vmhwm_end'])}", ""),
        ("database", f"{r['db_bytes'] or 0:,} bytes", f"{r['transactions'] or 0:,} store transactions"),
    ]
    w0 = max(len(x[0]) for x in rows)
    w1 = max(len(x[1]) for x in rows)
    print()
    for a, b, c in rows:
        print(f"{a.ljust(w0)}  {b.ljust(w1)}  {c}")
    if r.get("smaps_delta"):
        print("Rss change per mapping name, warm-up end -> end of feed: "
              + ", ".join(f"{k} {signed_kib(v)}" for k, v in r["smaps_delta"].items()))
    for g in r.get("mapping_growth", []):
        print(f"  {g['name']} at {g['mapping']} ({g['size_kib']:,} KiB mapped{', new' if g['new'] else ''}): "
              f"Rss {g['rss_before_kib']:,} -> {g['rss_after_kib']:,} KiB ({g['growth_kib']:+,} KiB)")
    t = r.get("threads_after_warmup_end")
    if t:
        print(f"vigild threads after warm-up / at the end: {t[0]} / {t[1]}")

    # RSS over time: 10 rows at evenly spaced points of the feed (and the last sample).
    feeding = [s for s in samples if s["feeding"]] or samples
    picks = sorted({round(k * (len(feeding) - 1) / 9) for k in range(10)}) if feeding else []
    print()
    print("RSS over time (while writing)")
    head = ("t (s)", "offered", "committed", "delivered", "VmRSS MiB", "RssAnon MiB", "RssFile MiB", "RssShmem MiB", "VmHWM MiB")
    table = [head]
    for k in picks:
        s = feeding[k]
        table.append((f"{s['t']:.0f}", f"{s['offered']:,}", f"{s['committed'] or 0:,}", f"{s['delivered']:,}",
                      mib(s["VmRSS"]), mib(s["RssAnon"]), mib(s["RssFile"]), mib(s["RssShmem"]), mib(s["VmHWM"])))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for j, row in enumerate(table):
        print("  ".join(c.rjust(widths[i]) for i, c in enumerate(row)))
        if j == 0:
            print("  ".join("-" * widths[i] for i in range(len(head))))
    print()
    verdict = "FAIL" if problems else "PASS"
    print(f"{verdict}: VmRSS growth after warm-up {r['growth_bytes'] / 1024:+,.0f} KiB (limit < 1,024 KiB); "
          f"{r['offered']:,} offered, {r['committed_rows']:,} committed, {r['delivered']:,} delivered")
    for p in problems:
        print(f"  - {p}")
    print("RESULT " + json.dumps({**r, "pass": not problems, "problems": problems}, default=str))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory holding vigild and vigilctl")
    ap.add_argument("--profiles", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "devices"),
                    help="the devices/ folder (default: the repository's)")
    ap.add_argument("--build", default="release", help="label for the report")
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--rate", type=float, default=3000.0, help="lines/s over all devices; 0 = as fast as the ptys accept")
    ap.add_argument("--warmup-fraction", type=float, default=0.10)
    ap.add_argument("--window", type=int, default=10,
                    help="samples in each median window (fewer when the run is short: a third of the samples after warm-up)")
    ap.add_argument("--timeout", type=float, default=0, help="give up writing after this many seconds (0: never)")
    ap.add_argument("--samples-out", help="also write every sample as JSON lines to this file")
    ap.add_argument("--vigild-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for vigild (e.g. MALLOC_ARENA_MAX=1 to test the arena explanation)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.profiles = os.path.abspath(args.profiles)
    if args.readings < 1 or args.devices < 1 or not 0 < args.warmup_fraction < 1 or args.window < 1:
        ap.error("--readings and --devices must be positive, --warmup-fraction between 0 and 1, --window >= 1")

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, bd.on_signal)
    work = tempfile.mkdtemp(prefix="vigil-soak.")
    keep = args.keep
    try:
        out, problems = run(args, work)
        if args.samples_out:
            with open(args.samples_out, "w") as f:
                for s in out["samples"]:
                    f.write(json.dumps(s) + "\n")
        report(out, problems)
        if problems:
            keep = True
            log("FAILED: " + "; ".join(problems))
            return 1
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Exception as e:  # report, keep the files, fail
        log(f"error: {e}")
        keep = True
        return 1
    finally:
        bd.stop_all()
        if keep:
            log(f"files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
