"""Stand-ins for the programs the node scripts drive: consul, nomad, curl (Consul's and Nomad's HTTP
APIs), systemctl, dpkg-query, apt-get, journalctl, modprobe, sysctl, hostname, sleep.

No Consul or Nomad binary exists here, so each stand-in answers from one JSON state file the way
the real tool answers (tables with headers, status codes, "ACL not found" 403s, exit codes), logs
its argv to $STATE/calls, and applies writes to the state. Faults can be injected: the next N calls
matching "METHOD /path" answer with a given HTTP status, or 0 for "no answer" (curl exit 7).

Usage (from a wrapper in the sandbox's bin dir): python3 standins.py <tool> [args...]
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

STATE = Path(os.environ["STATE"])
STATE_FILE = STATE / "cluster.json"
CONSUL = "https://127.0.0.1:8501"
NOMAD = "https://127.0.0.1:4646"


def load() -> dict:
    return json.loads(STATE_FILE.read_text())


def save(state: dict) -> None:
    STATE_FILE.write_text(json.dumps(state, indent=1, sort_keys=True))


def log(argv: list[str]) -> None:
    with open(STATE / "calls", "a") as calls:
        calls.write(" ".join(argv) + "\n")


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
                     for row in [header, *rows]) + "\n"


# --- consul ------------------------------------------------------------------------------------

def consul(args: list[str], state: dict) -> int:
    c = state["consul"]
    token = os.environ.get("CONSUL_HTTP_TOKEN", "")
    if args[:4] == ["acl", "token", "read", "-self"]:
        return 0 if c["leader"] and token == c["management"] else 1
    if args[:1] == ["members"]:
        if not c["agent_up"]:
            print("Error retrieving members: Get \"https://127.0.0.1:8501/v1/agent/members\": connection refused",
                  file=sys.stderr)
            return 1
        rows = [[n, f"{m['ip']}:8301", m["status"], "server", "1.22.7", "2", "eu-central", "default", "<all>"]
                for n, m in c["members"].items()]
        print(table(["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"], rows),
              end="")
        return 0
    if args[:3] == ["operator", "raft", "list-peers"]:
        if not c["leader"]:
            print("Error getting peers: Failed to retrieve raft configuration: Unexpected response code: 500 "
                  "(No cluster leader)", file=sys.stderr)
            return 1
        rows = [[p["node"], str(uuid.uuid5(uuid.NAMESPACE_DNS, p["node"])), p["address"],
                 "leader" if p["address"] == c["leader"] else "follower", str(p["voter"]).lower(), "3", "120", "0"]
                for p in c["peers"]]
        print(table(["Node", "ID", "Address", "State", "Voter", "RaftProtocol", "Commit Index", "Trails Leader By"],
                    rows), end="")
        return 0
    if args == ["leave"]:
        c["left"] = True
        print("Graceful leave complete")
        return 0
    print(f"consul stand-in: unsupported {args}", file=sys.stderr)
    return 3


# --- nomad ---------------------------------------------------------------------------------------

def nomad(args: list[str], state: dict, stdin: str) -> int:
    n = state["nomad"]
    token = os.environ.get("NOMAD_TOKEN", "")
    if args[:2] == ["operator", "api"]:
        path = args[2]
        if path == "/v1/status/leader":
            print(json.dumps(n["leader"]))
            return 0
        if path == "/v1/status/peers":
            print(json.dumps(n["peers"]))
            return 0
        if path.startswith("/v1/agent/health?type="):
            kind = path.split("=", 1)[1]
            ok = n["health"][kind]
            # Like the real `nomad operator api`: the body of any HTTP answer, exit 0 (even for a 500).
            print(json.dumps({kind: {"ok": ok, "message": "ok" if ok else n["health"].get(f"{kind}_message", "down")}}))
            return 0
    if args[:3] == ["acl", "token", "self"]:
        return 0 if n["bootstrapped"] and token == n["bootstrapped"] else 1
    if args[:2] == ["acl", "bootstrap"] and args[2:] == ["-"]:
        if n["bootstrapped"]:
            print("Error bootstrapping: Unexpected response code: 400 (ACL bootstrap already done (reset index: 7))",
                  file=sys.stderr)
            return 1
        n["bootstrapped"] = stdin
        return 0
    if args[:3] == ["acl", "policy", "apply"]:
        if not n["bootstrapped"] or token != n["bootstrapped"]:
            print("Error writing ACL policy: Unexpected response code: 403 (Permission denied)", file=sys.stderr)
            return 1
        rest = args[3:]
        description = rest[rest.index("-description") + 1] if "-description" in rest else ""
        name, file = rest[-2], rest[-1]
        n["policies"][name] = {"Description": description, "Rules": Path(file).read_text()}
        print(f"Successfully wrote {name!r} ACL policy!")
        return 0
    if args[:2] == ["node", "status"]:
        template = args[args.index("-t") + 1] if "-t" in args else ""
        if "SchedulingEligibility" in template:
            for node in n["nodes"]:
                if node["Status"] == "ready" and node["SchedulingEligibility"] == "eligible":
                    print(node["Name"])
        else:
            if not n["bootstrapped"] or token != n["bootstrapped"]:
                print("Error querying node status: Unexpected response code: 403 (Permission denied)", file=sys.stderr)
                return 1
            for node in n["nodes"]:
                if node["Status"] == "ready":
                    print(node["ID"])
        return 0
    if args[:2] == ["node", "drain"]:
        n["drained"] = True
        return 0
    if args[:2] == ["server", "force-leave"]:
        n["force_left"] = {"name": args[-1], "via": os.environ.get("NOMAD_ADDR", "")}
        return 0
    print(f"nomad stand-in: unsupported {args}", file=sys.stderr)
    return 3


# --- curl: Consul's and Nomad's ACL HTTP APIs ----------------------------------------------------

def _curl_args(args: list[str]) -> dict:
    parsed: dict = {"headers": {}, "method": "GET", "data": None}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-o", "-w", "--cacert", "--cert", "--key", "-X", "-H", "--data-binary"):
            value = args[i + 1]
            if arg == "-H":
                text = Path(value[1:]).read_text() if value.startswith("@") else value
                for line in text.splitlines():
                    key, _, val = line.partition(":")
                    parsed["headers"][key.strip().lower()] = val.strip()
            elif arg == "--data-binary":
                parsed["data"] = sys.stdin.read() if value == "@-" else value
            else:
                parsed[arg] = value
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            parsed["url"] = arg
            i += 1
    parsed["method"] = parsed.get("-X", "GET")
    return parsed


def _consul_api(method: str, path: str, token: str, body: dict | None, c: dict) -> tuple[int, object]:
    if not c["leader"]:
        return 500, "No cluster leader"
    management = token == c["management"]
    if method == "GET" and path == "/v1/acl/token/self":
        for accessor, t in c["tokens"].items():
            if t["SecretID"] == token:
                return 200, {"AccessorID": accessor, "SecretID": t["SecretID"], "Description": t["Description"],
                             "Policies": [{"ID": _policy_id(c, p), "Name": p} for p in t["Policies"]]}
        return 403, "ACL not found"
    if not management:
        return 403, "Permission denied: token lacks acl:write"
    if method == "GET" and path.startswith("/v1/acl/policy/name/"):
        name = path.rsplit("/", 1)[1]
        for pid, p in c["policies"].items():
            if p["Name"] == name:
                return 200, {"ID": pid, **p}
        return 404, "Requested entity not found"
    if method == "PUT" and path == "/v1/acl/policy":
        if any(p["Name"] == body["Name"] for p in c["policies"].values()):
            return 400, f"Invalid Policy: A Policy with Name {body['Name']!r} already exists"
        pid = str(uuid.uuid4())
        c["policies"][pid] = {"Name": body["Name"], "Rules": body["Rules"], "Description": body.get("Description", "")}
        return 200, {"ID": pid, **c["policies"][pid]}
    if method == "PUT" and path.startswith("/v1/acl/policy/"):
        pid = path.rsplit("/", 1)[1]
        if pid not in c["policies"]:
            return 400, "Cannot find policy to update"
        c["policies"][pid].update(Rules=body["Rules"], Description=body.get("Description", ""))
        return 200, {"ID": pid, **c["policies"][pid]}
    if method == "PUT" and path == "/v1/acl/token":
        if any(t["SecretID"] == body["SecretID"] for t in c["tokens"].values()):
            return 400, "Invalid Token: SecretID is already in use"
        accessor = str(uuid.uuid4())
        c["tokens"][accessor] = {"SecretID": body["SecretID"], "Description": body["Description"],
                                 "Policies": [p["Name"] for p in body["Policies"]]}
        return 200, {"AccessorID": accessor}
    if method == "PUT" and path.startswith("/v1/acl/token/"):
        accessor = path.rsplit("/", 1)[1]
        if accessor not in c["tokens"] or body.get("AccessorID") != accessor:
            return 400, "Cannot find token to update"
        c["tokens"][accessor].update(Description=body["Description"], Policies=[p["Name"] for p in body["Policies"]])
        return 200, {"AccessorID": accessor}
    return 405, f"stand-in: unsupported {method} {path}"


def _policy_id(c: dict, name: str) -> str:
    return next((pid for pid, p in c["policies"].items() if p["Name"] == name), "")


def _nomad_api(method: str, path: str, token: str, body: dict | None, n: dict) -> tuple[int, object]:
    if not n["bootstrapped"] or token != n["bootstrapped"]:
        return 403, "Permission denied"
    if method == "POST" and path == "/v1/acl/token":
        for key in ("AccessorID", "SecretID"):
            uuid.UUID(body[key])  # "cannot find token" unless both are UUIDs
        missing = [p for p in body["Policies"] if p not in n["policies"]]
        if missing:
            return 400, f"token 0 invalid: cannot find policy {missing[0]}"
        n["tokens"][body["AccessorID"]] = {k: body[k] for k in ("SecretID", "Name", "Type", "Policies")}
        return 200, body
    return 405, f"stand-in: unsupported {method} {path}"


def curl(args: list[str], state: dict) -> int:
    a = _curl_args(args)
    url: str = a["url"]
    base, path = (CONSUL, url[len(CONSUL):]) if url.startswith(CONSUL) else (NOMAD, url[len(NOMAD):])
    body = json.loads(a["data"]) if a["data"] else None
    key = f"{a['method']} {path}"
    for fault in state["faults"]:
        if fault["times"] > 0 and key.startswith(fault["match"]):
            fault["times"] -= 1
            if fault["status"] == 0:
                print("curl: (7) Failed to connect to 127.0.0.1: Connection refused", file=sys.stderr)
                return 7
            status, answer = fault["status"], fault.get("body", "stand-in fault")
            break
    else:
        if base == NOMAD and not (a.get("--cert") and a.get("--key")):
            print("curl: (56) OpenSSL: tlsv13 alert certificate required", file=sys.stderr)
            return 56
        if base == CONSUL:
            status, answer = _consul_api(a["method"], path, a["headers"].get("x-consul-token", ""), body,
                                         state["consul"])
        else:
            status, answer = _nomad_api(a["method"], path, a["headers"].get("x-nomad-token", ""), body,
                                        state["nomad"])
    text = answer if isinstance(answer, str) else json.dumps(answer)
    Path(a["-o"]).write_text(text)
    sys.stdout.write(str(status))
    return 0


# --- host tools ----------------------------------------------------------------------------------

def systemctl(args: list[str], state: dict) -> int:
    units = state["units"]
    quiet = "--quiet" in args
    args = [a for a in args if a not in ("--quiet", "--no-pager")]
    verb, names = args[0], args[1:]
    if verb == "is-active":
        status = units.get(names[0], {}).get("state", "inactive")
        if not quiet:
            print(status)
        return 0 if status == "active" else 3
    if verb == "is-enabled":
        return 0 if units.get(names[0], {}).get("enabled") else 1
    if verb == "daemon-reload":
        state["daemon_reloads"] += 1
        return 0
    now = "--now" in names
    names = [n for n in names if n != "--now"]
    for name in names:
        unit = units.setdefault(name, {"state": "inactive", "enabled": False})
        if verb == "enable":
            unit["enabled"] = True
        elif verb == "disable":
            unit["enabled"] = False
            if now:
                unit["state"] = "inactive"
        elif verb in ("start", "restart", "reload"):
            if unit.get("broken"):
                unit["state"] = "failed"
                print(f"Job for {name} failed because the control process exited with error code.", file=sys.stderr)
                return 1
            unit["state"] = "active"
            unit.setdefault("events", []).append(verb)
        else:
            print(f"systemctl stand-in: unsupported {verb}", file=sys.stderr)
            return 3
    return 0


def dpkg_query(args: list[str], state: dict) -> int:
    version = state["packages"].get(args[-1])
    if version is None:
        print(f"dpkg-query: no packages found matching {args[-1]}", file=sys.stderr)
        return 1
    sys.stdout.write(version)
    return 0


def apt_get(args: list[str], state: dict) -> int:
    if "install" in args:
        values = {args[i + 1] for i, a in enumerate(args[:-1]) if a == "-o"}  # option values, not packages
        for spec in (a for a in args if "=" in a and not a.startswith("-") and a not in values):
            package, version = spec.split("=", 1)
            state["packages"][package] = version
    return 0


def cli_fault(tool: str, args: list[str], state: dict) -> bool:
    """True when an injected fault makes this call fail (as a tool that cannot reach its agent)."""
    line = " ".join([tool, *args])
    for fault in state.get("cli_faults", []):
        if fault["times"] > 0 and line.startswith(fault["match"]):
            fault["times"] -= 1
            print(fault.get("message", f"Error: {tool} stand-in fault"), file=sys.stderr)
            return True
    return False


def main() -> int:
    tool, args = sys.argv[1], sys.argv[2:]
    log([tool, *args])
    stdin = sys.stdin.read() if tool in ("nomad",) and args[:2] == ["acl", "bootstrap"] else ""
    state = load()
    if cli_fault(tool, args, state):
        save(state)
        return 1
    handlers = {
        "consul": lambda: consul(args, state),
        "nomad": lambda: nomad(args, state, stdin),
        "curl": lambda: curl(args, state),
        "systemctl": lambda: systemctl(args, state),
        "dpkg-query": lambda: dpkg_query(args, state),
        "apt-get": lambda: apt_get(args, state),
        "journalctl": lambda: print(f"-- journal of {args[1]} --") or 0,
        "hostname": lambda: print(state["hostname"]) or 0,
        "modprobe": lambda: 0,
        "sysctl": lambda: 0,
        "sleep": lambda: 0,
        "iot-install-cni": lambda: state.setdefault("cni_installs", []).append(args[0]) or 0,
    }
    code = handlers[tool]()
    save(state)
    return code


if __name__ == "__main__":
    sys.exit(main())
