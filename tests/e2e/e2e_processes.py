"""Kept for imports written before the helpers moved: everything lives in tests/iot_processes.py."""

from iot_processes import Proc, iot_env, run_iot, wait_http_ok

__all__ = ["Proc", "iot_env", "run_iot", "wait_http_ok"]
