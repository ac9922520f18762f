"""Secret parts of check options, sealed at rest: http request header values (they carry API keys and
bearer tokens). Stored sealed (iot.sealed under SECRETS_KEY), shown as MASK, opened only by the worker
when it builds check batches.

A header sent back as MASK keeps the value stored for that header, so reading a device, changing one
option and writing it back (API or dashboard form) never needs the secret.
"""

from __future__ import annotations

from typing import Any

from iot.errors import InputError
from iot.sealed import SealError, SecretBox

MASK = "•••"  # noqa: RUF001 - a mask, not an ASCII dot
SECRET_OPTIONS = ("headers",)  # dict-valued options whose values are secret


def masked(options: dict[str, Any]) -> dict[str, Any]:
    """What a tenant sees of stored options: secret values replaced by MASK."""
    if not any(key in options for key in SECRET_OPTIONS):
        return options
    return {key: ({name: MASK for name in value} if key in SECRET_OPTIONS else value) for key, value in options.items()}


def split_kept(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """(options with MASK values replaced by a placeholder the kind's model accepts, which names were kept)."""
    kept: dict[str, set[str]] = {}
    if not any(key in options for key in SECRET_OPTIONS):
        return options, kept
    result = dict(options)
    for key in SECRET_OPTIONS:
        value = options.get(key)
        if isinstance(value, dict):
            kept[key] = {name for name, text in value.items() if text == MASK}
            result[key] = {name: ("kept" if text == MASK else text) for name, text in value.items()}
    return result, kept


def seal(options: dict[str, Any], kept: dict[str, set[str]], stored: dict[str, Any], box: SecretBox | None,
         field: str) -> dict[str, Any]:
    """Validated options ready to store: new secret values sealed, MASK ones replaced by the stored sealed
    value (InputError naming `field` when there is none to keep)."""
    if not any(key in options for key in SECRET_OPTIONS):
        return options
    result = dict(options)
    for key in SECRET_OPTIONS:
        value = options.get(key)
        if not isinstance(value, dict):
            continue
        sealed: dict[str, str] = {}
        for name, text in value.items():
            if name in kept.get(key, ()):
                old = (stored.get(key) or {}).get(name)
                if old is None:
                    raise InputError(f"{field}.{key}", f"{name!r} is {MASK}, which keeps a stored value, but "
                                     f"there is none for {name!r}; give its value")
                sealed[name] = old
            else:
                if box is None:
                    raise RuntimeError("sealing header values needs SECRETS_KEY (pass box=)")
                sealed[name] = box.seal(text)
        result[key] = sealed
    return result


def opened(options: dict[str, Any], box: SecretBox | None) -> dict[str, Any] | None:
    """Stored options with secret values opened, for the monitors; None when they cannot be opened
    (no or another SECRETS_KEY): the device is then not checked rather than checked without its headers."""
    if not any(key in options for key in SECRET_OPTIONS):
        return options
    if box is None:
        return None
    try:
        return {key: ({name: box.open(text) for name, text in value.items()} if key in SECRET_OPTIONS else value)
                for key, value in options.items()}
    except SealError:
        return None
