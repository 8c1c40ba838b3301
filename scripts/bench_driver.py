#!/usr/bin/env python3
"""The measuring half of scripts/bench (Python 3.11 standard library only).

scripts/bench builds the binaries and runs this with their paths. Everything here runs on
127.0.0.1: a private mosquitto, one vigild per phase with its own state directory, a
mosquitto_sub that stamps every message with its arrival time (`-F '%U %t %p'`, unix time
with nanoseconds), and simulated Masimo Rad-8 oximeters on real pseudo-terminals.

Phases:
  throughput  N lines written into a pty as fast as it accepts them; vigild reads, commits,
              forwards.  Baseline: the same N lines through `mosquitto_pub -l` on a pty.
  latency     L lines at R lines/s (default 300 at 10/s), Vigil and baseline.
  kill        (optional) a ~100 lines/s stream while vigild is killed with SIGKILL K times
              and restarted; counts lines that never arrived and lines that arrived twice.

Every line carries only an SpO2 value (BPM and PI are dashes), so one line is one reading,
and a distinct device time (one second apart), so reading IDs never collide. A reading is
matched back to its line through `measured_at`; a baseline message through its first 17
bytes (the line's date and time).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty

# ---------------------------------------------------------------------------------------
# Process bookkeeping: everything we start is stopped on every exit path.

PROCS: list[subprocess.Popen] = []


def spawn(argv, **kw) -> subprocess.Popen:
    p = subprocess.Popen(argv, **kw)
    PROCS.append(p)
    return p


def stop(p: subprocess.Popen, sig=signal.SIGTERM, grace=10.0) -> None:
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        except ProcessLookupError:
            pass
    if p in PROCS:
        PROCS.remove(p)


def stop_all() -> None:
    for p in reversed(list(PROCS)):
        try:
            stop(p, grace=5.0)
        except Exception:  # cleanup must go on
            pass


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def in_workdir(prefix: str, keep: bool, measure, log_fn=None) -> int:
    """Runs `measure(work)` in a new temporary directory and returns its exit status: what every
    driver's main needs. SIGINT, SIGTERM and SIGHUP end the run as an interrupt (130); every
    process started through `spawn` is stopped on every exit path; the directory is removed
    unless `keep` or the run failed (an exception, or a non-zero status)."""
    say = log_fn or log
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    work = tempfile.mkdtemp(prefix=prefix)
    status = 1
    try:
        status = measure(work)
        return status
    except KeyboardInterrupt:
        say("interrupted")
        status = 0  # nothing is broken: remove the files unless --keep
        return 130
    except Exception as e:  # the method failed: report, keep the files, fail
        say(f"error: {e}")
        return 1
    finally:
        stop_all()
        if keep or status != 0:
            say(f"files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout: float, what: str, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


# ---------------------------------------------------------------------------------------
# Broker and subscriber


class Broker:
    def __init__(self, work: str):
        self.port = free_port()
        conf = os.path.join(work, "mosquitto.conf")
        with open(conf, "w") as f:
            # Unlimited queue: a subscriber that falls behind must not lose QoS 1 messages.
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 0\n")
        self.proc = spawn(["mosquitto", "-c", conf], stdout=open(os.path.join(work, "mosquitto.log"), "w"),
                          stderr=subprocess.STDOUT)

        def listening():
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False
        wait_until(listening, 10, "mosquitto to listen")


class Subscriber:
    """mosquitto_sub with arrival stamps; a thread keeps the raw lines (parsed afterwards,
    so the reader costs the writer as little CPU as possible)."""

    def __init__(self, broker: Broker, topics: list[str], tag: str):
        argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                "-i", f"bench-sub-{tag}-{os.getpid()}", "-F", "%U %t %p", "-t", f"bench/probe/{tag}"]
        for t in topics:
            argv += ["-t", t]
        self.proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lines: list[bytes] = []
        self.count_match = 0
        self.marker: bytes | None = None
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        probe = f"probe-{tag}"
        deadline = time.monotonic() + 10
        while not any(probe.encode() in l for l in list(self.lines)):
            if time.monotonic() > deadline:
                raise RuntimeError("the subscriber never received its probe message")
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                            "-t", f"bench/probe/{tag}", "-m", probe], check=False)
            time.sleep(0.1)

    def count_only(self, marker: bytes) -> None:
        """Count lines containing `marker` as they arrive (a cheap substring test)."""
        with self.lock:
            self.marker = marker
            self.count_match = sum(1 for l in self.lines if marker in l)

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line)
                if self.marker is not None and self.marker in line:
                    self.count_match += 1

    def matched(self) -> int:
        with self.lock:
            return self.count_match

    def close(self) -> list[bytes]:
        stop(self.proc)
        self.thread.join(5)
        return list(self.lines)


def parse_arrivals(lines: list[bytes], topic_suffix: str):
    """Yields (arrival_ns, topic, payload) for messages whose topic ends with topic_suffix."""
    for raw in lines:
        try:
            stamp, topic, payload = raw.rstrip(b"\n").split(b" ", 2)
        except ValueError:
            continue
        t = topic.decode()
        if not t.endswith(topic_suffix):
            continue
        sec, _, frac = stamp.partition(b".")
        yield int(sec) * 1_000_000_000 + int(frac.ljust(9, b"0")[:9]), t, payload


# ---------------------------------------------------------------------------------------
# Lines and pseudo-terminals


class Lines:
    """N Rad-8 ASCII 1 lines one device-second apart, centred on now (UTC)."""

    def __init__(self, n: int, start: dt.datetime):
        self.start = start
        self.n = n
        self.data: list[bytes] = []
        self.by_measured: dict[str, int] = {}
        self.by_header: dict[bytes, int] = {}
        for i in range(n):
            t = start + dt.timedelta(seconds=i)
            head = t.strftime("%m/%d/%y %H:%M:%S")
            self.data.append((f"{head} SN=0000012345 SPO2=0{90 + i % 10}% BPM=--- PI=--.--% SPCO=--.-% "
                              "SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n").encode())
            self.by_measured[t.strftime("%Y-%m-%dT%H:%M:%S.000Z")] = i
            self.by_header[head.encode()] = i

    @staticmethod
    def around_now(n: int, offset_s: int = 0) -> "Lines":
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
        return Lines(n, now - dt.timedelta(seconds=n // 2) + dt.timedelta(seconds=offset_s))


class Pty:
    """A pty pair; the slave stays open here so bytes written while nobody reads stay queued."""

    def __init__(self, link: str):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.slave_name = os.ttyname(self.slave)
        self.link = link
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(self.slave_name, link)

    def write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.master, view)
            view = view[n:]

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def write_lines(pty: Pty, lines: Lines, rate: float | None, deadline_extra=None) -> list[int]:
    """Writes every line; returns the wall time (ns) each write returned. rate=None: as fast
    as the pty accepts (the write blocks while its buffer is full)."""
    sent = [0] * lines.n
    t0 = time.monotonic()
    for i, data in enumerate(lines.data):
        if rate:
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        pty.write_all(data)
        sent[i] = time.time_ns()
        if deadline_extra:
            deadline_extra(i)
    return sent


def vigild_config(work: str, profiles: str, port: int, body: str, *, site: str = "bench",
                  gateway: str = "gw-bench", log_level: str = "notice",
                  reconnect_ms: tuple[int, int] = (200, 5000)) -> str:
    """A benchmark's vigild.yaml: what every driver shares (state, socket and care plans under
    `work`, the private broker on 127.0.0.1:`port`) followed by `body` (its devices, outbox and
    uplink sections)."""
    return (f"site: {site}\ngateway: {gateway}\nlog_level: {log_level}\npaths:\n"
            f'  database: "{work}/state/vigil.sqlite"\n  control_socket: "{work}/control.sock"\n'
            f'  care_plans: "{work}/care-plans"\n  device_profiles: "{profiles}"\n'
            f"broker:\n  host: 127.0.0.1\n  port: {port}\n  keepalive_seconds: 10\n"
            f"  reconnect_min_ms: {reconnect_ms[0]}\n  reconnect_max_ms: {reconnect_ms[1]}\n") + body


# ---------------------------------------------------------------------------------------
# vigild


class Vigild:
    CONFIG = """devices:
  - id: {device}
    profile: masimo-rad8
    port: "{link}"
    patient: bench-patient-1
"""

    def __init__(self, args, broker: Broker, work: str, device: str, link: str):
        self.args = args
        self.work = work
        os.makedirs(os.path.join(work, "state"), exist_ok=True)
        os.makedirs(os.path.join(work, "care-plans"), exist_ok=True)
        self.config = os.path.join(work, "vigild.yaml")
        with open(self.config, "w") as f:
            f.write(vigild_config(work, args.profiles, broker.port, self.CONFIG.format(device=device, link=link)))
        self.device = device
        self.socket = os.path.join(work, "control.sock")
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, wait_open=True) -> None:
        self.starts += 1
        logf = open(os.path.join(self.work, f"vigild.{self.starts}.log"), "w")
        self.proc = spawn([os.path.join(self.args.bin, "vigild"), "--config", self.config],
                          stdout=logf, stderr=subprocess.STDOUT)
        if wait_open:
            wait_until(lambda: self._device_open(), 30, "vigild to open the device", step=0.05)

    def status(self) -> dict | None:
        r = subprocess.run([os.path.join(self.args.bin, "vigilctl"), "status", "--socket", self.socket, "--json"],
                           capture_output=True, timeout=10)
        try:
            return json.loads(r.stdout)["status"]
        except (ValueError, KeyError):
            return None

    def _device_open(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"vigild exited with status {self.proc.returncode}; see {self.work}")
        s = self.status()
        if not s:
            return False
        devs = [d for d in s.get("devices", []) if d.get("id") == self.device]
        return bool(devs) and devs[0].get("state") == "open" and s.get("uplink", {}).get("connected") is True

    def proc_file(self, name: str) -> dict[str, str]:
        out = {}
        with open(f"/proc/{self.proc.pid}/{name}") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k.strip()] = v.strip()
        return out

    def write_bytes(self) -> int:
        return int(self.proc_file("io")["write_bytes"])

    def vm_hwm_kib(self) -> int:
        return int(self.proc_file("status")["VmHWM"].split()[0])

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()
        PROCS.remove(self.proc)

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)


# ---------------------------------------------------------------------------------------
# Phases


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarise(name: str, lines: Lines, sent: list[int], arrivals: dict[int, int], extra: dict) -> dict:
    lat = [(arrivals[i] - sent[i]) / 1e6 for i in arrivals if sent[i]]
    last = max(arrivals.values()) if arrivals else 0
    first_write = min(s for s in sent if s) if any(sent) else 0
    span = (last - first_write) / 1e9 if arrivals else float("nan")
    r = {
        "name": name, "n": lines.n, "arrived": len(arrivals), "lost": lines.n - len(arrivals),
        "rate": (len(arrivals) / span) if span and span > 0 else float("nan"),
        "span_s": span,
        "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": max(lat) if lat else float("nan"),
        "write_span_s": (max(sent) - first_write) / 1e9 if any(sent) else float("nan"),
    }
    r.update(extra)
    return r


def wait_arrivals(sub: Subscriber, n: int, timeout: float, quiet: float) -> None:
    """Waits until n matching messages arrived, or none arrived for `quiet` s, or timeout."""
    deadline = time.monotonic() + timeout
    last_count, last_change = -1, time.monotonic()
    while True:
        c = sub.matched()
        now = time.monotonic()
        if c >= n:
            return
        if c != last_count:
            last_count, last_change = c, now
        if now - last_change > quiet or now > deadline:
            log(f"stopped waiting: {c} of {n} arrived")
            return
        time.sleep(0.02)


def vigil_arrivals(lines_raw: list[bytes], lines: Lines, device: str):
    """Maps reading messages back to line indexes. Returns (first arrival per line,
    count per line, ids per line, unmatched)."""
    first: dict[int, int] = {}
    count: dict[int, int] = {}
    ids: dict[int, set] = {}
    received: dict[int, int] = {}
    unmatched = 0
    for ns, _topic, payload in parse_arrivals(lines_raw, "/readings"):
        try:
            msg = json.loads(payload)
        except ValueError:
            unmatched += 1
            continue
        if msg.get("device") != device:
            continue
        i = lines.by_measured.get(msg.get("measured_at"))
        if i is None:
            unmatched += 1
            continue
        count[i] = count.get(i, 0) + 1
        ids.setdefault(i, set()).add(msg.get("id"))
        if i not in first or ns < first[i]:
            first[i] = ns
            received[i] = iso_ms_to_ns(msg.get("received_at", ""))
    return first, count, ids, received, unmatched


def iso_ms_to_ns(text: str) -> int:
    """`2026-11-25T11:48:15.123Z` → unix ns (0 if unreadable)."""
    try:
        t = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return 0
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def run_vigil(args, broker: Broker, work: str, tag: str, lines: Lines, rate: float | None) -> dict:
    pwork = os.path.join(work, tag)
    os.makedirs(pwork)
    device = f"rad8-{tag}"
    pty = Pty(os.path.join(pwork, "rad8"))
    sub = Subscriber(broker, ["vigil/v1/#"], tag)
    sub.count_only(f'"device":"{device}"'.encode())
    v = Vigild(args, broker, pwork, device, pty.link)
    try:
        v.start()
        io0 = v.write_bytes()
        idle_rss = int(v.proc_file("status")["VmRSS"].split()[0])
        log(f"{tag}: vigild open; writing {lines.n} lines" + (f" at {rate:g}/s" if rate else " as fast as the pty takes them"))
        sent = write_lines(pty, lines, rate)
        wait_arrivals(sub, lines.n, timeout=max(60, lines.n / 500), quiet=15)
        # Let the forwarder record the last PUBACKs before the disk figure is taken.
        try:
            wait_until(lambda: (s := v.status()) and s["outbox"]["readings"]["depth"] == 0, 10, "outbox to drain")
        except RuntimeError as e:
            log(str(e))
        status = v.status() or {}
        io1 = v.write_bytes()
        hwm = v.vm_hwm_kib()
        anon_end = int(v.proc_file("status")["RssAnon"].split()[0])
    finally:
        v.stop()
        raw = sub.close()
        pty.close()
    first, _count, _ids, received, unmatched = vigil_arrivals(raw, lines, device)
    store = status.get("store", {})
    # Split the latency at vigild's read(2) (`received_at`, millisecond resolution, so each
    # part is uncertain by up to 1 ms): pty queue + wake-up, then decode → commit → publish.
    to_read = [(received[i] - sent[i]) / 1e6 for i in first if received.get(i)]
    after_read = [(first[i] - received[i]) / 1e6 for i in first if received.get(i)]
    return summarise(f"vigil-{tag}", lines, sent, first, {
        "rss_mib": hwm / 1024, "idle_rss_mib": idle_rss / 1024, "anon_end_mib": anon_end / 1024,
        "disk_b_per_reading": (io1 - io0) / lines.n,
        "write_to_read_p50_ms": percentile(to_read, 50), "read_to_arrival_p50_ms": percentile(after_read, 50),
        "read_to_arrival_p99_ms": percentile(after_read, 99),
        "transactions": store.get("transactions"), "db_bytes": store.get("size_bytes"), "unmatched": unmatched,
    })


def run_baseline(args, broker: Broker, work: str, tag: str, lines: Lines, rate: float | None) -> dict:
    pwork = os.path.join(work, tag)
    os.makedirs(pwork)
    pty = Pty(os.path.join(pwork, "tty"))
    sub = Subscriber(broker, [f"bench/baseline/{tag}"], tag)
    sub.count_only(f" bench/baseline/{tag} ".encode())
    stdin = os.open(pty.link, os.O_RDONLY | os.O_NOCTTY)
    pub = spawn(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                 "-i", f"bench-pub-{tag}-{os.getpid()}", "-t", f"bench/baseline/{tag}", "-l"],
                stdin=stdin, stdout=subprocess.DEVNULL, stderr=open(os.path.join(pwork, "pub.log"), "w"))
    os.close(stdin)
    try:
        # mosquitto_pub -l connects before reading; a tiny pause avoids timing its connect.
        time.sleep(0.3)
        log(f"{tag}: writing {lines.n} lines" + (f" at {rate:g}/s" if rate else " as fast as the pty takes them"))
        sent = write_lines(pty, lines, rate)
        wait_arrivals(sub, lines.n, timeout=max(60, lines.n / 500), quiet=15)
        with open(f"/proc/{pub.pid}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
    finally:
        stop(pub)
        raw = sub.close()
        pty.close()
    first: dict[int, int] = {}
    for ns, _t, payload in parse_arrivals(raw, f"bench/baseline/{tag}"):
        i = lines.by_header.get(payload[:17])
        if i is not None and i not in first:
            first[i] = ns
    return summarise(f"baseline-{tag}", lines, sent, first, {"rss_mib": hwm / 1024, "disk_b_per_reading": 0.0})


def run_kill(args, broker: Broker, work: str, kills: int) -> dict:
    """~100 lines/s; vigild is killed with SIGKILL `kills` times at random moments and
    restarted at once. The pty slave stays open here, so lines written meanwhile queue."""
    tag = "kill"
    pwork = os.path.join(work, tag)
    os.makedirs(pwork)
    device = f"rad8-{tag}"
    rate = 100.0
    per_kill = 2.0  # seconds of stream between kills, on average
    n = int(rate * (per_kill * (kills + 1) + 1))
    lines = Lines.around_now(n)
    pty = Pty(os.path.join(pwork, "rad8"))
    sub = Subscriber(broker, ["vigil/v1/#"], tag)
    sub.count_only(f'"device":"{device}"'.encode())
    v = Vigild(args, broker, pwork, device, pty.link)
    rng = random.Random(args.seed)
    kill_at = sorted(rng.uniform(0.5, (kills + 1) * per_kill) for _ in range(kills))
    log(f"kill: {n} lines at {rate:g}/s, SIGKILL at {', '.join(f'{t:.2f}' for t in kill_at)} s")
    restarts: list[float] = []
    try:
        v.start()
        t0 = time.monotonic()

        def killer():
            for at in kill_at:
                delay = t0 + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                v.kill9()
                t = time.monotonic()
                v.start(wait_open=False)
                restarts.append(time.monotonic() - t)
        kt = threading.Thread(target=killer, daemon=True)
        kt.start()
        sent = write_lines(pty, lines, rate)
        kt.join()
        wait_until(lambda: v._device_open(), 30, "the restarted vigild to open the device", step=0.05)
        wait_arrivals(sub, n, timeout=60, quiet=10)
        # Duplicates show up only after a restart re-sends un-acknowledged messages; give
        # the outbox a moment to drain completely.
        try:
            wait_until(lambda: (s := v.status()) and s["outbox"]["readings"]["depth"] == 0, 15, "outbox to drain")
        except RuntimeError as e:
            log(str(e))
        time.sleep(1)
    finally:
        v.stop()
        raw = sub.close()
        pty.close()
    first, count, ids, _received, unmatched = vigil_arrivals(raw, lines, device)
    lost = [i for i in range(n) if i not in first]
    dups = sum(c - 1 for c in count.values() if c > 1)
    dup_lines = sum(1 for c in count.values() if c > 1)
    id_mismatch = sum(1 for s in ids.values() if len(s) > 1)
    return {"name": "kill", "n": n, "kills": kills, "arrived": len(first), "lost": len(lost),
            "lost_per_kill": len(lost) / kills if kills else 0.0, "duplicates": dups, "duplicate_lines": dup_lines,
            "id_mismatch": id_mismatch, "unmatched": unmatched, "lost_lines": lost[:20],
            "kill_at_s": kill_at}


# ---------------------------------------------------------------------------------------
# Output


def fmt(v, digits=1):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != v:
            return "n/a"
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def report(args, results: dict, sizes: dict) -> None:
    tv, tb = results["tp_vigil"], results["tp_base"]
    lv, lb = results["lat_vigil"], results.get("lat_base")
    rows = [
        ("readings/s (first write -> last arrival)", fmt(tv["rate"], 0), fmt(tb["rate"], 0), fmt(tv["rate"] / tb["rate"], 2)),
        ("p50 latency, throughput run (ms)", fmt(tv["p50_ms"], 1), fmt(tb["p50_ms"], 1), fmt(tv["p50_ms"] / tb["p50_ms"], 2)),
        ("p99 latency, throughput run (ms)", fmt(tv["p99_ms"], 1), fmt(tb["p99_ms"], 1), fmt(tv["p99_ms"] / tb["p99_ms"], 2)),
        ("lost", fmt(tv["lost"]), fmt(tb["lost"]), ""),
        ("peak RSS (MiB, VmHWM)", fmt(tv["rss_mib"], 1), fmt(tb["rss_mib"], 1) + " (mosquitto_pub)", ""),
        ("  RSS once the device is open / anonymous RSS at end (MiB)", f'{fmt(tv["idle_rss_mib"], 1)} / {fmt(tv["anon_end_mib"], 1)}', "", ""),
        ("disk writes per reading (bytes)", fmt(tv["disk_b_per_reading"], 0), "0", ""),
        (f"p50 latency at {args.latency_rate:g}/s (ms)", fmt(lv["p50_ms"], 2), fmt(lb["p50_ms"], 2) if lb else "n/a",
         fmt(lv["p50_ms"] / lb["p50_ms"], 2) if lb else ""),
        (f"p99 latency at {args.latency_rate:g}/s (ms)", fmt(lv["p99_ms"], 2), fmt(lb["p99_ms"], 2) if lb else "n/a",
         fmt(lv["p99_ms"] / lb["p99_ms"], 2) if lb else ""),
        (f"lost at {args.latency_rate:g}/s", fmt(lv["lost"]), fmt(lb["lost"]) if lb else "n/a", ""),
        (f"  at {args.latency_rate:g}/s, p50 / p99 vigild read(2) -> arrival (ms, +-1)",
         f'{fmt(lv["read_to_arrival_p50_ms"], 1)} / {fmt(lv["read_to_arrival_p99_ms"], 1)}', "", ""),
        (f"peak RSS at {args.latency_rate:g}/s (MiB, VmHWM)", fmt(lv["rss_mib"], 1), "", ""),
        (f"disk writes per reading at {args.latency_rate:g}/s (bytes)", fmt(lv["disk_b_per_reading"], 0), "0", ""),
    ]
    head = ("figure", "Vigil", "baseline", "ratio")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    print()
    print(f"Vigil benchmark: {tv['n']:,} readings, {args.build} build, {os.cpu_count()} CPUs, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(head)))
    print("  ".join("-" * w[i] for i in range(4)))
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    for r in (tv, lv):
        if r.get("transactions"):
            print(f"vigild: {r['transactions']:,} store transactions (ingest and delivery marks) for {r['n']:,} readings "
                  f"({r['n'] / r['transactions']:.1f} readings per transaction), database {fmt(r['db_bytes'])} bytes")
    print(f"binaries (stripped): vigild {sizes['vigild']}, vigilctl {sizes['vigilctl']}")
    k = results.get("kill")
    if k:
        print(f"kill -9 test: {k['kills']} kills during {k['n']} lines at 100/s: lost {k['lost']} "
              f"({k['lost_per_kill']:.1f} per kill), duplicates {k['duplicates']} "
              f"(on {k['duplicate_lines']} lines; {k['id_mismatch']} with differing reading IDs)")
        if k["lost"]:
            print(f"  first lost line indexes: {k['lost_lines']}")

    # The markdown block for docs/benchmarks.md.
    print()
    print("<!-- scripts/bench output, paste into docs/benchmarks.md -->")
    print(f"| figure ({tv['n']:,} readings, {args.build}) | Vigil | baseline (mosquitto_pub -l) | Vigil/baseline |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |")
    print(f"| binary size, stripped | vigild {sizes['vigild']}, vigilctl {sizes['vigilctl']} | | |")
    if k:
        print(f"| kill -9: lost per kill ({k['kills']} kills) | {k['lost_per_kill']:.1f} ({k['lost']} lines) | | |")
        print(f"| kill -9: duplicates (same ID) | {k['duplicates']} ({k['id_mismatch']} with a different ID) | | |")
    print()
    print("RAW " + json.dumps({k2: v for k2, v in results.items()}, default=str))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--profiles", required=True)
    ap.add_argument("--build", default="release")
    ap.add_argument("--vigild-size", default="n/a")
    ap.add_argument("--vigilctl-size", default="n/a")
    ap.add_argument("--readings", type=int, default=100_000)
    ap.add_argument("--latency-lines", type=int, default=300)
    ap.add_argument("--latency-rate", type=float, default=10.0)
    ap.add_argument("--kill-test", type=int, default=0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.profiles = os.path.abspath(args.profiles)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    work = tempfile.mkdtemp(prefix="vigil-bench.")
    ok = False
    try:
        broker = Broker(work)
        results = {}
        n = args.readings
        # Every phase has its own device, database and subscriber; all device times lie
        # within vigild's 1-day clock-skew window around now.
        results["tp_vigil"] = run_vigil(args, broker, work, "throughput", Lines.around_now(n), None)
        results["tp_base"] = run_baseline(args, broker, work, "baseline", Lines.around_now(n), None)
        ll = Lines.around_now(args.latency_lines)
        results["lat_vigil"] = run_vigil(args, broker, work, "latency", ll, args.latency_rate)
        results["lat_base"] = run_baseline(args, broker, work, "latency-baseline", ll, args.latency_rate)
        if args.kill_test:
            results["kill"] = run_kill(args, broker, work, args.kill_test)
        report(args, results, {"vigild": args.vigild_size, "vigilctl": args.vigilctl_size})
        broken = []
        for key in ("tp_vigil", "tp_base", "lat_vigil", "lat_base"):
            if results[key]["lost"]:
                broken.append(f"{results[key]['name']} lost {results[key]['lost']}")
        if "kill" in results and results["kill"]["id_mismatch"]:
            broken.append("duplicates with differing reading IDs")
        if broken:
            log("FAILED: " + "; ".join(broken) + f" (files kept in {work})")
            args.keep = True
            return 1
        ok = True
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        ok = True  # nothing is broken: remove the files unless --keep
        return 130
    except Exception as e:  # report, clean up, and fail
        log(f"error: {e}")
        args.keep = True
        return 1
    finally:
        stop_all()
        if args.keep or not ok:
            log(f"files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
