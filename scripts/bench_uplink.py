"""Uplink benchmark driver (scripts/bench-uplink): for each encoding, a store holding N
undelivered readings, a vigild started while the broker is down, then a private mosquitto
started: the drain time runs from the broker's start to the outbox's readings depth reaching 0
(every reading PUBACKed by the broker), with vigild's RSS sampled meanwhile.
All traffic stays on 127.0.0.1. Stops every process it started."""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_driver as bd  # noqa: E402  (spawn, stop_all, wait_until, free_port, log)

CONFIG = """outbox:
  max_in_flight: 256
uplink:
  encoding: {encoding}
  batch_max: {batch}
"""


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


def status(bin_dir, sock):
    import json
    r = subprocess.run([os.path.join(bin_dir, "vigilctl"), "status", "--socket", sock, "--json"],
                       capture_output=True, timeout=10)
    try:
        return json.loads(r.stdout)["status"]
    except (ValueError, KeyError):
        return None


def drain(args, encoding, filled_db, readings):
    work = tempfile.mkdtemp(prefix=f"vigil-bench-uplink-{encoding}.")
    try:
        os.makedirs(os.path.join(work, "state"))
        os.makedirs(os.path.join(work, "care-plans"))
        shutil.copy(filled_db, os.path.join(work, "state", "vigil.sqlite"))
        port = bd.free_port()
        config = os.path.join(work, "vigild.yaml")
        with open(config, "w") as f:
            f.write(bd.vigild_config(work, args.profiles, port, CONFIG.format(encoding=encoding, batch=args.batch),
                                     reconnect_ms=(100, 250)))
        sock = os.path.join(work, "control.sock")
        vigild = bd.spawn([os.path.join(args.bin, "vigild"), "--config", config],
                          stdout=open(os.path.join(work, "vigild.log"), "w"), stderr=subprocess.STDOUT)
        # vigild is up (store open, outbox counted) while the broker is still down: an outage.
        def answering():
            if vigild.poll() is not None:
                raise RuntimeError(f"vigild exited with {vigild.returncode}: {open(os.path.join(work, 'vigild.log')).read()[-500:]}")
            return status(args.bin, sock)
        s = bd.wait_until(answering, 120, "vigild to answer", step=0.1)
        depth0 = s["outbox"]["readings"]["depth"]
        if depth0 != readings:
            raise RuntimeError(f"{encoding}: the outbox holds {depth0} readings, expected {readings}")
        rss_before = int(proc_status(vigild.pid)["VmRSS"].split()[0])
        conf = os.path.join(work, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n")
        t0 = time.monotonic()
        bd.spawn(["mosquitto", "-c", conf], stdout=open(os.path.join(work, "mosquitto.log"), "w"),
                 stderr=subprocess.STDOUT)
        peak = rss_before
        step = 0.05 if readings <= 50_000 else 0.25
        while True:
            st = proc_status(vigild.pid)
            peak = max(peak, int(st["VmRSS"].split()[0]))
            s = status(args.bin, sock)
            if s and s["outbox"]["readings"]["depth"] == 0:
                break
            if vigild.poll() is not None:
                raise RuntimeError(f"vigild exited with {vigild.returncode}; see {work}")
            if time.monotonic() - t0 > args.timeout:
                raise RuntimeError(f"{encoding}: not drained after {args.timeout} s; see {work}")
            time.sleep(step)
        elapsed = time.monotonic() - t0
        hwm = int(proc_status(vigild.pid)["VmHWM"].split()[0])
        published = s["uplink"]["acknowledged"]
        bd.stop_all()
        return {"encoding": encoding, "seconds": elapsed, "rate": readings / elapsed, "rss_before_kib": rss_before,
                "rss_peak_kib": peak, "hwm_kib": hwm, "acknowledged": published}
    finally:
        bd.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--profiles", required=True)
    p.add_argument("--build", default="release")
    p.add_argument("--readings", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--encodings", default="vigil-json,fhir,fhir-bundle,fhir-bundle-deflate")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, bd.on_signal)

    work = tempfile.mkdtemp(prefix="vigil-bench-uplink.")
    try:
        filled = os.path.join(work, "filled.sqlite")
        t = time.monotonic()
        r = subprocess.run([os.path.join(args.bin, "vigil-bench"), "uplink-fill", "--database", filled,
                            "--readings", str(args.readings)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"uplink-fill failed: {r.stdout}{r.stderr}")
        bd.log(f"{r.stdout.strip()} in {time.monotonic() - t:.1f} s")
        rows = []
        for enc in args.encodings.split(","):
            bd.log(f"draining {args.readings} readings as {enc}")
            rows.append(drain(args, enc, filled, args.readings))
        print(f"\nbacklog drain: {args.readings} buffered readings, broker down then started; {args.build} build; "
              f"batch_max {args.batch}; max_in_flight 256; one private mosquitto on 127.0.0.1")
        print("| encoding | drain time | readings/s to the broker | vigild RSS before | peak RSS while draining | VmHWM |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for row in rows:
            print(f"| {row['encoding']} | {row['seconds']:.1f} s | {row['rate']:,.0f} | {row['rss_before_kib'] / 1024:.1f} MiB "
                  f"| {row['rss_peak_kib'] / 1024:.1f} MiB | {row['hwm_kib'] / 1024:.1f} MiB |")
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        bd.log(f"error: {e}")
        return 1
    finally:
        bd.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
