"""`scripts/deploy --check` fails when a deploy would sign cursors with the development key
(scripts/deploy_check.py, check `secrets`), and passes on the repository as it is."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.emulator import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import deploy_check  # noqa: E402

from pack427.reading import cursors  # noqa: E402

PYTHON = ROOT / "functions" / "venv" / "bin" / "python"
SECRET = "PACK427_CURSOR_KEY"
CURSOR_FUNCTIONS = ["pack427_syncMessages", "pack427_getChatList", "pack427_resyncChat", "pack427_recalculateUnreadCounters"]


def problems_of(functions_dir) -> dict[str, list[str]]:
    """The functions and secrets checks' problems for `functions_dir`/main.py, run as
    `scripts/deploy --check` runs them (in a process of their own: main.py initialises the app)."""
    script = (
        "import json, sys; from pathlib import Path; import deploy_check as c; d = Path(sys.argv[1]); "
        "m = c.build_manifest(d); "
        "print(json.dumps({'functions': c.check_functions(d, m), 'secrets': c.check_secrets(m, d)}))"
    )
    env = {"PYTHONPATH": f"{ROOT / 'scripts'}:{ROOT / 'functions'}", "GCLOUD_PROJECT": "demo-pack427-check",
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(PYTHON), "-c", script, str(functions_dir)], env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def manifest(secret_on: list[str] = CURSOR_FUNCTIONS, param_type: str = "secret") -> dict:
    return {"params": [{"name": SECRET, "type": param_type}],
            "endpoints": {name: {"secretEnvironmentVariables": [{"key": SECRET}] if name in secret_on else []}
                          for name in CURSOR_FUNCTIONS}}


def test_the_repository_passes():
    assert problems_of(ROOT / "functions") == {"functions": [], "secrets": []}


def test_a_function_that_signs_cursors_without_the_secret_fails(tmp_path):
    main = (ROOT / "functions" / "main.py").read_text()
    assert main.count("@https_fn.on_call(secrets=[cursors.SECRET])") == len(CURSOR_FUNCTIONS) == 4
    (tmp_path / "main.py").write_text(main.replace(
        "@https_fn.on_call(secrets=[cursors.SECRET])  # signs and checks cursors\ndef pack427_getChatList",
        "@https_fn.on_call()\ndef pack427_getChatList"))
    found = problems_of(tmp_path)
    assert found["functions"] == []  # the function is there as it should be: only the secret is missing
    assert len(found["secrets"]) == 1 and found["secrets"][0].startswith("function pack427_getChatList: signs cursors")


def test_a_key_in_an_env_file_a_deploy_reads_fails_and_one_for_the_emulators_only_does_not(tmp_path):
    (tmp_path / ".env").write_text("PACK427_MESSAGE_SOURCE=engine\nPACK427_CURSOR_KEY=some-key-in-git\n")
    (tmp_path / ".env.my-project").write_text("export PACK427_CURSOR_KEY = another\n")
    (tmp_path / ".env.local").write_text("PACK427_CURSOR_KEY=for-the-emulators\n")
    (tmp_path / ".secret.local").write_text("PACK427_CURSOR_KEY=for-the-emulators\n")
    found = deploy_check.check_secrets(manifest(), tmp_path)
    assert [p.split(": ")[0] for p in found] == ["functions/.env:2", "functions/.env.my-project:1"]
    assert deploy_check.check_secrets(manifest(), tmp_path / "empty") == []


@pytest.mark.parametrize("declared", [manifest(param_type="string"), {**manifest(), "params": []}])
def test_a_key_that_is_not_a_secret_param_fails(tmp_path, declared):
    assert deploy_check.check_secrets(declared, tmp_path) == [
        f"{SECRET}: not declared as a secret param (SecretParam) in the functions"]


def test_an_engine_that_would_sign_with_the_development_key_when_deployed_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(cursors, "keys", lambda: cursors.Keys(cursors.DEVELOPMENT_KEY.encode()))
    assert deploy_check.check_secrets(manifest(), tmp_path) == [
        "pack427.reading.cursors: a deployed instance without the secret signs cursors (with the development key)",
        "pack427.reading.cursors: a deployed instance with the development key signs cursors (with the development key)",
    ]


def test_the_options_check_names_a_function_whose_options_changed():
    endpoints = {name: dict(options) for name, options in deploy_check.OPTIONS.items()}
    assert deploy_check.check_options({"endpoints": endpoints}) == []
    endpoints["pack427_onFanOut"]["timeoutSeconds"] = 60
    endpoints["pack427_sendMessage"]["concurrency"] = 1
    assert deploy_check.check_options({"endpoints": endpoints}) == [
        "function pack427_onFanOut: timeoutSeconds 60, expected 540",
        "function pack427_sendMessage: concurrency 1, expected 40",
    ]


def test_the_alerts_check_fails_on_a_threshold_that_is_not_the_engines(tmp_path):
    import shutil

    shutil.copytree(ROOT / "monitoring", tmp_path / "monitoring")
    assert deploy_check.check_alerts(tmp_path) == []
    policy = tmp_path / "monitoring" / "policies" / "QUEUE_DEPTH.json"
    edited = json.loads(policy.read_text())
    edited["conditions"][0]["conditionThreshold"]["thresholdValue"] = 9_000
    policy.write_text(json.dumps(edited, indent=2, sort_keys=True) + "\n")
    (tmp_path / "monitoring" / "policies" / "MESSAGE_DROPPED.json").unlink()
    (tmp_path / "monitoring" / "metrics" / "junk.json").write_text('{"name": "x", "bogus": 1}')
    found = deploy_check.check_alerts(tmp_path)
    assert found[:3] == [
        "monitoring/policies/MESSAGE_DROPPED.json: missing (scripts/deploy --alerts-render)",
        "monitoring/metrics/junk.json: not rendered by the engine (remove it)",
        "monitoring/policies/QUEUE_DEPTH.json: differs from the engine's thresholds and alerts "
        "(scripts/deploy --alerts-render)",
    ]
    [parse] = found[3:]
    assert parse.startswith("monitoring/metrics/junk.json: not a LogMetric: ") and '"bogus"' in parse


def _indexes_without(tmp_path, drop) -> list[str]:
    spec = json.loads((ROOT / "firestore.indexes.json").read_text())
    spec["fieldOverrides"] = [o for o in spec["fieldOverrides"] if not drop(o)]
    path = tmp_path / "firestore.indexes.json"
    path.write_text(json.dumps(spec))
    return deploy_check.check_indexes(path)


def test_the_indexes_check_fails_without_a_ttl_policy_or_an_exemption_the_engine_relies_on(tmp_path):
    assert deploy_check.check_indexes(ROOT / "firestore.indexes.json") == []
    assert _indexes_without(tmp_path, lambda o: (o["collectionGroup"], o["fieldPath"]) == (
        "idempotencyKeys", "expiresAt")) == [
        "firestore.indexes.json: no TTL policy on idempotencyKeys.expiresAt (pack427.paths.TTL_FIELDS)",
        "firestore.indexes.json: idempotencyKeys.expiresAt must have its single-field indexes exempted"
        " (\"indexes\": []; pack427.paths.INDEX_EXEMPTIONS)"]
    assert _indexes_without(tmp_path, lambda o: (o["collectionGroup"], o["fieldPath"]) == (
        "chats", "lastMessage")) == [
        "firestore.indexes.json: chats.lastMessage must have its single-field indexes exempted"
        " (\"indexes\": []; pack427.paths.INDEX_EXEMPTIONS)"]


def test_the_indexes_check_fails_on_a_ttl_policy_or_exemption_the_engine_does_not_know(tmp_path):
    spec = json.loads((ROOT / "firestore.indexes.json").read_text())
    spec["fieldOverrides"] += [{"collectionGroup": "inbox", "fieldPath": "deliveredAt", "ttl": True, "indexes": []}]
    path = tmp_path / "firestore.indexes.json"
    path.write_text(json.dumps(spec))
    assert deploy_check.check_indexes(path) == [
        "firestore.indexes.json: TTL policy on inbox.deliveredAt, which the engine does not set"
        " (pack427.paths.TTL_FIELDS)",
        "firestore.indexes.json: inbox.deliveredAt is exempted from indexing, but not in"
        " pack427.paths.INDEX_EXEMPTIONS"]


def test_the_sweeps_sequential_index_is_deployed_only_in_chat_core_mode(tmp_path):
    """messages.createdAt across every chat caps message creation at 500 a second for the whole
    database (docs/CAPACITY.md): only a deployment whose functions take the chat core's messages has it."""
    from pack427.accepting import chat_core_intake

    engine = deploy_check.deploy_indexes(ROOT, {"endpoints": {"pack427_sendMessage": {}}})
    chat_core = deploy_check.deploy_indexes(ROOT, {"endpoints": {"pack427_onChatCoreMessage": {}}})
    assert engine == json.loads((ROOT / "firestore.indexes.json").read_text())
    assert not any(o["collectionGroup"] == "messages" for o in engine["fieldOverrides"])
    assert chat_core["fieldOverrides"] == engine["fieldOverrides"] + chat_core_intake.SWEEP_FIELD_OVERRIDES
    (tmp_path / "firebase.json").write_text((ROOT / "firebase.json").read_text())
    (tmp_path / "firestore.indexes.json").write_text((ROOT / "firestore.indexes.json").read_text())
    written = deploy_check.write_deploy_config(tmp_path, {"endpoints": {"pack427_onChatCoreMessage": {}}})
    config = json.loads(written.read_text())
    assert json.loads((tmp_path / config["firestore"]["indexes"]).read_text()) == chat_core
    assert deploy_check.check_indexes(tmp_path / config["firestore"]["indexes"]) == []
    assert config["functions"] == json.loads((ROOT / "firebase.json").read_text())["functions"]
