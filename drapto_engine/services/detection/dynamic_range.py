"""Which dynamic range a video is in: SDR, HDR10, HLG or Dolby Vision."""

from __future__ import annotations

from drapto_engine.core.models import DolbyVisionInfo, DynamicRange, MediaInfo

PQ = "smpte2084"
HLG = "arib-std-b67"


def classify(
    media: MediaInfo, rpu_on_first_frame: bool
) -> tuple[DynamicRange, DolbyVisionInfo | None]:
    """Dolby Vision wins over the transfer; PQ is HDR10, arib-std-b67 is HLG."""
    transfer = media.video.color_transfer
    if media.dolby_vision is not None:
        return DynamicRange.DOLBY_VISION, media.dolby_vision
    if rpu_on_first_frame:
        # No configuration record: a PQ- or HLG-tagged base layer is cross-compatible
        # (profile 8.1 / 8.4); an untagged one is IPT-PQ-c2, profile 5.
        if transfer == PQ:
            return DynamicRange.DOLBY_VISION, DolbyVisionInfo(profile=8, bl_compat_id=1)
        if transfer == HLG:
            return DynamicRange.DOLBY_VISION, DolbyVisionInfo(profile=8, bl_compat_id=4)
        return DynamicRange.DOLBY_VISION, DolbyVisionInfo(profile=5, bl_compat_id=0)
    if transfer == PQ:
        return DynamicRange.HDR10, None
    if transfer == HLG:
        return DynamicRange.HLG, None
    return DynamicRange.SDR, None
