#!/usr/bin/env python3
"""Generates the Masimo Rad-8 "ASCII 1" captures in firmware-fixtures/masimo-rad8/.

Each capture is built from explicit records, and its expected results are written from
what the generator *put in* (the values it formatted, the garbage it injected), using the
bit tables below -- never by running the Swift decoder. The committed files are the
evidence; this script only documents how they were made. Deterministic (fixed seeds).

Usage: scripts/gen-masimo-fixtures.py [output-dir]
"""
import datetime as dt
import json
import os
import random
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "firmware-fixtures", "masimo-rad8")

# EXC bits -> Vigil quality flag names (firmware-fixtures/README.md has the sources).
EXC_FLAGS = {
    0x000001: ["sensor_off"],      # No Sensor
    0x000002: ["sensor_fault"],    # Defective Sensor
    0x000004: ["low_perfusion"],   # Low Perfusion
    0x000008: ["searching"],       # Pulse Search
    0x000010: ["artifact"],        # Interference
    0x000020: ["sensor_off"],      # Sensor Off
    0x000040: ["artifact"],        # Ambient Light
    0x000080: ["sensor_fault"],    # Unrecognized Sensor
    0x000100: ["sensor_fault"],    # Incompatible Sensor (Radical-7)
    0x000200: [],                  # reserved
    0x000400: ["low_signal"],      # Low Signal IQ
    0x000800: [],                  # Masimo SET (normal)
    0x001000: ["sensor_off"],      # No Cable Connected
    0x002000: ["sensor_fault"],    # Cable Life Expired
    0x004000: ["sensor_fault"],    # Incompatible Cable
    0x008000: ["sensor_fault"],    # Unrecognized Cable
    0x010000: ["sensor_fault"],    # Defective Cable
    0x020000: ["searching"],       # Sensor Calibrating
    0x040000: ["sensor_fault"],    # Sensor Life Expired
    0x080000: ["sensor_fault"],    # Emitter Temp Out of Range
    0x100000: ["sensor_fault"],    # Sensor Current Limit Exceeded
    0x200000: [],                  # SpCO Low Confidence
    0x400000: [],                  # SpMET Low Confidence
    0x800000: [],                  # reserved
}
# ALARM bits -> which vitals get "device_alarm" ("*" = every value on the line).
ALARM_VITALS = {
    0x0001: ["spo2"], 0x0002: ["spo2"], 0x0004: ["pulse_rate"], 0x0008: ["pulse_rate"],
    0x0010: ["*"], 0x0020: [], 0x0040: [], 0x0080: [],
    0x0100: [], 0x0200: [], 0x0400: [], 0x0800: [],
    0x1000: ["spo2"], 0x2000: ["perfusion_index"],
}
FLAG_ORDER = ["sensor_off", "low_perfusion", "artifact", "searching", "low_signal", "sensor_fault",
              "body_movement", "cuff_fit", "irregular_pulse", "pulse_rate_range", "position",
              "device_clock_unreliable", "device_alarm"]


def flags_for(vital, alarm, exc):
    names = set()
    for bit, f in EXC_FLAGS.items():
        if exc & bit:
            names.update(f)
    for bit, vitals in ALARM_VITALS.items():
        if alarm & bit and ("*" in vitals or vital in vitals):
            names.add("device_alarm")
    return [n for n in FLAG_ORDER if n in names]


def fmt_line(t, spo2, bpm, pi, alarm=0, exc=0x800, sn="0000056661"):
    s = "---" if spo2 is None else "%03d" % spo2
    b = "---" if bpm is None else "%03d" % bpm
    p = "--.--" if pi is None else "%05.2f" % pi
    return ("%s SN=%s SPO2=%s%% BPM=%s PI=%s%% SPCO=--.-%% SPMET=--.-%% DESAT=-- PIDELTA=+-- "
            "ALARM=%04X EXC=%06X" % (t.strftime("%m/%d/%y %H:%M:%S"), sn, s, b, p, alarm, exc))


def expect_samples(t, spo2, bpm, pi, alarm=0, exc=0x800):
    iso = t.strftime("%Y-%m-%dT%H:%M:%S")
    out = []
    for key, value, unit in (("spo2", spo2, "%"), ("pulse_rate", bpm, "/min"), ("perfusion_index", pi, "%")):
        if value is not None:
            out.append({"vital": key, "value": value, "unit": unit, "device_time": iso,
                        "flags": flags_for(key, alarm, exc)})
    return {"samples": out}


def rejected(code, skipped=None):
    d = {"rejected": code}
    if skipped is not None:
        d["skipped"] = skipped
    return d


class Capture:
    def __init__(self, name, title):
        self.name, self.title = name, title
        self.records = []   # (ms, bytes, comment)
        self.expected = []
        self.ms = 0

    def add(self, data, comment=None, at=None):
        if at is not None:
            assert at >= self.ms
            self.ms = at
        self.records.append((self.ms, data, comment))

    def good(self, t, spo2, bpm, pi, alarm=0, exc=0x800, ms=None, split=None):
        text = fmt_line(t, spo2, bpm, pi, alarm, exc).encode() + b"\r\n"
        if split:
            self.add(text[:split], fmt_line(t, spo2, bpm, pi, alarm, exc), at=ms)
            self.add(text[split:], "(rest of the line, read separately)", at=self.ms + 5)
        else:
            self.add(text, fmt_line(t, spo2, bpm, pi, alarm, exc), at=ms)
        self.expected.append(expect_samples(t, spo2, bpm, pi, alarm, exc))

    def write(self, notes):
        with open(os.path.join(OUT, self.name + ".capture"), "w") as f:
            f.write("# %s\n" % self.title)
            for n in notes:
                f.write("# %s\n" % n)
            f.write("# format: <ms offset> <hex bytes>; see firmware-fixtures/README.md\n")
            f.write("# generated by scripts/gen-masimo-fixtures.py; expected results in %s.expected.jsonl\n" % self.name)
            for ms, data, comment in self.records:
                if comment:
                    f.write("# %s\n" % comment)
                f.write("%d %s\n" % (ms, data.hex()))
        with open(os.path.join(OUT, self.name + ".expected.jsonl"), "w") as f:
            for e in self.expected:
                f.write(json.dumps(e, separators=(",", ":")) + "\n")


def garbage_bytes(rng, n):
    """Random bytes that cannot end a line nor form a date header (no CR, LF or digits)."""
    pool = [b for b in range(256) if b not in (0x0A, 0x0D) and not 0x30 <= b <= 0x39]
    return bytes(rng.choice(pool) for _ in range(n))


def normal():
    rng = random.Random(8)
    c = Capture("normal", "Rad-8 ASCII 1, steady adult at rest, 90 lines at 1 Hz (SET mode, no alarms)")
    t = dt.datetime(2016, 2, 22, 22, 47, 45)
    spo2, bpm, pi = 97, 72, 3.6
    for i in range(90):
        spo2 = max(95, min(99, spo2 + rng.choice([-1, 0, 0, 1])))
        bpm = max(60, min(84, bpm + rng.choice([-2, -1, 0, 1, 2])))
        pi = round(max(1.5, min(6.0, pi + rng.choice([-0.12, -0.05, 0, 0.05, 0.12]))), 2)
        ms = i * 1000 + rng.randint(0, 12)
        c.good(t + dt.timedelta(seconds=i), spo2, bpm, pi, ms=ms, split=(40 if i % 7 == 3 else None))
    assert len(c.expected) >= 60
    c.write(["Every 7th line arrives in two reads, as a UART driver may deliver it."])


def exceptions():
    c = Capture("exceptions", "Every EXC bit alone (with SET), every ALARM bit alone, and combinations")
    t = dt.datetime(2016, 3, 1, 8, 0, 0)
    i = 0
    for bit in sorted(EXC_FLAGS):
        c.good(t + dt.timedelta(seconds=i), 96, 70, 2.5, exc=bit | 0x800, ms=i * 1000)
        i += 1
    for bit in sorted(ALARM_VITALS):
        c.good(t + dt.timedelta(seconds=i), 88, 130, 0.4, alarm=bit, ms=i * 1000)
        i += 1
    # Realistic combinations seen in the Rad-8 manual's sample output.
    for alarm, exc, values in ((0x0010, 0x000820, (None, None, None)),          # OffPat,SET: no values
                               (0x0010, 0x000828, (None, None, None)),          # Search,OffPat,SET
                               (0x0000, 0x000C00, (96, 74, 2.28)),              # LowSigIQ,SET
                               (0x0000, 0x000000, (97, 69, 4.69)),              # no exception at all
                               (0x0000, 0x000054, (93, 101, 0.3)),              # LowPerf+Interf+Ambient
                               (0x0012, 0x000C0C, (86, 58, 0.19))):             # alarms + quality
        c.good(t + dt.timedelta(seconds=i), *values, alarm=alarm, exc=exc, ms=i * 1000)
        i += 1
    c.write(["Values are kept on every line so the flags can be checked; a real device sends",
             "dashes with Sensor Off / No Sensor (the last lines show that)."])


def missing_values():
    c = Capture("missing-values", "Fields with no value: ---, --.--, and a line with no value at all")
    t = dt.datetime(2016, 2, 29, 23, 59, 57)  # leap day, crossing midnight into March
    rows = [(None, None, None, 0x000820), (None, 71, 2.1, 0x000808), (95, None, 2.0, 0x000808),
            (95, 72, None, 0x000800), (96, 72, 2.2, 0x000800), (None, None, 0.5, 0x000C08),
            (97, 73, 2.3, 0x000800)]
    for i, (s, b, p, exc) in enumerate(rows):
        c.good(t + dt.timedelta(seconds=i), s, b, p, exc=exc, ms=i * 1000)
    # PI as "--.-" (one decimal of dashes, as SPCO prints it) is also "no value".
    t2 = t + dt.timedelta(seconds=len(rows))
    line = fmt_line(t2, 97, 74, None).replace("PI=--.--%", "PI=--.-%")
    c.add(line.encode() + b"\r\n", line, at=len(rows) * 1000)
    c.expected.append(expect_samples(t2, 97, 74, None))
    c.write([])


def corrupt():
    c = Capture("corrupt", "Complete lines with a bad field: each is rejected whole; good lines around them decode")
    t = dt.datetime(2016, 2, 22, 23, 0, 0)
    i = 0

    def good():
        nonlocal i
        c.good(t + dt.timedelta(seconds=i), 97, 70, 3.1, ms=i * 1000)
        i += 1

    def bad(why, mutate, code="malformedField"):
        nonlocal i
        line = mutate(fmt_line(t + dt.timedelta(seconds=i), 97, 70, 3.1))
        c.add(line.encode() + b"\r\n", "BAD (%s): %s" % (why, line), at=i * 1000)
        c.expected.append(rejected(code, len(line.encode())))
        i += 1

    good()
    bad("SPO2 not a number", lambda l: l.replace("SPO2=097%", "SPO2=0X7%"))
    good()
    bad("SPO2 above 100", lambda l: l.replace("SPO2=097%", "SPO2=101%"))
    good()
    bad("month 13", lambda l: "13" + l[2:])
    good()
    bad("hour 25", lambda l: l[:9] + "25" + l[11:])
    good()
    bad("29 February 2015", lambda l: "02/29/15" + l[8:])
    good()
    bad("EXC not hex", lambda l: l.replace("EXC=000800", "EXC=00G800"))
    good()
    bad("ALARM too long", lambda l: l.replace("ALARM=0000", "ALARM=000000000"))
    good()
    bad("SPO2 twice", lambda l: l.replace("BPM=070", "SPO2=096% BPM=070"))
    good()
    bad("a token without '='", lambda l: l.replace(" BPM=", " XX BPM="))
    good()
    bad("BPM with a decimal point", lambda l: l.replace("BPM=070", "BPM=07.0"))
    good()
    bad("PI with two points", lambda l: l.replace("PI=03.10%", "PI=03.1.0%"))
    good()
    bad("PI empty", lambda l: l.replace("PI=03.10%", "PI=%"))
    good()
    bad("SPO2 mixes digits and dashes", lambda l: l.replace("SPO2=097%", "SPO2=0-7%"))
    good()
    bad("lower-case field name", lambda l: l.replace("BPM=", "bpm="))
    good()
    # 29 February 2016 is a real date: accepted.
    leap = dt.datetime(2016, 2, 29, 12, 0, 0)
    c.good(leap, 97, 70, 3.1, ms=i * 1000)
    i += 1
    c.write([])


def truncated():
    c = Capture("truncated", "Lines cut short: by a power-cycle (then a good line), by a lost terminator, at the end")
    t = dt.datetime(2016, 2, 22, 23, 10, 0)
    c.good(t, 97, 70, 3.0, ms=0)
    # Power-cycle: 40 bytes of a line, then the device restarts and sends a whole line.
    cut = fmt_line(t + dt.timedelta(seconds=1), 97, 70, 3.0).encode()[:40]
    c.add(cut, "cut after 40 bytes (device power-cycled)", at=1000)
    c.expected.append(rejected("truncated", 40))
    c.good(t + dt.timedelta(seconds=9), 96, 71, 3.0, ms=9000)
    # Cut line followed by CR LF (fields missing).
    cut2 = fmt_line(t + dt.timedelta(seconds=10), 96, 71, 3.0).encode()[:70]
    c.add(cut2 + b"\r\n", "cut after 70 bytes, then CR LF", at=10000)
    c.expected.append(rejected("truncated", 70))
    c.good(t + dt.timedelta(seconds=11), 96, 72, 3.1, ms=11000)
    # Only the date and time.
    hdr = (t + dt.timedelta(seconds=12)).strftime("%m/%d/%y %H:%M:%S").encode()
    c.add(hdr + b"\r\n", "date and time only", at=12000)
    c.expected.append(rejected("truncated", 17))
    c.good(t + dt.timedelta(seconds=13), 96, 72, 3.1, ms=13000)
    # The stream ends inside a line (unplug): finish() reports it.
    tail = fmt_line(t + dt.timedelta(seconds=14), 96, 72, 3.1).encode()[:55]
    c.add(tail, "stream ends after 55 bytes of a line", at=14000)
    c.expected.append(rejected("truncated", 55))
    c.write(["The last record has no line end: the decoder reports it from finish()."])


def garbage():
    rng = random.Random(1)
    c = Capture("garbage", "Noise between lines: random bytes, NULs, CR-only runs, an over-long run")
    t = dt.datetime(2016, 2, 23, 6, 30, 0)
    i = 0

    def good(split=None):
        nonlocal i
        c.good(t + dt.timedelta(seconds=i), 95 + i % 3, 66 + i % 5, round(2.0 + (i % 4) / 10, 2), ms=i * 1000, split=split)
        i += 1

    good()
    g = garbage_bytes(rng, 23)
    c.add(g + b"\r\n", "23 random bytes, then CR LF", at=i * 1000 - 500)
    c.expected.append(rejected("garbage", 23))
    good()
    c.add(b"\x00" * 20, "20 NUL bytes, directly followed by a good line", at=i * 1000 - 100)
    c.expected.append(rejected("garbage", 20))
    good()
    c.add(b"\r\r\r\r\r", "CR only: empty lines, nothing to report", at=i * 1000 - 300)
    good()
    c.add(b"\n\r\n\n", "LF and CR LF only", at=i * 1000 - 300)
    good()
    g = garbage_bytes(rng, 9)
    c.add(g + b"\r" + b"\x00\x00\xff\r", "9 random bytes CR, then NUL NUL FF CR: two runs", at=i * 1000 - 400)
    c.expected.append(rejected("garbage", 9))
    c.expected.append(rejected("garbage", 3))
    good()
    # 300 bytes of noise with no line end, then a good line. The decoder keeps at most 256
    # bytes: at byte 257 it drops all but the last 16 (which could start a header): 241.
    # The remaining 16 + 43 noise bytes precede the good line's date: 59 bytes of garbage.
    g = garbage_bytes(rng, 300)
    c.add(g, "300 random bytes without a line end, then a good line", at=i * 1000 - 600)
    c.expected.append(rejected("lineTooLong", 300 - 59))
    c.expected.append(rejected("garbage", 59))
    good()
    # Baud-rate mismatch looks like high-bit noise with CRs in it.
    g = bytes([0xF0, 0xE6, 0x80, 0xFE]) * 4
    c.add(g + b"\r", "16 bytes of wrong-baud noise, CR", at=i * 1000 - 200)
    c.expected.append(rejected("garbage", 16))
    for _ in range(4):
        good(split=25)
    c.write(["Garbage never contains digits, CR or LF (so it cannot form a date header); the",
             "expected byte counts follow from the injected lengths."])


def desaturation():
    rng = random.Random(90)
    c = Capture("desaturation", "Sustained desaturation: SpO2 below 90 % for well over 90 s (the demo's escalation driver)")
    t = dt.datetime(2025, 12, 31, 23, 58, 0)  # crosses midnight into 2026
    rows = []
    for i in range(200):
        if i < 40:
            s = rng.choice([95, 96, 96, 97])
        elif i < 60:
            s = 95 - (i - 40) * 6 // 20 - rng.choice([0, 1])          # 95 -> 89
        elif i < 170:
            s = rng.choice([85, 86, 86, 87, 87, 88, 88, 89])
        elif i < 185:
            s = 89 + (i - 170) * 6 // 15
        else:
            s = rng.choice([94, 95, 95, 96])
        b = 74 + (s < 90) * rng.choice([18, 20, 22, 24]) + rng.choice([-2, 0, 2])
        p = round((2.4 if s >= 90 else 1.1) + rng.choice([-0.2, 0, 0.2]), 2)
        alarm = 0x0012 if s < 90 else 0  # SpO2 low limit (default 90) + alarm active
        rows.append((s, b, p, alarm))
    run = best = 0
    for s, *_ in rows:
        run = run + 1 if s < 90 else 0
        best = max(best, run)
    assert best >= 90, best
    assert len(rows) >= 180
    for i, (s, b, p, alarm) in enumerate(rows):
        c.good(t + dt.timedelta(seconds=i), s, b, p, alarm=alarm, ms=i * 1000 + rng.randint(0, 8))
    c.write(["SpO2 is below 90 %% for %d consecutive seconds; the device raises its SpO2 low" % best,
             "alarm (ALARM bits 0x0002 + 0x0010) while it is."])


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for f in (normal, exceptions, missing_values, corrupt, truncated, garbage, desaturation):
        f()
