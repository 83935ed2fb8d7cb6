"""The engine's presets (``gan_engine/presets/*.yaml``), as a spec's ``preset`` names them."""

from __future__ import annotations

from importlib import resources

from api.schemas import PresetOut
from gan_engine.spec import load_preset

PRESETS_PACKAGE = "gan_engine.presets"
PRESET_SUFFIX = ".yaml"


def _description(text: str) -> str:
    """The comment lines a preset file starts with, joined."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def list_presets() -> list[PresetOut]:
    """Every preset, by name, with the spec fields it fills in."""
    files = [
        entry
        for entry in resources.files(PRESETS_PACKAGE).iterdir()
        if entry.name.endswith(PRESET_SUFFIX)
    ]
    presets = []
    for entry in sorted(files, key=lambda e: e.name):
        name = entry.name.removesuffix(PRESET_SUFFIX)
        presets.append(
            PresetOut(
                name=name,
                description=_description(entry.read_text()),
                fields=load_preset(name),
            )
        )
    return presets
