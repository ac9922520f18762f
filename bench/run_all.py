"""Run every benchmark script in bench/ (each prints its own figures and targets).

    .venv/bin/python bench/run_all.py [name ...]     # e.g. run_all.py monitor_probes

Scripts are discovered, not listed: every bench/*.py except this one and `_helpers`. Each runs in its
own process with a time limit, so one slow or failing benchmark cannot hide the others.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIME_LIMIT_S = 1800  # side_by_side runs three interleaved repetitions of every tool (~15 min)


def discover(only: list[str]) -> list[Path]:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    if only:
        scripts = [p for p in scripts if p.stem in only]
        missing = set(only) - {p.stem for p in scripts}
        if missing:
            sys.exit(f"no benchmark named {', '.join(sorted(missing))}; available: "
                     f"{', '.join(p.stem for p in discover([]))}")
    return scripts


def main() -> int:
    failures: list[str] = []
    for script in discover(sys.argv[1:]):
        print(f"\n=== {script.stem} ===", flush=True)
        started = time.monotonic()
        try:
            done = subprocess.run([sys.executable, str(script)], timeout=TIME_LIMIT_S, cwd=HERE.parent)
            if done.returncode != 0:
                failures.append(f"{script.stem} (exit {done.returncode})")
        except subprocess.TimeoutExpired:
            failures.append(f"{script.stem} (over {TIME_LIMIT_S}s)")
        print(f"--- {script.stem}: {time.monotonic() - started:.1f}s", flush=True)
    if failures:
        print(f"\nbenchmarks that failed to run: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
