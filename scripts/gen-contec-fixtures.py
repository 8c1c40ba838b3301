#!/usr/bin/env python3
"""Generates the Contec CMS50D+ legacy live-protocol captures in firmware-fixtures/contec/.

Each capture is built from explicit frames and injected faults, and its expected results
are written from what the generator *put in* (the values it encoded, the bytes it dropped
on purpose, and the framing and emission rules stated in firmware-fixtures/README.md) --
never by running the Swift decoder. Deterministic (fixed seeds).

Frame (5 bytes, 60 frames/s at 19200 8O1):
  byte 1: 0x80 | beep 0x40 | SpO2 dropping 0x20 | finger out 0x10 | signal strength 0-15
  byte 2: pleth 0-127
  byte 3: pulse-rate bit 7 (as 0x40) | searching 0x20 | probe error 0x10 | bar graph 0-15
  byte 4: pulse rate bits 6-0
  byte 5: SpO2 0-127 (0 / 127 = no value)
Emission: one result per 60 consecutive well-formed frames, values of the 60th, flags the
union of the 60; any rejected byte restarts the count. Rejections between two well-formed frames merge into one, code by precedence
malformedField > garbage > truncated.

Usage: scripts/gen-contec-fixtures.py [output-dir]
"""
import json
import math
import os
import random
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "firmware-fixtures", "contec")

FRAMES_PER_EMISSION = 60
BYTES_PER_SECOND = 300
LOW_SIGNAL_BELOW = 3
RANK = {"truncated": 1, "garbage": 2, "malformedField": 3}


class F:
    """One frame as the generator means it."""

    def __init__(self, pr, spo2, strength=6, finger=False, probe=False, search=False,
                 beep=False, drop=False, pleth=64, bar=5):
        self.pr, self.spo2, self.strength = pr, spo2, strength
        self.finger, self.probe, self.search = finger, probe, search
        b1 = 0x80 | (strength & 0x0F) | (0x10 if finger else 0) | (0x20 if drop else 0) | (0x40 if beep else 0)
        b3 = (bar & 0x0F) | (0x10 if probe else 0) | (0x20 if search else 0) | ((pr & 0x80) >> 1)
        self.bytes = [b1, pleth & 0x7F, b3, pr & 0x7F, spo2 & 0x7F]

    def flags(self):
        f = set()
        if self.finger or self.probe:
            f.add("sensor_off")
        if self.search:
            f.add("searching")
        if self.strength < LOW_SIGNAL_BELOW:
            f.add("low_signal")
        return f

    def malformed(self):
        return 100 < self.spo2 < 127

    def samples(self, flags):
        out = []
        fl = sorted(flags)
        if self.pr not in (0, 255):
            out.append({"vital": "pulse_rate", "value": self.pr, "unit": "/min", "device_time": None, "flags": fl})
        if self.spo2 not in (0, 127):
            out.append({"vital": "spo2", "value": self.spo2, "unit": "%", "device_time": None, "flags": fl})
        return {"samples": out}


class Capture:
    def __init__(self, name, title, seed):
        self.name, self.title = name, title
        self.stream = []
        self.frame_starts = set()   # where the generator put a complete frame (good or malformed)
        self.expected = []
        self.rng = random.Random(seed)
        self.t = 0                  # frames laid, for the pleth phase
        self.window = 0
        self.window_flags = set()
        self.run = 0
        self.run_code = None
        self.open_partial = False   # a cut frame awaits a sync byte

    # -- bookkeeping of the rules in the README --
    def _drop(self, n, code):
        self.window, self.window_flags = 0, set()
        self.run += n
        if self.run_code is None or RANK[code] > RANK[self.run_code]:
            self.run_code = code

    def _flush(self):
        if self.run:
            self.expected.append({"rejected": self.run_code, "skipped": self.run})
        self.run, self.run_code = 0, None

    def _pleth(self):
        # A pulse shape at about 72/min, 0..127, and a beep at its peak.
        ph = (self.t % 50) / 50.0
        return int(60 + 55 * math.sin(ph * 2 * math.pi)), (self.t % 50) == 12

    def frame(self, pr, spo2, **kw):
        pl, beep = self._pleth()
        kw.setdefault("pleth", pl)
        kw.setdefault("beep", beep)
        kw.setdefault("bar", int(kw["pleth"]) // 9)
        f = F(pr, spo2, **kw)
        self.t += 1
        self.open_partial = False
        self.frame_starts.add(len(self.stream))
        self.stream += f.bytes
        if f.malformed():
            self._drop(5, "malformedField")
            return f
        self._flush()
        self.window += 1
        self.window_flags |= f.flags()
        if self.window == FRAMES_PER_EMISSION:
            self.expected.append(f.samples(self.window_flags))
            self.window, self.window_flags = 0, set()
        return f

    def second(self, pr, spo2, n=FRAMES_PER_EMISSION, special=None, **kw):
        """n frames of the same values; special maps frame index -> overriding kwargs."""
        for i in range(n):
            args = dict(kw)
            p, s = pr, spo2
            if special and i in special:
                o = dict(special[i])
                p = o.pop("pr", p)
                s = o.pop("spo2", s)
                args.update(o)
            self.frame(p, s, **args)

    def cut(self, pr, spo2, k, **kw):
        """The first k (1-4) bytes of a frame; the next thing must start with a sync byte."""
        assert 1 <= k <= 4
        pl, _ = self._pleth()
        f = F(pr, spo2, pleth=pl, **kw)
        self.stream += f.bytes[:k]
        self._drop(k, "truncated")
        self.open_partial = True

    def noise(self, data, code):
        """Injected bytes and what they are: 'garbage' (must start with a bit-7-clear byte
        outside a frame) or 'truncated' (only sync bytes, each cut by the next)."""
        assert not self.open_partial or data[0] & 0x80, "clear bytes would extend a cut frame"
        if code == "garbage":
            assert data[0] & 0x80 == 0
        else:
            assert all(b & 0x80 for b in data)
        self.stream += data
        self._drop(len(data), code)
        # Trailing sync bytes (or clear bytes after one) leave a frame open.
        tail = 0
        for b in reversed(data):
            tail += 1
            if b & 0x80:
                break
        self.open_partial = any(b & 0x80 for b in data)
        if self.open_partial:
            assert tail <= 4

    def random_noise(self, n):
        """Random bytes starting with a clear byte, in which no sync byte is followed by
        four clear bytes (so no frame hides in it) and the last sync byte, if any, has at
        most three clear bytes after it."""
        while True:
            d = [self.rng.randrange(0, 128)] + [self.rng.randrange(0, 256) for _ in range(n - 1)]
            ok = True
            for k, b in enumerate(d):
                if b & 0x80 and all(x & 0x80 == 0 for x in d[k + 1:k + 5]) and len(d[k + 1:k + 5]) == 4:
                    ok = False
            last = max([k for k, b in enumerate(d) if b & 0x80], default=None)
            if last is not None and len(d) - 1 - last > 3:
                ok = False
            if ok:
                return d

    def check(self):
        s = self.stream
        for k in range(len(s) - 4):
            if s[k] & 0x80 and all(b & 0x80 == 0 for b in s[k + 1:k + 5]) and k not in self.frame_starts:
                raise SystemExit("%s: an unintended frame at byte %d" % (self.name, k))

    def write(self, notes):
        # finish(): a frame still open is truncated; the pending run is reported; a partial
        # second is dropped without a result.
        if self.open_partial:
            pass  # its bytes were already counted as truncated when laid down
        self._flush()
        self.check()
        assert self.expected, self.name
        records, pos = [], 0
        while pos < len(self.stream):
            n = self.rng.randint(1, 48)
            records.append((pos * 1000 // BYTES_PER_SECOND, self.stream[pos:pos + n]))
            pos += n
        with open(os.path.join(OUT, self.name + ".capture"), "w") as f:
            f.write("# %s\n" % self.title)
            for line in notes:
                f.write("# %s\n" % line)
            f.write("# format: <ms offset> <hex bytes>; see firmware-fixtures/README.md\n")
            f.write("# generated by scripts/gen-contec-fixtures.py; expected results in %s.expected.jsonl\n" % self.name)
            for ms, b in records:
                # A space before every sync byte, so frames read as groups.
                groups, cur = [], ""
                for x in b:
                    if x & 0x80 and cur:
                        groups.append(cur)
                        cur = ""
                    cur += "%02x" % x
                groups.append(cur)
                f.write("%d %s\n" % (ms, " ".join(groups)))
        with open(os.path.join(OUT, self.name + ".expected.jsonl"), "w") as f:
            for e in self.expected:
                f.write(json.dumps(e, separators=(",", ":")) + "\n")


def normal():
    c = Capture("normal", "Adult at rest: 6 s of frames at 60/s", 1)
    rng = random.Random(11)
    for _ in range(6):
        c.second(rng.randint(68, 76), rng.randint(96, 98), strength=rng.randint(5, 8))
    c.write(["one result per 60 frames: pulse rate then SpO2 of the 60th frame, no flags, no device time"])


def finger_out():
    c = Capture("finger-out", "Finger out (byte 1 bit 4) and probe error (byte 3 bit 4)", 2)
    c.second(72, 97)
    # Finger withdrawn in the last third: the device still shows the held values.
    c.second(72, 97, special={i: {"finger": True, "strength": 0} for i in range(40, 60)})
    c.second(255, 127, finger=True, strength=0)          # no values: {"samples":[]}
    c.second(0, 0, probe=True, strength=0)                # probe error, values 0: none
    c.second(74, 96, special={i: {"probe": True, "pr": 0, "spo2": 0} for i in range(10)})
    c.second(74, 97)
    c.write(["finger out and probe error -> sensor_off (flags are the union over the second)",
             "pulse rate 0/255 and SpO2 0/127 -> no sample"])


def searching():
    c = Capture("searching", "Pulse search (byte 3 bit 5)", 3)
    c.second(70, 98)
    c.second(255, 127, search=True)
    c.second(78, 95, special={i: {"search": True, "pr": 255, "spo2": 127} for i in range(31)})
    c.second(77, 96, special={59: {"search": True}})
    c.second(76, 96)
    c.write(["searching on any frame of a second -> searching on that second's samples"])


def low_signal():
    c = Capture("low-signal", "Signal strength (byte 1 bits 3-0) below 3 -> low_signal", 4)
    c.second(70, 97, strength=6)
    c.second(70, 97, strength=2)
    c.second(71, 96, strength=3)
    c.second(71, 96, strength=8, special={17: {"strength": 1}})
    c.second(72, 96, strength=0)
    c.second(72, 97, strength=15)
    c.write(["strength 0-2 on any frame of a second flags its samples low_signal; 3-15 do not"])


def missing_values():
    c = Capture("missing-values", "No-value markers, 8-bit pulse rates and an out-of-range SpO2", 5)
    for pr, spo2 in [(255, 97), (0, 96), (72, 127), (73, 0), (255, 127), (0, 0),
                     (127, 95), (128, 94), (200, 90), (254, 88), (30, 100), (31, 1)]:
        c.second(pr, spo2)
    # SpO2 110 and 126 (neither a marker nor 0-100): each frame is rejected alone and
    # restarts the 60-frame count.
    c.second(75, 97, n=20)
    c.frame(75, 110)
    c.second(76, 97)
    c.frame(75, 126)
    c.second(77, 96)
    c.write(["pulse rate bit 7 in byte 3 bit 6; 0/255 and 0/127 are no value; SpO2 101-126 rejects the frame"])


def garbage():
    c = Capture("garbage", "Noise between and inside frames; a stream that starts mid-frame", 6)
    c.noise([0x3F, 0x48, 0x61], "garbage")               # the tail of a frame whose start was missed
    c.second(70, 97)
    c.noise([0] * 40, "garbage")                          # NUL run (line idle low)
    c.second(70, 97, n=30)                                # half a second, voided by the next noise
    c.noise([0xFF] * 12, "truncated")                     # sync bytes only: each cut by the next
    c.second(71, 97)
    c.noise(c.random_noise(17), "garbage")
    c.second(71, 96)
    # A sync byte inside a frame: 3 bytes, then 0x9A starts a frame that 1 clear byte
    # follows and the next frame's sync cuts: one truncated run of 5.
    c.cut(72, 98, 3)
    c.noise([0x9A], "truncated")
    c.stream.append(0x11)
    c._drop(1, "truncated")
    c.second(72, 98)
    c.noise(c.random_noise(23), "garbage")
    c.noise([0xFF, 0xFF], "truncated")                    # merges with the previous run
    c.second(73, 98, n=59)
    c.noise([0x05, 0x7F, 0x00, 0x41], "garbage")          # 59 frames then noise: no result
    c.second(73, 97)
    c.noise([0x05, 0x7F, 0x00, 0x41], "garbage")          # trailing noise, reported at finish()
    c.write(["bit-7-clear bytes outside a frame -> garbage; sync bytes cut short -> truncated;",
             "drops between two good frames are one rejection and restart the 60-frame count"])


def truncated():
    c = Capture("truncated", "Frames cut short by power-cycles and by the end of the stream", 7)
    c.second(72, 97)
    c.cut(72, 97, 1)
    c.second(72, 96)
    c.cut(72, 96, 2)
    c.second(73, 96, n=15)
    c.cut(73, 96, 3)
    c.second(73, 97)
    c.cut(73, 97, 4)
    c.second(74, 97)
    c.second(74, 97, n=25)
    c.cut(74, 97, 3)                                      # the stream ends inside a frame
    c.write(["a frame cut after 1-4 bytes by the next sync byte, or by the end of the stream, is truncated",
             "a partial second at the end gives no result"])


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for make in (normal, finger_out, searching, low_signal, missing_values, garbage, truncated):
        make()
