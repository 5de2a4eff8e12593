"""Dolby Vision: which profiles can be kept (the encoder that keeps the RPU is in svt.py).

The decoder attaches each frame's RPU; libsvtav1 with `-dolbyvision 1` writes it back
as AV1 profile 10, choosing the compatibility id from the frames' colour tags (PQ -> 1,
HLG -> 4, BT.709 -> 2). ffmpeg copies each RPU as it is, so:
- an enhancement-layer RPU (profile 7) cannot be turned into a single-layer one here:
  the base layer (HDR10) is encoded instead, with a warning;
- profile 5 cannot be kept: ffmpeg picks compatibility id 0 (IPT) only from stream-wide
  Dolby Vision metadata that its command line never hands the encoder, so the IPT
  base layer would fail to encode or be labelled PQ. It is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.models import DolbyVisionInfo

KEPT_PROFILES = frozenset({8})
BASE_LAYER_PROFILES = frozenset({7})  # dual layer: the base layer is HDR10
AV1_PROFILE = 10
"""AV1's Dolby Vision profile (what drapto writes). The decoder attaches its RPUs like
profile 8's, so it is kept when its base layer is HDR10, SDR or HLG (compatibility id
1, 2 or 4); with an IPT base layer (id 0) it is profile 5's case."""
KEPT_AV1_COMPAT_IDS = frozenset({1, 2, 4})


@dataclass(frozen=True)
class DolbyVisionDecision:
    keep: bool
    warning: str | None = None


def decide(dovi: DolbyVisionInfo, path: Path, hdr10_fallback: bool) -> DolbyVisionDecision:
    """Keep profile 8 and profile 10 over an HDR10/SDR/HLG base layer; profile 7 becomes
    HDR10 with a warning; others need the flag."""
    if dovi.profile in KEPT_PROFILES:
        return DolbyVisionDecision(keep=True)
    if dovi.profile == AV1_PROFILE and dovi.bl_compat_id in KEPT_AV1_COMPAT_IDS:
        return DolbyVisionDecision(keep=True)
    if dovi.profile in BASE_LAYER_PROFILES:
        return DolbyVisionDecision(
            keep=False,
            warning=(
                f"Dolby Vision profile {dovi.profile} is dual layer; ffmpeg cannot convert its "
                "RPU to single-layer metadata, so the base layer is encoded as HDR10"
            ),
        )
    if hdr10_fallback:
        colours = (
            " (its IPT base layer will look wrong without Dolby Vision)"
            if dovi.profile == 5
            else ""
        )
        return DolbyVisionDecision(
            keep=False,
            warning=f"Dolby Vision profile {dovi.profile} cannot be kept; encoding the base layer as asked{colours}",
        )
    if dovi.profile == AV1_PROFILE:
        base = (
            "an IPT base layer (compatibility id 0)"
            if dovi.bl_compat_id == 0
            else f"base layer compatibility id {dovi.bl_compat_id}"
            if dovi.bl_compat_id is not None
            else "no base layer compatibility id"
        )
        raise DraptoError(
            f"Dolby Vision profile 10 (AV1) with {base} cannot be re-encoded with its "
            "Dolby Vision metadata",
            path,
            hint="pass --hdr10-fallback to encode the base layer without it",
        )
    raise DraptoError(
        f"Dolby Vision profile {dovi.profile} cannot be kept in AV1",
        path,
        hint="pass --hdr10-fallback to encode it as plain HDR10",
    )
