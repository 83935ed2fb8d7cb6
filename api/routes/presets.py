"""``/v1/presets``: the engine's presets, which a spec names as ``{"preset": name}``."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import TenantDep
from api.schemas import ERROR_RESPONSES, Page, PresetOut
from api.services import presets as service

router = APIRouter(prefix="/v1/presets", tags=["presets"], responses=ERROR_RESPONSES)


@router.get("", summary="List the presets", response_model=Page[PresetOut])
def list_presets(caller: TenantDep) -> Page[PresetOut]:
    """A spec's ``preset`` fills in these fields first; the spec's own fields override them."""
    return Page[PresetOut](data=service.list_presets(), has_more=False)
