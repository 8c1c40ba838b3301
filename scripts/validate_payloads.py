"""Validates Vigil uplink payloads: the vigil.* JSON against docs/schemas (python3-jsonschema),
FHIR resources against FHIR R4 4.0.1 (fhir.resources 6.4.0 models, pydantic 1.10) plus the
vital-signs profile rules those models do not check, and against Vigil's FHIR shape schemas.

Usage: validate-payloads [--schemas DIR] FILE...   (each FILE one raw MQTT payload; a zlib
stream, as uplink.encoding fhir-bundle-deflate sends, is inflated first). Prints one line per
file, then "N passed, M failed"; exits 1 if any failed. Run through scripts/validate-payloads,
which picks the interpreter scripts/setup-validator installs.
"""
import json
import os
import re
import sys
import zlib

import jsonschema

FHIR_VERSION = "4.0.1"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SD = "http://hl7.org/fhir/StructureDefinition/"
# http://hl7.org/fhir/R4/valueset-observation-vitalsignresult.html
VITAL_SIGN_CODES = {"85353-1", "9279-1", "8867-4", "2708-6", "8310-5", "8302-2", "9843-4", "29463-7",
                    "39156-5", "85354-9", "8480-6", "8462-4", "8478-0", "59408-5"}
# http://hl7.org/fhir/R4/observation-vitalsigns.html: each specific profile's required LOINC
# coding and its valueQuantity.code binding.
PROFILES = {
    "oxygensat": ("2708-6", {"%"}),
    "heartrate": ("8867-4", {"/min"}),
    "resprate": ("9279-1", {"/min"}),
    "bodytemp": ("8310-5", {"Cel", "[degF]"}),
    "bodyweight": ("29463-7", {"kg", "g", "[lb_av]"}),
    "bodyheight": ("8302-2", {"cm", "[in_i]"}),
    "bmi": ("39156-5", {"kg/m2"}),
    "bp": ("85354-9", {"mm[Hg]"}),
}
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$")


def load_schemas(folder):
    store, by_name = {}, {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".schema.json"):
            with open(os.path.join(folder, name)) as f:
                schema = json.load(f)
            jsonschema.Draft202012Validator.check_schema(schema)
            store[schema.get("$id", name)] = schema
            by_name[name] = schema
    return store, by_name


def validator(store, schema):
    resolver = jsonschema.RefResolver(base_uri=schema.get("$id", ""), referrer=schema, store=store)
    return jsonschema.Draft202012Validator(schema, resolver=resolver, format_checker=jsonschema.FormatChecker())


def codings(concept):
    return [(c.get("system"), c.get("code")) for c in (concept or {}).get("coding", [])]


def has_value(element):
    return any(k.startswith("value") for k in element) or "dataAbsentReason" in element


def profile_errors(obs):
    """The R4 vital-signs profile constraints that fhir.resources (structure only) leaves out."""
    errors = []
    profiles = obs.get("meta", {}).get("profile", [])
    if SD + "vitalsigns" not in profiles:
        return errors
    cats = [c for cat in obs.get("category", []) for c in codings(cat)]
    if (CATEGORY, "vital-signs") not in cats:
        errors.append("vitalsigns: category VSCat (vital-signs) missing")
    if not any(s == LOINC and c in VITAL_SIGN_CODES for s, c in codings(obs.get("code"))):
        errors.append("vitalsigns: code has no LOINC coding from the Vital Signs value set")
    subject = obs.get("subject")
    if not subject or not (subject.get("reference") or subject.get("identifier")):
        errors.append("vitalsigns: subject (Patient) missing")
    elif subject.get("type", "Patient") != "Patient":
        errors.append("vitalsigns: subject is not a Patient")
    effective = obs.get("effectiveDateTime")
    if effective is None and "effectivePeriod" not in obs:
        errors.append("vitalsigns: effective[x] missing")
    elif effective is not None and not DATE_TIME.match(effective):
        errors.append("vs-1: effectiveDateTime is not a valid dateTime to at least the day")
    if not obs.get("component") and not obs.get("hasMember") and not has_value(obs):
        errors.append("vs-2: neither value[x] nor dataAbsentReason")
    for i, comp in enumerate(obs.get("component", [])):
        if not has_value(comp):
            errors.append(f"vs-3: component[{i}] has neither value[x] nor dataAbsentReason")
    quantities = [obs.get("valueQuantity")] + [c.get("valueQuantity") for c in obs.get("component", [])]
    for q in filter(None, quantities):
        for field in ("value", "unit", "system", "code"):
            if field not in q:
                errors.append(f"vitalsigns: valueQuantity.{field} missing")
        if q.get("system") != UCUM:
            errors.append("vitalsigns: valueQuantity.system is not UCUM")
    for p in profiles:
        name = p[len(SD):] if p.startswith(SD) else None
        if name not in PROFILES:
            continue
        code, units = PROFILES[name]
        if (LOINC, code) not in codings(obs.get("code")):
            errors.append(f"{name}: code {code} missing")
        if name == "bp":
            if has_value(obs):
                errors.append("bp: a panel carries its values in components only")
            comps = [codings(c.get("code")) for c in obs.get("component", [])]
            for part in ("8480-6", "8462-4"):
                if sum((LOINC, part) in c for c in comps) != 1:
                    errors.append(f"bp: exactly one component {part} required")
        for q in filter(None, quantities):
            if q.get("code") not in units:
                errors.append(f"{name}: unit {q.get('code')!r} not in {sorted(units)}")
    return errors


def check_fhir(doc, schemas, store):
    from fhir.resources import construct_fhir_element
    kind = doc.get("resourceType")
    # Structure, datatypes, cardinalities and required bindings of FHIR R4 4.0.1.
    construct_fhir_element(kind, doc)
    errors = []
    shape = {"Observation": "fhir-observation.schema.json", "Bundle": "fhir-bundle.schema.json",
             "DetectedIssue": "fhir-detectedissue.schema.json"}.get(kind)
    if shape is None:
        return [f"Vigil sends no {kind}"]
    errors += [f"{shape}: {e.message}" for e in validator(store, schemas[shape]).iter_errors(doc)]
    resources = [doc] if kind != "Bundle" else [e.get("resource", {}) for e in doc.get("entry", [])]
    if kind == "Bundle" and doc.get("type") in ("batch", "transaction"):
        for i, e in enumerate(doc.get("entry", [])):
            if "request" not in e:
                errors.append(f"bdl-3: entry[{i}] of a {doc['type']} has no request")
    for r in resources:
        if r.get("resourceType") == "Observation":
            errors += profile_errors(r)
    return errors


def check(payload, schemas, store):
    if payload[:1] == b"\x78":
        payload = zlib.decompress(payload)
        packed = "deflate "
    else:
        packed = ""
    doc = json.loads(payload.decode("utf-8"))
    if "schema" in doc:
        name = {"vigil.reading/1": "reading", "vigil.escalation/1": "escalation", "vigil.event/1": "event",
                "vigil.status/1": "status", "vigil.reply/1": "reply"}.get(doc["schema"])
        if name is None:
            return f"vigil {doc['schema']}", [f"unknown schema {doc['schema']!r}"]
        schema = schemas[f"{name}.schema.json"]
        return doc["schema"], [e.message for e in validator(store, schema).iter_errors(doc)]
    if "resourceType" in doc:
        kind = doc["resourceType"]
        if kind == "Bundle":
            kind += f"({len(doc.get('entry', []))})"
        return packed + "fhir " + kind, check_fhir(doc, schemas, store)
    return "unknown", ["neither a vigil.* payload nor a FHIR resource"]


def check_asyncapi(path, folder):
    """docs/asyncapi.yaml: every $ref resolves (internal ones in the document, file ones to a
    valid draft 2020-12 schema), and every schema file under docs/schemas is referenced."""
    import yaml
    with open(path) as f:
        doc = yaml.safe_load(f)
    errors = []
    if doc.get("asyncapi") != "2.6.0":
        errors.append(f"asyncapi version {doc.get('asyncapi')!r}, expected 2.6.0")
    refs = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref" and isinstance(v, str):
                    refs.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(doc)
    used = set()
    for ref in refs:
        if ref.startswith("#/"):
            node = doc
            for part in ref[2:].split("/"):
                node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                errors.append(f"unresolved {ref}")
        elif ref.startswith("schemas/"):
            name = ref[len("schemas/"):]
            used.add(name)
            if not os.path.exists(os.path.join(folder, name)):
                errors.append(f"missing {ref}")
        else:
            errors.append(f"unexpected $ref {ref}")
    for name in os.listdir(folder):
        if name.endswith(".schema.json") and name not in used:
            errors.append(f"docs/schemas/{name} is not referenced by the AsyncAPI document")
    for channel in doc.get("channels", {}):
        if not channel.startswith("vigil/v1/{site}/{gateway}/"):
            errors.append(f"channel {channel} is outside the prefix")
    return errors


def main(argv):
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "schemas")
    if len(argv) > 2 and argv[1] == "--asyncapi":
        load_schemas(folder)  # every schema must itself be a valid draft 2020-12 schema
        errors = check_asyncapi(argv[2], folder)
        for e in errors:
            print("FAIL asyncapi: " + e)
        print("asyncapi: " + ("ok" if not errors else "invalid"))
        return 1 if errors else 0
    if len(argv) > 2 and argv[1] == "--schemas":
        folder, argv = argv[2], argv[:1] + argv[3:]
    store, schemas = load_schemas(folder)
    passed = failed = 0
    for path in argv[1:]:
        with open(path, "rb") as f:
            payload = f.read()
        try:
            kind, errors = check(payload, schemas, store)
        except Exception as e:  # a parse or model error is a failed message, not a crash
            kind, errors = "invalid", [f"{type(e).__name__}: {e}".replace("\n", "; ")]
        if errors:
            failed += 1
            print(f"FAIL {os.path.basename(path)} {kind}: " + " | ".join(errors))
        else:
            passed += 1
            print(f"ok {os.path.basename(path)} {kind}")
    print(f"validator: fhir.resources {fhir_version()} (FHIR {FHIR_VERSION}), jsonschema {jsonschema_version()}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def fhir_version():
    import fhir.resources
    assert fhir.resources.__fhir_version__ == FHIR_VERSION, fhir.resources.__fhir_version__
    return fhir.resources.__version__


def jsonschema_version():
    from importlib.metadata import version
    return version("jsonschema")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
