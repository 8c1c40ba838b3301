#!/usr/bin/env python3
"""Prints what the demo's broker receives, one short line per message (reads `mosquitto_sub -v`)."""
import json
import sys

counts = {}
for line in sys.stdin:
    topic, _, payload = line.rstrip("\n").partition(" ")
    kind = topic.rsplit("/", 1)[-1]
    # The downlink: <prefix>/cmd/<name> and <prefix>/reply/<id> (docs/downlink.md).
    levels = topic.split("/")
    if len(levels) >= 2 and levels[-2] in ("cmd", "reply"):
        kind = "command" if levels[-2] == "cmd" else "reply"
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = {}
        if kind == "command":
            print(f"COMMAND     {levels[-1]} id={msg.get('id')}", flush=True)
        else:
            outcome = "ok" if msg.get("ok") else f"refused {(msg.get('error') or {}).get('code')}"
            print(f"REPLY       {msg.get('command')} id={msg.get('id')} {outcome}", flush=True)
        continue
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
