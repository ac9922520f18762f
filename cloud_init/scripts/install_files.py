#!/usr/bin/python3
"""Install files delivered as JSON on stdin (secrets pushed over SSH, never in user data).

stdin: {"files": [{"path": "/etc/iot/...", "mode": "0600", "owner": "root", "content": "..."}]}
Each file is written atomically with its mode set before any byte lands, only under /etc/iot/.
Prints the paths that changed (never their content). Exit 2 on a malformed bundle.
"""

import json
import os
import pwd
import sys
import tempfile

ALLOWED_ROOT = os.environ.get("IOT_FILES_ROOT", "/etc/iot")


def install(spec: dict, root: str) -> bool:
    path = os.path.normpath(spec["path"])
    if not path.startswith(ALLOWED_ROOT.rstrip("/") + "/"):
        raise ValueError(f"refusing to write {path}: only files under {ALLOWED_ROOT}/ are allowed")
    target = os.path.join(root, path.lstrip("/")) if root != "/" else path
    mode = int(spec.get("mode", "0600"), 8)
    content = spec["content"].encode()
    try:
        with open(target, "rb") as current:
            unchanged = current.read() == content and (os.stat(target).st_mode & 0o7777) == mode
    except FileNotFoundError:
        unchanged = False
    owner = spec.get("owner", "root")
    try:
        uid, gid = pwd.getpwnam(owner).pw_uid, pwd.getpwnam(owner).pw_gid
    except KeyError:
        raise ValueError(f"owner {owner!r} of {path} does not exist on this host") from None
    if unchanged:
        return False
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


def main() -> int:
    root = os.environ.get("IOT_FILES_DESTDIR", "/")
    try:
        bundle = json.load(sys.stdin)
        specs = bundle["files"]
        changed = [spec["path"] for spec in specs if install(spec, root)]
    except (ValueError, KeyError, TypeError) as exc:
        print(f"iot-install-files: {exc}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"changed: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
