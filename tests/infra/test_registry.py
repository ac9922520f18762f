"""Optional registry credentials (iot:registry): a private image pulls on every node, and the
credentials exist only as a 0600 file pushed over SSH (never user data, job specs or plain state)."""

from __future__ import annotations

import base64
import json

import pytest

from components.config import ConfigError, parse_stack_config
from infra.harness import run_stack
from infra.test_config import SECRETS, committed

COMMAND = "command:remote:Command"
REGISTRY = json.dumps({"server": "ghcr.io", "username": "iot-deploy-bot", "password": "ghp_FAKEREGISTRYTOKEN42"})
AUTH = base64.b64encode(b"iot-deploy-bot:ghp_FAKEREGISTRYTOKEN42").decode()


@pytest.fixture(scope="module")
def with_registry():
    return run_stack("prod", secret_overrides={"iot:registry": REGISTRY})


def docker_configs(run) -> dict[str, dict]:
    found = {}
    for cmd in run.of_type(COMMAND):
        if cmd.name.endswith("-push"):
            files = {f["path"]: f for f in json.loads(cmd.inputs["stdin"])["files"]}
            found[cmd.name] = files["/etc/iot/docker/config.json"]
    return found


def test_every_node_pulls_private_images_with_the_registry_credentials(with_registry):
    configs = docker_configs(with_registry)
    assert len(configs) == 3 + 6  # three cluster nodes (Nomad's docker driver) and six monitors
    for name, entry in configs.items():
        assert entry["mode"] == "0600", name
        assert json.loads(entry["content"]) == {"auths": {"ghcr.io": {"auth": AUTH}}}, name


def test_registry_credentials_stay_secret(with_registry):
    for res in with_registry.resources:
        for key, value in res.raw_inputs.items():
            if "ghp_FAKEREGISTRYTOKEN42" in json.dumps(value) or AUTH in json.dumps(value):
                assert res.type == COMMAND and key == "stdin" and res.input_is_secret("stdin"), (res.name, key)
    for res in with_registry.of_type("hcloud:index/server:Server"):
        assert "ghp_" not in res.inputs["userData"] and AUTH not in res.inputs["userData"]


def test_without_credentials_pulls_are_anonymous(stack_runs):
    for name, entry in docker_configs(stack_runs("dev")).items():
        assert json.loads(entry["content"]) == {"auths": {}}, name


def test_adding_credentials_changes_only_the_pushed_files(stack_runs, with_registry):
    # A running cluster gets the credentials on the next `up`: new push triggers, same servers.
    before, after = stack_runs("prod"), with_registry
    for old, new in zip(sorted(before.of_type(COMMAND), key=lambda r: r.name),
                        sorted(after.of_type(COMMAND), key=lambda r: r.name), strict=True):
        if old.name.endswith("-push"):
            assert old.inputs["triggers"] != new.inputs["triggers"], old.name
    old_servers = {r.urn: r.inputs["userData"] for r in before.of_type("hcloud:index/server:Server")}
    assert old_servers == {r.urn: r.inputs["userData"] for r in after.of_type("hcloud:index/server:Server")}


def parse_registry(value):
    return parse_stack_config(committed("prod"), "test", {**SECRETS, "registry": value})


def test_registry_is_parsed_from_json():
    registry = parse_registry(REGISTRY).registry
    assert (registry.server, registry.username) == ("ghcr.io", "iot-deploy-bot")
    assert parse_stack_config(committed("prod"), "test", SECRETS).registry is None


@pytest.mark.parametrize(("value", "expected"), [
    ("ghp_token", "iot:registry must be a JSON object"),
    (json.dumps({"server": "ghcr.io", "username": "bot"}), "iot:registry.password is missing"),
    (json.dumps({"server": "https://ghcr.io", "username": "bot", "password": "x"}),
     "iot:registry.server 'https://ghcr.io' is not a registry host"),
    (json.dumps({"server": "ghcr.io", "username": "bot", "password": "x", "email": "a@b"}),
     "iot:registry has unknown field(s) email"),
])
def test_bad_registry_values_name_the_key_and_fix_without_echoing_the_password(value, expected):
    with pytest.raises(ConfigError) as info:
        parse_registry(value)
    message = str(info.value)
    assert expected in message
    assert "pulumi config set --secret iot:registry" in message
    assert "ghp_token" not in message


def test_registry_in_plain_text_is_refused():
    raw = {**committed("prod"), "registry": {"server": "ghcr.io", "username": "bot", "password": "pw"}}
    with pytest.raises(ConfigError, match="iot:registry holds credentials.*--secret iot:registry"):
        parse_stack_config(raw, "test", SECRETS)


def test_load_refuses_a_registry_set_without_secret(monkeypatch):
    import pulumi

    from components.config import load_stack_config
    from infra.harness import ROOT, stack_config

    monkeypatch.setattr(pulumi, "get_stack", lambda: "dev")  # the engine names the stack it runs
    config, secret_keys = stack_config(ROOT / "Pulumi.dev.yaml")
    pulumi.runtime.set_all_config({**config, "iot:registry": REGISTRY}, secret_keys)
    with pytest.raises(ConfigError, match=r"iot:registry is stored in plain text.*--secret iot:registry"):
        load_stack_config()
    pulumi.runtime.set_all_config({**config, "iot:registry": REGISTRY}, [*secret_keys, "iot:registry"])
    assert load_stack_config().registry.server == "ghcr.io"
