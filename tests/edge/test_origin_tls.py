"""Traefik admits only Cloudflare's origin pulls on websecure, and serves the worker internally only.

The job spec is rendered with the vars Pulumi passes for each committed stack (no Traefik binary
runs here); the vendored Cloudflare origin-pull CA is checked with openssl.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import ssl
import subprocess
from datetime import UTC, datetime

import pytest
import yaml

from components.firewall import cluster_rules
from components.job_spec import load_job_spec
from components.job_vars import job_spec_path, job_vars
from components.origin_pull import (
    CA_PATH,
    CA_SHA256,
    CA_SUBJECT_CN,
    TRAEFIK_INTERNAL_PORT,
    OriginPullCaError,
    origin_pull_ca_pem,
)
from deploy.mocks import CLOUDFLARE_IPV4, CLOUDFLARE_IPV6, committed_stack_config

CA_IN_TASK = "/local/cloudflare-origin-pull-ca.pem"


@pytest.fixture(scope="module", params=["dev", "prod"])
def rendered(request):
    config = committed_stack_config(request.param)
    values = job_vars(config, cloudflare_ipv4=CLOUDFLARE_IPV4, cloudflare_ipv6=CLOUDFLARE_IPV6)["traefik"]
    spec = load_job_spec(job_spec_path("traefik"))
    files = {spec.evaluate(t["destination"], values): spec.evaluate(t["data"], values) for t in spec.templates()}
    return config, files


def test_websecure_requires_and_verifies_cloudflares_origin_pull_certificate(rendered):
    _, files = rendered
    options = yaml.safe_load(files["secrets/dynamic/tls.yml"])["tls"]["options"]
    assert set(options) == {"default"}, "one TLS option: it applies to every websecure router"
    client_auth = options["default"]["clientAuth"]
    assert client_auth["clientAuthType"] == "RequireAndVerifyClientCert"
    assert client_auth["caFiles"] == [CA_IN_TASK]
    (ca_template,) = [data for dest, data in files.items() if "/" + dest == CA_IN_TASK]
    assert ca_template == CA_PATH.read_text(), "the file Traefik trusts is exactly the vendored CA"


def test_sni_strict_and_no_default_certificate_for_unknown_names(rendered):
    _, files = rendered
    tls = yaml.safe_load(files["secrets/dynamic/tls.yml"])["tls"]
    assert tls["options"]["default"]["sniStrict"] is True
    assert tls["options"]["default"]["minVersion"] == "VersionTLS12"
    assert "defaultCertificate" not in str(tls.get("stores", {})), "no certificate for names that are not ours"


def test_the_load_balancer_monitor_path_stays_plain_http_on_the_ping_entrypoint(rendered):
    _, files = rendered
    static = yaml.safe_load(files["secrets/traefik.yml"])
    assert static["entryPoints"]["ping"] == {"address": ":8082"}, "no TLS, no client auth on the LB monitor path"
    assert static["ping"] == {"entryPoint": "ping"}


def test_the_worker_is_served_on_an_internal_entrypoint_the_firewall_never_opens(rendered):
    config, files = rendered
    static = yaml.safe_load(files["secrets/traefik.yml"])
    assert static["entryPoints"]["internal"] == {"address": f":{TRAEFIK_INTERNAL_PORT}"}
    opened = {rule.port for rule in cluster_rules(config.admin_cidrs, CLOUDFLARE_IPV4 + CLOUDFLARE_IPV6)}
    assert str(TRAEFIK_INTERNAL_PORT) not in opened
    worker = load_job_spec(job_spec_path("worker"))
    values = job_vars(config, cloudflare_ipv4=CLOUDFLARE_IPV4, cloudflare_ipv6=CLOUDFLARE_IPV6)["worker"]
    tags = [worker.evaluate(t, values) for s in worker.services() for t in s.get("tags", [])]
    settings = dict(re.match(r"^traefik\.http\.routers\.worker\.([^=]+)=(.*)$", t).groups()
                    for t in tags if t.startswith("traefik.http.routers.worker."))
    assert settings["entrypoints"] == "internal"
    assert "tls" not in settings, "plain HTTP on the private network / SSH tunnel"
    traefik = load_job_spec(job_spec_path("traefik"))
    ((_, group),) = traefik.groups()
    ports = {p.strip('"'): block for port in group["network"][0]["port"] for p, block in port.items()}
    assert ports["internal"]["static"] == TRAEFIK_INTERNAL_PORT


def test_the_vendored_ca_is_cloudflares_origin_pull_ca():
    pem = CA_PATH.read_text()
    der = ssl.PEM_cert_to_DER_cert(pem)
    assert hashlib.sha256(der).hexdigest() == CA_SHA256
    assert origin_pull_ca_pem() == pem


def test_the_vendored_ca_is_self_signed_names_origin_pull_and_has_not_expired():
    assert shutil.which("openssl"), "openssl is missing: apt-get install openssl (.ci/run does)"
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(CA_PATH), str(CA_PATH)],
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    shown = subprocess.run(["openssl", "x509", "-in", str(CA_PATH), "-noout", "-subject", "-enddate"],
                           capture_output=True, text=True, check=True).stdout
    assert f"CN = {CA_SUBJECT_CN}" in shown
    end = re.search(r"notAfter=(.+)", shown).group(1).strip()
    expires = datetime.strptime(end, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)
    # Cloudflare rotates this CA before it expires: when this fails, fetch the new one (docs/operator-manual.md, Edge).
    assert expires > datetime.now(UTC), f"the origin-pull CA expired on {expires:%Y-%m-%d}"


def test_a_tampered_ca_file_is_refused(tmp_path):
    tampered = tmp_path / "ca.pem"
    tampered.write_text(CA_PATH.read_text().replace("MIIGCjCCA", "MIIGCjCCB", 1))
    with pytest.raises(OriginPullCaError, match="fingerprint"):
        origin_pull_ca_pem(tampered)
