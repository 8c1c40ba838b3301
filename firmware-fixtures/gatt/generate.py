#!/usr/bin/env python3
"""Writes firmware-fixtures/gatt/<name>.values and <name>.expected.jsonl.

Each case is built from field values chosen here; the expected JSON lines are written from
those same values (never by running the decoder). Expected lines list the keys that must
match; the replay test (Tests/DeviceDecodingTests/GATTFixtureTests.swift) requires every key
given here to equal the decoder's, and `details` to hold at least the members given.
Deterministic: run it again and nothing changes.
"""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
LOINC = {"systolic_bp": "8480-6", "diastolic_bp": "8462-4", "mean_bp": "8478-0", "pulse_rate": "8867-4",
         "heart_rate": "8867-4", "body_temperature": "8310-5", "spo2": "59408-5", "perfusion_index": "61006-3",
         "body_weight": "29463-7", "bmi": "39156-5", "body_height": "8302-2", "body_fat": "41982-0",
         "blood_glucose": "2339-0", "interstitial_glucose": "99504-3", "hba1c": "4548-4", "cuff_pressure": ""}


def sf(m, e=0):
    return struct.pack("<H", ((e & 0xF) << 12) | (m & 0xFFF))

def fl(m, e=0):
    return struct.pack("<I", ((e & 0xFF) << 24) | (m & 0xFFFFFF))

def u8(v): return struct.pack("<B", v)
def u16(v): return struct.pack("<H", v & 0xFFFF)
def u24(v): return struct.pack("<I", v)[:3]
def dt(y, mo, d, h, mi, s): return struct.pack("<HBBBBB", y, mo, d, h, mi, s)
def iso(y, mo, d, h, mi, s): return "%04d-%02d-%02dT%02d:%02d:%02d" % (y, mo, d, h, mi, s)

def num(m, e):
    """The decimal m × 10^e as the nearest double (Python's float() of text rounds correctly)."""
    v = float("%de%d" % (m, e))
    return int(v) if v == int(v) and abs(v) < 1e15 else v

def reading(vital, value, unit, at=None, flags=(), sequence=None, details=None, event=None):
    r = {}
    if event: r["event"] = event
    r.update({"vital": vital, "loinc": LOINC[vital], "value": value, "unit": unit, "measured_at": at,
              "flags": list(flags), "sequence": sequence})
    if details: r["details"] = details
    return r

def crc_mcrf4xx(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc

def cgm_record(flags, glucose_m, glucose_e, offset, warn=None, caltemp=None, status=None, trend=None, quality=None, crc=False):
    body = u8(flags) + sf(glucose_m, glucose_e) + u16(offset)
    # Sensor Status Annunciation is one field, least significant octet first, only the
    # present octets: Status (bits 0-7), Cal/Temp (8-15), Warning (16-23). SIG definition
    # org.bluetooth.characteristic.cgm_measurement, CGMS 1.0.1 §3.2.1.5.
    if flags & 0x80: body += u8(status)
    if flags & 0x40: body += u8(caltemp)
    if flags & 0x20: body += u8(warn)
    if flags & 0x01: body += sf(*trend)
    if flags & 0x02: body += sf(*quality)
    rec = u8(len(body) + 1 + (2 if crc else 0)) + body
    if crc: rec += u16(crc_mcrf4xx(rec))
    return rec

T = (2026, 11, 25, 8, 15, 30)
AT = iso(*T)
FILES = {}

def case(name, uuid, payload, expected, comment=None):
    FILES.setdefault(name, []).append((uuid, payload if isinstance(payload, (bytes, bytearray)) else bytes(payload), expected, comment))

# --- Blood Pressure Measurement 0x2A35 / Intermediate Cuff Pressure 0x2A36 (BLS 1.0 §3.1)
bp = "blood-pressure-measurement"
case(bp, "2A35", u8(0x1E) + sf(128) + sf(84) + sf(99) + dt(*T) + sf(66) + u8(1) + u16(0x0000),
     [reading("systolic_bp", 128, "mm[Hg]", AT), reading("diastolic_bp", 84, "mm[Hg]", AT),
      reading("mean_bp", 99, "mm[Hg]", AT), reading("pulse_rate", 66, "/min", AT, details={"user_id": "1"})],
     "every field, status all clear")
case(bp, "2A35", u8(0x01) + sf(171, -1) + sf(112, -1) + sf(132, -1),
     [reading("systolic_bp", 17.1, "kPa"), reading("diastolic_bp", 11.2, "kPa"), reading("mean_bp", 13.2, "kPa")],
     "kPa kept as sent, not converted")
case(bp, "2A35", u8(0x14) + sf(182) + sf(121) + sf(141) + sf(110) + u16(0x0027 | 0x08),
     [reading("systolic_bp", 182, "mm[Hg]", flags=["body_movement", "cuff_fit", "irregular_pulse", "position"]),
      reading("diastolic_bp", 121, "mm[Hg]", flags=["body_movement", "cuff_fit", "irregular_pulse", "position"]),
      reading("mean_bp", 141, "mm[Hg]", flags=["body_movement", "cuff_fit", "irregular_pulse", "position"]),
      reading("pulse_rate", 110, "/min", flags=["body_movement", "cuff_fit", "irregular_pulse", "pulse_rate_range", "position"],
              details={"pulse_rate_range": "above_upper_limit"})],
     "status bits 0,1,2,5 and pulse above range")
case(bp, "2A35", u8(0x00) + sf(0x7FF) + sf(0x7FF) + sf(0x7FF), [{"event": "no_reading", "details": {"special_value": "systolic_bp=NaN"}}],
     "a failed measurement: NaN everywhere, nothing to store")
case(bp, "2A35", u8(0x00) + sf(131) + sf(88) + sf(0x7FF),
     [reading("systolic_bp", 131, "mm[Hg]", flags=["special_value"]), reading("diastolic_bp", 88, "mm[Hg]", flags=["special_value"])],
     "mean arterial pressure not computed (NaN)")
case(bp, "2A35", u8(0xE0) + sf(120) + sf(80) + sf(93),
     [reading("systolic_bp", 120, "mm[Hg]"), reading("diastolic_bp", 80, "mm[Hg]"), reading("mean_bp", 93, "mm[Hg]")],
     "reserved flag bits 5-7 set: ignored")
case(bp, "2A36", u8(0x00) + sf(84) + sf(0x7FF) + sf(0x7FF),
     [reading("cuff_pressure", 84, "mm[Hg]", event="intermediate")], "cuff inflating")
case(bp, "2A35", u8(0x02) + sf(120) + sf(80) + sf(93) + dt(2026, 11, 25)[:3] if False else u8(0x02) + sf(120) + sf(80) + sf(93) + b"\xea\x07\x0b",
     [{"error": "truncated: field Time Stamp: truncated at byte 7"}], "cut inside the time stamp")
case(bp, "2A35", u8(0x00) + sf(120) + sf(80) + sf(93) + b"\x00", [{"error": "trailingBytes: 1 bytes after the last field"}])

# --- Temperature Measurement 0x2A1C / Intermediate Temperature 0x2A1E (HTS 1.0 §3.1)
tm = "temperature-measurement"
case(tm, "2A1C", u8(0x06) + fl(367, -1) + dt(*T) + u8(9),
     [reading("body_temperature", 36.7, "Cel", AT, details={"temperature_type": "tympanum"})], "36.7 exactly, ear drum")
case(tm, "2A1C", u8(0x05) + fl(1013, -1) + u8(6),
     [reading("body_temperature", 101.3, "[degF]", details={"temperature_type": "mouth"})], "Fahrenheit kept")
case(tm, "2A1C", u8(0x04) + fl(3845, -2) + u8(0),
     [reading("body_temperature", 38.45, "Cel", details={"temperature_type": "reserved"})], "reserved temperature type")
case(tm, "2A1C", u8(0x00) + fl(0x7FFFFE), [{"event": "no_reading", "details": {"special_value": "body_temperature=+INF"}}])
case(tm, "2A1C", u8(0x00) + fl(0x800000), [{"event": "no_reading", "details": {"special_value": "body_temperature=NRes"}}])
case(tm, "2A1E", u8(0x00) + fl(352, -1), [reading("body_temperature", 35.2, "Cel", event="intermediate")])
case(tm, "2A1C", u8(0x00) + fl(367, -1)[:3], [{"error": "truncated: field Temperature Measurement Value: truncated at byte 1"}])

# --- PLX Spot-Check 0x2A5E / Continuous 0x2A5F (PLXS 1.0.1 §3.1-3.2, Tables 3.4/3.5)
plx = "plx-measurement"
case(plx, "2A5E", u8(0x0F) + sf(96) + sf(72) + dt(*T) + u16(0x0180) + u24(0) + sf(43, -1),
     [reading("spo2", 96, "%", AT, details={"validated": "true", "fully_qualified": "true"}),
      reading("pulse_rate", 72, "/min", AT), reading("perfusion_index", 4.3, "%", AT)], "every field, validated")
case(plx, "2A5E", u8(0x11) + sf(95) + sf(80) + dt(2000, 1, 1, 0, 3, 12),
     [reading("spo2", 95, "%", None, ["device_clock_unreliable"]), reading("pulse_rate", 80, "/min", None, ["device_clock_unreliable"])],
     "device clock not set: its time is dropped")
case(plx, "2A5E", u8(0x06) + sf(88) + sf(120) + u16(0x4000) + u24(0x000820),
     [reading("spo2", 88, "%", flags=["sensor_off", "low_perfusion", "questionable_measurement"]),
      reading("pulse_rate", 120, "/min", flags=["sensor_off", "low_perfusion", "questionable_measurement"])],
     "questionable, low perfusion, sensor unconnected to user")
case(plx, "2A5E", u8(0x08) + sf(97) + sf(0x7FF) + sf(0x7FF),
     [reading("spo2", 97, "%", flags=["special_value"])], "pulse and PAI unavailable")
case(plx, "2A5F", u8(0x13) + sf(97) + sf(61) + sf(96) + sf(63) + sf(97) + sf(60) + sf(12, -1),
     [reading("spo2", 97, "%", details={"spo2_fast": "96", "pr_fast": "63", "spo2_slow": "97", "pr_slow": "60"}),
      reading("pulse_rate", 61, "/min"), reading("perfusion_index", 1.2, "%")], "normal, fast and slow")
case(plx, "2A5F", u8(0x0C) + sf(94) + sf(77) + u16(0x0200) + u24(0x000010),
     [reading("spo2", 94, "%", flags=["low_signal", "device_clock_unreliable", "stored_data"]),
      reading("pulse_rate", 77, "/min", flags=["low_signal", "device_clock_unreliable", "stored_data"])],
     "stored data on the continuous characteristic has no time")
case(plx, "2A5F", u8(0x04) + sf(99) + sf(70) + u16(0x0400),
     [reading("spo2", 99, "%", flags=["not_patient_data"]), reading("pulse_rate", 70, "/min", flags=["not_patient_data"])],
     "demonstration data")
case(plx, "2A5F", u8(0x08) + sf(99) + sf(70) + u16(0x0000), [{"error": "truncated: field Device and Sensor Status: truncated at byte 5"}])

# --- Weight Measurement 0x2A9D (WSS 1.0 §3.1)
wt = "weight-measurement"
case(wt, "2A9D", u8(0x0E) + u16(16480) + dt(*T) + u8(2) + u16(269) + u16(1780),
     [reading("body_weight", 82.4, "kg", AT, details={"user_id": "2"}), reading("bmi", 26.9, "kg/m2", AT), reading("body_height", 1.78, "m", AT)],
     "SI: 0.005 kg and 0.001 m resolution")
case(wt, "2A9D", u8(0x09) + u16(18166) + u16(269) + u16(701),
     [reading("body_weight", 181.66, "[lb_av]"), reading("bmi", 26.9, "kg/m2"), reading("body_height", 70.1, "[in_i]")],
     "imperial kept as pounds and inches")
case(wt, "2A9D", u8(0x00) + u16(0xFFFF), [{"event": "no_reading", "details": {"special_value": "body_weight=unsuccessful"}}],
     "measurement unsuccessful")
case(wt, "2A9D", u8(0x04) + u16(13001) + u8(0xFF), [reading("body_weight", 65.005, "kg", details={"user_id": "unknown"})])
case(wt, "2A9D", u8(0x08) + u16(13000) + u16(269), [{"error": "truncated: field Height: truncated at byte 5"}])

# --- Body Composition Measurement 0x2A9C (BCS 1.0 §3.2)
bc = "body-composition-measurement"
case(bc, "2A9C", u16(0x0C02) + u16(238) + dt(*T) + u16(16480) + u16(1780),
     [reading("body_fat", 23.8, "%", AT), reading("body_weight", 82.4, "kg", AT), reading("body_height", 1.78, "m", AT)])
case(bc, "2A9C", u16(0x13FE) + u16(238) + dt(*T) + u8(1) + u16(7200) + u16(412) + u16(7000) + u16(12560) + u16(11000) + u16(9000) + u16(5124),
     [{"event": "incomplete"}], "first of two parts")
case(bc, "2A9C", u16(0x1C00) + u16(238) + u16(16480) + u16(1780),
     [reading("body_fat", 23.8, "%", AT, details={"user_id": "1", "basal_metabolism": "7200 kJ", "muscle_percentage": "41.2 %",
                                                   "muscle_mass": "35 kg", "fat_free_mass": "62.8 kg", "soft_lean_mass": "55 kg",
                                                   "body_water_mass": "45 kg", "impedance": "512.4 Ohm"}),
      reading("body_weight", 82.4, "kg", AT), reading("body_height", 1.78, "m", AT)], "second part completes it")
case(bc, "2A9C", u16(0x0001) + u16(0xFFFF), [{"event": "no_reading", "details": {"special_value": "body_fat=unsuccessful"}}])

# --- Glucose Measurement 0x2A18 + Context 0x2A34 (GLS 1.0 §3.106-3.107)
gl = "glucose-measurement"
case(gl, "2A18", u8(0x03) + u16(41) + dt(2026, 11, 25, 7, 30, 0) + u16(5) + sf(102, -5) + u8(0x11),
     [reading("blood_glucose", 102, "mg/dL", iso(2026, 11, 25, 7, 35, 0), sequence=41,
              details={"sample_type": "capillary_whole_blood", "sample_location": "finger"})], "kg/L shown as mg/dL, time offset +5 min")
case(gl, "2A18", u8(0x07) + u16(42) + dt(2026, 11, 25, 12, 0, 0) + u16(-90) + sf(63, -4) + u8(0x12),
     [reading("blood_glucose", 6.3, "mmol/L", iso(2026, 11, 25, 10, 30, 0), sequence=42,
              details={"sample_type": "capillary_plasma", "sample_location": "finger"})], "mol/L shown as mmol/L, offset -90 min")
case(gl, "2A18", u8(0x0A) + u16(43) + dt(2026, 11, 25, 13, 0, 0) + sf(600, -5) + u8(0x11) + u16(0x0020),
     [reading("blood_glucose", 600, "mg/dL", iso(2026, 11, 25, 13, 0, 0), ["above_measuring_range"], 43)], "HI: above the meter's range")
case(gl, "2A18", u8(0x02) + u16(44) + dt(2026, 11, 25, 13, 5, 0) + sf(110, -5) + u8(0x4A),
     [reading("blood_glucose", 110, "mg/dL", iso(2026, 11, 25, 13, 5, 0), ["not_patient_data"], 44,
              details={"sample_type": "control_solution", "sample_location": "control_solution"})], "control solution")
case(gl, "2A18", u8(0x12) + u16(45) + dt(2026, 11, 25, 18, 0, 0) + sf(145, -5) + u8(0x11),
     [{"event": "incomplete", "details": {"sequence": "45"}}], "context follows")
case(gl, "2A34", u8(0x43) + u16(45) + u8(3) + sf(60, -3) + u8(2) + sf(71, -1),
     [dict(reading("blood_glucose", 145, "mg/dL", iso(2026, 11, 25, 18, 0, 0), sequence=45), _previous=True),
      reading("hba1c", 7.1, "%", iso(2026, 11, 25, 18, 0, 0), sequence=45,
              details={"carbohydrate_id": "dinner", "carbohydrate": "60 g", "meal": "postprandial"})],
     "its context: the pair is one measurement")
case(gl, "2A34", u8(0x02) + u16(46) + u8(1), [{"error": "outOfSequence: no glucose measurement awaits a context with this sequence number"}],
     "a context nobody announced")
case(gl, "2A18", u8(0x0A) + u16(47) + dt(2026, 11, 25, 19, 0, 0) + sf(0x7FF) + u8(0x11) + u16(0x0004),
     [{"event": "no_reading"}], "sample size insufficient, no value")
case(gl, "2A18", u8(0x12) + u16(48) + dt(2026, 11, 25, 20, 0, 0) + sf(120, -5) + u8(0x11),
     [{"event": "incomplete", "details": {"sequence": "48"}}], "context follows")
case(gl, "2A18", u8(0x12) + u16(49) + dt(2026, 11, 25, 20, 5, 0) + sf(130, -5) + u8(0x24),
     [dict(reading("blood_glucose", 120, "mg/dL", iso(2026, 11, 25, 20, 0, 0), sequence=48,
                   details={"sample_type": "capillary_whole_blood", "sample_location": "finger"}), _previous=True)],
     "context follows again: 48 released without its context, with its own details; 49 held")
case(gl, "2A34", u8(0x02) + u16(49) + u8(1),
     [dict(reading("blood_glucose", 130, "mg/dL", iso(2026, 11, 25, 20, 5, 0), sequence=49,
                   details={"sample_type": "venous_plasma", "sample_location": "alternate_site_test",
                            "meal": "preprandial"}), _previous=True)],
     "49's context: 49 printed under its own value")
case(gl, "2A18", u8(0x02) + u16(50) + dt(0, 11, 25, 7, 0, 0) + sf(99, -5) + u8(0x11),
     [reading("blood_glucose", 99, "mg/dL", None, ["device_clock_unreliable"], 50)],
     "year 0: date not known (GSS 3.70), no device time")

# --- CGM Measurement 0x2AA7 (CGMS 1.0.1 §3.2)
cgm = "cgm-measurement"
case(cgm, "2AA7", cgm_record(0x00, 112, 0, 5),
     [reading("interstitial_glucose", 112, "mg/dL", sequence=5, details={"time_offset": "5 min"})])
case(cgm, "2AA7", cgm_record(0x03, 118, 0, 10, trend=(-12, -1), quality=(95, 0)) + cgm_record(0xE0, 40, 0, 15, warn=0x40, caltemp=0x08, status=0x02),
     [reading("interstitial_glucose", 118, "mg/dL", sequence=10, details={"trend": "-1.2 mg/dL/min", "quality": "95 %"}),
      reading("interstitial_glucose", 40, "mg/dL", flags=["below_measuring_range", "questionable_measurement"], sequence=15)],
     "two records in one value; the second below range, calibration required")
case(cgm, "2AA7", cgm_record(0x00, 131, 0, 20, crc=True),
     [reading("interstitial_glucose", 131, "mg/dL", sequence=20)], "E2E-CRC checked even without the option")
bad = bytearray(cgm_record(0x00, 131, 0, 25, crc=True)); bad[2] ^= 1
case(cgm, "2AA7", bytes(bad), [{"error": "crc: record 1: E2E-CRC does not match"}])
case(cgm, "2AA7", u8(0x09) + u8(0x00) + sf(100) + u16(30), [{"error": "truncated: record 1: Size runs past the end of the value (byte 6)"}])

# --- RACP 0x2A52, Current Time 0x2A2B, Date Time 0x2A08, Battery Level 0x2A19, Heart Rate 0x2A37
misc = "control-and-time"
case(misc, "2A52", b"\x05\x00\x0c\x00", [{"event": "racp", "number_of_records": 12}])
case(misc, "2A52", b"\x06\x00\x01\x01", [{"event": "racp", "request_op_code": 1, "response_code": "success"}])
case(misc, "2A52", b"\x06\x00\x01\x06", [{"event": "racp", "request_op_code": 1, "response_code": "no_records_found"}])
case(misc, "2A52", b"\x01\x01", [{"error": "invalidField: field Operator: not Null in a response"}], "a request is not a response")
case(misc, "2A2B", dt(*T) + b"\x03\x40\x01", [{"event": "device_time", "measured_at": AT, "millisecond": 250}])
case(misc, "2A08", dt(*T), [{"event": "device_time", "measured_at": AT}])
case(misc, "2A2B", dt(2026, 0, 25, 8, 15, 30) + b"\x03\x40\x01",
     [{"event": "device_time", "measured_at": None, "flags": ["device_clock_unreliable"]}],
     "month 0: date not known (GSS 3.70), the clock is not set")
case(misc, "2A19", b"\x4b", [{"event": "battery", "value": 75, "unit": "%"}])
case(misc, "2A19", b"\x65", [{"error": "invalidField: field Battery Level: above 100 %"}])
case(misc, "2A37", b"\x06\x48", [reading("heart_rate", 72, "/min")])
case(misc, "2A37", b"\x04\x48", [reading("heart_rate", 72, "/min", flags=["sensor_off"])], "contact supported, not detected")

for name, cases in FILES.items():
    with open(os.path.join(HERE, name + ".values"), "w") as v, open(os.path.join(HERE, name + ".expected.jsonl"), "w") as x:
        v.write("# Generated by firmware-fixtures/gatt/generate.py: <UUID> <hex>, one characteristic value per line.\n")
        line = 1
        previous = None
        for uuid, payload, expected, comment in cases:
            if comment:
                v.write("# " + comment + "\n")
                line += 1
            v.write("%s %s\n" % (uuid, payload.hex().upper()))
            line += 1
            for e in expected:
                # A held glucose measurement is reported against its own value, not its context's.
                at = previous if e.pop("_previous", False) else line
                x.write(json.dumps(dict([("payload", at)] + list(e.items())), separators=(",", ":")) + "\n")
            previous = line
print("wrote", ", ".join(sorted(FILES)), "with", sum(len(c) for c in FILES.values()), "values")
