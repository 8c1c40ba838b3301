#!/usr/bin/env python3
"""Generates the Contec CMS50D+ firmware 4.6+ (V7.0 packet protocol) captures in
firmware-fixtures/contec-v7/.

Each capture is built from explicit packets and injected faults with this script's own
packet encoder and framing model (written from the V7.0 text, not from the Swift code);
expected results are written from what the generator put in, never by running the Swift
decoder. Deterministic (fixed seeds).

Packet: type byte (bit 7 = 0), high byte (0x80 | bit i = bit 7 of data byte i), data bytes
with bit 7 set. Data lengths by type: 0x01/04/05/11/15: 7; 0x07/08/0F/12: 6; 0x09: 4;
0x0A/0B: 2; 0x0D/0E/10: 1; 0x0C: 0.

Real-time 0x01 data: [status, pleth|searching<<7, bar|piInvalid<<4, PR, SpO2, PI lo, PI hi]
  status: strength 0-8 | searching-too-long 0x10 | low SpO2 0x20 | beep 0x40 | probe error 0x80
Emission: one result per 60 consecutive well-formed real-time packets (values of the 60th,
flags the union of the 60); any rejected byte restarts the count.
Stored data (read only after a 0x08 length and a 0x07 + 0x12 start for the same user and
segment, with no byte rejected since): 0x0F = three (SpO2, PR) records, 0x09 = one (SpO2, PR, PI lo, PI hi); one
record a second from the start time in 0x07 (user, segment, year/100, year%100, month, day)
+ 0x12 (user, segment, hour, minute, second, 0); 0x08 gives the length in bytes (2 or 4 a
record); records past it are padding. sequence = start as Unix seconds * 1e6 + index.

Rejections between two good packets merge into one, code by precedence
malformedField > truncated > garbage.

Usage: scripts/gen-contec-v7-fixtures.py [output-dir]
"""
import calendar
import datetime
import json
import math
import os
import random
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "firmware-fixtures", "contec-v7")

PER_EMISSION = 60
LOW_SIGNAL_BELOW = 2
BYTES_PER_SECOND = 11520  # 115200 baud, 8N1
RANK = {"garbage": 1, "truncated": 2, "malformedField": 3}
DATA_LEN = {0x01: 7, 0x04: 7, 0x05: 7, 0x11: 7, 0x15: 7, 0x07: 6, 0x08: 6, 0x0F: 6, 0x12: 6,
            0x09: 4, 0x0A: 2, 0x0B: 2, 0x0D: 1, 0x0E: 1, 0x10: 1, 0x0C: 0}


def encode(ptype, data):
    assert ptype < 0x80 and len(data) == DATA_LEN[ptype], (ptype, data)
    high = 0x80
    for i, b in enumerate(data):
        if b & 0x80:
            high |= 1 << i
    return [ptype, high] + [b | 0x80 for b in data]


def sample(vital, value, unit, flags=(), time=None, seq=None):
    s = {"vital": vital, "value": value, "unit": unit,
         "device_time": time.strftime("%Y-%m-%dT%H:%M:%S") if time else None, "flags": sorted(flags)}
    if seq is not None:
        s["sequence"] = seq
    return s


class Capture:
    def __init__(self, name, title, seed):
        self.name, self.title = name, title
        self.stream = []
        self.expected = []
        self.rng = random.Random(seed)
        self.t = 0
        self.window, self.window_flags = 0, set()
        self.run, self.run_code = 0, None
        self.open = 0           # bytes of a packet left open by an injected cut
        self.start, self.length, self.index = None, None, 0
        self.started = False    # a 0x07 + 0x12 pair followed the 0x08 length

    # -- the merge rules --
    def _drop(self, n, code):
        # A rejection voids the second being collected and forgets the storage context.
        self.window, self.window_flags = 0, set()
        self.length, self.start, self.started, self.index = None, None, False, 0
        self.run += n
        if self.run_code is None or RANK[code] > RANK[self.run_code]:
            self.run_code = code

    def _close_open(self):
        if self.open:
            self._drop(self.open, "truncated")
            self.open = 0

    def _accept(self):
        self._close_open()
        if self.run:
            self.expected.append({"rejected": self.run_code, "skipped": self.run})
            self.window, self.window_flags = 0, set()
        self.run, self.run_code = 0, None

    def _put(self, ptype, data):
        self._close_open()
        self.stream += encode(ptype, data)

    # -- packets --
    def realtime(self, pr, spo2, pi=0xFFFF, strength=6, probe=False, too_long=False, low=False,
                 searching=False, pi_invalid=None, pleth=None, bar=None):
        ph = (self.t % 50) / 50.0
        self.t += 1
        if pleth is None:
            pleth = 0x40 if probe else int(60 + 55 * math.sin(ph * 2 * math.pi))
        if bar is None:
            bar = pleth // 9 if not probe else 0
        if pi_invalid is None:
            pi_invalid = pi == 0xFFFF
        beep = (self.t % 50) == 12
        status = (strength & 0x0F) | (0x10 if too_long else 0) | (0x20 if low else 0) | \
            (0x40 if beep else 0) | (0x80 if probe else 0)
        data = [status, (pleth & 0x7F) | (0x80 if searching else 0), (bar & 0x0F) | (0x10 if pi_invalid else 0),
                pr & 0xFF, spo2 & 0xFF, pi & 0xFF, pi >> 8]
        self._put(0x01, data)
        malformed = not (spo2 <= 100 or spo2 == 0x7F) or not (pi <= 2200 or pi == 0xFFFF)
        if malformed:
            self._drop(9, "malformedField")
            return
        self._accept()
        flags = set()
        if probe:
            flags.add("sensor_off")
        if searching or too_long:
            flags.add("searching")
        if strength < LOW_SIGNAL_BELOW:
            flags.add("low_signal")
        self.window += 1
        self.window_flags |= flags
        if self.window == PER_EMISSION:
            fl = self.window_flags
            out = []
            if pr not in (0, 0xFF):
                out.append(sample("pulse_rate", pr, "/min", fl))
            if spo2 not in (0, 0x7F):
                out.append(sample("spo2", spo2, "%", fl))
            if not pi_invalid and pi not in (0, 0xFFFF):
                out.append(sample("perfusion_index", pi / 100, "%", fl))
            self.expected.append({"samples": out})
            self.window, self.window_flags = 0, set()

    def second(self, pr, spo2, n=PER_EMISSION, **kw):
        for _ in range(n):
            self.realtime(pr, spo2, **kw)

    def other(self, ptype, data):
        """A well-formed packet that carries no reading: accepted, no result."""
        self._put(ptype, data)
        self._accept()

    def cut(self, ptype, data, k):
        """The first k bytes of a packet; the next type byte (or the end) cuts it."""
        full = encode(ptype, data)
        assert 1 <= k < len(full)
        self._close_open()
        self.stream += full[:k]
        self.open = k

    def noise(self, data):
        """Bytes that must start no complete packet; counted with the framing model."""
        self._close_open()
        pos = 0
        open_len, need = 0, 0
        for b in data:
            if b & 0x80 == 0:
                if open_len:
                    self._drop(open_len, "truncated")
                    open_len = 0
                if b in DATA_LEN:
                    open_len, need = 1, DATA_LEN[b] + 2
                else:
                    self._drop(1, "garbage")
            elif open_len:
                open_len += 1
                assert open_len < need, "noise completed a packet"
            else:
                self._drop(1, "garbage")
            pos += 1
        self.stream += data
        self.open = open_len

    def random_noise(self, n):
        while True:
            data = [self.rng.randrange(256) for _ in range(n)]
            try:
                saved = (list(self.stream), list(self.expected), self.window, set(self.window_flags),
                         self.run, self.run_code, self.open)
                self.noise(data)
                return
            except AssertionError:
                (self.stream, self.expected, self.window, self.window_flags,
                 self.run, self.run_code, self.open) = saved

    # -- stored data --
    def start_time(self, when, user=0, segment=0):
        self.other(0x07, [user, segment, when.year // 100, when.year % 100, when.month, when.day])
        self.other(0x12, [user, segment, when.hour, when.minute, when.second, 0])
        self.start, self.index, self.started = when, 0, self.length is not None

    def storage_length(self, nbytes, user=0, segment=0):
        self.other(0x08, [user, segment] + [(nbytes >> s) & 0xFF for s in (0, 8, 16, 24)])
        self.length, self.index, self.start, self.started = nbytes, 0, None, False

    def _record(self, spo2, pr, pi, size):
        i = self.index
        self.index += 1
        # Records are read only in a download's context, and not past its length.
        if not self.started or i >= self.length // size:
            return
        t = self.start + datetime.timedelta(seconds=i) if self.start else None
        seq = calendar.timegm(self.start.timetuple()) * 1000000 + i if self.start else i
        out = []
        if spo2 not in (0, 0x7F):
            out.append(sample("spo2", spo2, "%", (), t, seq))
        if pr not in (0, 0xFF):
            out.append(sample("pulse_rate", pr, "/min", (), t, seq))
        if pi is not None and pi not in (0, 0xFFFF):
            out.append(sample("perfusion_index", pi / 100, "%", (), t, seq))
        self.expected.append({"samples": out})

    def storage(self, records):
        """records: (SpO2, PR) pairs, three per 0x0F packet, the last padded with zeros."""
        records = list(records)
        while len(records) % 3:
            records.append((0, 0))
        for k in range(0, len(records), 3):
            chunk = records[k:k + 3]
            self._put(0x0F, [v for r in chunk for v in r])
            self._accept()
            for spo2, pr in chunk:
                self._record(spo2, pr, None, 2)

    def storage_pi(self, records):
        for spo2, pr, pi in records:
            self._put(0x09, [spo2, pr, pi & 0xFF, pi >> 8])
            self._accept()
            self._record(spo2, pr, pi, 4)

    def write(self, notes):
        # finish(): an open packet is truncated, the run reported, a partial second dropped.
        self._close_open()
        if self.run:
            self.expected.append({"rejected": self.run_code, "skipped": self.run})
        assert self.expected, self.name
        records, pos = [], 0
        while pos < len(self.stream):
            n = self.rng.randint(1, 64)
            records.append((pos * 1000 // BYTES_PER_SECOND, self.stream[pos:pos + n]))
            pos += n
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, self.name + ".capture"), "w") as f:
            f.write("# %s\n" % self.title)
            for line in notes:
                f.write("# %s\n" % line)
            f.write("# format: <ms offset> <hex bytes>; see firmware-fixtures/README.md\n")
            f.write("# generated by scripts/gen-contec-v7-fixtures.py; expected results in %s.expected.jsonl\n" % self.name)
            for ms, b in records:
                groups, cur = [], ""
                for x in b:
                    if not x & 0x80 and cur:
                        groups.append(cur)
                        cur = ""
                    cur += "%02x" % x
                groups.append(cur)
                f.write("%d %s\n" % (ms, " ".join(groups)))
        with open(os.path.join(OUT, self.name + ".expected.jsonl"), "w") as f:
            for e in self.expected:
                f.write(json.dumps(e, separators=(",", ":")) + "\n")


def normal():
    c = Capture("normal", "Adult at rest: 6 s of real-time packets at 60/s with PI", 1)
    c.other(0x0C, [])  # the free feedback answering a stop command before the stream
    for pr, spo2, pi in [(72, 97, 235), (73, 97, 241), (74, 98, 250), (74, 98, 1), (75, 97, 2200), (255, 127, 0xFFFF)]:
        c.second(pr, spo2, pi=pi)
    c.write(["PI valid (bit 4 clear) 2.35-22.00 %; the last second reports no value at all"])


def finger_out():
    c = Capture("finger-out", "Finger out, searching, searching too long, low signal, PI-invalid bit", 2)
    c.second(72, 97, pi=300)
    c.second(0xFF, 0x7F, probe=True, strength=0)                      # finger out: no values
    c.second(0, 0, searching=True, strength=1)                        # searching for pulse
    c.second(80, 95, pi=150, too_long=True)                            # searching too long
    c.second(81, 95, pi=150, strength=1, pi_invalid=True)              # low signal; PI flagged invalid
    c.second(82, 96, pi=400, low=True, strength=8)                     # low SpO2 alarm: not a flag
    c.second(83, 96, pi=400, n=59)
    c.realtime(83, 96, pi=400, probe=True)                             # one frame's flag survives
    c.write(["one flag each second; the last second has a single finger-out packet at its end"])


def garbage():
    c = Capture("garbage", "Real-time stream with garbage, unknown types and other packets between", 3)
    c.second(72, 97, pi=235)
    c.noise([0xFF, 0xFE, 0x80, 0x81])                                   # data bytes outside a packet
    c.second(72, 97, pi=235)
    c.noise([0x00, 0x02, 0x03, 0x13, 0x7E, 0x7F])                       # types no packet has
    c.second(73, 97, pi=240)
    c.other(0x11, [0x01, 0x01, 0, 0, 0, 0, 0])                          # device notice: accepted
    c.other(0x0B, [0xA5, 0x05])                                          # command feedback: accepted
    c.other(0x0F, [97, 72, 96, 73, 95, 74])                              # storage outside a download: no reading
    c.second(73, 98, pi=240)
    c.random_noise(200)
    c.second(74, 98, pi=245)
    c.random_noise(37)
    c.second(74, 98, pi=245)
    c.noise([0x00] * 16)                                                 # a run of NULs
    c.second(75, 98, pi=250, n=30)
    c.write(["each second between faults is whole; a second cut by noise gives nothing"])


def corrupt():
    c = Capture("corrupt", "Complete packets with a field out of range, and bit-7 errors", 4)
    c.second(72, 97, pi=235)
    c.realtime(72, 101)                                                  # SpO2 101: malformed
    c.second(72, 97, pi=235)
    c.realtime(72, 200, pi=235)                                          # SpO2 200 (high-byte bit)
    c.realtime(72, 97, pi=2201)                                          # PI 22.01 %: malformed
    c.second(72, 97, pi=235)
    # A data byte with bit 7 cleared by a line error: the packet is cut there, and the byte
    # (0x48) is a type no packet has.
    c.cut(0x01, [0x06, 0x30, 0x05, 72, 97, 235, 0], 4)
    c.noise([0x48, 0xE1, 0xEB, 0x80])
    c.second(73, 97, pi=235)
    c.write(["malformed packets are dropped whole; the second around them restarts"])


def truncated():
    c = Capture("truncated", "Packets cut by the next packet and by the end of the stream", 5)
    c.second(72, 97, pi=235)
    c.cut(0x01, [0x06, 0x30, 0x05, 72, 97, 235, 0], 5)
    c.second(72, 97, pi=235)
    c.cut(0x0F, [97, 72, 97, 72, 97, 72], 1)                             # a lone type byte
    c.cut(0x08, [0, 0, 10, 0, 0, 0], 7)
    c.second(73, 97, pi=235, n=45)
    c.cut(0x01, [0x06, 0x30, 0x05, 72, 97, 235, 0], 8)                   # cut by the end
    c.write(["a partial second before the cut at the end gives nothing"])


def stored_download():
    c = Capture("stored-download", "A stored-data download: stop, length, start time, 0x0F records", 6)
    c.second(72, 97, pi=235, n=20)                                       # stale real-time packets
    c.other(0x0C, [])
    c.other(0x0C, [])
    start = datetime.datetime(2026, 11, 24, 23, 59, 30)
    recs = []
    for i in range(100):
        spo2 = 95 + (i * 7) % 5
        pr = 60 + (i * 11) % 30
        if 40 <= i < 44:
            spo2, pr = 0x7F, 0xFF                                        # finger out while recording
        if i == 50:
            spo2 = 0                                                     # no SpO2 stored
        recs.append((spo2, pr))
    c.storage_length(len(recs) * 2)
    c.start_time(start)
    c.storage(recs)                                                      # 34 packets, last padded
    c.write(["100 records from 2026-11-24 23:59:30 (crosses midnight), user 0, segment 0",
             "the 20 stale real-time packets before the stop give no result (not a whole second)"])


def stored_download_pi():
    c = Capture("stored-download-pi", "A stored-data download with PI: 0x09 records", 7)
    c.other(0x0C, [])
    start = datetime.datetime(2024, 2, 28, 23, 59, 55)
    recs = [(96, 70 + i, 100 + 17 * i) for i in range(10)] + [(0x7F, 0xFF, 0xFFFF)]
    c.storage_length(len(recs) * 4)
    c.start_time(start)
    c.storage_pi(recs)
    c.write(["11 records from 2024-02-28 23:59:55 (leap day), the last with no values"])


if __name__ == "__main__":
    for make in (normal, finger_out, garbage, corrupt, truncated, stored_download, stored_download_pi):
        make()
