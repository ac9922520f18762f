"""Errors the repositories raise for input the caller must fix; the HTTP layers map them to 4xx."""


class InputError(ValueError):
    """`field` (a path like `devices[3].target`) is wrong for `reason`; the API answers 422."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Conflict(InputError):
    """The input clashes with existing data (a taken name or slug); the API answers 409."""
