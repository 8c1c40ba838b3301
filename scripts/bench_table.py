#!/usr/bin/env python3
"""The table of issue 8 (scripts/bench-table): every figure beside the limit measured in the same run.

scripts/bench-table builds the binaries and runs this with their directory. Each part is one of the
benchmark drivers in scripts/, run as a child process one after another (never two at once: they
share two cores); each ends its output with a machine-readable line (`RAW {json}` for bench_driver.py,
`RESULT {json}` for the others), which this script reads. A part that fails is reported as failed
in the table and makes the exit status 1; the others still run.

Parts (--only a,b,c):
  pipeline   scripts/bench_driver.py: pty -> vigild -> mosquitto at saturation and at 10 lines/s,
             against `mosquitto_pub -l` at QoS 1 on the same lines in fresh ptys
  wire       vigil-bench uplink-bytes: MQTT PUBLISH bytes per reading for each encoding, against the
             minimal client publishing the raw device line
  lifecycle  scripts/bench_lifecycle.py: escalation latency while a backlog drains; cold start
  cost       scripts/bench_cost.py: callgrind instructions per reading; /proc io bytes written per
             reading against raw sqlite3 batched inserts of the same rows
  rss        scripts/bench_rss.py: peak RSS with four devices (two serial, two BLE)
  soak       scripts/soak_driver.py: 1,000,000 readings through the pipeline, RSS growth after warm-up
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MIB = 1024 * 1024


def log(msg: str) -> None:
    print(f"bench-table: {msg}", file=sys.stderr, flush=True)


def run_part(name: str, argv: list[str], marker: str, logdir: str, timeout: float) -> tuple[dict | None, str]:
    """Runs one driver; returns its JSON result (or None) and a one-line reason when it failed."""
    path = os.path.join(logdir, f"{name}.log")
    log(f"{name}: {' '.join(argv)}  (output in {path})")
    t0 = time.monotonic()
    with open(path, "w") as out:
        try:
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=out, text=True, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout:.0f} s"
        out.write("\n--- stdout ---\n")
        out.write(p.stdout)
    log(f"{name}: exit {p.returncode} after {time.monotonic() - t0:.0f} s")
    result = None
    for line in p.stdout.splitlines():
        if line.startswith(marker + " "):
            try:
                result = json.loads(line[len(marker) + 1:])
            except json.JSONDecodeError as e:
                return None, f"unreadable {marker} line: {e}"
    if result is None:
        return None, f"exit {p.returncode}, no {marker} line (see {path})"
    if p.returncode != 0:
        result["_failed"] = f"exit {p.returncode} (see {path})"
    return result, ""


# ---------------------------------------------------------------------------------------------
# Formatting

def num(v, digits=0, unit="") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and v != v:
            return "n/a"
        return f"{v:,.{digits}f}{unit}"
    return str(v)


def ratio(a, b, digits=2) -> str:
    try:
        if a is None or b is None or not b:
            return ""
        return f"{a / b:.{digits}f}"
    except TypeError:
        return ""


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str, str, str]] = []
        self.failures: list[str] = []

    def add(self, figure, vigil, limit="", rat="", target="", verdict=""):
        self.rows.append((figure, vigil, limit, rat, target, verdict))

    def failed(self, part: str, reason: str):
        self.failures.append(f"{part}: {reason}")
        self.add(f"**{part}** (failed)", reason, "", "", "", "")

    def markdown(self) -> str:
        out = ["| figure | Vigil | limit measured beside it | Vigil / limit | target | verdict |",
               "| --- | ---: | ---: | ---: | --- | --- |"]
        for r in self.rows:
            out.append("| " + " | ".join(r) + " |")
        return "\n".join(out)


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("**met**" if ok else "**missed**")


# ---------------------------------------------------------------------------------------------
# Parts

def fdatasync_latency(directory: str, n: int = 300) -> tuple[float, float]:
    """p50 and p99 (ms) of appending 8 KiB (two WAL frames) to a file and `fdatasync`ing it, in
    `directory`: the floor of one durable SQLite commit on this disk, which vigild pays before a
    reading may leave and the minimal client never does."""
    sys.path.insert(0, HERE)
    import bench_driver as bd
    path = os.path.join(directory, "fdatasync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"\0" * 8192
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
            time.sleep(0.01)
        return bd.percentile(samples, 50), bd.percentile(samples, 99)
    finally:
        os.close(fd)
        os.unlink(path)


def part_pipeline(args, t: Table, logdir: str):
    readings = 2000 if args.quick else args.readings
    lines = 50 if args.quick else 300
    r, why = run_part("pipeline", [sys.executable, os.path.join(HERE, "bench_driver.py"), "--bin", args.bin,
                                   "--profiles", os.path.join(ROOT, "devices"), "--build", args.build,
                                   "--readings", str(readings), "--latency-lines", str(lines)],
                      "RAW", logdir, timeout=1800)
    if r is None:
        return t.failed("pipeline", why)
    tv, tb, lv, lb = r["tp_vigil"], r["tp_base"], r["lat_vigil"], r["lat_base"]
    rr = tv["rate"] / tb["rate"] if tb["rate"] else None
    t.add(f"end-to-end readings/s, pty → vigild → mosquitto, `synchronous=FULL` ({readings:,} lines)",
          num(tv["rate"]), f"{num(tb['rate'])} (`mosquitto_pub -l`, QoS 1)", ratio(tv["rate"], tb["rate"]),
          "≥ 0.5 × the minimal client", verdict(rr is not None and rr >= 0.5))
    t.add(f"p50 latency, device byte → broker arrival, {lines} lines at 10/s (ms)",
          num(lv["p50_ms"], 2), num(lb["p50_ms"], 2), ratio(lv["p50_ms"], lb["p50_ms"]), "", "")
    p99r = lv["p99_ms"] / lb["p99_ms"] if lb["p99_ms"] else None
    t.add(f"p99 latency, device byte → broker arrival, {lines} lines at 10/s (ms)",
          num(lv["p99_ms"], 2), num(lb["p99_ms"], 2), ratio(lv["p99_ms"], lb["p99_ms"]),
          "≤ 2 × the minimal client", verdict(p99r is not None and p99r <= 2))
    import tempfile
    f50, f99 = fdatasync_latency(tempfile.gettempdir(), 100 if args.quick else 300)
    t.add("  the disk's floor: 8 KiB append + `fdatasync` where the database lives, p50 / p99 (ms)",
          "", f"{num(f50, 2)} / {num(f99, 2)}", "", "", "")
    t.add("  of which vigild `read(2)` → broker arrival, p50 / p99 (ms, ±1)",
          f"{num(lv.get('read_to_arrival_p50_ms'), 1)} / {num(lv.get('read_to_arrival_p99_ms'), 1)}", "", "", "", "")
    t.add("p50 / p99 latency at saturation (ms; not comparable: see docs/benchmarks.md)",
          f"{num(tv['p50_ms'], 1)} / {num(tv['p99_ms'], 1)}", f"{num(tb['p50_ms'], 0)} / {num(tb['p99_ms'], 0)}", "", "", "")
    t.add("peak RSS, one device at saturation (MiB, VmHWM)", num(tv["rss_mib"], 1),
          f"{num(tb['rss_mib'], 1)} (`mosquitto_pub`)", "", "", "")
    t.add("lost readings (throughput + latency runs)", num(tv["lost"] + lv["lost"]),
          num(tb["lost"] + lb["lost"]), "", "0", verdict(tv["lost"] + lv["lost"] == 0))
    if "_failed" in r:
        t.failures.append(f"pipeline: {r['_failed']}")


def part_wire(args, t: Table, logdir: str):
    path = os.path.join(logdir, "wire.log")
    p = subprocess.run([os.path.join(args.bin, "vigil-bench"), "uplink-bytes"], capture_output=True, text=True)
    with open(path, "w") as f:
        f.write(p.stdout + p.stderr)
    if p.returncode != 0:
        return t.failed("wire", f"vigil-bench uplink-bytes exit {p.returncode}")
    # The minimal client's PUBLISH of one raw Rad-8 line (one reading) on the same topic, MQTT 3.1.1
    # (mosquitto_pub's default): fixed header, topic length + topic, packet id, the line without LF.
    sys.path.insert(0, HERE)
    import bench_driver as bd
    line = bd.Lines.around_now(1).data[0].rstrip(b"\r\n")
    topic = b"vigil/v1/site-0042/gw-01/readings"
    remaining = 2 + len(topic) + 2 + len(line)
    raw = 1 + (1 if remaining < 128 else 2) + remaining
    rows = [l for l in p.stdout.splitlines() if l.startswith("| ") and not l.startswith("| encoding") and "---" not in l]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        # | encoding | messages | payload bytes/reading | MQTT 5 PUBLISH bytes/reading | MQTT 3.1.1 ... |
        t.add(f"bytes on the wire per reading, {cells[0]} (MQTT 5 / 3.1.1 PUBLISH)", f"{cells[3]} / {cells[4]}",
              f"{raw} (raw {len(line)}-byte device line, `mosquitto_pub`)", ratio(float(cells[3]), raw), "", "")


def part_lifecycle(args, t: Table, logdir: str):
    argv = [sys.executable, os.path.join(HERE, "bench_lifecycle.py"), "--bin", args.bin, "--build", args.build,
            "--profiles", os.path.join(ROOT, "devices")]
    if args.quick:
        argv += ["--readings", "20000", "--samples", "3", "--cold-runs", "3"]
    r, why = run_part("lifecycle", argv, "RESULT", logdir, timeout=2400)
    if r is None:
        return t.failed("lifecycle", why)
    n = r.get("backlog")
    t.add(f"escalation latency while a {num(n)}-reading backlog drains, p50 / max (ms)",
          f"{num(r.get('escalation_p50_ms'), 1)} / {num(r.get('escalation_max_ms'), 1)}",
          f"{num(r.get('escalation_idle_p50_ms'), 1)} / {num(r.get('escalation_idle_max_ms'), 1)} (no backlog)",
          ratio(r.get("escalation_p50_ms"), r.get("escalation_idle_p50_ms")), "escalations first",
          # bench_lifecycle.py exits 1 when an escalation arrives after the backlog's last reading.
          verdict("_failed" not in r))
    t.add("  backlog drained meanwhile (readings/s)", num(r.get("drain_rate")), "", "", "", "")
    t.add("cold start: exec → first reading at the broker, median (first run, creating the database) (ms)",
          f"{num(r.get('cold_start_p50_ms'), 1)} ({num(r.get('cold_start_first_ms'), 1)})",
          f"{num(r.get('mosquitto_pub_cold_p50_ms'), 1)} (`mosquitto_pub -l`; `-m`: "
          f"{num(r.get('mosquitto_pub_m_cold_p50_ms'), 1)})",
          ratio(r.get("cold_start_p50_ms"), r.get("mosquitto_pub_cold_p50_ms")), "", "")
    if "_failed" in r:
        t.failures.append(f"lifecycle: {r['_failed']}")


def part_cost(args, t: Table, logdir: str):
    argv = [sys.executable, os.path.join(HERE, "bench_cost.py"), "--bin", args.bin, "--build", args.build,
            "--profiles", os.path.join(ROOT, "devices")]
    if args.quick:
        argv += ["--n1", "200", "--n2", "400", "--repeats", "1", "--sat-readings", "2000", "--slow-readings", "50"]
    r, why = run_part("cost", argv, "RESULT", logdir, timeout=2400)
    if r is None:
        return t.failed("cost", why)
    t.add("CPU instructions per reading (callgrind, all threads)", num(r.get("instr_per_reading")),
          f"{num(r.get('mosquitto_pub_instr_per_reading'))} (`mosquitto_pub -l`)",
          ratio(r.get("instr_per_reading"), r.get("mosquitto_pub_instr_per_reading"), 1), "", "")
    t.add("bytes written to disk per reading, saturation (`/proc/PID/io`)",
          num(r.get("disk_bytes_per_reading_saturation")),
          f"{num(r.get('sqlite_raw_bytes_per_reading_saturation'))} (raw sqlite3, same rows and batches)",
          ratio(r.get("disk_bytes_per_reading_saturation"), r.get("sqlite_raw_bytes_per_reading_saturation")), "", "")
    t.add("bytes written to disk per reading, 10 readings/s",
          num(r.get("disk_bytes_per_reading_10hz")),
          f"{num(r.get('sqlite_raw_bytes_per_reading_10hz'))} (raw sqlite3, same rows and batches)",
          ratio(r.get("disk_bytes_per_reading_10hz"), r.get("sqlite_raw_bytes_per_reading_10hz")), "", "")
    if "_failed" in r:
        t.failures.append(f"cost: {r['_failed']}")


def part_rss(args, t: Table, logdir: str):
    argv = [sys.executable, os.path.join(HERE, "bench_rss.py"), "--bin", args.bin, "--build", args.build,
            "--profiles", os.path.join(ROOT, "devices")]
    if args.quick:
        argv += ["--seconds", "20", "--burst-lines", "5000"]
    r, why = run_part("rss", argv, "RESULT", logdir, timeout=1200)
    if r is None:
        return t.failed("rss", why)
    peak = r.get("peak_vmhwm_bytes")
    base = (r.get("baseline") or {}).get("peak_vmhwm_kib")
    t.add("peak RSS with 4 devices (2 serial, 2 BLE; paced, then a burst), VmHWM, MB (MiB)",
          f"{num(peak / 1e6 if peak else None, 1)} ({num(peak / MIB if peak else None, 1)})",
          f"{num(base * 1024 / 1e6 if base else None, 1)} (`mosquitto_pub -l`, same lines)", "",
          "≤ 16 MB", verdict(peak is not None and peak <= 16_000_000))
    anon, file_ = r.get("peak_rss_anon_kib"), r.get("peak_rss_file_kib")
    t.add("  of which anonymous / file-backed (code) at their peaks, MiB",
          f"{num(anon / 1024 if anon else None, 1)} / {num(file_ / 1024 if file_ else None, 1)}", "", "", "", "")
    if "_failed" in r:
        t.failures.append(f"rss: {r['_failed']}")


def part_soak(args, t: Table, logdir: str):
    argv = [sys.executable, os.path.join(HERE, "soak_driver.py"), "--bin", args.bin, "--build", args.build]
    if args.quick:
        argv += ["--readings", "30000"]
    r, why = run_part("soak", argv, "RESULT", logdir, timeout=3600)
    if r is None:
        return t.failed("soak", why)
    g = r.get("rss_growth_bytes")
    t.add(f"RSS growth after warm-up, soak of {num(r.get('readings'))} readings (bytes)",
          num(g), f"{num(r.get('rss_after_warmup_bytes', 0) / MIB, 1)} MiB after warm-up", "",
          "< 1 MB", verdict(g is not None and g < 1_000_000))
    t.add("  readings lost in the soak", num(r.get("lost")), "", "", "0", verdict(r.get("lost") == 0))
    if "_failed" in r:
        t.failures.append(f"soak: {r['_failed']}")


PARTS = {"pipeline": part_pipeline, "wire": part_wire, "lifecycle": part_lifecycle, "cost": part_cost,
         "rss": part_rss, "soak": part_soak}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--build", default="release")
    ap.add_argument("--readings", type=int, default=100_000, help="lines in the pipeline throughput runs")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=",".join(PARTS))
    ap.add_argument("--logs", default=None, help="directory for each part's output (default: a new /tmp dir)")
    args = ap.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"bench-table: unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}", file=sys.stderr)
        return 64
    logdir = args.logs or f"/tmp/vigil-bench-table.{dt.datetime.now():%Y%m%dT%H%M%S}"
    os.makedirs(logdir, exist_ok=True)
    t = Table()
    started = time.monotonic()
    for p in parts:
        try:
            PARTS[p](args, t, logdir)
        except Exception as e:  # one broken part must not hide the others
            t.failed(p, f"{type(e).__name__}: {e}")
    load = os.getloadavg()
    print()
    print(f"Vigil against the physical limits: {args.build} build, {os.cpu_count()} CPUs, "
          f"{platform.machine()}, load average {load[0]:.1f} at the end, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {time.monotonic() - started:.0f} s")
    print()
    print(t.markdown())
    print()
    print(f"Each part's full output: {logdir}")
    if t.failures:
        print("FAILED: " + "; ".join(t.failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
