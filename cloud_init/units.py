"""systemd unit files rendered from data (sections -> ordered key/value pairs; keys may repeat)."""

from collections.abc import Mapping, Sequence

Unit = Mapping[str, Sequence[tuple[str, str]]]


def render_unit(sections: Unit) -> str:
    """Render a unit or drop-in; an empty value resets a list setting (systemd semantics)."""
    blocks = []
    for section, pairs in sections.items():
        lines = [f"[{section}]"]
        for key, value in pairs:
            if "\n" in value:
                raise ValueError(f"systemd {section}.{key} value must be one line, got {value!r}")
            lines.append(f"{key}={value}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
