"""What `scripts/deploy --check` verifies, offline and without credentials.

1. The functions manifest, built from functions/main.py exactly as
   firebase-tools builds it at deploy (it runs the functions venv's
   `firebase_functions.private.serving` and reads `/__/functions.yaml`; the
   same two functions are called here in-process): every function of
   EXPECTED is there with its trigger, schedule or document, and region, and
   there is no other pack427_* function.
2. firestore.rules compiles, with no issue at all (warnings included), in a
   private Firestore emulator on a free port.
3. firestore.indexes.json has the shape `firebase deploy` accepts and no
   duplicate, a TTL policy on each field of pack427.paths.TTL_FIELDS and on no
   other, and the single-field index exemptions of pack427.paths.INDEX_EXEMPTIONS
   (and no other). That it declares every index the engine's queries need is
   tests/service/test_indexes.py's job: it derives the need from the queries the
   code runs.
4. Cursors would be signed with a deployment secret, never the development
   key: every function of CURSOR_FUNCTIONS declares the secret
   PACK427_CURSOR_KEY (Secret Manager; the manifest's `params` has it as a
   secret), no env file a deploy reads (functions/.env, .env.<project>) sets
   it, and the engine, in a deployed instance's environment (no emulator),
   refuses to sign with no key or with the development key.
5. Every function runs with the options chosen for it (OPTIONS: memory, timeout, concurrency,
   CPU, min and max instances; docs/CAPACITY.md gives the reason for each).
6. The alerts as code in monitoring/ are what pack427.operating.alert_policies renders from the engine's
   own thresholds (none stale, missing or extra), and each parses into the official client type
   (a log-based metric, `google.cloud.logging_v2.types.LogMetric`; an alert policy,
   `google.cloud.monitoring_v3.AlertPolicy`), as `gcloud ... --config-from-file` and
   `--policy-from-file` take them.

Usage: functions/venv/bin/python scripts/deploy_check.py [--root DIR]
Exit status 0 when everything holds, 1 otherwise (each problem printed).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_REGION = "us-central1"
"""Where firebase-tools deploys a function whose options name no region."""

CALLABLE = {"callableTrigger": {}}
EXPECTED: dict[str, dict] = {
    "pack427_sendMessage": CALLABLE,
    "pack427_registerDevice": CALLABLE,
    "pack427_cancelScheduledMessage": CALLABLE,
    "pack427_listScheduledMessages": CALLABLE,
    "pack427_syncMessages": CALLABLE,
    "pack427_ackMessages": CALLABLE,
    "pack427_resyncChat": CALLABLE,
    "pack427_getChatList": CALLABLE,
    "pack427_updateTypingState": CALLABLE,
    "pack427_getTypingUsers": CALLABLE,
    "pack427_markAsRead": CALLABLE,
    "pack427_getUnreadCounts": CALLABLE,
    "pack427_recalculateUnreadCounters": CALLABLE,
    "pack427_onMessageEnqueued": {"eventTrigger": {
        "eventType": "google.cloud.firestore.document.v1.created",
        "document": "regions/{region}/messageQueue/{entryId}"}},
    "pack427_onFanOut": {"eventTrigger": {
        "eventType": "google.cloud.firestore.document.v1.created",
        "document": "chats/{chatId}/fanOuts/{messageId}"}},
    "pack427_onChatCoreMessage": {"eventTrigger": {
        "eventType": "google.cloud.firestore.document.v1.created",
        "document": "chats/{chatId}/messages/{messageId}"}},
    "pack427_processMessageQueue": {"scheduleTrigger": {"schedule": "every 1 minutes"}},
    "pack427_exportQueueStats": {"scheduleTrigger": {"schedule": "every 5 minutes"}},
}
"""The deployed functions (shared/DESIGN.md: names are the public API)."""

ONLY_IN_CHAT_CORE_MODE = {"pack427_onChatCoreMessage"}
"""Deployed only with PACK427_MESSAGE_SOURCE=chatCore in functions/.env (README)."""

def _options(memory: int, timeout: int, concurrency: int, cpu: float, min_instances: int, max_instances: int) -> dict:
    return {"availableMemoryMb": memory, "timeoutSeconds": timeout, "concurrency": concurrency, "cpu": cpu,
            "minInstances": min_instances, "maxInstances": max_instances}


CALLABLE_OPTIONS = _options(512, 60, 40, 1, 0, 100)
OPTIONS: dict[str, dict] = {
    **{name: CALLABLE_OPTIONS for name, trigger in EXPECTED.items() if trigger is CALLABLE},
    "pack427_onMessageEnqueued": _options(512, 60, 40, 1, 0, 100),
    "pack427_onFanOut": _options(1024, 540, 1, 1, 0, 20),
    "pack427_onChatCoreMessage": _options(512, 60, 40, 1, 0, 100),
    "pack427_processMessageQueue": _options(1024, 120, 1, 1, 0, 1),
    "pack427_exportQueueStats": _options(512, 120, 1, 1, 0, 1),
}
"""What each function runs with (functions/main.py; docs/CAPACITY.md, "Function options", says why)."""

CURSOR_KEY = "PACK427_CURSOR_KEY"
CURSOR_FUNCTIONS = {"pack427_syncMessages", "pack427_getChatList", "pack427_resyncChat",
                    "pack427_recalculateUnreadCounters"}
"""The functions that sign or check cursors (pack427.reading.cursors): each needs the cursor key secret."""


def check_functions(functions_dir: Path, manifest: dict | None = None) -> list[str]:
    """Problems with the manifest built from `functions_dir`/main.py (or `manifest`, built from it)."""
    manifest = manifest if manifest is not None else build_manifest(functions_dir)
    endpoints = manifest.get("endpoints", {})
    problems = []
    for name in sorted(set(EXPECTED) | {n for n in endpoints if n.startswith("pack427_")}):
        expected = EXPECTED.get(name)
        endpoint = endpoints.get(name)
        if endpoint is None and name in ONLY_IN_CHAT_CORE_MODE:
            continue
        if endpoint is None:
            problems.append(f"function {name}: missing from functions/main.py")
        elif expected is None:
            problems.append(f"function {name}: not a function of the engine (renamed? add it to EXPECTED)")
        else:
            problems += [f"function {name}: {p}" for p in _endpoint_problems(endpoint, expected)]
    return problems


def build_manifest(functions_dir: Path) -> dict:
    """The manifest firebase-tools would read from the functions, as a dict."""
    import yaml  # the functions venv has it (firebase_functions needs it)
    from firebase_functions.private import serving

    here = os.getcwd()
    os.chdir(functions_dir)  # serving loads ./main.py, as under firebase-tools
    try:
        return yaml.safe_load(serving.functions_as_yaml(serving.get_functions()))
    finally:
        os.chdir(here)


def _endpoint_problems(endpoint: dict, expected: dict) -> list[str]:
    problems = []
    regions = endpoint.get("region") or [DEFAULT_REGION]
    if regions != [DEFAULT_REGION]:
        problems.append(f"region {regions}, expected [{DEFAULT_REGION!r}]")
    if endpoint.get("platform") != "gcfv2":
        problems.append(f"platform {endpoint.get('platform')!r}, expected 2nd gen (gcfv2)")
    [(kind, want)] = expected.items()
    got = endpoint.get(kind)
    if got is None:
        triggers = [k for k in endpoint if k.endswith("Trigger")]
        return [*problems, f"trigger {triggers}, expected {kind}"]
    if kind == "scheduleTrigger" and got.get("schedule") != want["schedule"]:
        problems.append(f"schedule {got.get('schedule')!r}, expected {want['schedule']!r}")
    if kind == "eventTrigger":
        if got.get("eventType") != want["eventType"]:
            problems.append(f"event {got.get('eventType')!r}, expected {want['eventType']!r}")
        document = (got.get("eventFilterPathPatterns") or {}).get("document")
        if document != want["document"]:
            problems.append(f"document {document!r}, expected {want['document']!r}")
    return problems


def check_options(manifest: dict) -> list[str]:
    """Problems with each deployed function's options (OPTIONS)."""
    problems = []
    for name, endpoint in sorted(manifest.get("endpoints", {}).items()):
        for option, want in OPTIONS.get(name, {}).items():
            if endpoint.get(option) != want:
                problems.append(f"function {name}: {option} {endpoint.get(option)!r}, expected {want!r}")
    return problems


def check_alerts(root: Path) -> list[str]:
    """Problems with monitoring/: files that differ from what the code renders, or that do not parse."""
    from google.cloud import monitoring_v3
    from google.cloud.logging_v2.types import LogMetric

    from pack427.operating import alert_policies

    folder = root / "monitoring"
    stored = {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*.json"))}
    rendered = alert_policies.render()
    problems = [f"monitoring/{path}: missing (scripts/deploy --alerts-render)" for path in rendered.keys() - stored.keys()]
    problems += [f"monitoring/{path}: not rendered by the engine (remove it)" for path in stored.keys() - rendered.keys()]
    problems += [f"monitoring/{path}: differs from the engine's thresholds and alerts (scripts/deploy --alerts-render)"
                 for path in sorted(rendered.keys() & stored.keys()) if rendered[path] != stored[path]]
    for path, text in stored.items():
        kind = LogMetric if path.startswith("metrics/") else monitoring_v3.AlertPolicy
        try:
            kind.from_json(text, ignore_unknown_fields=False)
        except Exception as err:  # noqa: BLE001 - any parse error is the problem to report
            problems.append(f"monitoring/{path}: not a {kind.__name__}: {err}")
    return problems


def render_alerts(root: Path) -> None:
    """Write monitoring/ as pack427.operating.alert_policies renders it (stale files removed)."""
    from pack427.operating import alert_policies

    folder = root / "monitoring"
    for old in folder.rglob("*.json"):
        old.unlink()
    for path, text in alert_policies.render().items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)


def check_secrets(manifest: dict, functions_dir: Path) -> list[str]:
    """Problems that would let a deploy sign cursors with the development key (or with none)."""
    problems = []
    declared = {p.get("name"): p.get("type") for p in manifest.get("params") or []}
    if declared.get(CURSOR_KEY) != "secret":
        problems.append(f"{CURSOR_KEY}: not declared as a secret param (SecretParam) in the functions")
    endpoints = manifest.get("endpoints", {})
    for name in sorted(CURSOR_FUNCTIONS):
        keys = {s.get("key") for s in (endpoints.get(name) or {}).get("secretEnvironmentVariables") or []}
        if name in endpoints and CURSOR_KEY not in keys:
            problems.append(f"function {name}: signs cursors but does not declare the secret {CURSOR_KEY} "
                            "(secrets=[cursors.SECRET]): it would run without the key")
    for env in sorted(functions_dir.glob(".env*")):
        if env.name.endswith(".local"):
            continue  # the emulators' only; firebase deploy neither reads nor uploads *.local
        for number, line in enumerate(env.read_text().splitlines(), 1):
            if line.split("=", 1)[0].strip().removeprefix("export ").strip() == CURSOR_KEY:
                problems.append(f"functions/{env.name}:{number}: sets {CURSOR_KEY}, a key in the repository; "
                                f"it is a secret: firebase functions:secrets:set {CURSOR_KEY}")
    return problems + _signing_problems()


def _signing_problems() -> list[str]:
    """Whether pack427.reading.cursors, in a deployed instance's environment, refuses a missing or the development key."""
    import contextlib
    import io

    from pack427 import errors
    from pack427.reading import cursors

    saved = {k: os.environ.pop(k) for k in ("FUNCTIONS_EMULATOR", "FIRESTORE_EMULATOR_HOST", CURSOR_KEY)
             if k in os.environ}
    problems = []
    try:
        for value, what in [("", "without the secret"), (cursors.DEVELOPMENT_KEY, "with the development key")]:
            os.environ[CURSOR_KEY] = value
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    cursors.encode("check", "uid", {})  # the alert it logs is expected here
            except errors.Unavailable:
                continue
            problems.append(f"pack427.reading.cursors: a deployed instance {what} signs cursors (with the development key)")
    finally:
        os.environ.pop(CURSOR_KEY, None)
        os.environ.update(saved)
    return problems


def check_rules(rules: Path, java: str, emulator_jar: str) -> list[str]:
    """Problems the Firestore emulator finds compiling `rules` (errors and warnings)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    emulator = subprocess.Popen(
        [java, "-cp", emulator_jar, "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
         "start", "--host=127.0.0.1", f"--port={port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/", 180)  # a busy 2-core machine: a minute and more
        body = json.dumps({"rules": {"files": [{"name": rules.name, "content": rules.read_text()}]}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/emulator/v1/projects/demo-pack427-check:securityRules",
            data=body, method="PUT", headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                issues = json.loads(response.read() or b"{}").get("issues", [])
        except urllib.error.HTTPError as err:
            message = json.loads(err.read()).get("error", {}).get("message", str(err))
            return [f"{rules.name}: {line}" for line in message.splitlines() if line.strip()]
        return [
            f"{rules.name}:{i['sourcePosition'].get('line')}:{i['sourcePosition'].get('column')}: "
            f"{i.get('severity')}: {i.get('description')}"
            for i in issues
        ]
    finally:
        emulator.terminate()
        emulator.wait(10)


def _wait(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"the Firestore emulator did not start within {seconds} s")


DEPLOY_CONFIG = "firebase.deploy.json"
"""What `scripts/deploy` hands `firebase deploy --config`: firebase.json with the indexes of the mode
being deployed (write_deploy_config). Written at the root, so that its paths mean what firebase.json's do."""


def deploy_indexes(root: Path, manifest: dict) -> dict:
    """firestore.indexes.json, and in chat-core mode (the functions have pack427_onChatCoreMessage)
    the index of the chat-core sweep (pack427.accepting.chat_core_intake.SWEEP_FIELD_OVERRIDES)."""
    from pack427.accepting import chat_core_intake

    spec = json.loads((root / "firestore.indexes.json").read_text())
    if ONLY_IN_CHAT_CORE_MODE & set(manifest.get("endpoints", {})):
        spec["fieldOverrides"] = spec.get("fieldOverrides", []) + chat_core_intake.SWEEP_FIELD_OVERRIDES
    return spec


def write_deploy_config(root: Path, manifest: dict) -> Path:
    """Write DEPLOY_CONFIG and the indexes it names (.firebase/firestore.indexes.deploy.json); its path."""
    indexes = root / ".firebase" / "firestore.indexes.deploy.json"
    indexes.parent.mkdir(exist_ok=True)
    indexes.write_text(json.dumps(deploy_indexes(root, manifest), indent=2) + "\n")
    config = json.loads((root / "firebase.json").read_text())
    config["firestore"]["indexes"] = str(indexes.relative_to(root))
    (root / DEPLOY_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return root / DEPLOY_CONFIG


def check_indexes(path: Path) -> list[str]:
    """Problems with the shape and content of firestore.indexes.json."""
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        return [f"{path.name}: not JSON: {err}"]
    if not isinstance(spec, dict) or set(spec) - {"indexes", "fieldOverrides"}:
        return [f"{path.name}: top level must be an object with only 'indexes' and 'fieldOverrides'"]
    problems, seen = [], set()
    for i, index in enumerate(spec.get("indexes", [])):
        where = f"{path.name}: indexes[{i}]"
        if not isinstance(index, dict) or not isinstance(index.get("collectionGroup"), str):
            problems.append(f"{where}: needs a collectionGroup")
            continue
        if index.get("queryScope", "COLLECTION") not in ("COLLECTION", "COLLECTION_GROUP"):
            problems.append(f"{where}: queryScope {index.get('queryScope')!r}")
        fields = index.get("fields")
        if not isinstance(fields, list) or not fields:
            problems.append(f"{where}: needs fields")
            continue
        problems += [f"{where}.fields[{j}]: {p}" for j, f in enumerate(fields) for p in _field_problems(f)]
        key = (index["collectionGroup"], index.get("queryScope", "COLLECTION"), json.dumps(fields, sort_keys=True))
        if key in seen:
            problems.append(f"{where}: duplicate index")
        seen.add(key)
    problems += _ttl_and_exemption_problems(path.name, spec.get("fieldOverrides", []))
    for i, override in enumerate(spec.get("fieldOverrides", [])):
        where = f"{path.name}: fieldOverrides[{i}]"
        if not isinstance(override, dict) or not all(isinstance(override.get(k), str)
                                                       for k in ("collectionGroup", "fieldPath")):
            problems.append(f"{where}: needs collectionGroup and fieldPath")
            continue
        if not isinstance(override.get("ttl", False), bool):
            problems.append(f"{where}: ttl must be true or false")
        for j, f in enumerate(override.get("indexes", [])):
            problems += [f"{where}.indexes[{j}]: {p}" for p in _field_problems(f, needs_path=False)]
    return problems


def _ttl_and_exemption_problems(name: str, overrides: list) -> list[str]:
    """The TTL policies and index exemptions the engine relies on (pack427.paths.TTL_FIELDS,
    INDEX_EXEMPTIONS) are declared, and no other override turns indexing off or on TTL."""
    from pack427 import paths

    declared = {(o.get("collectionGroup"), o.get("fieldPath")): o for o in overrides if isinstance(o, dict)}
    problems = []
    for group, field in paths.TTL_FIELDS.items():
        override = declared.get((group, field))
        if override is None or override.get("ttl") is not True:
            problems.append(f"{name}: no TTL policy on {group}.{field} (pack427.paths.TTL_FIELDS)")
    ttl = {(group, field) for (group, field), o in declared.items() if o.get("ttl") is True}
    problems += [f"{name}: TTL policy on {g}.{f}, which the engine does not set (pack427.paths.TTL_FIELDS)"
                 for g, f in sorted(ttl - set(paths.TTL_FIELDS.items()))]
    exempt = {(group, field) for group, fields in paths.INDEX_EXEMPTIONS.items() for field in fields}
    for group, field in sorted(exempt):
        override = declared.get((group, field))
        if override is None or override.get("indexes") != []:
            problems.append(f"{name}: {group}.{field} must have its single-field indexes exempted (\"indexes\": [];"
                            " pack427.paths.INDEX_EXEMPTIONS)")
    off = {key for key, o in declared.items() if o.get("indexes") == []}
    problems += [f"{name}: {g}.{f} is exempted from indexing, but not in pack427.paths.INDEX_EXEMPTIONS"
                 for g, f in sorted(off - exempt)]
    return problems


def _field_problems(field: object, *, needs_path: bool = True) -> list[str]:
    if not isinstance(field, dict):
        return ["must be an object"]
    problems = []
    if needs_path and not isinstance(field.get("fieldPath"), str):
        problems.append("needs a fieldPath")
    modes = [k for k in ("order", "arrayConfig", "vectorConfig") if k in field]
    if len(modes) != 1:
        problems.append("needs exactly one of order, arrayConfig, vectorConfig")
    elif "order" in field and field["order"] not in ("ASCENDING", "DESCENDING"):
        problems.append(f"order {field['order']!r}")
    elif "arrayConfig" in field and field["arrayConfig"] != "CONTAINS":
        problems.append(f"arrayConfig {field['arrayConfig']!r}")
    return problems


def _emulator_jar(state: Path) -> str:
    """The Cloud SDK's Firestore emulator (scripts/setup notes it), else the one firebase-tools downloaded."""
    noted = state / "firestore-sdk-jar"
    if noted.exists():
        return noted.read_text().strip()
    downloaded = sorted((Path.home() / ".cache" / "firebase" / "emulators").glob("cloud-firestore-emulator-*.jar"))
    if not downloaded:
        raise RuntimeError("no Firestore emulator jar: run scripts/setup (and the emulators once)")
    return str(downloaded[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--render-alerts", action="store_true", help="write monitoring/ from the code, then check")
    parser.add_argument("--write-deploy-config", action="store_true",
                        help=f"after the checks pass, write {DEPLOY_CONFIG} for `firebase deploy --config`")
    args = parser.parse_args()
    root = args.root.resolve()
    # No credentials, no project of anyone's: nothing here may reach Google.
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "FIREBASE_TOKEN"):
        os.environ.pop(name, None)
    os.environ.setdefault("GCLOUD_PROJECT", "demo-pack427-check")
    sys.path.insert(0, str(root / "functions"))
    state = root / ".emulators"
    manifest = functools.cache(lambda: build_manifest(root / "functions"))  # main.py runs once per process
    if args.render_alerts:
        render_alerts(root)
    checks = {
        "functions": lambda: check_functions(root / "functions", manifest()),
        "secrets": lambda: check_secrets(manifest(), root / "functions"),
        "rules": lambda: check_rules(root / "firestore.rules", (state / "java").read_text().strip(),
                                     _emulator_jar(state)),
        "indexes": lambda: check_indexes(root / "firestore.indexes.json"),
        "options": lambda: check_options(manifest()),
        "alerts": lambda: check_alerts(root),
    }
    failed = False
    for name, check in checks.items():
        try:
            problems = check()
        except Exception as err:  # noqa: BLE001 - a check that cannot run fails
            problems = [f"could not check: {type(err).__name__}: {err}"]
        print(f"deploy check: {name}: {'ok' if not problems else 'FAILED'}")
        for problem in problems:
            print(f"  {problem}")
        failed = failed or bool(problems)
    if args.write_deploy_config and not failed:
        written = write_deploy_config(root, manifest())
        problems = check_indexes(root / json.loads(written.read_text())["firestore"]["indexes"])
        print(f"deploy config: {written.name} ({'ok' if not problems else 'FAILED'})")
        for problem in problems:
            print(f"  {problem}")
        failed = bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
