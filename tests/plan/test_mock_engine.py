"""deploy.mocks: the engine the plan, the edge/workload tests and the policy tests run the program with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy.mocks import MockError, load_stack_config_values, run_program, secret_placeholder

PROGRAM = """
import pulumi
import pulumi_random as random

config = pulumi.Config("iot")
password = random.RandomPassword("pw", length=12)


class Box(pulumi.ComponentResource):
    def __init__(self, name):
        super().__init__("iot:test:Box", name, None)
        random.RandomId(
            "inner", byte_length=8,
            keepers={"domain": config.require("domain"), "db": config.require_secret("databaseUrl"),
                     "password": password.result, "size": config.require_object("sizes")["small"]},
            opts=pulumi.ResourceOptions(parent=self),
        )


Box("box")
pulumi.export("domain", config.require("domain"))
pulumi.export("password", password.result)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: iot\nruntime: python\nconfig:\n  domain:\n    type: string\n    default: example.org\n"
    )
    (tmp_path / "Pulumi.test.yaml").write_text(
        "config:\n  iot:sizes: {small: 1}\n  iot:databaseUrl:\n    secure: v1:abc\n  hcloud:token:\n    secure: v1:def\n"
    )
    (tmp_path / "__main__.py").write_text(PROGRAM)
    return tmp_path


def test_stack_values_use_project_defaults_and_visible_secret_placeholders(project):
    name, values, secret_keys = load_stack_config_values("test", project)
    assert name == "iot"
    assert values["iot:domain"] == "example.org"
    assert values["iot:sizes"] == {"small": 1}
    assert (
        values["iot:databaseUrl"]
        == "postgresql://<secret:iot:databaseUrl>"
        == secret_placeholder("iot:databaseUrl")
    )
    assert values["hcloud:token"] == "<secret:hcloud:token>"
    assert values["iot:redisUrl"] == "redis://<secret:iot:redisUrl>", "required secrets are always supplied"
    assert set(secret_keys) == {"iot:databaseUrl", "hcloud:token", "iot:redisUrl"}


def test_run_records_types_names_parents_and_masks_secrets(project):
    run = run_program("test", root=project)
    (inner,) = run.of_type("random:index/randomId:RandomId")
    assert inner.parent == "box" and inner.name == "inner"
    assert inner.inputs["keepers"] == {
        "domain": "example.org",
        "db": "[secret]",
        "password": "[secret]",
        "size": 1,
    }
    assert inner.inputs["byteLength"] == 8
    (box,) = run.of_type("iot:test:Box")
    assert box.custom is False and box.parent is None
    assert run.outputs == {"domain": "example.org", "password": "[secret]"}


def test_config_overrides_replace_stack_values(project):
    run = run_program("test", root=project, config_overrides={"iot:domain": "override.test"})
    (inner,) = run.of_type("random:index/randomId:RandomId")
    assert inner.inputs["keepers"]["domain"] == "override.test"


def test_an_invoke_without_a_mock_names_itself(project):
    (project / "__main__.py").write_text(
        "import pulumi_hcloud as hcloud\nhcloud.get_image(name='debian-12')\n"
    )
    with pytest.raises(Exception, match="getImage.*add a handler"):
        run_program("test", root=project)


def test_missing_stack_file_lists_the_committed_stacks(project):
    with pytest.raises(MockError, match=r"Pulumi\.prod\.yaml; committed stacks: test"):
        run_program("prod", root=project)


# An Output made outside any run (a unit test parsing stack config) and an async test that leaves another
# event loop current: the next run once waited forever for that Output (CI hung in the edge tests).
STALE_OUTPUT_THEN_NEW_LOOP = """
import asyncio, sys
sys.path.insert(0, {root!r})
import pulumi
from deploy.mocks import run_program
pulumi.Output.secret("made outside any run")
asyncio.set_event_loop(asyncio.new_event_loop())
run = run_program("dev")
print("resources", len(run.resources))
"""


def test_a_run_does_not_wait_for_outputs_made_outside_it_on_another_loop():
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", STALE_OUTPUT_THEN_NEW_LOOP.format(root=root)], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("resources ") and int(done.stdout.split()[1]) > 10
