"""The deploy command end to end against a stand-in Stack that replays recorded engine events."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_replay import ReplayStack
from pulumi.automation.errors import StackNotFoundError

from deploy import automation
from deploy.automation import EXIT_CHANGES, EXIT_FAILED, EXIT_NO_CHANGES, EXIT_REFUSED, Options

POLICY = str(Path(__file__).resolve().parents[2] / "policy")


def run(project_dir, env, stack_obj, command, stack="dev", which=lambda name: "/usr/local/bin/pulumi", **kw):
    opened: list[str] = []

    def open_stack(name, work_dir):
        opened.append(name)
        assert work_dir == project_dir
        if isinstance(stack_obj, Exception):
            raise stack_obj
        return stack_obj

    options = Options(command=command, stack=stack, work_dir=project_dir, policy_packs=[POLICY], **kw)
    code = automation.run(options, open_stack=open_stack, env=env, which=which)
    return code, opened


def step_summary(env) -> str:
    return Path(env["GITHUB_STEP_SUMMARY"]).read_text()


def test_preview_with_changes_exits_2_runs_the_policy_pack_and_writes_the_step_summary(project_dir, ci_env):
    stack = ReplayStack({"preview": ("preview_dev_updates", None)})
    code, _ = run(project_dir, ci_env, stack, "preview")
    assert code == EXIT_CHANGES
    (method, kwargs), = stack.calls
    assert method == "preview" and kwargs["policy_packs"] == [POLICY]
    text = step_summary(ci_env)
    assert "<!-- iot-deploy:preview:dev -->" in text
    assert "| update | 3 |" in text and "| create | 1 |" in text
    assert "changes (exit 2)" in text


def test_preview_without_changes_exits_0(project_dir, ci_env):
    code, _ = run(project_dir, ci_env, ReplayStack({"preview": ("preview_dev_no_changes", None)}), "preview")
    assert code == EXIT_NO_CHANGES
    assert "no changes (exit 0)" in step_summary(ci_env)


def test_preview_flags_what_up_would_refuse(project_dir, ci_env, capsys):
    stack = ReplayStack({"preview": ("preview_prod_replace_server", None)})
    code, _ = run(project_dir, ci_env, stack, "preview", stack="prod")
    assert code == EXIT_REFUSED
    text = step_summary(ci_env)
    assert "`app-nbg1-1`" in text and "`location`" in text and "--allow-replace" in text
    assert "`up` would refuse" in capsys.readouterr().err


def test_up_refuses_to_replace_a_server_and_never_calls_up(project_dir, ci_env, capsys):
    stack = ReplayStack({"preview": ("preview_prod_replace_server", None), "up": ("up_dev_updates", None)})
    code, _ = run(project_dir, ci_env, stack, "up", stack="prod")
    assert code == EXIT_REFUSED
    assert stack.methods_called() == ["preview"]
    err = capsys.readouterr().err
    assert "refused:" in err and "app-nbg1-1" in err and "`location` changed" in err
    text = step_summary(ci_env)
    assert "Protected resources deleted or replaced" in text and "hcloud:index/server:Server" in text


def test_up_with_allow_replace_applies_and_exits_2(project_dir, ci_env):
    stack = ReplayStack({"preview": ("preview_prod_replace_server", None), "up": ("up_dev_updates", None)})
    code, _ = run(project_dir, ci_env, stack, "up", stack="prod", allow_replace=True)
    assert code == EXIT_CHANGES
    assert stack.methods_called() == ["preview", "up"]
    assert stack.calls[1][1]["policy_packs"] == [POLICY]
    text = step_summary(ci_env)
    assert "applied (exit 2)" in text and "app-nbg1-1" in text


def test_up_with_nothing_to_do_skips_the_update(project_dir, ci_env):
    stack = ReplayStack({"preview": ("preview_dev_no_changes", None), "up": ("up_dev_updates", None)})
    code, _ = run(project_dir, ci_env, stack, "up")
    assert code == EXIT_NO_CHANGES
    assert stack.methods_called() == ["preview"]


def test_up_applies_ordinary_changes(project_dir, ci_env):
    stack = ReplayStack({"preview": ("preview_dev_updates", None), "up": ("up_dev_updates", None)})
    code, _ = run(project_dir, ci_env, stack, "up", config={"iot:imageTag": "9a8b7c6"})
    assert code == EXIT_CHANGES
    assert stack.methods_called() == ["set_config", "preview", "up"]
    assert stack.calls[0][1] == {"key": "iot:imageTag", "value": "9a8b7c6", "secret": False, "path": False}
    assert "| update | 3 |" in step_summary(ci_env)


def test_a_mandatory_policy_violation_is_a_refusal_listing_the_policy(project_dir, ci_env):
    stack = ReplayStack({"preview": ("preview_dev_policy_violation", "error: preview failed")})
    code, _ = run(project_dir, ci_env, stack, "up")
    assert code == EXIT_REFUSED
    assert stack.methods_called() == ["preview"]
    text = step_summary(ci_env)
    assert "no-world-open-management-ports" in text and "mandatory" in text and "`cluster-firewall`" in text


def test_destroy_prod_without_the_flag_is_refused_before_anything_runs(project_dir, ci_env):
    stack = ReplayStack({"destroy": ("destroy_dev", None)})
    code, opened = run(project_dir, ci_env, stack, "destroy", stack="prod", which=lambda name: None)
    assert code == EXIT_REFUSED and opened == [] and stack.calls == []
    assert "--yes-destroy-prod" in step_summary(ci_env)


def test_destroy_dev_deletes_and_exits_2(project_dir, ci_env):
    stack = ReplayStack({"destroy": ("destroy_dev", None)})
    code, _ = run(project_dir, ci_env, stack, "destroy")
    assert code == EXIT_CHANGES
    assert "| delete |" in step_summary(ci_env)


def test_refresh_that_finds_drift_exits_2(project_dir, ci_env):
    code, _ = run(project_dir, ci_env, ReplayStack({"refresh": ("refresh_dev_drift", None)}), "refresh")
    assert code == EXIT_CHANGES
    assert "| update | 1 |" in step_summary(ci_env)


def test_outputs_are_printed_with_secrets_masked(project_dir, ci_env, capsys):
    stack = ReplayStack({}, outputs={"clusterIps": (["10.10.1.2"], False), "nomadToken": ("s3cr3t-token", True)})
    code, _ = run(project_dir, ci_env, stack, "outputs")
    assert code == EXIT_NO_CHANGES
    out = capsys.readouterr().out
    assert '"nomadToken": "[secret]"' in out and "10.10.1.2" in out
    assert "s3cr3t-token" not in out and "s3cr3t-token" not in step_summary(ci_env)


def test_missing_cli_is_one_line_with_the_fix_and_touches_nothing(project_dir, ci_env, capsys):
    stack = ReplayStack({"preview": ("preview_dev_updates", None)})
    code, opened = run(project_dir, ci_env, stack, "preview", which=lambda name: None)
    assert code == EXIT_FAILED and opened == []
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1
    assert "`pulumi` CLI is not on PATH" in err_lines[0] and "get.pulumi.com" in err_lines[0]


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ("PULUMI_ACCESS_TOKEN", "export PULUMI_ACCESS_TOKEN"),
        ("PULUMI_CONFIG_PASSPHRASE", "export PULUMI_CONFIG_PASSPHRASE"),
        ("HCLOUD_TOKEN", "export HCLOUD_TOKEN"),
        ("CLOUDFLARE_API_TOKEN", "export CLOUDFLARE_API_TOKEN"),
    ],
)
def test_missing_credentials_fail_before_the_engine_runs(project_dir, ci_env, capsys, missing, expected):
    env = {k: v for k, v in ci_env.items() if k != missing}
    stack = ReplayStack({"preview": ("preview_dev_updates", None)})
    code, opened = run(project_dir, env, stack, "preview")
    assert code == EXIT_FAILED and opened == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


def test_linode_token_is_required_only_where_a_monitor_runs_on_linode(project_dir, ci_env, capsys):
    env = {k: v for k, v in ci_env.items() if k != "LINODE_TOKEN"}
    dev = ReplayStack({"preview": ("preview_dev_no_changes", None)})
    assert run(project_dir, env, dev, "preview")[0] == EXIT_NO_CHANGES
    prod = ReplayStack({"preview": ("preview_prod_replace_server", None)})
    assert run(project_dir, env, prod, "preview", stack="prod")[0] == EXIT_FAILED
    assert "LINODE_TOKEN" in capsys.readouterr().err


def test_known_cli_error_text_becomes_an_explanation(project_dir, ci_env, capsys):
    error = (
        "error: getting secrets manager: passphrase must be set with PULUMI_CONFIG_PASSPHRASE or "
        "PULUMI_CONFIG_PASSPHRASE_FILE environment variables"
    )
    stack = ReplayStack({"preview": (None, error)})
    code, _ = run(project_dir, ci_env, stack, "preview")
    assert code == EXIT_FAILED
    assert "needs its secrets passphrase: export PULUMI_CONFIG_PASSPHRASE" in capsys.readouterr().err


def test_unknown_stack_explains_how_to_create_it(project_dir, ci_env, capsys):
    from pulumi.automation._cmd import CommandResult

    missing = StackNotFoundError(CommandResult(stdout="", stderr="error: no stack named 'dev' found", code=255))
    code, opened = run(project_dir, ci_env, missing, "preview")
    assert code == EXIT_FAILED and opened == ["dev"]
    assert "pulumi stack init dev" in capsys.readouterr().err


def test_an_unknown_engine_failure_still_fails_with_a_pointer_to_the_log(project_dir, ci_env, capsys):
    stack = ReplayStack({"preview": ("preview_dev_updates", "error: something nobody has seen before")})
    code, _ = run(project_dir, ci_env, stack, "preview")
    assert code == EXIT_FAILED
    assert "pulumi preview failed on stack 'dev'" in capsys.readouterr().err
    assert "failed (exit 1)" in step_summary(ci_env)


def test_summary_goes_to_stdout_without_github_and_to_the_summary_file(project_dir, ci_env, capsys, tmp_path):
    env = {k: v for k, v in ci_env.items() if k != "GITHUB_STEP_SUMMARY"}
    comment = tmp_path / "comments" / "dev.md"
    stack = ReplayStack({"preview": ("preview_dev_updates", None)})
    opened: list[str] = []
    options = Options(command="preview", stack="dev", work_dir=project_dir, summary_file=str(comment))
    code = automation.run(options, open_stack=lambda n, w: opened.append(n) or stack, env=env,
                          which=lambda n: "/bin/pulumi")
    assert code == EXIT_CHANGES
    out = capsys.readouterr().out
    assert "| update | 3 |" in out
    assert comment.read_text().startswith("<!-- iot-deploy:preview:dev -->")
    # No policy pack was asked for: none is passed to the engine.
    assert stack.calls[0][1]["policy_packs"] is None


def test_secret_env_sets_secrets_without_echoing_them(project_dir, ci_env, capsys):
    env = {**ci_env, "IOT_REDIS_URL": "redis://:pw-very-secret@redis.example:6379"}
    stack = ReplayStack({"preview": ("preview_dev_no_changes", None)})
    code, _ = run(project_dir, env, stack, "preview", secret_env={"iot:redisUrl": "IOT_REDIS_URL"})
    assert code == EXIT_NO_CHANGES
    assert stack.calls[0] == ("set_config", {"key": "iot:redisUrl", "value": env["IOT_REDIS_URL"], "secret": True,
                                             "path": False})
    captured = capsys.readouterr()
    assert "pw-very-secret" not in captured.out + captured.err + step_summary(env)


def test_secret_env_with_an_empty_variable_and_no_stack_value_fails_naming_the_secret(project_dir, ci_env, capsys):
    stack = ReplayStack({"preview": ("preview_dev_no_changes", None)})
    code, opened = run(project_dir, ci_env, stack, "preview", secret_env={"iot:redisUrl": "IOT_REDIS_URL"})
    assert code == EXIT_FAILED and opened == []
    assert "$IOT_REDIS_URL is empty" in capsys.readouterr().err


def test_secret_env_falls_back_to_the_value_in_the_stack_file(project_dir, ci_env):
    # Pulumi.dev.yaml carries real ciphertext for iot:databaseUrl: an unset variable is fine.
    stack = ReplayStack({"preview": ("preview_dev_no_changes", None)})
    code, _ = run(project_dir, ci_env, stack, "preview", secret_env={"iot:databaseUrl": "IOT_DATABASE_URL"})
    assert code == EXIT_NO_CHANGES
    assert "set_config" not in stack.methods_called()


def test_a_too_old_cli_is_explained(project_dir, ci_env, capsys):
    from pulumi.automation.errors import InvalidVersionError

    code, _ = run(project_dir, ci_env, InvalidVersionError("Minimum version requirement failed"), "preview")
    assert code == EXIT_FAILED
    assert "pulumi CLI is too old" in capsys.readouterr().err


DIGEST = "sha256:" + "ab" * 32


def test_up_sets_image_digests_as_nested_config(project_dir, ci_env):
    """The deploy workflow passes `iot:images.app=<name>@sha256:..`: a path into the iot:images object."""
    stack = ReplayStack({"preview": ("preview_dev_updates", None), "up": ("up_dev_updates", None)})
    ref = f"ghcr.io/acme/iot@{DIGEST}"
    code, _ = run(project_dir, ci_env, stack, "up", stack="prod", config={"iot:images.app": ref})
    assert code == EXIT_CHANGES
    assert stack.calls[0] == ("set_config", {"key": "iot:images.app", "value": ref, "secret": False, "path": True})


def test_preview_can_keep_the_images_the_stack_runs(project_dir, ci_env):
    """A PR preview has no release to deploy: it reuses the stack's `images` output, so it shows infra changes."""
    deployed = {k: f"ghcr.io/acme/{k}@{DIGEST}" for k in ("app", "marketing", "docs")}
    stack = ReplayStack({"preview": ("preview_dev_updates", None)}, outputs={"images": (deployed, False)})
    code, _ = run(project_dir, ci_env, stack, "preview", stack="prod", images_from_stack=True)
    assert code == EXIT_CHANGES
    sets = [kw for name, kw in stack.calls if name == "set_config"]
    assert {kw["key"]: kw["value"] for kw in sets} == {f"iot:images.{k}": v for k, v in deployed.items()}
    assert all(kw["path"] and not kw["secret"] for kw in sets)
    assert stack.methods_called()[-1] == "preview"


def test_preview_from_a_stack_never_deployed_says_how_to_pass_images(project_dir, ci_env, capsys):
    stack = ReplayStack({"preview": ("preview_dev_updates", None)})
    code, _ = run(project_dir, ci_env, stack, "preview", stack="prod", images_from_stack=True)
    assert code == EXIT_FAILED
    assert "preview" not in stack.methods_called()
    assert "--config iot:images.app=" in capsys.readouterr().err


def test_explicit_images_win_over_the_deployed_ones(project_dir, ci_env):
    deployed = {k: f"ghcr.io/acme/{k}@{DIGEST}" for k in ("app", "marketing", "docs")}
    stack = ReplayStack({"preview": ("preview_dev_updates", None)}, outputs={"images": (deployed, False)})
    new = "ghcr.io/acme/iot@sha256:" + "cd" * 32
    run(project_dir, ci_env, stack, "preview", stack="prod", images_from_stack=True, config={"iot:images.app": new})
    values = {kw["key"]: kw["value"] for name, kw in stack.calls if name == "set_config"}
    assert values["iot:images.app"] == new and values["iot:images.docs"] == deployed["docs"]
