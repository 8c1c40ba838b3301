#!/usr/bin/env python3
"""The measuring half of scripts/bench-cost (Python 3.11 standard library only): what one
reading costs vigild in CPU instructions and in bytes written to disk, each beside a limit
measured in the same run. Everything on 127.0.0.1 with a private mosquitto and a private
temporary directory; the pipeline and the lines are those of scripts/bench (bench_driver.py):
simulated Masimo Rad-8 lines (one SpO2 reading per line) on a real pseudo-terminal.

1. Instructions per reading (`valgrind --tool=callgrind --collect-atstart=yes`, all threads
   in one count). vigild runs under callgrind for N1 and then N2 lines written at a fixed rate
   (default 200 lines/s); once every reading has reached the subscriber and the outbox is
   drained, vigild gets SIGTERM and callgrind writes its totals. Instructions per reading =
   (Ir(N2) - Ir(N1)) / (N2 - N1): start-up, the idle wait and shutdown cancel out. The limit:
   `mosquitto_pub -l -q 1` under callgrind on the same lines, same method. Each pair is run
   --repeats times (default 2) to show how repeatable the figure is. The top functions of
   vigild by self cost (callgrind_annotate) for the last N2 run follow.

2. Bytes written to disk per reading: `write_bytes` of /proc/PID/io for vigild over the run,
   read after the outbox has drained (so the delivery marks count), / N; at saturation (lines
   as fast as the pty accepts them) and at a device's pace (10 lines/s). The limit: a child
   process (Python's sqlite3 module) inserts the same rows, read back from vigild's database,
   into a fresh database with the same `readings` table and indexes (copied from
   sqlite_master), WAL, synchronous=FULL, in transactions of the same size as vigild's ingest
   commits (rows sharing one `received_at`, which vigild stamps once per read chunk and
   commits in one transaction), and reports its own write_bytes delta. Two more variants show
   what the parts cost: the bare table (no indexes), and the same schema plus one
   delivery-mark UPDATE transaction per batch (an approximation of the outbox).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_driver as bd  # noqa: E402

CALLGRIND = ["valgrind", "--tool=callgrind", "--collect-atstart=yes", "--separate-threads=no"]


def log(msg: str) -> None:
    print(f"bench-cost: {msg}", file=sys.stderr, flush=True)


def callgrind_total(path: str) -> int:
    """Total Ir from a callgrind out file (`totals:`, else `summary:`)."""
    totals = summary = None
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("totals:"):
                totals = int(line.split()[1])
            elif line.startswith("summary:"):
                summary = int(line.split()[1])
    v = totals if totals is not None else summary
    if v is None:
        raise RuntimeError(f"no totals or summary line in {path} (callgrind did not finish writing it)")
    return v


# ---------------------------------------------------------------------------------------
# 1. Instructions


class CallgrindVigild(bd.Vigild):
    """vigild under callgrind. Popen's pid is the guest's pid (valgrind runs in-process),
    so /proc, SIGTERM and status all reach vigild itself."""

    def __init__(self, args, broker, work, device, link, out: str):
        super().__init__(args, broker, work, device, link)
        self.out = out

    def start(self, wait_open=True) -> None:
        self.starts += 1
        logf = open(os.path.join(self.work, f"vigild.{self.starts}.log"), "w")
        self.proc = bd.spawn(CALLGRIND + [f"--callgrind-out-file={self.out}", self.args.cg_vigild,
                                          "--config", self.config], stdout=logf, stderr=subprocess.STDOUT)
        # Start-up under callgrind (reading the symbols of a 20 MB binary) takes a while.
        bd.wait_until(lambda: self._device_open(), 600, "vigild (under callgrind) to open the device", step=0.2)


def wait_all(sub: bd.Subscriber, n: int, what: str, timeout: float) -> int:
    bd.wait_arrivals(sub, n, timeout=timeout, quiet=min(timeout, 120))
    got = sub.matched()
    if got < n:
        raise RuntimeError(f"{what}: only {got} of {n} readings reached the broker")
    return got


def callgrind_vigild(args, broker: bd.Broker, work: str, tag: str, n: int) -> dict:
    pwork = os.path.join(work, tag)
    os.makedirs(pwork)
    device = f"rad8-{tag}"
    out = os.path.join(pwork, "callgrind.out")
    pty = bd.Pty(os.path.join(pwork, "rad8"))
    sub = bd.Subscriber(broker, ["vigil/v1/#"], tag)
    sub.count_only(f'"device":"{device}"'.encode())
    v = CallgrindVigild(args, broker, pwork, device, pty.link, out)
    lines = bd.Lines.around_now(n)
    try:
        t0 = time.monotonic()
        v.start()
        log(f"{tag}: vigild open under callgrind after {time.monotonic() - t0:.1f} s; {n} lines at {args.rate:g}/s")
        bd.write_lines(pty, lines, args.rate)
        wait_all(sub, n, tag, timeout=max(300, 20 * n / args.rate))
        try:
            bd.wait_until(lambda: (s := v.status()) and s["outbox"]["readings"]["depth"] == 0, 120, "outbox to drain",
                          step=0.2)
        except RuntimeError as e:
            log(f"{tag}: {e}")
        status = v.status() or {}
        # SIGTERM: vigild shuts down cleanly and callgrind writes its file on exit.
        bd.stop(v.proc, signal.SIGTERM, grace=300)
        if v.proc.returncode != 0:
            log(f"{tag}: vigild exited with status {v.proc.returncode}")
    finally:
        v.stop()
        sub.close()
        pty.close()
    txs = status.get("store", {}).get("transactions")
    return {"n": n, "ir": callgrind_total(out), "out": out, "transactions": txs}


def callgrind_pub(args, broker: bd.Broker, work: str, tag: str, n: int) -> dict:
    pwork = os.path.join(work, tag)
    os.makedirs(pwork)
    out = os.path.join(pwork, "callgrind.out")
    pty = bd.Pty(os.path.join(pwork, "tty"))
    topic = f"bench/baseline/{tag}"
    sub = bd.Subscriber(broker, [topic], tag)
    sub.count_only(f" {topic} ".encode())
    stdin = os.open(pty.link, os.O_RDONLY | os.O_NOCTTY)
    pub = bd.spawn(CALLGRIND + [f"--callgrind-out-file={out}", "mosquitto_pub", "-h", "127.0.0.1", "-p",
                                str(broker.port), "-q", "1", "-i", f"bench-cost-pub-{tag}-{os.getpid()}", "-t", topic, "-l"],
                   stdin=stdin, stdout=subprocess.DEVNULL, stderr=open(os.path.join(pwork, "pub.log"), "w"))
    os.close(stdin)
    lines = bd.Lines.around_now(n)
    try:
        time.sleep(2)  # connect under callgrind; lines written earlier would just queue in the pty
        log(f"{tag}: mosquitto_pub -l under callgrind; {n} lines at {args.rate:g}/s")
        bd.write_lines(pty, lines, args.rate)
        wait_all(sub, n, tag, timeout=max(300, 20 * n / args.rate))
        time.sleep(0.5)  # the last PUBACK
        bd.stop(pub, signal.SIGTERM, grace=120)
    finally:
        bd.stop(pub)
        sub.close()
        pty.close()
    return {"n": n, "ir": callgrind_total(out), "out": out}


def per_reading(a: dict, b: dict) -> float:
    return (b["ir"] - a["ir"]) / (b["n"] - a["n"])


def swift_demangle(names: list[str]) -> list[str]:
    tool = shutil.which("swift-demangle")
    argv = [tool, "--simplified", "--compact"] if tool else (
        ["swift", "demangle", "--simplified", "--compact"] if shutil.which("swift") else None)
    if not argv:
        return names
    try:
        r = subprocess.run(argv, input="\n".join(names) + "\n", capture_output=True, text=True, timeout=60)
        out = r.stdout.rstrip("\n").split("\n")
        return out if r.returncode == 0 and len(out) == len(names) else names
    except (OSError, subprocess.SubprocessError):
        return names


def self_costs(out: str) -> dict[str, int]:
    """{function: self Ir} from callgrind_annotate (every function, object file dropped)."""
    r = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", out],
                       capture_output=True, text=True, timeout=300)
    pat = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*)$")
    costs: dict[str, int] = {}
    body = False
    for line in r.stdout.splitlines():
        if line.startswith("-" * 20):
            body = True
            continue
        m = pat.match(line) if body else None
        if not m or "PROGRAM TOTALS" in line:
            continue
        fn = re.sub(r"\s+\[[^\]]*\]$", "", m.group(2).strip())  # the object file suffix
        _file, sep, func = fn.partition(":")  # "file:function"; the file is ??? without debug info
        fn = func if sep else fn
        costs[fn] = costs.get(fn, 0) + int(m.group(1).replace(",", ""))
    return costs


def top_functions(out1: str, out2: str, readings: int, k: int = 10) -> list[tuple[float, float, str]]:
    """The k functions with the largest self cost per reading, from the difference of the N2
    and N1 runs (so start-up and shutdown cancel out): [(Ir per reading, share, function)]."""
    c1, c2 = self_costs(out1), self_costs(out2)
    diff = {fn: c2.get(fn, 0) - c1.get(fn, 0) for fn in set(c1) | set(c2)}
    total = sum(v for v in diff.values())
    rows = sorted(diff.items(), key=lambda x: -x[1])[:k]
    names = swift_demangle([fn for fn, _ in rows])
    return [(ir / readings, 100.0 * ir / total if total else float("nan"), name[:120])
            for (_, ir), name in zip(rows, names)]


# ---------------------------------------------------------------------------------------
# 2. Disk


def raw_insert_child(src: str, dst: str, variant: str) -> dict:
    """Runs in a child process (so /proc/self/io is its own): the rows of vigild's `readings`
    table into a fresh database, batched as vigild's ingest commits were."""
    con = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    table_sql = con.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='readings'").fetchone()[0]
    index_sql = [r[0] for r in con.execute(
        "SELECT sql FROM sqlite_master WHERE type='index' AND tbl_name='readings' AND sql IS NOT NULL ORDER BY name")]
    cols = ["reading_id", "patient", "device", "vital", "value", "unit", "measured_at", "received_at", "flags",
            "sequence", "delivered"]
    rows = con.execute(f"SELECT {', '.join(cols)} FROM readings ORDER BY seq").fetchall()
    con.close()
    batches: list[list[tuple]] = []
    for row in rows:
        # vigild inserts with delivered = 0 and marks rows later.
        row = row[:-1] + (0,)
        if batches and batches[-1][-1][7] == row[7]:
            batches[-1].append(row)
        else:
            batches.append([row])
    db = sqlite3.connect(dst, isolation_level=None)
    assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.execute("PRAGMA synchronous=FULL")
    db.execute(table_sql)
    if variant in ("same", "marks"):
        for s in index_sql:
            db.execute(s)
    insert = f"INSERT INTO readings ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"

    def write_bytes() -> int:
        with open("/proc/self/io") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("write_bytes"))
    transactions = 0
    io0 = write_bytes()
    for batch in batches:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(insert, batch)
        db.execute("COMMIT")
        transactions += 1
        if variant == "marks":
            last = db.execute("SELECT max(seq) FROM readings").fetchone()[0]
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE readings SET delivered = 1 WHERE seq > ? AND seq <= ? AND delivered = 0",
                       (last - len(batch), last))
            db.execute("COMMIT")
            transactions += 1
    io1 = write_bytes()  # before close: close checkpoints the WAL (vigild's figure is also taken before it stops)
    db.close()
    return {"variant": variant, "rows": len(rows), "batches": len(batches), "transactions": transactions,
            "write_bytes": io1 - io0, "bytes_per_reading": (io1 - io0) / len(rows) if rows else float("nan")}


def raw_insert(src: str, work: str, tag: str, variant: str) -> dict:
    dst = os.path.join(work, f"raw-{tag}-{variant}.sqlite")
    p = bd.spawn([sys.executable, os.path.abspath(__file__), "--raw-insert", src, dst, variant],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=600)
    bd.PROCS.remove(p)
    if p.returncode != 0:
        raise RuntimeError(f"raw sqlite3 insert ({variant}) failed: {err.decode(errors='replace')[-500:]}")
    return json.loads(out)


def disk_run(args, broker: bd.Broker, work: str, tag: str, n: int, rate: float | None) -> dict:
    r = bd.run_vigil(args, broker, work, tag, bd.Lines.around_now(n), rate)
    if r["lost"]:
        raise RuntimeError(f"{tag}: {r['lost']} of {n} readings never reached the broker")
    src = os.path.join(work, tag, "state", "vigil.sqlite")
    raw = {v: raw_insert(src, work, tag, v) for v in ("same", "bare", "marks")}
    return {"n": n, "rate": rate, "vigild_bytes_per_reading": r["disk_b_per_reading"],
            "transactions": r["transactions"], "raw": raw}


# ---------------------------------------------------------------------------------------


def fmt(v, d=0):
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    return f"{v:,.{d}f}"


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--raw-insert":
        print(json.dumps(raw_insert_child(*sys.argv[2:])))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="directory with vigild and vigilctl")
    ap.add_argument("--profiles", required=True, help="the repository's devices/ directory")
    ap.add_argument("--build", default="release", help="label for the table")
    ap.add_argument("--n1", type=int, default=1000)
    ap.add_argument("--n2", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=200.0, help="lines/s in the callgrind runs")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sat-readings", type=int, default=20000)
    ap.add_argument("--slow-readings", type=int, default=300)
    ap.add_argument("--slow-rate", type=float, default=10.0)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--skip-callgrind", action="store_true")
    ap.add_argument("--skip-disk", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.profiles = os.path.abspath(args.profiles)
    if args.n2 <= args.n1:
        ap.error("--n2 must be larger than --n1")

    def measure(work: str) -> int:
        t_start = time.monotonic()
        broker = bd.Broker(work)
        res: dict = {"build": args.build, "rate": args.rate, "n1": args.n1, "n2": args.n2}
        top: list = []
        if not args.skip_callgrind:
            # Valgrind 3.19 (Debian 12) cannot read the DWARF 5 debug info Swift's clang emits
            # ("unhandled dwarf2 abbrev form code 0x25 ... I can't recover"); a copy without it
            # runs the same instructions and keeps the symbol table for the function names.
            args.cg_vigild = os.path.join(work, "vigild-nodebug")
            shutil.copy2(os.path.join(args.bin, "vigild"), args.cg_vigild)
            subprocess.run(["strip", "--strip-debug", args.cg_vigild], check=True)
            vruns, pruns = [], []
            for rep in range(1, args.repeats + 1):
                a = callgrind_vigild(args, broker, work, f"cg-vigild-{rep}-{args.n1}", args.n1)
                b = callgrind_vigild(args, broker, work, f"cg-vigild-{rep}-{args.n2}", args.n2)
                vruns.append({"ir_n1": a["ir"], "ir_n2": b["ir"], "per_reading": per_reading(a, b),
                              "transactions_n1": a["transactions"], "transactions_n2": b["transactions"]})
                log(f"vigild run {rep}: {vruns[-1]['per_reading']:,.0f} instructions per reading")
                last_outs = (a["out"], b["out"])
                a = callgrind_pub(args, broker, work, f"cg-pub-{rep}-{args.n1}", args.n1)
                b = callgrind_pub(args, broker, work, f"cg-pub-{rep}-{args.n2}", args.n2)
                pruns.append({"ir_n1": a["ir"], "ir_n2": b["ir"], "per_reading": per_reading(a, b)})
                log(f"mosquitto_pub run {rep}: {pruns[-1]['per_reading']:,.0f} instructions per reading")
            res["vigild_callgrind"] = vruns
            res["pub_callgrind"] = pruns
            res["instr_per_reading"] = statistics.median(r["per_reading"] for r in vruns)
            res["mosquitto_pub_instr_per_reading"] = statistics.median(r["per_reading"] for r in pruns)
            top = top_functions(*last_outs, args.n2 - args.n1, args.top)
            res["top_self_per_reading"] = [{"ir": round(ir), "pct": round(p, 2), "function": f} for ir, p, f in top]
        if not args.skip_disk:
            sat = disk_run(args, broker, work, "disk-saturation", args.sat_readings, None)
            slow = disk_run(args, broker, work, "disk-slow", args.slow_readings, args.slow_rate)
            res["disk_saturation"] = sat
            res["disk_slow"] = slow
            res["disk_bytes_per_reading_saturation"] = sat["vigild_bytes_per_reading"]
            res["sqlite_raw_bytes_per_reading_saturation"] = sat["raw"]["same"]["bytes_per_reading"]
            res["sqlite_bare_bytes_per_reading_saturation"] = sat["raw"]["bare"]["bytes_per_reading"]
            res["sqlite_marks_bytes_per_reading_saturation"] = sat["raw"]["marks"]["bytes_per_reading"]
            res["disk_bytes_per_reading_10hz"] = slow["vigild_bytes_per_reading"]
            res["sqlite_raw_bytes_per_reading_10hz"] = slow["raw"]["same"]["bytes_per_reading"]
            res["sqlite_bare_bytes_per_reading_10hz"] = slow["raw"]["bare"]["bytes_per_reading"]
            res["sqlite_marks_bytes_per_reading_10hz"] = slow["raw"]["marks"]["bytes_per_reading"]
        res["elapsed_s"] = round(time.monotonic() - t_start, 1)
        report(args, res, top)
        return 0

    return bd.in_workdir("vigil-bench-cost.", args.keep, measure, log)


def report(args, res: dict, top: list) -> None:
    print()
    print(f"Vigil cost per reading: {args.build} build, {os.cpu_count()} CPUs, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {res['elapsed_s']} s")
    print()
    if "instr_per_reading" in res:
        print(f"Instructions per reading (callgrind, (Ir(N2) - Ir(N1)) / (N2 - N1), N1 = {args.n1:,}, "
              f"N2 = {args.n2:,}, lines at {args.rate:g}/s):")
        print()
        print("| run | vigild Ir(N1) | vigild Ir(N2) | vigild per reading | readings per store transaction, N1 / N2 "
              "| mosquitto_pub -l per reading | ratio |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for i, (v, p) in enumerate(zip(res["vigild_callgrind"], res["pub_callgrind"]), 1):
            tpr = (f"{args.n1 / v['transactions_n1']:.1f} / {args.n2 / v['transactions_n2']:.1f}"
                   if v.get("transactions_n1") and v.get("transactions_n2") else "n/a")
            print(f"| {i} | {fmt(v['ir_n1'])} | {fmt(v['ir_n2'])} | {fmt(v['per_reading'])} | {tpr} "
                  f"| {fmt(p['per_reading'])} | {v['per_reading'] / p['per_reading']:.1f} |")
        print(f"| **median** | | | **{fmt(res['instr_per_reading'])}** | | "
              f"**{fmt(res['mosquitto_pub_instr_per_reading'])}** | "
              f"**{res['instr_per_reading'] / res['mosquitto_pub_instr_per_reading']:.1f}** |")
        print()
        if top:
            print(f"Top {len(top)} functions of vigild by self cost per reading (last repeat, Ir(N2) - Ir(N1) "
                  f"per function / (N2 - N1); share of the per-reading total):")
            print()
            print("| Ir per reading (self) | share | function |")
            print("| ---: | ---: | --- |")
            for ir, pct, fn in top:
                print(f"| {fmt(ir)} | {pct:.1f}% | `{fn.replace('|', '/')}` |")
            print()
    if "disk_saturation" in res:
        print("Bytes written to disk per reading (/proc/PID/io write_bytes / readings):")
        print()
        print("| run | readings | vigild | raw sqlite3, same readings table + indexes | ratio "
              "| raw, bare table (no indexes) | raw, same + a delivery-mark transaction per batch "
              "| vigild transactions | raw batches (readings each) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for key, label in (("disk_saturation", "saturation (as fast as the pty takes lines)"),
                           ("disk_slow", f"{args.slow_rate:g} lines/s")):
            d = res[key]
            raw = d["raw"]
            same = raw["same"]["bytes_per_reading"]
            print(f"| {label} | {d['n']:,} | {fmt(d['vigild_bytes_per_reading'])} | {fmt(same)} "
                  f"| {d['vigild_bytes_per_reading'] / same:.1f} | {fmt(raw['bare']['bytes_per_reading'])} "
                  f"| {fmt(raw['marks']['bytes_per_reading'])} | {fmt(d['transactions'])} "
                  f"| {raw['same']['batches']:,} ({raw['same']['rows'] / raw['same']['batches']:.1f}) |")
        print()
    print("RESULT " + json.dumps(res, default=str))


if __name__ == "__main__":
    sys.exit(main())
