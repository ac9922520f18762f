"""Stack configuration: the committed stacks parse, every bad value fails with key, value and fix."""

from __future__ import annotations

import copy
import json

import pulumi
import pytest
import yaml

from components.config import (
    EU_LOCATIONS,
    HETZNER_LOCATIONS,
    RESERVED_NAMES,
    ConfigError,
    Images,
    load_stack_config,
    parse_stack_config,
)
from deploy import release
from infra.harness import ROOT, stack_config

SECRETS = {"databaseUrl": "postgresql://iot:pw@db/iot", "redisUrl": "redis://localhost:6379/0"}


def committed(stack: str) -> dict:
    """Raw iot:* values of a committed stack file, namespace stripped, secure keys left out, and the
    release digests a deploy passes in (stand-ins) for a protected stack."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    raw = {
        key.split(":", 1)[1]: value
        for key, value in document["config"].items()
        if key.startswith("iot:") and not (isinstance(value, dict) and "secure" in value)
    }
    images = release.placeholder_images(document["config"])
    if images is not None:
        raw["images"] = images
    return raw


def parse(raw: dict, secrets: dict | None = None):
    return parse_stack_config(raw, "test", SECRETS if secrets is None else secrets)


def error_for(mutate, stack: str = "prod", secrets: dict | None = None) -> str:
    raw = copy.deepcopy(committed(stack))
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse(raw, secrets)
    return str(info.value)


def test_dev_stack_matches_design():
    cfg = parse(committed("dev"))
    assert cfg.cluster.locations == ("fsn1",)
    assert [(n.id, n.location) for n in cfg.cluster.nodes] == [(1, "fsn1")]
    assert cfg.cluster.server_type == "cx23"
    assert [(m.name, m.provider, m.location) for m in cfg.monitors] == [
        ("frankfurt", "hetzner", "fsn1"), ("helsinki", "hetzner", "hel1"),
    ]
    assert cfg.edge.load_balancer is False
    assert cfg.protect is False


def test_prod_stack_matches_design():
    cfg = parse(committed("prod"))
    assert cfg.cluster.locations == ("fsn1", "nbg1", "hel1")
    assert {m.name: (m.provider, m.location) for m in cfg.monitors} == {
        "ashburn": ("hetzner", "ash"), "hillsboro": ("hetzner", "hil"), "helsinki": ("hetzner", "hel1"),
        "singapore": ("hetzner", "sin"), "tokyo": ("linode", "jp-tyo-3"), "frankfurt": ("hetzner", "fsn1"),
    }
    assert cfg.edge.load_balancer is True
    assert cfg.protect is True
    assert cfg.versions.traefik.startswith("v3.")
    assert set(cfg.services) == {"tracker", "worker", "dashboard", "marketing", "docs"}


def test_committed_stacks_hold_no_plaintext_secret():
    for stack in ("dev", "prod"):
        document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
        for key in ("iot:databaseUrl", "iot:redisUrl", "hcloud:token", "cloudflare:apiToken"):
            assert set(document[key]) == {"secure"}, f"{stack}: {key} must be a secure value"


def test_defaults_fill_optional_keys():
    raw = {"domain": "example.com", "adminCidrs": ["203.0.113.0/24"], "cluster": {"nodes": [{"id": 1, "location": "nbg1"}]},
           "cloudflare": {"accountId": "a" * 32, "zoneId": "b" * 32}}
    cfg = parse(raw)
    assert cfg.cluster.server_type == "cx23" and cfg.cluster.image == "debian-12"
    assert cfg.monitors == ()
    assert cfg.images.ref("app") == "ghcr.io/my-iot-app/iot:latest"
    assert cfg.services["tracker"].count >= 1
    assert cfg.ssh_user == "root" and cfg.protect is False


def test_monitor_defaults_depend_on_provider():
    raw = committed("prod")
    raw["monitors"] = [{"name": "osaka", "provider": "linode", "location": "jp-osa"},
                       {"name": "ashburn", "location": "ash"}]
    cfg = parse(raw)
    assert (cfg.monitors[0].server_type, cfg.monitors[0].image) == ("g6-nanode-1", "linode/debian12")
    assert (cfg.monitors[1].provider, cfg.monitors[1].server_type, cfg.monitors[1].image) == (
        "hetzner", "cpx12", "debian-12")


def test_image_ref_appends_tag_unless_pinned():
    digest = "ghcr.io/x/docs@sha256:" + "a" * 64
    images = Images(app="ghcr.io/x/iot", marketing="registry:5000/x/marketing:v2", docs=digest, tag="abc123")
    assert images.ref("app") == "ghcr.io/x/iot:abc123"
    assert images.ref("marketing") == "registry:5000/x/marketing:v2"
    assert images.ref("docs") == digest
    with pytest.raises(ConfigError, match="unknown image kind 'worker'"):
        images.ref("worker")


def test_image_tag_from_config_is_used():
    raw = committed("dev")
    raw["imageTag"] = "0a1b2c3d"
    assert parse(raw).images.ref("app") == "ghcr.io/my-iot-app/iot:0a1b2c3d"


def test_secrets_are_outputs_marked_secret():
    cfg = parse(committed("dev"))
    assert isinstance(cfg.database_url, pulumi.Output)
    assert pulumi.runtime.sync_await._sync_await(cfg.database_url.is_secret())
    assert pulumi.runtime.sync_await._sync_await(cfg.redis_url.is_secret())


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["cluster"]["nodes"][1].update(location="ams1"),
         ["iot:cluster.nodes[1].location", "'ams1'", "not a Hetzner location", "fsn1"]),
        (lambda r: r["cluster"]["nodes"][1].update(location="ash"),
         ["iot:cluster.nodes[1].location", "'ash'", "outside the EU", "us-east", "nbg1"]),
        (lambda r: r["cluster"]["nodes"].pop(),
         ["iot:cluster.nodes", "2 entries", "odd number", "1, 3 or 5"]),
        (lambda r: r["cluster"].update(nodes=[]),
         ["iot:cluster.nodes", "0 entries", "1, 3 or 5"]),
        (lambda r: r["cluster"]["nodes"][2].update(id=1),
         ["iot:cluster.nodes[2].id 1", "duplicates iot:cluster.nodes[0]", "use 3"]),
        (lambda r: r["cluster"]["nodes"][0].update(id=0),
         ["iot:cluster.nodes[0].id", "must be >= 1"]),
        (lambda r: r["cluster"]["nodes"][0].update(id=201),
         ["iot:cluster.nodes[0].id 201", "1 to 200"]),
        (lambda r: r["cluster"]["nodes"][0].update(name="a"),
         ["iot:cluster.nodes[0]", "unknown field(s) name", "id, location"]),
        (lambda r: r["monitors"].append({"name": "osaka", "provider": "hetzner", "location": "jp-osa"}),
         ["iot:monitors[6].location", "'jp-osa'", "not a Hetzner location", "provider: linode", "jp-tyo-3"]),
        (lambda r: r["monitors"].append({"name": "tokyo2", "provider": "hetzner", "location": "tokyo"}),
         ["iot:monitors[6].location", "'tokyo'", "provider: linode", "jp-tyo-3", "jp-osa"]),
        (lambda r: r["monitors"].append({"name": "paris", "provider": "hetzner", "location": "par1"}),
         ["iot:monitors[6].location", "'par1'", "not a Hetzner location", "fsn1"]),
        (lambda r: r["monitors"].append({"name": "tokyo", "provider": "linode", "location": "jp-osa"}),
         ["iot:monitors[6].name", "'tokyo'", "duplicates iot:monitors[4]", "unique"]),
        (lambda r: r["monitors"].append({"name": "docs", "provider": "hetzner", "location": "fsn1"}),
         ["iot:monitors[6].name", "'docs'", "reserved hostname", "city"]),
        (lambda r: r["monitors"].append({"name": "Frank_furt", "location": "fsn1"}),
         ["iot:monitors[6].name", "'Frank_furt'", "one DNS label"]),
        (lambda r: r["monitors"].append({"name": "sydney", "provider": "vultr", "location": "syd"}),
         ["iot:monitors[6].provider", "'vultr'", "unknown", "hetzner, linode"]),
        (lambda r: r["monitors"].append({"name": "tokio", "provider": "linode", "location": "tokyo"}),
         ["iot:monitors[6].location", "'tokyo'", "not a Linode region", "did you mean jp-tyo-3"]),
        (lambda r: r["monitors"].append({"name": "ashburn2", "location": "ash", "serverType": "cx23"}),
         ["iot:monitors[6].serverType", "'cx23'", "only in EU", "cpx12"]),
        (lambda r: r["monitors"][4].update(image="debian-12"),
         ["iot:monitors[4].image", "'debian-12'", "not a linode image", "linode/debian12"]),
        (lambda r: r["monitors"][0].update(image="linode/debian12"),
         ["iot:monitors[0].image", "'linode/debian12'", "not a hetzner image", "debian-12"]),
        (lambda r: r["cluster"].update(serverType="cx22"),
         ["iot:cluster.serverType", "'cx22'", "deprecated", "cx23"]),
        (lambda r: r.update(adminCidrs=["198.51.100.7/24"]),
         ["iot:adminCidrs[0]", "'198.51.100.7/24'", "not a valid CIDR", "did you mean 198.51.100.0/24"]),
        (lambda r: r.update(adminCidrs=["my-laptop"]),
         ["iot:adminCidrs[0]", "'my-laptop'", "not a valid CIDR", "198.51.100.7/32"]),
        (lambda r: r.update(adminCidrs=["0.0.0.0/0"]),
         ["iot:adminCidrs[0]", "'0.0.0.0/0'", "whole internet"]),
        (lambda r: r.update(adminCidrs=[]),
         ["iot:adminCidrs is empty", "198.51.100.7/32"]),
        (lambda r: r.update(adminCidrs="198.51.100.7/32"),
         ["iot:adminCidrs must be a list", '["198.51.100.7/32"]']),
        (lambda r: r.update(domain="my iot app"),
         ["iot:domain", "'my iot app'", "not a valid domain", "my-iot-app.com"]),
        (lambda r: r["versions"].update(nomad="1.x"),
         ["iot:versions.nomad", "'1.x'", "exact version", "'2.0.7'"]),
        (lambda r: r["versions"].update(traefik="v2.11.0"),
         ["iot:versions.traefik", "'v2.11.0'", "not Traefik v3"]),
        (lambda r: r.update(imageTag="bad tag!"),
         ["iot:imageTag", "'bad tag!'", "not a valid image tag"]),
        (lambda r: r["images"].update(app="Not An Image"),
         ["iot:images.app", "'Not An Image'", "not an image reference"]),
        (lambda r: r["services"].update(tracker={"count": -1}),
         ["iot:services.tracker.count", "-1", "between 1 and 20"]),
        (lambda r: r["services"].update(cron={"count": 1}),
         ["iot:services", "unknown service(s) cron", "tracker"]),
        (lambda r: r["services"]["worker"].update(replicas=2),
         ["iot:services.worker", "unknown field(s) replicas", "count, cpu, memory"]),
        (lambda r: r["edge"].update(steeringPolicy="fastest"),
         ["iot:edge.steeringPolicy", "'fastest'", "dynamic_latency"]),
        (lambda r: r["edge"].update(checkRegions=["EU"]),
         ["iot:edge.checkRegions[0]", "'EU'", "WEU"]),
        (lambda r: r["edge"].update(loadBalancer="yes"),
         ["iot:edge.loadBalancer", "'yes'", "true or false"]),
        (lambda r: r["cloudflare"].update(zoneId="my-zone"),
         ["iot:cloudflare.zoneId", "'my-zone'", "32 lowercase hex", "Cloudflare dashboard"]),
        (lambda r: r.pop("cloudflare"),
         ["iot:cloudflare must be an object", "accountId"]),
        (lambda r: r.pop("cluster"),
         ["iot:cluster is missing", "nodes: [{id: 1, location: fsn1}]"]),
        (lambda r: r.update(sshUser="Root User"),
         ["iot:sshUser", "'Root User'", "Unix user"]),
        (lambda r: r.update(adminCidr=["1.2.3.4/32"]),
         ["unknown configuration key(s) iot:adminCidr", "iot:adminCidrs"]),
    ],
)
def test_invalid_values_name_key_value_and_fix(mutate, expected):
    message = error_for(mutate)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from: {message}"


def test_old_locations_form_fails_with_the_equivalent_nodes_list():
    message = error_for(lambda r: r.update(cluster={"serverType": "cpx22", "locations": ["fsn1", "nbg1", "hel1"]}))
    assert "iot:cluster.locations is no longer supported" in message
    assert "renamed and re-addressed live Raft servers" in message
    # The equivalent that keeps today's servers: ids 1..n in the old order.
    assert "nodes: [{id: 1, location: fsn1}, {id: 2, location: nbg1}, {id: 3, location: hel1}]" in message
    # ...and it really is equivalent: the suggested list parses.
    assert parse({**committed("prod"), "cluster": {"serverType": "cpx22", "nodes": [
        {"id": 1, "location": "fsn1"}, {"id": 2, "location": "nbg1"}, {"id": 3, "location": "hel1"}]}})


def test_nodes_are_ordered_by_id_whatever_the_list_order():
    raw = committed("prod")
    raw["cluster"]["nodes"].reverse()
    assert [(n.id, n.location) for n in parse(raw).cluster.nodes] == [(1, "fsn1"), (2, "nbg1"), (3, "hel1")]


@pytest.mark.parametrize("key", ["databaseUrl", "redisUrl"])
def test_missing_secret_tells_how_to_set_it(key):
    secrets = {k: v for k, v in SECRETS.items() if k != key}
    message = error_for(lambda r: None, secrets=secrets)
    assert f"iot:{key} is missing" in message
    assert f"pulumi config set --secret iot:{key}" in message


def test_malformed_secret_is_reported_without_echoing_it():
    message = error_for(lambda r: None, secrets={**SECRETS, "redisUrl": "http://user:hunter2@redis"})
    assert "iot:redisUrl does not start with redis:// or rediss://" in message
    assert "hunter2" not in message


def test_location_tables_are_consistent():
    assert {"fsn1", "nbg1", "hel1"} == EU_LOCATIONS
    assert "jp" not in " ".join(HETZNER_LOCATIONS)  # no Japan at Hetzner: that is Linode's job


def test_reserved_names_agree_with_the_apps():
    from iot.names import RESERVED_NAMES as APP_RESERVED

    assert RESERVED_NAMES == APP_RESERVED


def as_stack(monkeypatch, stack: str) -> None:
    """The engine names the running stack; these tests load a stack file without an engine."""
    monkeypatch.setattr(pulumi, "get_stack", lambda: stack)


def test_load_stack_config_reads_pulumi_config(monkeypatch):
    as_stack(monkeypatch, "prod")
    config, secret_keys = stack_config(ROOT / "Pulumi.prod.yaml")
    pulumi.runtime.set_all_config(config, secret_keys)
    cfg = load_stack_config()
    assert cfg.cluster.locations == ("fsn1", "nbg1", "hel1")
    assert cfg.monitors[4].provider == "linode"


def test_load_stack_config_refuses_plaintext_secret():
    config, secret_keys = stack_config(ROOT / "Pulumi.dev.yaml")
    pulumi.runtime.set_all_config(config, [k for k in secret_keys if k != "iot:redisUrl"])
    with pytest.raises(ConfigError, match=r"iot:redisUrl is stored in plain text.*--secret iot:redisUrl"):
        load_stack_config()


def test_secret_keys_from_the_cli_environment_count(monkeypatch):
    as_stack(monkeypatch, "dev")
    config, secret_keys = stack_config(ROOT / "Pulumi.dev.yaml")
    pulumi.runtime.set_all_config(config, [])
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(secret_keys))
    assert load_stack_config().domain == "my-iot-app-dev.com"
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps([k for k in secret_keys if k != "iot:databaseUrl"]))
    with pytest.raises(ConfigError, match="iot:databaseUrl is stored in plain text"):
        load_stack_config()


def test_structured_values_round_trip_as_json():
    # The CLI hands structured config to the program as JSON strings: make sure that path parses.
    config, secret_keys = stack_config(ROOT / "Pulumi.dev.yaml")
    assert json.loads(config["iot:cluster"])["nodes"] == [{"id": 1, "location": "fsn1"}]


def test_project_file_declares_every_scalar_key_with_description_and_default():
    from components.config import SCALAR_KEYS, SECRET_KEYS

    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "iot"
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    declared = project["config"]
    assert set(declared) == set(SCALAR_KEYS) | set(SECRET_KEYS)
    for key, spec in declared.items():
        assert spec["description"], key
        if key in SECRET_KEYS:
            assert spec.get("secret") is True and "default" not in spec, key
        else:
            assert "default" in spec, key
    defaults = {k: v["default"] for k, v in declared.items() if "default" in v}
    cfg = parse({**defaults, "adminCidrs": ["198.51.100.7/32"], "cluster": {"nodes": [{"id": 1, "location": "fsn1"}]},
                 "cloudflare": {"accountId": "a" * 32, "zoneId": "b" * 32}})
    assert (cfg.domain, cfg.images.tag, cfg.protect, cfg.ssh_user) == ("my-iot-app.com", "latest", False, "root")


# ------------------------------------------------------------------ release images (supply chain)

DIGEST = "sha256:" + "3f" * 32


def digests(repo: str = "ghcr.io/my-iot-app") -> dict:
    return {kind: f"{repo}/{name}@{DIGEST}" for kind, name in
            (("app", "iot"), ("marketing", "marketing"), ("docs", "docs"))}


def test_a_protected_stack_refuses_latest_naming_the_key_and_the_fix():
    raw = committed("prod")
    raw["imageTag"] = "latest"
    raw.pop("images", None)
    with pytest.raises(ConfigError) as info:
        parse(raw)
    message = str(info.value)
    assert "iot:imageTag" in message and "'latest'" in message
    assert "iot:protect" in message
    assert "--config iot:images.app=" in message and "@sha256:" in message


def test_a_protected_stack_refuses_any_mutable_tag():
    raw = committed("prod")
    raw["imageTag"] = "0a1b2c3d"
    raw.pop("images", None)
    with pytest.raises(ConfigError, match=r"iot:images\.app .*ghcr\.io/my-iot-app/iot:0a1b2c3d.*digest"):
        parse(raw)


def test_a_protected_stack_deploys_images_by_digest():
    raw = committed("prod")
    raw["images"] = digests("ghcr.io/acme")
    cfg = parse(raw)
    assert cfg.images.ref("app") == f"ghcr.io/acme/iot@{DIGEST}"
    assert cfg.images.ref("docs") == f"ghcr.io/acme/docs@{DIGEST}"


def test_a_tag_and_a_digest_together_keep_the_digest():
    raw = committed("prod")
    raw["images"] = {**digests(), "app": f"ghcr.io/my-iot-app/iot:1.4.0@{DIGEST}"}
    assert parse(raw).images.ref("app") == f"ghcr.io/my-iot-app/iot:1.4.0@{DIGEST}"


@pytest.mark.parametrize("ref", [
    "ghcr.io/my-iot-app/iot@sha256:abc",  # too short
    "ghcr.io/my-iot-app/iot@sha512:" + "a" * 128,  # not what the registries publish here
    "ghcr.io/my-iot-app/iot@" + "a" * 64,  # algorithm missing
])
def test_malformed_digests_are_refused(ref):
    raw = committed("dev")
    raw["images"] = {**digests(), "app": ref}
    with pytest.raises(ConfigError, match=r"iot:images\.app .*@sha256:<64 hex digits>"):
        parse(raw)


def test_an_unprotected_stack_may_still_use_a_tag():
    raw = committed("dev")
    raw["imageTag"] = "0a1b2c3d"
    raw.pop("images", None)
    assert parse(raw).images.ref("app") == "ghcr.io/my-iot-app/iot:0a1b2c3d"


def test_traefik_may_be_pinned_by_digest_too():
    raw = committed("prod")
    raw["images"] = digests()
    tag = raw["versions"]["traefik"].split("@")[0]
    raw["versions"] = {**raw["versions"], "traefik": f"{tag}@{DIGEST}"}
    assert parse(raw).versions.traefik.endswith(f"@{DIGEST}")
    raw["versions"]["traefik"] = "v3.6@" + DIGEST
    with pytest.raises(ConfigError, match="iot:versions.traefik"):
        parse(raw)


def test_the_committed_prod_stack_pins_no_mutable_tag():
    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    assert document.get("iot:imageTag") in (None,), "prod gets digests at deploy time, never a tag"


# ---------------------------------------------------------------- issue 10: keys, bounds, zone ownership


def test_a_misspelled_top_level_key_in_the_stack_is_an_error_naming_the_nearest_key(monkeypatch):
    """`iot:edgee` in a stack file used to be skipped by load_stack_config (it only read known keys)."""
    as_stack(monkeypatch, "dev")
    config, secret_keys = stack_config(ROOT / "Pulumi.dev.yaml")
    config["iot:edgee"] = json.dumps({"loadBalancer": True})
    pulumi.runtime.set_all_config(config, secret_keys)
    with pytest.raises(ConfigError) as info:
        load_stack_config()
    message = str(info.value)
    assert "iot:edgee" in message and "did you mean iot:edge?" in message


def test_a_misspelled_key_from_the_cli_environment_is_caught_too(monkeypatch):
    as_stack(monkeypatch, "dev")
    config, secret_keys = stack_config(ROOT / "Pulumi.dev.yaml")
    pulumi.runtime.set_all_config(config, secret_keys)
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"iot:imagetag": "abc"}))
    with pytest.raises(ConfigError, match=r"iot:imagetag.*did you mean iot:imageTag\?"):
        load_stack_config()


def test_keys_of_other_namespaces_are_not_ours_to_judge(monkeypatch):
    as_stack(monkeypatch, "dev")
    config, secret_keys = stack_config(ROOT / "Pulumi.dev.yaml")
    config["hcloud:pollInterval"] = "1s"
    pulumi.runtime.set_all_config(config, secret_keys)
    assert load_stack_config().stack


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("count", 0, ["iot:services.tracker.count", "0", "between 1 and"]),
        ("count", 500, ["iot:services.tracker.count", "500", "between 1 and"]),
        ("memory", 25600000, ["iot:services.tracker.memory", "25600000", "MB", "between"]),
        ("memory", 8, ["iot:services.tracker.memory", "8", "between"]),
        ("cpu", 1_000_000, ["iot:services.tracker.cpu", "1000000", "MHz", "between"]),
        ("cpu", "many", ["iot:services.tracker.cpu", "'many'", "integer"]),
    ],
)
def test_service_sizes_have_sane_bounds(field, value, expected):
    message = error_for(lambda r: r["services"]["tracker"].update({field: value}))
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from: {message}"


def test_committed_service_sizes_are_within_bounds():
    for stack in ("dev", "prod"):
        cfg = parse(committed(stack))
        assert all(s.count >= 1 for s in cfg.services.values())


def test_zone_ownership_defaults_to_owning_and_must_be_a_bool():
    raw = committed("dev")
    raw["cloudflare"] = {k: v for k, v in raw["cloudflare"].items() if k != "ownsZone"}
    assert parse(raw).cloudflare.owns_zone is True
    message = error_for(lambda r: r["cloudflare"].update(ownsZone="yes"))
    assert "iot:cloudflare.ownsZone" in message and "true or false" in message


def test_dev_and_prod_each_own_their_own_zone_and_domain():
    dev, prod = parse(committed("dev")), parse(committed("prod"))
    assert dev.cloudflare.zone_id != prod.cloudflare.zone_id
    assert dev.domain != prod.domain and not dev.domain.endswith("." + prod.domain)
    assert dev.cloudflare.owns_zone and prod.cloudflare.owns_zone
    assert prod.domain == "my-iot-app.com"


def _other(stack: str) -> dict[str, dict]:
    return {stack: committed(stack)}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        # dev pointed at prod's zone and domain: every name and every zone singleton collides.
        (lambda r, p: r.update(domain=p["domain"], cloudflare=dict(p["cloudflare"])),
         ["iot:cloudflare.ownsZone", "stack prod", "also owns zone", "ownsZone: false"]),
        # same zone, dev gives up the singletons but still publishes prod's names.
        (lambda r, p: r.update(domain=p["domain"], cloudflare={**p["cloudflare"], "ownsZone": False}),
         ["iot:domain", "my-iot-app.com", "stack prod", "same zone", "tracker.my-iot-app.com"]),
        # same domain, different zone id: one of the two ids must be wrong.
        (lambda r, p: r.update(domain=p["domain"]),
         ["iot:domain", "my-iot-app.com", "stack prod", "zone", "wrong"]),
        # shared zone, nobody owns it.
        (lambda r, p: (r.update(domain="dev.example.net", cloudflare={**p["cloudflare"], "ownsZone": False}),
                       p["cloudflare"].update(ownsZone=False)),
         ["no stack owns zone", "ownsZone: true"]),
    ],
)
def test_a_stack_that_would_collide_with_the_committed_other_stack_is_refused(mutate, expected):
    raw, other = copy.deepcopy(committed("dev")), copy.deepcopy(committed("prod"))
    mutate(raw, other)
    with pytest.raises(ConfigError) as info:
        parse_stack_config(raw, "dev", SECRETS, other_stacks={"prod": other})
    for fragment in expected:
        assert fragment in str(info.value), f"{fragment!r} missing from: {info.value}"


def test_a_subdomain_stack_sharing_the_zone_without_owning_it_is_accepted():
    raw, other = copy.deepcopy(committed("dev")), copy.deepcopy(committed("prod"))
    raw.update(domain="staging.my-iot-app.com", cloudflare={**other["cloudflare"], "ownsZone": False})
    cfg = parse_stack_config(raw, "dev", SECRETS, other_stacks={"prod": other})
    assert cfg.cloudflare.owns_zone is False


def test_an_unreadable_other_stack_file_does_not_block_this_one():
    cfg = parse_stack_config(committed("dev"), "dev", SECRETS, other_stacks={"broken": {"cloudflare": "nope"}})
    assert cfg.stack == "dev"


def test_load_stack_config_compares_with_the_committed_other_stack_files(monkeypatch):
    as_stack(monkeypatch, "dev")
    config, secret_keys = stack_config(ROOT / "Pulumi.dev.yaml")
    prod = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]
    config["iot:domain"] = prod["iot:domain"]
    config["iot:cloudflare"] = json.dumps(prod["iot:cloudflare"])
    pulumi.runtime.set_all_config(config, secret_keys)
    with pytest.raises(ConfigError, match="stack prod"):
        load_stack_config()
