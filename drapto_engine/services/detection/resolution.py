"""Resolution class and the CRF it implies (upstream drapto's defaults)."""

from __future__ import annotations

from drapto_engine.core.models import DEFAULTS, EncodeDefaults, ResolutionClass

UHD_WIDTH = 3840
HD_WIDTH = 1920


def resolution_class(width: int) -> ResolutionClass:
    if width >= UHD_WIDTH:
        return ResolutionClass.UHD
    if width >= HD_WIDTH:
        return ResolutionClass.HD
    return ResolutionClass.SD


def default_crf(cls: ResolutionClass, defaults: EncodeDefaults = DEFAULTS) -> int:
    return {
        ResolutionClass.SD: defaults.crf_sd,
        ResolutionClass.HD: defaults.crf_hd,
        ResolutionClass.UHD: defaults.crf_uhd,
    }[cls]
