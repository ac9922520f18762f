"""One-line explanations: preflight over env + stack files, and known CLI error texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import automation, diagnose

REPO = Path(__file__).resolve().parents[2]

FULL_ENV = {
    "PULUMI_ACCESS_TOKEN": "pul-x",
    "PULUMI_CONFIG_PASSPHRASE": "p",
    "HCLOUD_TOKEN": "h",
    "CLOUDFLARE_API_TOKEN": "c",
    "LINODE_TOKEN": "l",
}
# What the workflows pass: every placeholder in the committed stack files is overwritten from CI secrets.
CI_SECRET_ENV = {
    "iot:databaseUrl": "IOT_DATABASE_URL",
    "iot:redisUrl": "IOT_REDIS_URL",
    "hcloud:token": "HCLOUD_TOKEN",
    "cloudflare:apiToken": "CLOUDFLARE_API_TOKEN",
    "linode:token": "LINODE_TOKEN",
}


def files(settings, project=None, stack="dev"):
    return diagnose.StackFiles(stack=stack, project=project or {"name": "iot"}, settings=settings)


def test_s3_backend_without_keys_says_which_variables():
    env = {"PULUMI_BACKEND_URL": "s3://iot-state?endpoint=fsn1.your-objectstorage.com&region=fsn1"}
    problems = diagnose.preflight_problems("outputs", files({}), {**env, "PULUMI_CONFIG_PASSPHRASE": "p"}, False)
    assert len(problems) == 1
    assert "s3://iot-state is S3-compatible" in problems[0] and "AWS_ACCESS_KEY_ID" in problems[0]
    assert "your-objectstorage" not in problems[0]  # the query string may carry credentials: not echoed


def test_s3_backend_defaults_to_the_passphrase_provider():
    env = {"PULUMI_BACKEND_URL": "s3://b", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"}
    problems = diagnose.preflight_problems("outputs", files({}), env, logged_in=False)
    assert len(problems) == 1 and "PULUMI_CONFIG_PASSPHRASE" in problems[0]
    assert diagnose.preflight_problems("outputs", files({}), {**env, "PULUMI_CONFIG_PASSPHRASE": "p"}, False) == []


def test_pulumi_login_counts_as_backend_credentials():
    assert diagnose.preflight_problems("outputs", files({}), {}, logged_in=True) == []
    assert "pulumi login" in diagnose.preflight_problems("outputs", files({}), {}, logged_in=False)[0]


def test_declared_secret_without_default_must_be_set_on_the_stack():
    project = {"name": "iot", "config": {"redisUrl": {"type": "string", "secret": True},
                                         "domain": {"type": "string", "default": "my-iot-app.com"}}}
    problems = diagnose.preflight_problems("preview", files({"config": {}}, project), FULL_ENV, True)
    assert problems == [
        "iot:redisUrl is not set for stack 'dev': run `pulumi config set --secret iot:redisUrl <value> --stack dev`"
    ]
    assert diagnose.preflight_problems("preview", files({"config": {}}, project), FULL_ENV, True,
                                       provided=frozenset({"iot:redisUrl"})) == []


def test_esc_environment_skips_the_config_checks():
    settings = {"environment": ["iot/dev"], "config": {}}
    project = {"name": "iot", "config": {"redisUrl": {"type": "string", "secret": True}}}
    assert diagnose.preflight_problems("preview", files(settings, project), {"PULUMI_ACCESS_TOKEN": "x"}, True) == []


def test_committed_stack_files_need_their_placeholders_replaced():
    stack_files = automation.load_stack_files(REPO, "prod")
    problems = diagnose.preflight_problems("preview", stack_files, FULL_ENV, logged_in=True)
    placeholder_keys = {p.split(" ", 1)[0] for p in problems if "placeholder" in p}
    assert placeholder_keys == set(CI_SECRET_ENV)
    assert all("--secret-env" in p for p in problems)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_committed_stacks_pass_preflight_with_the_ci_secrets(stack):
    stack_files = automation.load_stack_files(REPO, stack)
    env = {**FULL_ENV, "IOT_DATABASE_URL": "postgresql://x", "IOT_REDIS_URL": "redis://x"}
    secret_env = {k: v for k, v in CI_SECRET_ENV.items() if k in stack_files.config}
    assert diagnose.secret_env_problems(secret_env, stack_files, env) == []
    provided = frozenset(secret_env)
    assert diagnose.preflight_problems("up", stack_files, env, logged_in=False, provided=provided) == []


def test_missing_ci_secret_is_named():
    stack_files = automation.load_stack_files(REPO, "dev")
    problems = diagnose.secret_env_problems({"iot:databaseUrl": "IOT_DATABASE_URL"}, stack_files, FULL_ENV)
    assert len(problems) == 1 and "create the IOT_DATABASE_URL secret" in problems[0]


KNOWN = [
    ("error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions", "export PULUMI_ACCESS_TOKEN"),
    ("error: getting secrets manager: passphrase must be set with PULUMI_CONFIG_PASSPHRASE or "
     "PULUMI_CONFIG_PASSPHRASE_FILE environment variables", "export PULUMI_CONFIG_PASSPHRASE"),
    ("error: could not decrypt configuration value: incorrect passphrase", "the passphrase the stack was created with"),
    ("error: no stack named 'prod' found", "pulumi stack init prod"),
    ("error: Missing required configuration variable 'iot:redisUrl'\n    please set a value using the command "
     "`pulumi config set iot:redisUrl <value>`", "pulumi config set --secret iot:redisUrl <value> --stack dev"),
    ("    raise ConfigError(\n    components.config.ConfigError: iot:databaseUrl is missing; set it with "
     "`pulumi config set --secret iot:databaseUrl <value>`\n", "iot:databaseUrl is missing; set it with"),
    ("error: [409] Conflict: Another update is currently in progress.", "pulumi cancel --stack dev"),
    ("error: the stack is currently locked by 1 lock(s).", "another update of stack 'dev' is running"),
    ("error: [401] Unauthorized: No credentials provided or are invalid.", "rejected PULUMI_ACCESS_TOKEN"),
    ("error: failed to load checkpoint: NoCredentialProviders: no valid providers in chain", "AWS_ACCESS_KEY_ID"),
    ("error: hcloud:index/server:Server resource 'app' has a problem: unable to authenticate your request "
     "(unauthorized)", "export HCLOUD_TOKEN"),
    ("error: pulumi:providers:cloudflare resource 'default' has a problem: Authentication error (10000)",
     "export CLOUDFLARE_API_TOKEN"),
    ("error: linode:index/instance:Instance resource 'tokyo': [401] Invalid Token", "export LINODE_TOKEN"),
    ("error: could not find plugin for provider hcloud v1.43.3", "pulumi plugin install"),
    ('error: unable to delete resource "urn:pulumi:prod::iot::hcloud:index/server:Server::app"\nas it is currently '
     "marked for protection.", "set iot:protect to false"),
]


@pytest.mark.parametrize(("text", "fix"), KNOWN, ids=[k[1][:30] for k in KNOWN])
def test_known_cli_errors_map_to_one_line_with_the_fix(text, fix):
    explanation = diagnose.explain_failure(text, "dev")
    assert explanation is not None and fix in explanation
    assert "\n" not in explanation


def test_unknown_error_text_is_not_explained():
    assert diagnose.explain_failure("error: something new", "dev") is None
