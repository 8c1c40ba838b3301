#!/usr/bin/env python3
"""The measuring half of scripts/bench-rss (Python 3.11 standard library only).

Peak resident memory of vigild with four devices, on 127.0.0.1 with a private mosquitto and a
private temporary directory:

  rad8-burst   a Masimo Rad-8 on a pty written by this script (bench_driver's Pty and Lines):
               one line a second, then a burst of --burst-lines lines (as fast as the pty
               accepts them; a fixed count, so runs compare on a busy machine too);
  xpod         a Nonin Xpod: `vigilctl simulate --capture firmware-fixtures/nonin/normal.capture
               --loop` (its recorded pace);
  ble-oximeter a BLE pulse oximeter over the seqpacket seam (`vigilctl simulate --ble`), one PLX
               notification a second;
  ble-bp       a BLE blood pressure monitor, one indication every 5 s, every other one above the
               care plan's limit (escalations).

Each device has a patient with a care plan, so rules run. /proc/PID/status is sampled every
0.25 s (VmRSS, RssAnon, RssFile, RssShmem, VmHWM, Threads); at every new VmRSS maximum
smaps_rollup and smaps are read too, so the per-mapping breakdown is the one at the peak.
Beside it: `mosquitto_pub -l` (a minimal C client) publishing the same Rad-8 lines, paced
then as a burst of the same size, and its VmHWM.

Units: KiB and MiB (1 MiB = 1,048,576 bytes) as /proc reports them; the issue's 16 MB
(16,000,000 bytes = 15.26 MiB) is printed in both.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_driver as bd  # noqa: E402  (Broker, Pty, Lines, spawn, stop, stop_all, wait_until)

TARGET_BYTES = 16_000_000
STATUS_KEYS = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")


def log(msg: str) -> None:
    print(f"bench-rss: {msg}", file=sys.stderr, flush=True)


def mib(kib: float) -> float:
    return kib / 1024


# ---------------------------------------------------------------------------------------
# /proc sampling


def read_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in STATUS_KEYS:
                out[k] = int(v.split()[0])
            elif k == "Threads":
                out[k] = int(v)
    return out


def read_rollup(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                out[parts[0][:-1]] = int(parts[1])
    return out


def read_smaps(pid: int) -> list[dict]:
    """One dict per mapping: name, perms, size, rss, anon, private_dirty (KiB)."""
    maps: list[dict] = []
    cur: dict | None = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if not first.endswith(":"):  # a mapping header: range perms offset dev inode [path]
                parts = line.split(None, 5)
                name = parts[5].strip() if len(parts) > 5 else "[anonymous]"
                cur = {"name": name, "perms": parts[1], "size": 0, "rss": 0, "anon": 0, "private_dirty": 0}
                maps.append(cur)
                continue
            key = first[:-1]
            field = {"Size": "size", "Rss": "rss", "Anonymous": "anon", "Private_Dirty": "private_dirty"}.get(key)
            if field and cur is not None:
                cur[field] = int(line.split()[1])
    return maps


def group_smaps(maps: list[dict]) -> list[dict]:
    """Per file (all its mappings), [heap], [stack], and the anonymous mappings together."""
    groups: dict[str, dict] = {}
    for m in maps:
        name = m["name"]
        if name.startswith("/"):
            key = name
        elif name == "[heap]" or name == "[stack]":
            key = name
        elif name in ("[vdso]", "[vvar]", "[vsyscall]"):
            key = "[vdso/vvar]"
        else:
            key = "[anonymous mappings]"
        g = groups.setdefault(key, {"name": key, "count": 0, "size": 0, "rss": 0, "anon": 0, "private_dirty": 0,
                                    "text_rss": 0})
        g["count"] += 1
        for f in ("size", "rss", "anon", "private_dirty"):
            g[f] += m[f]
        if "x" in m["perms"]:
            g["text_rss"] += m["rss"]
    return sorted(groups.values(), key=lambda g: -g["rss"])


class Sampler:
    """Samples /proc/PID/status every `interval` s in a thread; keeps the whole series (for
    phase peaks) and smaps at the highest VmRSS seen."""

    def __init__(self, pid: int, interval: float = 0.25, smaps: bool = True):
        self.pid = pid
        self.interval = interval
        self.want_smaps = smaps
        self.samples: list[tuple[float, str, dict]] = []
        self.phase = "start"
        self.peak: dict | None = None
        self.peak_phase = ""
        self.peak_rollup: dict = {}
        self.peak_maps: list[dict] = []
        self.stop_flag = threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_flag.is_set():
            self.sample()
            self.stop_flag.wait(self.interval)

    def sample(self) -> None:
        try:
            s = read_status(self.pid)
        except (OSError, ValueError):
            return
        if "VmRSS" not in s:
            return
        self.samples.append((time.monotonic() - self.t0, self.phase, s))
        if self.peak is None or s["VmRSS"] > self.peak["VmRSS"]:
            self.peak = s
            self.peak_phase = self.phase
            if self.want_smaps:
                try:
                    self.peak_rollup = read_rollup(self.pid)
                    self.peak_maps = read_smaps(self.pid)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop_flag.set()
        self.thread.join(5)

    def phase_peaks(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for _t, phase, s in self.samples:
            p = out.setdefault(phase, {"samples": 0, **{k: 0 for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads")}})
            p["samples"] += 1
            for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"):
                p[k] = max(p[k], s.get(k, 0))
        return out

    def max_of(self, key: str) -> int:
        return max((s.get(key, 0) for _t, _p, s in self.samples), default=0)


# ---------------------------------------------------------------------------------------
# The four devices


def write_oximeter_att(path: str, n: int) -> None:
    lines = ["# bench-rss: a pulse oximeter notifying PLX Continuous Measurement once a second.",
             "mtu 23", "service 1800", "char 2A00 read = 56 69 67 69 6C 20 53 70 4F 32",
             "service 1822", "char 2A5F notify", "char 2A60 read = 00 00", "service 180F",
             "char 2A19 read = 4B", "script:", "wait-subscribed 2A5F"]
    for i in range(n):
        spo2 = 94 + i % 5
        pr = 64 + i % 9
        lines += ["delay 1000", f"notify 2A5F = 00 {spo2:02X} 00 {pr:02X} 00"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def write_bp_att(path: str, n: int) -> None:
    lines = ["# bench-rss: a blood pressure monitor indicating a measurement every 5 s;",
             "# every other one is above demo-patient-4's limits (an escalation).",
             "mtu 64", "service 1800", "char 2A00 read = 56 69 67 69 6C 20 42 50",
             "service 1810", "char 2A35 indicate", "char 2A49 read = 00 00", "service 180F",
             "char 2A19 read notify = 55", "script:", "wait-subscribed 2A35"]
    for i in range(n):
        value = "04 7A 00 4E 00 5D 00 48 00" if i % 2 == 0 else "04 BA 00 72 00 8A 00 60 00"
        lines += ["delay 5000", f"indicate 2A35 = {value}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


CONFIG = """devices:
  - id: rad8-burst
    profile: masimo-rad8
    port: "{work}/dev/rad8-burst"
    patient: demo-patient-1
  - id: xpod
    profile: nonin-xpod
    port: "{work}/dev/xpod"
    patient: demo-patient-2
  - id: ble-oximeter
    profile: ble-pulse-oximeter
    address: "02:00:00:00:00:03"
    transport: "seqpacket:{work}/dev/ble-oximeter.sock"
    patient: demo-patient-5
  - id: ble-bp
    profile: ble-blood-pressure
    address: "02:00:00:00:00:01"
    transport: "seqpacket:{work}/dev/ble-bp.sock"
    patient: demo-patient-4
"""
DEVICES = ("rad8-burst", "xpod", "ble-oximeter", "ble-bp")


def vigil_status(args, work: str) -> dict | None:
    r = subprocess.run([os.path.join(args.bin, "vigilctl"), "status", "--socket", os.path.join(work, "control.sock"),
                        "--json"], capture_output=True, timeout=10)
    try:
        return json.loads(r.stdout)["status"]
    except (ValueError, KeyError):
        return None


def committed(status: dict | None) -> int | None:
    if not status:
        return None
    store = status.get("store", {})
    for k in ("readings", "readings_committed", "committed"):
        if isinstance(store.get(k), int):
            return store[k]
    return None


def outbox_depth(status: dict | None) -> int | None:
    try:
        return status["outbox"]["readings"]["depth"]
    except (TypeError, KeyError):
        return None


def run_vigild(args, broker: bd.Broker, work: str) -> dict:
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    for d in ("dev", "state", "care-plans"):
        os.makedirs(os.path.join(work, d), exist_ok=True)
    for name in os.listdir(os.path.join(root, "demo", "care-plans")):
        if name.endswith(".yaml"):
            shutil.copy(os.path.join(root, "demo", "care-plans", name), os.path.join(work, "care-plans", name))
    config = os.path.join(work, "vigild.yaml")
    with open(config, "w") as f:
        f.write(bd.vigild_config(work, args.profiles, broker.port, CONFIG.format(work=work), site="bench-rss",
                                 gateway="gw-bench-rss"))
    vigilctl = os.path.join(args.bin, "vigilctl")
    n_ble = int(args.seconds) + 120
    write_oximeter_att(os.path.join(work, "oximeter.att"), n_ble)
    write_bp_att(os.path.join(work, "bp.att"), n_ble // 5 + 1)

    # The burst device: Rad-8 lines one device-second apart, centred on now (IDs never collide).
    lines = bd.Lines.around_now(int(args.seconds) + 10 + args.burst_lines)
    pty = bd.Pty(os.path.join(work, "dev", "rad8-burst"))
    quiet = subprocess.DEVNULL
    bd.spawn([vigilctl, "simulate", "--capture", os.path.join(root, "firmware-fixtures", "nonin", "normal.capture"),
              "--link", os.path.join(work, "dev", "xpod"), "--loop"], stdout=quiet,
             stderr=open(os.path.join(work, "sim-xpod.log"), "w"))
    bd.spawn([vigilctl, "simulate", "--ble", os.path.join(work, "oximeter.att"), "--socket",
              os.path.join(work, "dev", "ble-oximeter.sock")], stdout=quiet,
             stderr=open(os.path.join(work, "sim-ble-oximeter.log"), "w"))
    bd.spawn([vigilctl, "simulate", "--ble", os.path.join(work, "bp.att"), "--socket",
              os.path.join(work, "dev", "ble-bp.sock")], stdout=quiet,
             stderr=open(os.path.join(work, "sim-ble-bp.log"), "w"))
    bd.wait_until(lambda: all(os.path.exists(os.path.join(work, "dev", p)) for p in
                              ("xpod", "ble-oximeter.sock", "ble-bp.sock")), 15, "the simulated devices")

    env = dict(os.environ)
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    vigild_path = args.vigild or os.path.join(args.bin, "vigild")
    t_exec = time.monotonic()
    proc = bd.spawn([vigild_path, "--config", config], stdout=open(os.path.join(work, "vigild.log"), "w"),
                    stderr=subprocess.STDOUT, env=env)
    sampler = Sampler(proc.pid, args.interval)
    res: dict = {"pid": proc.pid}
    try:
        def all_open():
            if proc.poll() is not None:
                raise RuntimeError(f"vigild exited with status {proc.returncode}; see {work}/vigild.log")
            s = vigil_status(args, work)
            if not s:
                return False
            states = {d.get("id"): d.get("state") for d in s.get("devices", [])}
            return all(states.get(d) in ("open", "connected") for d in DEVICES) and s.get("uplink", {}).get("connected") is True
        bd.wait_until(all_open, 60, "vigild to open all four devices and connect", step=0.1)
        res["open_after_s"] = time.monotonic() - t_exec
        sampler.sample()
        res["idle"] = read_status(proc.pid)
        log(f"vigild {proc.pid} has the four devices open after {res['open_after_s']:.2f} s; "
            f"VmRSS {mib(res['idle']['VmRSS']):.2f} MiB")

        # Paced phase: every device at its own pace; the Rad-8 one line a second.
        sampler.phase = "paced"
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < args.seconds:
            due = t0 + i
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            pty.write_all(lines.data[i])
            i += 1
        paced_lines = i
        st = vigil_status(args, work)
        res["paced_status"] = {"committed": committed(st), "outbox_depth": outbox_depth(st)}
        log(f"paced phase done: {paced_lines} Rad-8 lines in {args.seconds:g} s")

        # Burst phase: the Rad-8 as fast as the pty accepts its lines.
        sampler.phase = "burst"
        tb = time.monotonic()
        j = i
        end = tb + args.burst_seconds
        stop_at = i + args.burst_lines
        chunk = 64
        while time.monotonic() < end and j < stop_at:
            k = min(j + chunk, stop_at)
            pty.write_all(b"".join(lines.data[j:k]))
            j = k
        burst_lines = j - i
        res["burst_write_s"] = time.monotonic() - tb
        log(f"burst: {burst_lines} lines in {res['burst_write_s']:.1f} s; waiting for the outbox to drain")
        sampler.phase = "drain"
        try:
            bd.wait_until(lambda: outbox_depth(vigil_status(args, work)) == 0, 120, "the outbox to drain", step=0.25)
        except RuntimeError as e:
            log(str(e))
        time.sleep(1.0)
        sampler.sample()
        st = vigil_status(args, work) or {}
        res["end_status"] = {"committed": committed(st), "outbox_depth": outbox_depth(st),
                             "devices": {d.get("id"): {"state": d.get("state"), "readings": d.get("readings")}
                                         for d in st.get("devices", [])},
                             "escalations": (st.get("outbox", {}).get("escalations") or {})}
        res["end"] = read_status(proc.pid)
        res["paced_lines"] = paced_lines
        res["burst_lines"] = burst_lines
        res["burst_bytes"] = sum(len(x) for x in lines.data[i:j])
        res["paced_sample"] = lines.data[:paced_lines]
        res["burst_sample"] = lines.data[i:j]
    finally:
        sampler.close()
        bd.stop(proc)
        pty.close()
    res["sampler"] = sampler
    res["status_raw"] = st
    return res


def run_baseline(args, broker: bd.Broker, work: str, paced: list[bytes], burst: list[bytes]) -> dict:
    """mosquitto_pub -l at QoS 1 reading the same Rad-8 lines from a pty: a few paced lines,
    then the burst's lines as fast as the pty accepts them."""
    pty = bd.Pty(os.path.join(work, "baseline-tty"))
    stdin = os.open(pty.link, os.O_RDONLY | os.O_NOCTTY)
    pub = bd.spawn(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                    "-i", f"bench-rss-pub-{os.getpid()}", "-t", "bench/rss/baseline", "-l"],
                   stdin=stdin, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "pub.log"), "w"))
    os.close(stdin)
    sampler = Sampler(pub.pid, args.interval, smaps=False)
    try:
        time.sleep(0.3)
        sampler.sample()
        idle = read_status(pub.pid)
        sampler.phase = "paced"
        n_paced = min(len(paced), args.baseline_paced)
        t0 = time.monotonic()
        for k in range(n_paced):
            d = t0 + k - time.monotonic()
            if d > 0:
                time.sleep(d)
            pty.write_all(paced[k])
        sampler.phase = "burst"
        pty.write_all(b"".join(burst))
        # Let it publish what it buffered (it reads the pty dry first, then publishes).
        time.sleep(1.0)
        deadline = time.monotonic() + 60
        last = -1
        while time.monotonic() < deadline:
            with open(f"/proc/{pub.pid}/io") as f:
                wchar = next(int(l.split()[1]) for l in f if l.startswith("wchar"))
            if wchar == last:
                break
            last = wchar
            time.sleep(0.5)
        sampler.sample()
        hwm = read_status(pub.pid)["VmHWM"]
    finally:
        sampler.close()
        bd.stop(pub)
        pty.close()
    return {"idle": idle, "VmHWM": hwm, "peak_anon": sampler.max_of("RssAnon"), "paced_lines": n_paced,
            "burst_lines": len(burst), "phases": sampler.phase_peaks()}


# ---------------------------------------------------------------------------------------
# Output


def f2(kib: float | None) -> str:
    return "n/a" if kib is None else f"{mib(kib):.2f}"


def report(args, v: dict, b: dict | None) -> dict:
    s: Sampler = v["sampler"]
    hwm = v["end"]["VmHWM"]
    peak = s.peak or {}
    peaks = s.phase_peaks()
    target_kib = TARGET_BYTES / 1024
    print()
    print(f"vigild peak RSS with four devices: {args.build} build ({args.vigild or os.path.join(args.bin, 'vigild')}), "
          f"{args.seconds:g} s paced + a burst of {args.burst_lines:,} lines, {os.cpu_count()} CPUs, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC" + (f", env {' '.join(args.env)}" if args.env else ""))
    print(f"Units: MiB (1,048,576 bytes). Target 16 MB = 16,000,000 bytes = {TARGET_BYTES / 1048576:.2f} MiB.")
    print()
    print("| figure | vigild | mosquitto_pub -l (same lines) | limit |")
    print("| --- | ---: | ---: | ---: |")
    base_hwm = f2(b["VmHWM"]) if b else "n/a"
    base_idle = f2(b["idle"]["VmRSS"]) if b else "n/a"
    base_anon = f2(b["peak_anon"]) if b else "n/a"
    verdict = "met" if hwm * 1024 <= TARGET_BYTES else "missed"
    print(f"| **peak RSS (VmHWM, MiB)** | **{f2(hwm)}** ({hwm * 1024 / 1e6:.2f} MB) | {base_hwm} | 15.26 ({verdict}) |")
    print(f"| peak RssAnon (MiB, sampled) | {f2(s.max_of('RssAnon'))} | {base_anon} | |")
    print(f"| peak RssFile (MiB, sampled) | {f2(s.max_of('RssFile'))} | | |")
    print(f"| RSS with the four devices open, before any burst (MiB) | {f2(v['idle']['VmRSS'])} | {base_idle} (connected) | |")
    for ph in ("paced", "burst", "drain"):
        p = peaks.get(ph)
        if p:
            print(f"| {ph}: peak VmRSS / RssAnon / RssFile (MiB), threads | {f2(p['VmRSS'])} / {f2(p['RssAnon'])} / "
                  f"{f2(p['RssFile'])}, {p['Threads']} | "
                  + (f"{f2(b['phases'][ph]['VmRSS'])} | |" if b and ph in b.get("phases", {}) else " | |"))
    print(f"| Rad-8 lines: paced / burst | {v['paced_lines']} / {v['burst_lines']} "
          f"({v['burst_lines'] / max(v['burst_write_s'], 1e-9):,.0f}/s) | "
          + (f"{b['paced_lines']} / {b['burst_lines']} |" if b else " |") + " |")
    es = v["end_status"]
    print(f"| readings committed (status), outbox depth at end | {es['committed']}, {es['outbox_depth']} | | |")
    print()
    print(f"At the highest sample (VmRSS {f2(peak.get('VmRSS'))} MiB, {v['sampler'].peak_phase} phase), "
          "smaps_rollup (MiB):")
    r = s.peak_rollup
    keys = ("Rss", "Pss", "Shared_Clean", "Private_Clean", "Private_Dirty", "Anonymous")
    print("| " + " | ".join(keys) + " |")
    print("|" + " ---: |" * len(keys))
    print("| " + " | ".join(f2(r.get(k)) for k in keys) + " |")
    print()
    groups = group_smaps(s.peak_maps)
    print("Per mapping at the highest sample (MiB; file = Rss - Anonymous):")
    print("| mapping | mappings | Rss | of which executable | anonymous | file-backed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    shown = 0
    other = {"rss": 0, "anon": 0, "text_rss": 0, "count": 0}
    for g in groups:
        if g["rss"] >= 64 or shown < 8:
            print(f"| {g['name']} | {g['count']} | {f2(g['rss'])} | {f2(g['text_rss'])} | {f2(g['anon'])} | "
                  f"{f2(g['rss'] - g['anon'])} |")
            shown += 1
        else:
            for k in other:
                other[k] += g[k] if k != "count" else 1
    if other["count"]:
        print(f"| {other['count']} other files/mappings | | {f2(other['rss'])} | {f2(other['text_rss'])} | "
              f"{f2(other['anon'])} | {f2(other['rss'] - other['anon'])} |")
    tot_rss = sum(g["rss"] for g in groups)
    tot_anon = sum(g["anon"] for g in groups)
    print(f"| **total** | {sum(g['count'] for g in groups)} | {f2(tot_rss)} | {f2(sum(g['text_rss'] for g in groups))} | "
          f"{f2(tot_anon)} | {f2(tot_rss - tot_anon)} |")
    mapped_files = sorted({g["name"] for g in groups if g["name"].startswith("/")})
    suspicious = [m for m in mapped_files if any(x in m.lower() for x in ("icu", "foundation", "libxml", "libcurl"))]
    print()
    print("Files mapped: " + ", ".join(os.path.basename(m) for m in mapped_files))
    print("ICU / Foundation mapped: " + (", ".join(suspicious) if suspicious else "none"))
    result = {
        "build": args.build, "vigild": args.vigild or os.path.join(args.bin, "vigild"), "env": args.env,
        "seconds": args.seconds, "burst_lines_requested": args.burst_lines,
        "peak_vmhwm_kib": hwm, "peak_vmhwm_bytes": hwm * 1024, "target_bytes": TARGET_BYTES, "target_met": verdict == "met",
        "peak_rss_anon_kib": s.max_of("RssAnon"), "peak_rss_file_kib": s.max_of("RssFile"),
        "peak_rss_shmem_kib": s.max_of("RssShmem"), "peak_threads": s.max_of("Threads"),
        "open_rss_kib": v["idle"]["VmRSS"], "open_after_s": v["open_after_s"],
        "phases": peaks, "peak_sample": peak, "peak_phase": s.peak_phase, "smaps_rollup_at_peak": r,
        "mappings_at_peak": [{k: g[k] for k in ("name", "count", "rss", "text_rss", "anon")} for g in groups if g["rss"] > 0],
        "paced_lines": v["paced_lines"], "burst_lines": v["burst_lines"], "burst_write_s": v["burst_write_s"],
        "end_status": es,
        "baseline": ({"peak_vmhwm_kib": b["VmHWM"], "peak_rss_anon_kib": b["peak_anon"], "idle_rss_kib": b["idle"]["VmRSS"],
                      "paced_lines": b["paced_lines"], "burst_lines": b["burst_lines"]} if b else None),
        "icu_or_foundation_mapped": suspicious,
    }
    print()
    print("RESULT " + json.dumps(result, default=str))
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory with vigild and vigilctl")
    ap.add_argument("--vigild", default=None, help="a different vigild binary to measure (default BIN/vigild)")
    ap.add_argument("--profiles", required=True, help="the device profiles directory (devices/)")
    ap.add_argument("--build", default="release", help="label for the table")
    ap.add_argument("--seconds", type=float, default=120, help="paced phase length (default 120)")
    ap.add_argument("--burst-lines", type=int, default=30_000,
                    help="Rad-8 lines in the burst, written as fast as the pty accepts them (default 30000)")
    ap.add_argument("--burst-seconds", type=float, default=60, help="stop the burst after this long (default 60)")
    ap.add_argument("--baseline-paced", type=int, default=5, help="paced lines for mosquitto_pub (default 5)")
    ap.add_argument("--interval", type=float, default=0.25, help="sampling interval (s)")
    ap.add_argument("--env", action="append", default=[], metavar="K=V", help="extra environment for vigild")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.profiles = os.path.abspath(args.profiles)
    for tool in ("mosquitto", "mosquitto_pub"):
        if not shutil.which(tool):
            log(f"{tool} is missing (scripts/setup-debian installs it)")
            return 69

    def measure(work: str) -> int:
        broker = bd.Broker(work)
        v = run_vigild(args, broker, work)
        # The simulators are no longer needed; the broker is.
        for p in list(bd.PROCS):
            if p is not broker.proc:
                bd.stop(p)
        b = None if args.no_baseline else run_baseline(args, broker, work, v["paced_sample"], v["burst_sample"])
        report(args, v, b)
        return 0

    return bd.in_workdir("vigil-bench-rss.", args.keep, measure, log)


if __name__ == "__main__":
    sys.exit(main())
