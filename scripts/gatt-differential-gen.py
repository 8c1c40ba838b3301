"""Valid GATT health characteristic payloads and a pcap that carries them (stdlib only).

Used by scripts/gatt-differential. Every generator returns the value bytes of one
notification or indication, valid by the GATT Specification Supplement (GSS v8) and the
profile specifications named in each function: reserved bits zero, enumerations inside
their defined ranges, dates valid (or the "unknown" zeros the Date Time characteristic
allows). Flag combinations cycle through every combination as the case index grows, so a
run of N >= 2^k cases covers all k flag bits of a characteristic.
"""

import random
import struct

# --- IEEE 11073-20601 SFLOAT (16 bit: 4-bit exponent, 12-bit mantissa) and FLOAT (32 bit) ---

SFLOAT_SPECIAL = {"NaN": 0x07FF, "NRes": 0x0800, "+INF": 0x07FE, "-INF": 0x0802, "Reserved": 0x0801}
FLOAT_SPECIAL = {"NaN": 0x007FFFFF, "NRes": 0x00800000, "+INF": 0x007FFFFE, "-INF": 0x00800002,
                 "Reserved": 0x00800001}


def sfloat(mantissa, exponent):
    assert -2048 <= mantissa <= 2047 and -8 <= exponent <= 7
    return ((exponent & 0xF) << 12) | (mantissa & 0xFFF)


def sfloat_value(raw):
    """(value or None, special name or None) of a raw SFLOAT (IEEE 11073-20601 §F.8)."""
    m = raw & 0xFFF
    e = raw >> 12
    if e >= 8:
        e -= 16
    for name, code in SFLOAT_SPECIAL.items():
        if raw == code:
            return None, name
    if m >= 0x800:
        m -= 0x1000
    return m * (10.0 ** e), None


def float32(mantissa, exponent):
    return ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)


def float32_value(raw):
    for name, code in FLOAT_SPECIAL.items():
        if raw == code:
            return None, name
    m = raw & 0xFFFFFF
    e = raw >> 24
    if e >= 128:
        e -= 256
    if m >= 0x800000:
        m -= 0x1000000
    return m * (10.0 ** e), None


def rand_sfloat(rng, lo, hi, decimals=(0, 1), special_rate=0.04):
    """A raw SFLOAT: mostly a plausible value in [lo, hi], sometimes any finite value,
    sometimes a special value."""
    r = rng.random()
    if r < special_rate:
        return rng.choice(list(SFLOAT_SPECIAL.values()))
    if r < special_rate + 0.15:
        m = rng.randint(-2045, 2045)  # 0x7FE..0x802 are only special with exponent 0
        e = rng.randint(-8, 7)
        if e == 0 and m in (2045, -2045):
            m = 2044
        return sfloat(m, e)
    d = rng.choice(decimals)
    m = rng.randint(int(lo * 10 ** d), int(hi * 10 ** d))
    while not -2045 <= m <= 2045:
        m //= 10
        d -= 1
    return sfloat(m, -d)


def rand_float32(rng, lo, hi, special_rate=0.04):
    r = rng.random()
    if r < special_rate:
        return rng.choice(list(FLOAT_SPECIAL.values()))
    if r < special_rate + 0.15:
        m = rng.randint(-(2 ** 23) + 3, 2 ** 23 - 3)
        return float32(m, rng.randint(-10, 10))
    d = rng.choice((1, 2, 3))
    return float32(rng.randint(int(lo * 10 ** d), int(hi * 10 ** d)), -d)


DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def rand_datetime(rng, unknown_rate=0.03):
    """(bytes, (y, mo, d, h, mi, s)) of a Date Time (GSS §3.70): year 1582–9999 or 0
    (unknown), month 1–12 or 0, day 1–31 or 0."""
    if rng.random() < unknown_rate:
        y, mo, d = rng.choice([(0, rng.randint(1, 12), rng.randint(1, 28)), (rng.randint(1582, 9999), 0, 0),
                               (2026, rng.randint(1, 12), 0), (0, 0, 0)])
    else:
        y = rng.choice([rng.randint(2015, 2030), rng.randint(1582, 9999)])
        mo = rng.randint(1, 12)
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        d = rng.randint(1, DAYS[mo - 1] + (1 if mo == 2 and leap else 0))
    h, mi, s = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    return struct.pack("<HBBBBB", y, mo, d, h, mi, s), (y, mo, d, h, mi, s)


def u16(v):
    return struct.pack("<H", v)


def u24(v):
    return struct.pack("<I", v)[:3]


# --- Characteristics -------------------------------------------------------------------

def gen_2a35(rng, i, intermediate=False):
    """Blood Pressure Measurement (BLS 1.1 §3.1, GSS §3.31) / Intermediate Cuff Pressure
    (§3.2: diastolic and MAP unused, NaN)."""
    flags = i % 32
    kpa = flags & 1
    out = bytearray([flags])
    if kpa:
        sys_, dia, mean = (rand_sfloat(rng, 8, 33, (1, 2)), rand_sfloat(rng, 5, 20, (1, 2)),
                           rand_sfloat(rng, 6, 25, (1, 2)))
    else:
        sys_, dia, mean = rand_sfloat(rng, 60, 250), rand_sfloat(rng, 30, 150), rand_sfloat(rng, 40, 180)
    if intermediate:
        dia = mean = SFLOAT_SPECIAL["NaN"]
    out += u16(sys_) + u16(dia) + u16(mean)
    if flags & 2:
        out += rand_datetime(rng)[0]
    if flags & 4:
        out += u16(rand_sfloat(rng, 30, 220))
    if flags & 8:
        out.append(rng.choice([0xFF, rng.randint(0, 0xFE)]))
    if flags & 16:
        # Bits 0–5 defined; pulse-rate range (bits 3–4) value 3 is reserved.
        st = rng.randint(0, 0x3F)
        if (st >> 3) & 3 == 3:
            st &= ~0x10
        out += u16(st)
    return bytes(out)


def gen_2a36(rng, i):
    return gen_2a35(rng, i, intermediate=True)


def gen_2a1c(rng, i):
    """Temperature Measurement (HTS 1.0 §3.1, GSS §3.216) / Intermediate Temperature."""
    flags = i % 8
    out = bytearray([flags])
    out += struct.pack("<I", rand_float32(rng, 95, 106) if flags & 1 else rand_float32(rng, 35, 41))
    if flags & 2:
        out += rand_datetime(rng)[0]
    if flags & 4:
        out.append(rng.randint(1, 9))
    return bytes(out)


gen_2a1e = gen_2a1c


def gen_2a5e(rng, i):
    """PLX Spot-Check Measurement (PLXS 1.0 §3.1.1, GSS §3.172)."""
    flags = i % 32
    out = bytearray([flags])
    out += u16(rand_sfloat(rng, 70, 100)) + u16(rand_sfloat(rng, 30, 220))
    if flags & 1:
        out += rand_datetime(rng)[0]
    if flags & 2:
        out += u16(rng.randint(0, 0x7FF) << 5)  # bits 0–4 reserved
    if flags & 4:
        out += u24(rng.randint(0, 0xFFFF))  # bits 16–23 reserved
    if flags & 8:
        out += u16(rand_sfloat(rng, 0, 20, (1, 2)))
    return bytes(out)


def gen_2a5f(rng, i):
    """PLX Continuous Measurement (PLXS 1.0 §3.1.2, GSS §3.171)."""
    flags = i % 32
    out = bytearray([flags])
    out += u16(rand_sfloat(rng, 70, 100)) + u16(rand_sfloat(rng, 30, 220))
    if flags & 1:
        out += u16(rand_sfloat(rng, 70, 100)) + u16(rand_sfloat(rng, 30, 220))
    if flags & 2:
        out += u16(rand_sfloat(rng, 70, 100)) + u16(rand_sfloat(rng, 30, 220))
    if flags & 4:
        out += u16(rng.randint(0, 0x7FF) << 5)
    if flags & 8:
        out += u24(rng.randint(0, 0xFFFF))
    if flags & 16:
        out += u16(rand_sfloat(rng, 0, 20, (1, 2)))
    return bytes(out)


def gen_2a9d(rng, i):
    """Weight Measurement (WSS 1.0 §3.2, GSS §3.250): weight uint16 in 0.005 kg or 0.01 lb;
    0xFFFF is "Measurement Unsuccessful"."""
    flags = i % 16
    out = bytearray([flags])
    w = 0xFFFF if rng.random() < 0.03 else rng.choice([rng.randint(0, 0xFFFE), rng.randint(4000, 40000)])
    out += u16(w)
    if flags & 2:
        out += rand_datetime(rng)[0]
    if flags & 4:
        out.append(rng.choice([0xFF, rng.randint(0, 0xFE)]))
    if flags & 8:
        out += u16(rng.randint(100, 600)) + u16(rng.randint(0, 0xFFFF))
    return bytes(out)


def gen_2a9c(rng, i):
    """Body Composition Measurement (BCS 1.0 §3.2, GSS §3.34), single-packet measurements
    only (bit 12 clear): multi-packet measurements need reassembly Wireshark does not do."""
    flags = (i * 2731) % 4096  # odd stride: every combination once per 4096 cases, spread below that
    out = bytearray(u16(flags))
    out += u16(0xFFFF if rng.random() < 0.03 else rng.randint(0, 1000))  # body fat, 0.1 %
    if flags & 0x002:
        out += rand_datetime(rng)[0]
    if flags & 0x004:
        out.append(rng.choice([0xFF, rng.randint(0, 0xFE)]))
    for bit in (0x008, 0x010, 0x020, 0x040, 0x080, 0x100, 0x200):
        if flags & bit:
            out += u16(rng.randint(0, 0xFFFF))
    if flags & 0x400:
        out += u16(rng.choice([rng.randint(0, 0xFFFF), rng.randint(4000, 40000)]))
    if flags & 0x800:
        out += u16(rng.randint(0, 0xFFFF))
    return bytes(out)


def gen_2a18(rng, i, seq=None):
    """Glucose Measurement (GLS 1.0 §3.106 of GSS): sequence number, base time, time offset
    (minutes), concentration (kg/L or mol/L), type/sample location, sensor status."""
    flags = i % 32
    out = bytearray([flags])
    out += u16(i % 65536 if seq is None else seq)
    out += rand_datetime(rng)[0]
    if flags & 1:
        out += struct.pack("<h", rng.choice([rng.randint(-32767, 32767), rng.randint(-120, 120)]))
    if flags & 2:
        if flags & 4:  # mol/L: 2–30 mmol/L
            out += u16(sfloat_mol(rng))
        else:  # kg/L: 20–600 mg/dL = 2e-4–6e-3 kg/L
            out += u16(sfloat_kgl(rng))
        out.append(rng.choice(list(range(1, 11))) | (rng.choice([1, 2, 3, 4, 15]) << 4))
    if flags & 8:
        out += u16(rng.randint(0, 0xFFF))
    return bytes(out)


def sfloat_mol(rng):
    r = rng.random()
    if r < 0.04:
        return rng.choice(list(SFLOAT_SPECIAL.values()))
    if r < 0.15:
        return sfloat(rng.randint(-2045, 2045), rng.randint(-8, 7)) if rng.random() < 0.5 else sfloat(rng.randint(0, 2045), -5)
    return sfloat(rng.randint(20, 300), -4)  # 2.0–30.0 mmol/L = x e-4 mol/L


def sfloat_kgl(rng):
    r = rng.random()
    if r < 0.04:
        return rng.choice(list(SFLOAT_SPECIAL.values()))
    if r < 0.15:
        return sfloat(rng.randint(-2045, 2045), rng.randint(-8, 7))
    return sfloat(rng.randint(20, 600), -5)  # mg/dL e-5 = kg/L


def gen_2a34(rng, i):
    """Glucose Measurement Context (GLS 1.0, GSS §3.105)."""
    flags = i % 256
    out = bytearray([flags])
    out += u16(i % 65536)
    if flags & 0x80:
        out.append(0)  # Extended Flags: all bits reserved
    if flags & 0x01:
        out.append(rng.randint(1, 7))
        out += u16(rand_sfloat(rng, 0, 200, (0,)) if rng.random() < 0.1 else sfloat(rng.randint(0, 200), -3))
    if flags & 0x02:
        out.append(rng.randint(1, 5))
    if flags & 0x04:
        out.append(rng.choice([1, 2, 3, 15]) | (rng.choice([1, 2, 3, 4, 5, 15]) << 4))
    if flags & 0x08:
        out += u16(rng.randint(0, 0xFFFF)) + bytes([rng.randint(0, 100)])
    if flags & 0x10:
        out.append(rng.randint(1, 5))
        out += u16(sfloat(rng.randint(0, 2000), -6))
    if flags & 0x40:
        out += u16(rand_sfloat(rng, 4, 14, (1,)))
    return bytes(out)


def crc16_mcrf4xx(data):
    """CGMS 1.0.1 §2.7: E2E-CRC, CRC-CCITT polynomial 0x1021 processed LSB first (0x8408),
    seed 0xFFFF."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def gen_2aa7(rng, i):
    """CGM Measurement (CGMS 1.0.1 §3.2, org.bluetooth.characteristic.cgm_measurement): one
    to three records, each Size, Flags, Glucose (SFLOAT mg/dL), Time Offset (minutes), the
    Sensor Status Annunciation octets present, Trend, Quality, optional E2E-CRC. Flags bit 0
    trend present, bit 1 quality present, bit 5 warning octet, bit 6 cal/temp octet, bit 7
    status octet. The annunciation is one field, bits 0–7 Status, 8–15 Cal/Temp, 16–23
    Warning, sent least significant octet first with only the present octets: so Status,
    Cal/Temp, Warning."""
    with_crc = (i // 32) % 2 == 1
    n = 1 + (i // 64) % 3
    out = bytearray()
    for k in range(n):
        combo = (i + k) % 32
        flags = (combo & 3) | ((combo >> 2) << 5)
        rec = bytearray([0, flags])
        rec += u16(rand_sfloat(rng, 40, 400, (0,)))
        rec += u16(rng.randint(0, 0xFFFF))
        if flags & 0x80:
            rec.append(rng.randint(0, 0x3F))
        if flags & 0x40:
            rec.append(rng.randint(0, 0x3F))
        if flags & 0x20:
            rec.append(rng.randint(0, 0xFF))
        if flags & 0x01:
            rec += u16(rand_sfloat(rng, -5, 5, (1,)))
        if flags & 0x02:
            rec += u16(rand_sfloat(rng, 0, 100, (0,)))
        rec[0] = len(rec) + (2 if with_crc else 0)
        if with_crc:
            rec += u16(crc16_mcrf4xx(rec))
        out += rec
    return bytes(out)


def gen_2a37(rng, i):
    """Heart Rate Measurement (HRS 1.0 §3.1, GSS §3.113)."""
    flags = i % 32
    out = bytearray([flags])
    hr = rng.choice([rng.randint(25, 230), rng.randint(0, 255)])
    out += u16(rng.choice([hr, rng.randint(0, 0xFFFF)])) if flags & 1 else bytes([hr])
    if flags & 8:
        out += u16(rng.randint(0, 0xFFFF))
    if flags & 16:
        for _ in range(rng.randint(1, 4)):
            out += u16(rng.randint(200, 2000))
    return bytes(out)


def gen_2a19(rng, i):
    """Battery Level (BAS 1.0 §3.1): uint8 percent, 0–100."""
    return bytes([i % 101 if i < 101 else rng.randint(0, 100)])


def gen_2a2b(rng, i):
    """Current Time (CTS 1.1 §3.1, GSS §3.62): Exact Time 256 (Day Date Time + Fractions256)
    and Adjust Reason (bits 0–3)."""
    dt, (y, mo, d, *_rest) = rand_datetime(rng)
    dow = 0 if rng.random() < 0.2 else rng.randint(1, 7)
    return dt + bytes([dow, rng.randint(0, 255), rng.randint(0, 15)])


# Characteristic → (service UUID, indicate?, generator).
CHARACTERISTICS = {
    0x2A35: (0x1810, True, gen_2a35),
    0x2A36: (0x1810, False, gen_2a36),
    0x2A1C: (0x1809, True, gen_2a1c),
    0x2A1E: (0x1809, False, gen_2a1e),
    0x2A5E: (0x1822, True, gen_2a5e),
    0x2A5F: (0x1822, False, gen_2a5f),
    0x2A9D: (0x181D, True, gen_2a9d),
    0x2A9C: (0x181B, True, gen_2a9c),
    0x2A18: (0x1808, False, gen_2a18),
    0x2A34: (0x1808, False, gen_2a34),
    0x2AA7: (0x181F, False, gen_2aa7),
    0x2A37: (0x180D, False, gen_2a37),
    0x2A19: (0x180F, False, gen_2a19),
    0x2A2B: (0x1805, False, gen_2a2b),
}


def generate(uuid, count, seed):
    rng = random.Random(f"{seed}:{uuid:04X}")
    gen = CHARACTERISTICS[uuid][2]
    return [gen(rng, i) for i in range(count)]


# --- pcap: LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR (201) → HCI ACL → L2CAP CID 4 → ATT --------

LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR = 201
ACL_HANDLE = 0x0040


class PcapWriter:
    def __init__(self, path):
        self.f = open(path, "wb")
        # pcap global header: magic, v2.4, zone 0, sigfigs 0, snaplen 65535, linktype 201.
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR))
        self.frames = 0

    def att(self, pdu, received):
        """One ATT PDU in one unfragmented ACL packet. `received`: controller → host."""
        l2cap = struct.pack("<HH", len(pdu), 0x0004) + pdu
        acl = struct.pack("<HH", ACL_HANDLE | (0x2 << 12), len(l2cap)) + l2cap  # PB=10: first, flushable... start
        # Pseudo-header: 4-byte big-endian direction (0 sent, 1 received), then the H4 type 0x02 (ACL).
        data = struct.pack(">I", 1 if received else 0) + b"\x02" + acl
        self.frames += 1
        ts = 1_764_000_000 + self.frames // 1000
        self.f.write(struct.pack("<IIII", ts, (self.frames % 1000) * 1000, len(data), len(data)) + data)
        return self.frames

    def close(self):
        self.f.close()


def write_pcap(path, payloads_by_uuid):
    """Writes the discovery exchange, then one notification/indication per payload.

    Returns {frame number: (uuid, payload index)} for every value frame.
    """
    w = PcapWriter(path)
    # MTU exchange, so long CGM/body-composition values are within the ATT_MTU.
    w.att(b"\x02" + u16(517), False)
    w.att(b"\x03" + u16(517), True)
    # Handle layout: each service gets 16 handles; characteristic declaration at h, value at h+1, CCCD at h+2.
    services = {}
    for uuid, (svc, _ind, _gen) in CHARACTERISTICS.items():
        if uuid in payloads_by_uuid:
            services.setdefault(svc, []).append(uuid)
    layout = []  # (svc, start, end, [(decl, value, uuid)])
    h = 1
    for svc in sorted(services):
        start = h
        chars = []
        h += 1
        for uuid in services[svc]:
            chars.append((h, h + 1, uuid))
            h += 3
        layout.append((svc, start, h - 1, chars))
        h = (h + 15) // 16 * 16 + 1
    # Read By Group Type (Primary Service 0x2800): request, response with every service (length 6).
    w.att(b"\x10" + u16(1) + u16(0xFFFF) + u16(0x2800), False)
    w.att(b"\x11\x06" + b"".join(u16(s) + u16(e) + u16(svc) for svc, s, e, _ in layout), True)
    w.att(b"\x10" + u16(layout[-1][2] + 1) + u16(0xFFFF) + u16(0x2800), False)
    w.att(b"\x01\x10" + u16(layout[-1][2] + 1) + b"\x0a", True)  # Attribute Not Found ends discovery
    value_handle = {}
    for svc, s, e, chars in layout:
        # Read By Type (Characteristic 0x2803) per service: length 7 (handle, props, value handle, uuid16).
        w.att(b"\x08" + u16(s) + u16(e) + u16(0x2803), False)
        body = b""
        for decl, val, uuid in chars:
            props = 0x20 if CHARACTERISTICS[uuid][1] else 0x10
            body += u16(decl) + bytes([props]) + u16(val) + u16(uuid)
            value_handle[uuid] = val
        w.att(b"\x09\x07" + body, True)
        # CCCD writes (Write Request 0x12, Write Response 0x13).
        for decl, val, uuid in chars:
            cccd = 2 if CHARACTERISTICS[uuid][1] else 1
            w.att(b"\x12" + u16(val + 1) + u16(cccd), False)
            w.att(b"\x13", True)
    frames = {}
    for uuid, payloads in payloads_by_uuid.items():
        indicate = CHARACTERISTICS[uuid][1]
        for k, p in enumerate(payloads):
            op = b"\x1d" if indicate else b"\x1b"
            n = w.att(op + u16(value_handle[uuid]) + p, True)
            frames[n] = (uuid, k)
            if indicate:
                w.att(b"\x1e", False)  # Handle Value Confirmation
    w.close()
    return frames
