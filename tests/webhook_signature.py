"""The API guide's webhook verification snippet (docs/api.md, "Webhooks"), loaded from the page itself and used
by the tests' webhook receivers, so the documented way to verify a delivery is the one the tests prove against
real deliveries."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

API_GUIDE = Path(__file__).resolve().parent.parent / "docs" / "api.md"


@functools.cache
def _snippet() -> Callable[..., bool]:
    blocks = re.findall(r"```python\n(.*?)```", API_GUIDE.read_text(), flags=re.DOTALL)
    (code,) = [block for block in blocks if "def verify_webhook(" in block]
    namespace: dict[str, object] = {}
    exec(compile(code, f"{API_GUIDE}:verify_webhook", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace["verify_webhook"]  # type: ignore[return-value]


def verify_webhook(body: bytes, signature_header: str, secret: str, now: float | None = None) -> bool:
    return _snippet()(body, signature_header, secret, now=now)
