#!/usr/bin/env python3
"""Generates the Nonin Serial Data Format #2 captures in firmware-fixtures/nonin/.

Each capture is built from explicit packets, and its expected results are written from
what the generator *put in* (the values it encoded, the corruption and garbage it
injected, and the framing rules stated in firmware-fixtures/README.md) -- never by running
the Swift decoder. The committed files are the evidence; this script documents how they
were made. Deterministic (fixed seeds).

Frame (5 bytes): 0x01, STATUS (bit 7 set, bit 0 SYNC on a packet's first frame), PLETH,
DATA (by frame position), CHK = sum of the first four bytes mod 256. 25 frames a packet,
75 frames a second (375 bytes/s at 9600 8N1).

Usage: scripts/gen-nonin-fixtures.py [output-dir]
"""
import json
import math
import os
import random
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "firmware-fixtures", "nonin")

FLAG_ORDER = ["sensor_off", "low_perfusion", "artifact", "searching", "low_signal", "sensor_fault",
              "body_movement", "cuff_fit", "irregular_pulse", "pulse_rate_range", "position",
              "device_clock_unreliable", "device_alarm"]

SNSD, ARTF, OOT, SNSA = 0x40, 0x20, 0x10, 0x08
GREEN, RED, YELLOW = 0x02, 0x04, 0x06
SYNC = 0x01
MISSING_HR, MISSING_SPO2 = 511, 127
BYTES_PER_SECOND = 375


def status_flags(status):
    names = set()
    if status & SNSD: names.add("sensor_off")
    if status & ARTF: names.add("artifact")
    if status & OOT: names.add("searching")
    if status & SNSA: names.add("sensor_fault")
    if status & 0x06 in (RED, YELLOW): names.add("low_perfusion")
    return names


def frame(status, pleth, data):
    b = [0x01, 0x80 | status, pleth & 0xFF, data & 0xFF]
    b.append(sum(b) & 0xFF)
    return b


def nine(v):
    return [(v >> 7) & 0x03, v & 0x7F]


class Packet:
    """One 25-frame packet. `bits` is OR-ed into every STATUS byte; `perfusion` is set in
    the frames of the pulse (frames 6-17, the oximeter reports it only during a pulse)."""

    def __init__(self, hr, spo2, bits=0, perfusion=GREEN, rng=None, phase=0.0, bits_frames=None):
        self.hr, self.spo2 = hr, spo2
        data = [0] * 25
        data[0], data[1] = nine(hr)
        data[2] = spo2
        data[3] = 0x2C                      # SREV: firmware revision (not emitted)
        data[5], data[6] = nine(int(phase * 3) % 512)   # timer (not emitted)
        data[7] = 0                         # STAT2 (not emitted)
        data[8] = data[9] = data[10] = spo2  # SpO2-D, SpO2 Fast, SpO2 B-B
        data[13], data[14] = nine(hr)       # E-HR
        data[15] = data[16] = spo2          # E-SpO2, E-SpO2-D
        data[19], data[20] = nine(hr)       # HR-D
        data[21], data[22] = nine(hr)       # E-HR-D
        self.frames = []
        self.statuses = []
        for i in range(25):
            st = bits if bits_frames is None or i in bits_frames else 0
            if 6 <= i <= 17:
                st |= perfusion
            if i == 0:
                st |= SYNC
            # Plethysmogram: a smooth pulse shape, kept inside 20..230 (never 0x01).
            pl = int(125 + 100 * math.sin((phase + i / 25.0) * 2 * math.pi))
            self.statuses.append(0x80 | st)
            self.frames.append(frame(st, pl, data[i]))

    def bytes(self):
        return [b for f in self.frames for b in f]

    def expected(self):
        names = set()
        for st in self.statuses:
            names |= status_flags(st)
        flags = [n for n in FLAG_ORDER if n in names]
        out = []
        if self.hr != MISSING_HR:
            out.append({"vital": "pulse_rate", "value": self.hr, "unit": "/min", "device_time": None, "flags": flags})
        if self.spo2 != MISSING_SPO2:
            if self.spo2 > 100:
                return rejected("malformedField", 125)
            out.append({"vital": "spo2", "value": self.spo2, "unit": "%", "device_time": None, "flags": flags})
        return {"samples": out}


def rejected(code, skipped=None):
    d = {"rejected": code}
    if skipped is not None:
        d["skipped"] = skipped
    return d


class Capture:
    def __init__(self, name, title, seed):
        self.name, self.title = name, title
        self.stream = []          # every byte
        self.frame_starts = set()  # offsets where the generator put a frame (valid or not)
        self.expected = []
        self.rng = random.Random(seed)
        self.phase = 0.0

    def packet(self, hr, spo2, **kw):
        p = Packet(hr, spo2, phase=self.phase, **kw)
        self.phase += 1.0 / 3.0 * (hr if hr < 400 else 60) / 60.0
        return p

    def put_frames(self, frames):
        for f in frames:
            self.frame_starts.add(len(self.stream))
            self.stream += f

    def good(self, hr, spo2, **kw):
        p = self.packet(hr, spo2, **kw)
        self.put_frames(p.frames)
        self.expected.append(p.expected())

    def raw(self, data):
        self.stream += data

    def garbage(self, n):
        # Never 0x01, so no garbage byte can start a frame.
        self.raw([self.rng.choice([b for b in range(256) if b != 0x01]) for _ in range(n)])

    def check(self):
        """No valid frame may start anywhere the generator did not put one, or the
        expected byte counts would be wrong."""
        s = self.stream
        for k in range(len(s) - 4):
            w = s[k:k + 5]
            valid = w[0] == 1 and w[1] & 0x80 and (w[0] + w[1] + w[2] + w[3]) & 0xFF == w[4]
            if valid and k not in self.frame_starts:
                raise SystemExit("%s: an unintended valid frame at byte %d; change the seed" % (self.name, k))

    def write(self, notes):
        self.check()
        k = getattr(self, "must_fail_checksum", None)
        if k is not None:
            w = self.stream[k:k + 5]
            assert w[0] == 1 and w[1] & 0x80 and (w[0] + w[1] + w[2] + w[3]) & 0xFF != w[4], "cut frame must fail its check byte"
        records = []
        pos = 0
        while pos < len(self.stream):
            n = self.rng.randint(1, 48)
            records.append((pos * 1000 // BYTES_PER_SECOND, self.stream[pos:pos + n]))
            pos += n
        with open(os.path.join(OUT, self.name + ".capture"), "w") as f:
            f.write("# %s\n" % self.title)
            for line in notes:
                f.write("# %s\n" % line)
            f.write("# format: <ms offset> <hex bytes>; see firmware-fixtures/README.md\n")
            f.write("# generated by scripts/gen-nonin-fixtures.py; expected results in %s.expected.jsonl\n" % self.name)
            pos = 0
            for ms, b in records:
                # Hex split at absolute multiples of 5 bytes, so aligned frames read as groups.
                groups, cur = [], ""
                for x in b:
                    if pos % 5 == 0 and cur:
                        groups.append(cur)
                        cur = ""
                    cur += "%02x" % x
                    pos += 1
                groups.append(cur)
                f.write("%d %s\n" % (ms, " ".join(groups)))
        with open(os.path.join(OUT, self.name + ".expected.jsonl"), "w") as f:
            for e in self.expected:
                f.write(json.dumps(e, separators=(",", ":")) + "\n")


def corrupt_frame(frames, i, byte, value):
    frames = [list(f) for f in frames]
    frames[i][byte] = value
    return frames


def normal():
    c = Capture("normal", "Adult at rest: 12 packets (4 s), green perfusion during each pulse", 1)
    rng = random.Random(11)
    for _ in range(12):
        c.good(rng.randint(68, 76), rng.randint(96, 98))
    c.write(["every packet yields pulse rate then SpO2, no flags, no device time"])


def sensor_off():
    c = Capture("sensor-off", "Sensor disconnect and sensor alarm", 2)
    c.good(72, 97)
    c.good(73, 97)
    # SNSD on the last 5 frames only, values still present: flagged sensor_off.
    c.good(73, 97, bits=SNSD, bits_frames=set(range(20, 25)), perfusion=0)
    # Disconnected: SNSD in every frame, no perfusion, values missing -> no samples.
    for _ in range(4):
        c.good(MISSING_HR, MISSING_SPO2, bits=SNSD, perfusion=0)
    # SNSA (sensor alarm, unusable data) with values: sensor_fault.
    c.good(74, 96, bits=SNSA)
    c.good(MISSING_HR, MISSING_SPO2, bits=SNSA | OOT, perfusion=0)
    c.good(75, 97)
    c.write(["SNSD (bit 6) -> sensor_off; SNSA (bit 3) -> sensor_fault; 511/127 -> no samples"])


def artifact():
    c = Capture("artifact", "Motion artifact and out-of-track", 3)
    c.good(80, 97)
    c.good(82, 96, bits=ARTF, bits_frames={7, 8, 9})
    c.good(85, 96, bits=ARTF)
    c.good(88, 95, bits=OOT, bits_frames={0, 1, 2, 3})
    c.good(MISSING_HR, MISSING_SPO2, bits=OOT, perfusion=0)
    c.good(90, 95, bits=ARTF | OOT, perfusion=RED)
    c.good(84, 96)
    c.write(["ARTF (bit 5) -> artifact; OOT (bit 4) -> searching; flags are the union over the packet"])


def low_perfusion():
    c = Capture("low-perfusion", "Perfusion indications: green, yellow, red, none", 4)
    c.good(70, 98, perfusion=GREEN)
    c.good(70, 97, perfusion=YELLOW)
    c.good(69, 96, perfusion=RED)
    c.good(69, 96, perfusion=0)
    c.good(68, 95, perfusion=RED, bits=ARTF, bits_frames={12})
    c.good(68, 97, perfusion=GREEN)
    c.write(["bits 2-1: 01 green (good), 11 yellow (low/marginal) and 10 red (low/none) -> low_perfusion, 00 none"])


def missing_values():
    c = Capture("missing-values", "Missing values, 9-bit pulse rates and boundaries", 5)
    c.good(MISSING_HR, 97)
    c.good(72, MISSING_SPO2)
    c.good(MISSING_HR, MISSING_SPO2)
    c.good(130, 94)
    c.good(255, 90)
    c.good(321, 85)
    c.good(18, 100)
    c.good(40, 0)
    c.good(75, 110)   # SpO2 outside 0-100 (and not 127): the packet is rejected as malformed
    c.good(75, 97)
    c.write(["HR 511 / SpO2 127 mean no value; HR uses 9 bits (MSB frame bits 1-0); SpO2 110 is refused"])


def checksum():
    c = Capture("checksum", "Frames with bad check bytes: each rejects its packet whole", 6)
    c.good(72, 97)
    # A flipped PLETH bit in frame 10: start byte and STATUS fine, checksum wrong.
    p = c.packet(72, 97)
    c.put_frames(corrupt_frame(p.frames, 10, 2, p.frames[10][2] ^ 0x10))
    c.expected.append(rejected("checksum", 125))
    c.good(73, 97)
    # A bad check byte on the SYNC frame.
    p = c.packet(73, 96)
    c.put_frames(corrupt_frame(p.frames, 0, 4, p.frames[0][4] ^ 0x01))
    c.expected.append(rejected("checksum", 125))
    c.good(73, 97)
    # A bad check byte on the 25th frame.
    p = c.packet(74, 97)
    c.put_frames(corrupt_frame(p.frames, 24, 4, (p.frames[24][4] + 7) & 0xFF))
    c.expected.append(rejected("checksum", 125))
    c.good(74, 97)
    # Two bad packets in a row: the second's (valid) SYNC frame ends the first's run, so
    # each bad packet is counted on its own.
    p = c.packet(75, 97)
    c.put_frames(corrupt_frame(p.frames, 3, 3, p.frames[3][3] ^ 0x04))
    c.expected.append(rejected("checksum", 125))
    p = c.packet(75, 97)
    c.put_frames(corrupt_frame(p.frames, 20, 2, p.frames[20][2] ^ 0x40))
    c.expected.append(rejected("checksum", 125))
    c.good(75, 98)
    # STATUS bit 7 cleared (check byte recomputed): not a frame at all -> garbage.
    p = c.packet(76, 98)
    fr = [list(f) for f in p.frames]
    fr[12][1] &= 0x7F
    fr[12][4] = sum(fr[12][:4]) & 0xFF
    c.put_frames(fr)
    c.expected.append(rejected("garbage", 125))
    c.good(76, 98)
    c.write(["a packet with any bad frame yields no values; dropped runs are counted in 'skipped'"])


def garbage():
    c = Capture("garbage", "Noise between and inside packets; a stream that starts mid-packet", 7)
    # The capture starts with the last 13 frames of a packet whose start was missed.
    p = c.packet(70, 97)
    c.put_frames(p.frames[12:])
    c.expected.append(rejected("truncated", 65))
    c.good(70, 97)
    c.garbage(17)
    c.expected.append(rejected("garbage", 17))
    c.good(71, 97)
    c.raw([0] * 40)                     # NUL run (line idle low)
    c.expected.append(rejected("garbage", 40))
    c.good(71, 98)
    # Garbage inside a packet after frame 10: the packet is lost as a whole.
    p = c.packet(72, 98)
    c.put_frames(p.frames[:10])
    c.garbage(9)
    c.put_frames(p.frames[10:])
    c.expected.append(rejected("garbage", 50 + 9 + 75))
    c.good(72, 98)
    c.raw([0xFF] * 23)                  # wrong-baud noise / line idle high
    c.expected.append(rejected("garbage", 23))
    c.good(73, 97)
    c.garbage(3)                        # too short to be a frame
    c.expected.append(rejected("garbage", 3))
    c.good(73, 97)
    c.garbage(11)
    c.expected.append(rejected("garbage", 11))
    c.write(["garbage bytes are never 0x01; the trailing garbage is reported at finish()"])


def truncated():
    c = Capture("truncated", "Packets cut short by power-cycles and by the end of the stream", 8)
    c.good(72, 97)
    # Cut at a frame boundary after 10 frames, then a new packet: truncated.
    p = c.packet(72, 97)
    c.put_frames(p.frames[:10])
    c.expected.append(rejected("truncated", 50))
    c.good(73, 97)
    # Cut after only the SYNC frame.
    p = c.packet(73, 97)
    c.put_frames(p.frames[:1])
    c.expected.append(rejected("truncated", 5))
    c.good(74, 96)
    # Cut in the middle of frame 8 (3 of its 5 bytes): the cut frame is read with the next
    # packet's first bytes and fails its check byte, so the run is reported as checksum.
    p = c.packet(74, 96)
    c.put_frames(p.frames[:7])
    c.frame_starts.add(len(c.stream))
    c.raw(p.frames[7][:3])
    c.must_fail_checksum = len(c.stream) - 3
    c.expected.append(rejected("checksum", 38))
    c.good(75, 96)
    # The stream ends after 7 frames and 2 bytes of a packet.
    p = c.packet(75, 97)
    c.put_frames(p.frames[:7])
    c.raw(p.frames[7][:2])
    c.expected.append(rejected("truncated", 37))
    c.write(["a frame-aligned cut is truncated; a cut inside a frame cannot be told from corruption"])


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for make in (normal, sensor_off, artifact, low_perfusion, missing_values, checksum, garbage, truncated):
        make()
