"""The policy pack as the Pulumi CLI runs it: `python -m pulumi.policy <engine> <pack dir>`, spoken to over
the analyzer gRPC protocol, the way the engine asks it about each resource during preview and up."""

from __future__ import annotations

import select
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policy import iot_rules

PACK_DIR = Path(__file__).resolve().parents[2] / "policy"


@pytest.fixture(scope="module")
def analyzer():
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", str(PACK_DIR)],
        cwd=PACK_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        port = ""
        while not port:
            assert process.poll() is None, f"policy pack exited: {process.stderr.read()}"
            assert time.monotonic() < deadline, "policy pack did not announce its port"
            ready, _, _ = select.select([process.stdout], [], [], 1.0)
            if ready:
                port = process.stdout.readline().strip()
        channel = grpc.insecure_channel(f"127.0.0.1:{int(port)}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def analyze(stub, resource_type: str, props: dict) -> list:
    properties = struct_pb2.Struct()
    properties.update(props)
    request = analyzer_pb2.AnalyzeRequest(type=resource_type, properties=properties, name="thing",
                                          urn=f"urn:pulumi:dev::iot::{resource_type}::thing")
    return list(stub.Analyze(request, timeout=30).diagnostics)


def test_the_pack_announces_every_rule_as_mandatory(analyzer):
    from google.protobuf import empty_pb2

    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == "iot-guardrails"
    assert [p.name for p in info.policies] == list(iot_rules.RULES)
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}


def test_a_world_open_ssh_rule_is_a_mandatory_violation(analyzer):
    firewall = {"name": "iot-dev-cluster", "rules": [
        {"direction": "in", "protocol": "tcp", "port": "22", "sourceIps": ["0.0.0.0/0"]}]}
    diagnostics = analyze(analyzer, iot_rules.HCLOUD_FIREWALL, firewall)
    assert [d.policyName for d in diagnostics] == ["no-world-open-management-ports"]
    assert diagnostics[0].enforcementLevel == analyzer_pb2.MANDATORY
    assert "SSH (22)" in diagnostics[0].message and diagnostics[0].urn.endswith("::thing")


def test_a_compliant_resource_gets_no_diagnostic(analyzer):
    job = {"jobspec": "job \"docs\" {}", "detach": False, "purgeOnDestroy": True}
    assert analyze(analyzer, iot_rules.NOMAD_JOB, job) == []
