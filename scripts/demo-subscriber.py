#!/usr/bin/env python3
"""Prints what the demo's broker receives, one short line per message (reads `mosquitto_sub -v`)."""
import json
import sys

counts = {}
for line in sys.stdin:
    topic, _, payload = line.rstrip("\n").partition(" ")
    kind = topic.rsplit("/", 1)[-1]
    counts[kind] = counts.get(kind, 0) + 1
    try:
        msg = json.loads(payload)
    except ValueError:
        print(f"{kind:12} (not JSON) {payload[:80]}", flush=True)
        continue
    if kind == "readings":
        if counts[kind] % 10 == 1:
            flags = ",".join(msg.get("flags", [])) or "-"
            print(f"reading     #{counts[kind]:<5} {msg.get('device')} {msg.get('vital')}={msg.get('value')} {msg.get('unit')} flags={flags}", flush=True)
    elif kind == "escalations":
        print(f"ESCALATION  {msg.get('severity','?').upper()} {msg.get('state')} rule={msg.get('rule')} "
              f"patient={msg.get('patient')} plan v{msg.get('care_plan_version')} readings={len(msg.get('triggering_readings', []))}: {msg.get('summary')}",
              flush=True)
    else:
        print(f"{kind:12} {payload[:120]}", flush=True)
