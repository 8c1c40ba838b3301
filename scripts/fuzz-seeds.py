#!/usr/bin/env python3
"""Writes the seed corpora for scripts/fuzz: one directory per target under argv[1].

Sources: firmware-fixtures/ (serial captures, GATT .values, simulated-peripheral .att scripts),
devices/*.yaml, the demo and docs configuration and care plans, docs/downlink.md's commands, and
firmware-fixtures/fuzz-crashes/<target>/ (the inputs of crashes found, kept as regressions).
"""
import glob, json, os, re, shutil, sys

out = sys.argv[1]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(root)

def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def hexbytes(text):
    return bytes.fromhex(re.sub(r"\s+", "", text))

# Order of DeviceDecoding.streamDecoderNames; 7 and 8 are Fuzz/stream.swift's line specs.
STREAM = ["masimo-ascii1", "nonin-sdf2", "contec-cms50-legacy", "onetouch-ultra2", "onetouch-ultraeasy",
          "masimo-trend", "contec-cms50-v7"]
FIXTURE_DECODER = {"masimo-rad8": "masimo-ascii1", "nonin": "nonin-sdf2", "contec": "contec-cms50-legacy",
                   "onetouch-ultra2": "onetouch-ultra2", "onetouch-ultraeasy": "onetouch-ultraeasy",
                   "masimo-trend": "masimo-trend", "contec-v7": "contec-cms50-v7"}
for folder, name in FIXTURE_DECODER.items():
    for path in sorted(glob.glob(f"firmware-fixtures/{folder}/*.capture")):
        data = b"".join(hexbytes(line.split(None, 1)[1]) for line in open(path)
                        if line.strip() and not line.startswith("#") and len(line.split(None, 1)) == 2)
        put("stream", f"{folder}-{os.path.basename(path)}", bytes([STREAM.index(name), 7]) + data)
put("stream", "line-scale", bytes([7, 3]) + b"WT,  72.4,kg\r\nXX,1\r\nWT,,kg\r\n")
put("stream", "line-thermometer", bytes([8, 5]) + b"TEMP=36.8C\nTEMP=x\n")

# Order of Fuzz/gatt.swift's characteristics.
GATT = [0x2A19, 0x2A2B, 0x2A08, 0x2A37, 0x2A35, 0x2A36, 0x2A1C, 0x2A1E, 0x2A5E, 0x2A5F, 0x2A9D, 0x2A9C,
        0x2A18, 0x2A34, 0x2AA7, 0x2A52]
def gatt_record(uuid, value):
    head = bytes([GATT.index(uuid)]) if uuid in GATT else bytes([255, uuid >> 8, uuid & 0xFF])
    return head + bytes([min(len(value), 255)]) + value[:255]

att_values = []  # (uuid, value) from the .att scripts, also used for ATT PDUs
for path in sorted(glob.glob("firmware-fixtures/ble/*.att")):
    recs = b""
    for line in open(path):
        m = re.match(r"\s*(notify|indicate)\s+([0-9A-Fa-f]{4})\s*=\s*([0-9A-Fa-f ]*)", line.split("#")[0])
        if m:
            uuid, value = int(m.group(2), 16), hexbytes(m.group(3))
            att_values.append((m.group(1), uuid, value))
            recs += gatt_record(uuid, value)
    put("gatt", "ble-" + os.path.basename(path), b"\x00" + recs)
for path in sorted(glob.glob("firmware-fixtures/gatt/*.values")):
    recs = b""
    for line in open(path):
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            recs += gatt_record(int(parts[0], 16), hexbytes(parts[1]))
    put("gatt", os.path.basename(path), (b"\x01" if "cgm" in path else b"\x00") + recs)

# ATT PDUs (Core v5.3 Vol 3 Part F §3.4): one of each opcode the parser knows, and the scripts' values.
att = {
    "error": "01 08 0100 0A", "mtu-req": "02 B900", "mtu-rsp": "03 F700", "find-info-req": "04 0100 FFFF",
    "find-info-rsp-16": "05 01 0300 0229 0400 0329", "find-info-rsp-128": "05 02 0300 " + "00" * 16,
    "read-by-type-req": "08 0100 FFFF 0328", "read-by-type-rsp": "09 07 0200 12 0300 372A",
    "read-by-type-req-128": "08 0100 FFFF " + "11" * 16, "read-req": "0A 0300", "read-rsp": "0B 5A",
    "group-req": "10 0100 FFFF 0028", "group-rsp": "11 06 0100 0500 0018 0600 0900 0D18",
    "write-req": "12 0400 0200", "write-rsp": "13", "write-cmd": "52 0400 0100", "notify": "1B 0300 0048",
    "indicate": "1D 0300 0101", "confirm": "1E", "unknown": "FF 00",
}
for name, text in att.items():
    put("att", name, hexbytes(text))
for i, (kind, uuid, value) in enumerate(att_values):
    put("att", f"script-{i}", bytes([0x1B if kind == "notify" else 0x1D, 0x03, 0x00]) + value)

profiles = sorted(glob.glob("devices/*.yaml"))
plans = sorted(glob.glob("demo/care-plans/*.yaml") + glob.glob("demo/care-plans/examples/*.yaml"))
configs = ["docs/vigild.example.yaml", "demo/vigild.yaml"]
for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", open("docs/care-plans.md").read(), re.S)):
    put("careplan", f"care-plans-md-{i}.yaml", block)
    put("yaml", f"care-plans-md-{i}.yaml", block)
for path in profiles:
    put("profile", os.path.basename(path), open(path, "rb").read())
for path in plans:
    put("careplan", os.path.basename(path), open(path, "rb").read())
for path in configs:
    put("config", path.replace("/", "-"), open(path, "rb").read())
for path in profiles + plans + configs + ["docs/asyncapi.yaml"]:
    put("yaml", path.replace("/", "-"), open(path, "rb").read())

# Downlink commands: the topic's last level, a newline, the payload (Fuzz/downlink.swift).
issued = "2026-11-25T11:49:58Z"
plan_text = open(plans[0]).read() if plans else "patient: p\nversion: 2\n"
commands = {
    "ping": ("ping", {"id": "ping-1", "issued_at": issued, "args": {}}),
    "ack": ("ack", {"id": "ack-2026-11-25-0001", "issued_at": issued,
                    "args": {"escalation": "f37ff99099483ba5256ee4fdee502647", "by": "nurse-7", "detail": "phoned the patient"}}),
    "care-plan": ("care-plan", {"id": "plan-1", "issued_at": issued, "args": {"patient": "demo-patient-1", "plan": plan_text}}),
    "config": ("config", {"id": "cfg-1", "issued_at": issued,
                          "args": {"set": {"log_level": "debug", "downlink.max_bytes": 2048, "downlink.replay_window_seconds": 60}}}),
    "resend": ("resend", {"id": "rs-1", "issued_at": issued,
                          "args": {"from": "2026-11-24T00:00:00Z", "to": "2026-11-25T00:00:00Z", "device": "d1", "patient": "p1", "limit": 100}}),
}
for name, (cmd, body) in commands.items():
    put("downlink", name, cmd + "\n" + json.dumps(body))
put("downlink", "escaped", 'ping\n{"id":"x\\u0041","issued_at":"2026-11-25T11:50:00.5Z","args":{},"args":1}')

# Inputs of crashes found (kept as regression fixtures, firmware-fixtures/fuzz-crashes/<target>/).
for path in sorted(glob.glob("firmware-fixtures/fuzz-crashes/*/*")):
    put(os.path.basename(os.path.dirname(path)), "kept-" + os.path.basename(path), open(path, "rb").read())
