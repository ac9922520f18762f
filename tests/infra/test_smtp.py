"""The deployment's SMTP relay (iot:smtp, issue 14's e-mail channels and issue 15's invitations and resets):
one secret stack setting, validated before anything is touched, delivered to the tracker, the worker and the
dashboard as items of their Nomad Variables (secret in state), read by the job templates; without it the apps
run with an empty SMTP_HOST (no e-mail)."""

from __future__ import annotations

import json
import re

import pytest

from components.config import ConfigError, parse_stack_config
from components.job_vars import SECRET_ITEMS, SMTP_ITEMS, read_job_spec
from infra.harness import run_stack
from infra.test_config import SECRETS, committed

VARIABLE = "nomad:index/variable:Variable"
SMTP = json.dumps({"host": "smtp.example.com", "port": 465, "security": "tls", "username": "alerts",
                   "password": "Fake Pass#42 \"quoted\"", "from": "Acme alerts <alerts@example.com>"})
MAIL_JOBS = ("tracker", "worker", "dashboard")


@pytest.fixture(scope="module")
def with_smtp():
    return run_stack("prod", secret_overrides={"iot:smtp": SMTP})


def variables(run) -> dict[str, dict]:
    return {res.inputs["path"].rsplit("/", 1)[-1]: res for res in run.of_type(VARIABLE)}


def test_every_app_that_sends_mail_gets_the_relay_as_secret_variable_items(with_smtp):
    found = variables(with_smtp)
    for job in MAIL_JOBS:
        items = found[job].inputs["items"]
        assert {k: items[k] for k in SMTP_ITEMS} == {
            "SMTP_HOST": "smtp.example.com", "SMTP_PORT": "465", "SMTP_SECURITY": "tls", "SMTP_USERNAME": "alerts",
            "SMTP_PASSWORD": 'Fake Pass#42 "quoted"', "SMTP_FROM": "Acme alerts <alerts@example.com>"}, job
        assert found[job].input_is_secret("items"), job
    assert not set(SMTP_ITEMS) & set(found["traefik"].inputs["items"])


def test_the_relay_password_appears_nowhere_but_in_secret_inputs(with_smtp):
    for res in with_smtp.resources:
        for key, value in res.raw_inputs.items():
            if "Fake Pass#42" in json.dumps(value):
                assert res.input_is_secret(key), (res.type, res.name, key)


def test_without_a_relay_the_apps_send_no_mail(stack_runs):
    for job in MAIL_JOBS:
        items = variables(stack_runs("dev"))[job].inputs["items"]
        assert items["SMTP_HOST"] == "" and items["SMTP_PASSWORD"] == "" and items["SMTP_PORT"] == "587", job


@pytest.mark.parametrize("job", [*MAIL_JOBS, "traefik"])
def test_each_job_template_reads_exactly_its_variable_items(job):
    # A key the template reads but the Variable lacks renders as "<no value>"; one it lacks is never set.
    spec = read_job_spec(job)
    blocks = re.findall(r"with nomadVar [`\"]nomad/jobs/\w+[`\"] \}\}(.*?)\{\{ end \}\}", spec, flags=re.S)
    read = {key for block in blocks for key in re.findall(r"\{\{\s*\.(\w+)", block)}
    assert read == set(SECRET_ITEMS.get(job, ())), job
    # free text (passwords, From: with spaces) is written JSON-quoted, which Nomad's env parser reads back
    for key in ("SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_FROM"):
        if key in read:
            assert re.search(rf"{key}=\{{\{{ \.{key} \| toJSON \}}\}}", spec), (job, key)


def parse_smtp(value):
    return parse_stack_config(committed("prod"), "test", {**SECRETS, "smtp": value})


def test_the_relay_is_parsed_from_json_and_is_optional():
    smtp = parse_smtp(SMTP).smtp
    assert (smtp.host, smtp.port, smtp.security, smtp.username, smtp.sender) == (
        "smtp.example.com", 465, "tls", "alerts", "Acme alerts <alerts@example.com>")
    relay = parse_smtp(json.dumps({"host": "relay.internal.example", "from": "a@example.com"})).smtp
    assert (relay.port, relay.security, relay.username) == (587, "starttls", "")
    assert parse_stack_config(committed("prod"), "test", SECRETS).smtp is None


@pytest.mark.parametrize(("value", "expected"), [
    ("smtp.example.com", "iot:smtp must be a JSON object"),
    (json.dumps({"host": "smtp.example.com:587", "from": "a@b.c"}), "iot:smtp.host 'smtp.example.com:587' is not a host name"),
    (json.dumps({"host": "smtp.example.com", "port": 70000, "from": "a@b.c"}), "iot:smtp.port 70000 is not a port"),
    (json.dumps({"host": "smtp.example.com", "security": "ssl", "from": "a@b.c"}), "iot:smtp.security 'ssl' is not one of"),
    (json.dumps({"host": "smtp.example.com", "username": "bot", "from": "a@b.c"}), "username and iot:smtp.password go together"),
    (json.dumps({"host": "smtp.example.com", "from": "nobody"}), "iot:smtp.from 'nobody' is not a From: address"),
    (json.dumps({"host": "smtp.example.com", "from": "a@b.c\r\nBcc: x@y.z"}), "is not a From: address"),
    (json.dumps({"host": "smtp.example.com", "from": "a@b.c", "tls": True}), "iot:smtp has unknown field(s) tls"),
])
def test_bad_relays_name_the_key_and_fix_without_echoing_the_password(value, expected):
    with pytest.raises(ConfigError) as info:
        parse_smtp(value)
    assert expected in str(info.value)
    assert "pulumi config set --secret iot:smtp" in str(info.value)
    assert "Fake Pass" not in str(info.value)


def test_a_password_is_never_echoed_in_an_error():
    with pytest.raises(ConfigError) as info:
        parse_smtp(json.dumps({"host": "bad host", "username": "u", "password": "Fake Pass#42", "from": "a@b.c"}))
    assert "Fake Pass" not in str(info.value)


def test_the_relay_in_plain_text_is_refused():
    raw = {**committed("prod"), "smtp": {"host": "smtp.example.com", "from": "a@b.c"}}
    with pytest.raises(ConfigError, match="iot:smtp holds the relay's password.*--secret iot:smtp"):
        parse_stack_config(raw, "test", SECRETS)
