"""Turn a missing CLI, missing credentials or a missing secret into one line that says the fix.

Two halves, both pure: `preflight_problems` looks at the environment and the stack's settings before
the CLI is touched; `explain_failure` maps the texts of known ``CommandError``s after the fact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

CLI_MISSING = (
    "the `pulumi` CLI is not on PATH: install it (`curl -fsSL https://get.pulumi.com | sh`, then add "
    "~/.pulumi/bin to PATH; in GitHub Actions use pulumi/actions) and re-run"
)

# Stack-config key, environment variable the provider also reads, and what it is.
PROVIDER_CREDENTIALS: tuple[tuple[str, str, str], ...] = (
    ("hcloud:token", "HCLOUD_TOKEN", "a read/write API token of the Hetzner Cloud project"),
    ("cloudflare:apiToken", "CLOUDFLARE_API_TOKEN", "a Cloudflare API token for the zone and account"),
    ("linode:token", "LINODE_TOKEN", "a Linode personal access token"),
)

# Commands that run the program or talk to the providers, and so need provider credentials.
_COMMANDS_NEEDING_PROVIDERS = {"preview", "up", "refresh", "destroy"}


@dataclass(frozen=True)
class StackFiles:
    """What the preflight reads from the project: ``Pulumi.yaml`` and ``Pulumi.<stack>.yaml``."""

    stack: str
    project: Mapping  # parsed Pulumi.yaml
    settings: Mapping | None  # parsed Pulumi.<stack>.yaml, None when the file does not exist

    @property
    def config(self) -> Mapping:
        return (self.settings or {}).get("config") or {}


def preflight_problems(
    command: str,
    files: StackFiles,
    env: Mapping[str, str],
    logged_in: bool,
    provided: frozenset[str] = frozenset(),
) -> list[str]:
    """Everything that would make the run fail for lack of a credential or setting, one line each.

    ``provided`` are config keys the command sets itself before running (--config, --secret-env).
    """
    problems = _backend_problems(files, env, logged_in)
    problems += _passphrase_problems(files, env)
    if command == "outputs":
        return problems
    problems += _placeholder_problems(files, provided)
    if command in _COMMANDS_NEEDING_PROVIDERS and not _config_from_esc(files):
        problems += _provider_problems(files, env, provided)
        problems += _required_config_problems(files, provided)
    return problems


def secret_env_problems(secret_env: Mapping[str, str], files: StackFiles, env: Mapping[str, str]) -> list[str]:
    """--secret-env KEY=VAR: VAR must be set unless the stack file already holds a real value for KEY."""
    problems = []
    for key, variable in secret_env.items():
        if env.get(variable) or (key in files.config and not _is_placeholder(files.config[key])):
            continue
        problems.append(
            f"{key}: ${variable} is empty and Pulumi.{files.stack}.yaml holds no real value: create the {variable} "
            f"secret for this repository/environment, or run `pulumi config set --secret {key} <value> "
            f"--stack {files.stack}`"
        )
    return problems


def explain_failure(text: str, stack: str) -> str | None:
    """A one-line explanation with the fix for a known CLI error text, or None."""
    for pattern, explain in _KNOWN_ERRORS:
        match = pattern.search(text)
        if match:
            return explain(match, stack)
    return None


def _backend_url(files: StackFiles, env: Mapping[str, str]) -> str:
    return env.get("PULUMI_BACKEND_URL") or ((files.project.get("backend") or {}).get("url") or "")


def _is_diy_backend(url: str) -> bool:
    return url.startswith(("s3://", "file://", "gs://", "azblob://"))


def _backend_problems(files: StackFiles, env: Mapping[str, str], logged_in: bool) -> list[str]:
    backend = _backend_url(files, env)
    if backend.startswith("s3://"):
        has_keys = env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY")
        if not (has_keys or env.get("AWS_PROFILE") or env.get("AWS_WEB_IDENTITY_TOKEN_FILE")):
            return [
                f"the state backend {backend.split('?')[0]} is S3-compatible but no AWS credentials are set: "
                "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the bucket's access key) and re-run"
            ]
        return []
    if backend.startswith(("file://", "gs://", "azblob://")):
        return []
    if not env.get("PULUMI_ACCESS_TOKEN") and not logged_in:
        return [
            "no Pulumi state backend credentials: export PULUMI_ACCESS_TOKEN (Pulumi Cloud) or "
            "PULUMI_BACKEND_URL=s3://<bucket>?endpoint=<host> with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or run `pulumi login`"
        ]
    return []


def _passphrase_problems(files: StackFiles, env: Mapping[str, str]) -> list[str]:
    settings = files.settings or {}
    provider = settings.get("secretsprovider") or ""
    # Self-managed backends default to the passphrase provider; Pulumi Cloud defaults to its own.
    default_is_passphrase = _is_diy_backend(_backend_url(files, env))
    uses_passphrase = provider == "passphrase" or (
        not provider and (bool(settings.get("encryptionsalt")) or default_is_passphrase)
    )
    if uses_passphrase and not (env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        return [
            f"stack '{files.stack}' encrypts its secrets with a passphrase but PULUMI_CONFIG_PASSPHRASE is not "
            "set: export PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) and re-run"
        ]
    return []


def _config_from_esc(files: StackFiles) -> bool:
    # A Pulumi ESC environment can inject any config or env var: the local files no longer tell.
    return bool((files.settings or {}).get("environment"))


def _uses_linode(files: StackFiles) -> bool:
    return '"linode"' in json.dumps(files.config) or any(k.startswith("linode:") for k in files.config)


def _is_placeholder(value: object) -> bool:
    """A `secure:` entry that is not ciphertext (committed stack files carry such stand-ins)."""
    return isinstance(value, Mapping) and "placeholder" in str(value.get("secure", "")).lower()


def _placeholder_problems(files: StackFiles, provided: frozenset[str]) -> list[str]:
    return [
        f"{key} in Pulumi.{files.stack}.yaml is a placeholder, not ciphertext: run `pulumi config set --secret "
        f"{key} <value> --stack {files.stack}` (in CI pass --secret-env {key}=<ENV VAR>)"
        for key, value in files.config.items()
        if _is_placeholder(value) and key not in provided
    ]


def _provider_problems(files: StackFiles, env: Mapping[str, str], provided: frozenset[str]) -> list[str]:
    problems = []
    for key, variable, what in PROVIDER_CREDENTIALS:
        if key.startswith("linode:") and not _uses_linode(files):
            continue
        if key in provided or key in files.config or env.get(variable):
            continue
        problems.append(
            f"{key} is missing for stack '{files.stack}': export {variable} ({what}) or run "
            f"`pulumi config set --secret {key} <value> --stack {files.stack}`"
        )
    return problems


def _required_config_problems(files: StackFiles, provided: frozenset[str]) -> list[str]:
    """Project config keys declared without a default and not set on the stack."""
    if files.settings is None:
        return [
            f"Pulumi.{files.stack}.yaml does not exist: create the stack with `pulumi stack init {files.stack}` "
            "and set its configuration"
        ]
    project_name = files.project.get("name", "")
    problems = []
    for key, declaration in (files.project.get("config") or {}).items():
        if isinstance(declaration, Mapping) and "default" in declaration:
            continue
        if not isinstance(declaration, Mapping) or "value" in declaration:
            continue  # a plain value in Pulumi.yaml is itself the default
        full_key = key if ":" in key else f"{project_name}:{key}"
        if full_key in files.config or full_key in provided:
            continue
        secret = "--secret " if declaration.get("secret") else ""
        problems.append(
            f"{full_key} is not set for stack '{files.stack}': run "
            f"`pulumi config set {secret}{full_key} <value> --stack {files.stack}`"
        )
    return problems


def _missing_config(match: re.Match, stack: str) -> str:
    key = match.group(1)
    return f"{key} is not set for stack '{stack}': run `pulumi config set --secret {key} <value> --stack {stack}`"


_KNOWN_ERRORS: tuple[tuple[re.Pattern[str], object], ...] = (
    (
        re.compile(r"PULUMI_ACCESS_TOKEN must be set for login"),
        lambda m, s: "not logged in to a Pulumi backend: export PULUMI_ACCESS_TOKEN (Pulumi Cloud) or "
        "PULUMI_BACKEND_URL for a self-managed backend",
    ),
    (
        re.compile(r"passphrase must be set with PULUMI_CONFIG_PASSPHRASE"),
        lambda m, s: f"stack '{s}' needs its secrets passphrase: export PULUMI_CONFIG_PASSPHRASE",
    ),
    (
        re.compile(r"incorrect passphrase", re.I),
        lambda m, s: f"PULUMI_CONFIG_PASSPHRASE does not decrypt stack '{s}': set the passphrase the stack was "
        "created with",
    ),
    (
        re.compile(r"no stack named '?([\w./-]+)'? found"),
        lambda m, s: f"stack '{m.group(1)}' does not exist in this backend: create it with "
        f"`pulumi stack init {m.group(1)}` (check PULUMI_BACKEND_URL / the Pulumi organization)",
    ),
    (re.compile(r"Missing required configuration variable '([\w:.-]+)'"), _missing_config),
    # The program validates its config up front (components/config.py) and names key and fix itself.
    (re.compile(r"ConfigError: ([^\n]+)"), lambda m, s: f"stack '{s}' configuration: {m.group(1).strip()}"),
    (
        re.compile(r"(?:\[409\] Conflict: Another update is currently in progress|the stack is currently locked)"),
        lambda m, s: f"another update of stack '{s}' is running: wait for it, or if it died run "
        f"`pulumi cancel --stack {s}` (Pulumi Cloud) / `pulumi stack export | pulumi stack import` after a crash",
    ),
    (
        re.compile(r"(?:invalid access token|\[401\] Unauthorized|\[403\] Forbidden)", re.I),
        lambda m, s: "the Pulumi backend rejected PULUMI_ACCESS_TOKEN: create a new access token and update the "
        "secret",
    ),
    (
        re.compile(r"(?:NoCredentialProviders|InvalidAccessKeyId|SignatureDoesNotMatch|no valid credential)", re.I),
        lambda m, s: "the S3 state bucket rejected the credentials: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
        "and the endpoint/region in PULUMI_BACKEND_URL",
    ),
    (
        re.compile(r"hcloud[^\n]*(?:unauthorized|unable to authenticate|invalid token|token is required)", re.I),
        lambda m, s: "Hetzner Cloud rejected the token: export HCLOUD_TOKEN (read/write API token of the project) "
        f"or `pulumi config set --secret hcloud:token <value> --stack {s}`",
    ),
    (
        re.compile(r"cloudflare[^\n]*(?:authentication error|api_token|invalid request headers|unauthorized)", re.I),
        lambda m, s: "Cloudflare rejected the credentials: export CLOUDFLARE_API_TOKEN (token with Zone DNS, "
        "Load Balancers and SSL edit rights) and re-run",
    ),
    (
        re.compile(r"linode[^\n]*(?:invalid token|unauthorized|401)", re.I),
        lambda m, s: "Linode rejected the token: export LINODE_TOKEN (personal access token with Linodes "
        "read/write) and re-run",
    ),
    (
        re.compile(r"marked for protection|delete.protected|is protected", re.I),
        lambda m, s: f"stack '{s}' has protected resources (iot:protect, Hetzner delete protection): set "
        f"iot:protect to false and run `python -m deploy up --stack {s}` first, or `pulumi state unprotect --all`",
    ),
    (
        re.compile(r"(?:could not (?:find|get) plugin|failed to download plugin|no resource plugin)", re.I),
        lambda m, s: "a provider plugin could not be installed: allow the runner to reach get.pulumi.com and "
        "github.com, or run `pulumi plugin install` beforehand",
    ),
)
