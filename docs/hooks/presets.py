"""MkDocs hook: the preset tables are generated from petclick.config.presets at build time, so the
docs cannot quote a stale default. A page asks for one with the marker `<!-- presets-table -->`."""

from __future__ import annotations

from typing import Any

from petclick.config.presets import PRESETS

MARKER = "<!-- presets-table -->"


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _cell(value: Any) -> str:
    text = "null" if value is None else str(value).replace("True", "true").replace("False", "false")
    return f"`{text}`".replace("|", "\\|")


def presets_table() -> str:
    """A Markdown table: every key of the presets, the `autopet` and the `demo` value."""
    flat = {name: _flatten(preset) for name, preset in PRESETS.items()}
    keys = list(flat["autopet"])
    rows = ["| key | `autopet` | `demo` |", "| --- | --- | --- |"]
    for key in keys:
        demo = flat["demo"].get(key)
        differs = "" if demo == flat["autopet"][key] else " (differs)"
        rows.append(f"| `{key}` | {_cell(flat['autopet'][key])} | {_cell(demo)}{differs} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return markdown.replace(MARKER, presets_table()) if MARKER in markdown else markdown
