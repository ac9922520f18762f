#!/usr/bin/python3
"""Install files delivered as JSON on stdin (the node's pushed config; secrets never in user data).

stdin: {"files": [{"path": "/etc/iot/...", "mode": "0600", "owner": "root", "content": "...",
                   "on_change": ["restart:consul.service"]}]}
Each file is written atomically with its mode set before any byte lands, only under the roots below.
For every file that changed, the actions in its "on_change" are recorded as marker files in
<IOT_STATE_DIR>/pending/ (default /var/lib/iot); iot-apply carries them out and removes them, so an
action survives a failed run and is retried by the next one. Prints the changed paths, never content.
Runs as "python3 -c <this file>" from the SSH push (components/remote.py): no installed copy can be
out of date. Exit 2 on a malformed bundle, before anything is written.
"""

import json
import os
import pwd
import re
import sys
import tempfile

ALLOWED_ROOTS = ("/etc/iot/", "/etc/systemd/system/", "/etc/sysctl.d/", "/etc/modules-load.d/",
                 "/usr/local/sbin/iot-")
ACTION = re.compile(r"^(daemon-reload|sysctl|packages|(restart|reload):[a-z0-9@._-]+\.service)$")


def check(spec):
    path = os.path.normpath(spec["path"])
    if not path.startswith(ALLOWED_ROOTS):
        raise ValueError(f"refusing to write {path}: only files under {', '.join(ALLOWED_ROOTS)} are allowed")
    for action in spec.get("on_change", []):
        if not ACTION.match(action):
            raise ValueError(f"{path}: unknown on_change action {action!r}")
    owner = spec.get("owner", "root")
    try:
        entry = pwd.getpwnam(owner)
    except KeyError:
        raise ValueError(f"owner {owner!r} of {path} does not exist on this host") from None
    mode = int(spec.get("mode", "0600"), 8)
    return path, entry.pw_uid, entry.pw_gid, mode, spec["content"].encode()


def install(path, uid, gid, mode, content, root):
    target = os.path.join(root, path.lstrip("/")) if root != "/" else path
    try:
        with open(target, "rb") as current:
            if current.read() == content and (os.stat(target).st_mode & 0o7777) == mode:
                return False
    except FileNotFoundError:
        pass
    directory = os.path.dirname(target)
    os.makedirs(directory, mode=0o755, exist_ok=True)  # files inside carry their own mode
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".iot-")
    try:
        os.fchmod(fd, mode)
        if os.geteuid() == 0:
            os.fchown(fd, uid, gid)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def main():
    root = os.environ.get("IOT_FILES_DESTDIR", "/")
    pending = os.path.join(os.environ.get("IOT_STATE_DIR", "/var/lib/iot"), "pending")
    try:
        specs = json.load(sys.stdin)["files"]
        checked = [(spec, check(spec)) for spec in specs]  # refuse the whole bundle before writing
    except (ValueError, KeyError, TypeError) as exc:
        print(f"iot-install-files: {exc}", file=sys.stderr)
        return 2
    os.makedirs(pending, mode=0o700, exist_ok=True)
    for spec, (path, uid, gid, mode, content) in checked:
        if install(path, uid, gid, mode, content, root):
            # Record the actions before reporting: a crash after the write still leaves them pending.
            for action in spec.get("on_change", []):
                with open(os.path.join(pending, action), "w", encoding="utf-8") as marker:
                    marker.write(path + "\n")
            print(f"changed: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
