"""bars_of and combine on plain numpy luma planes: no media, exact numbers."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from drapto_engine.core.models import Crop, DynamicRange
from drapto_engine.services.detection.crop import (
    HDR_BLACK,
    SDR_BLACK,
    Bars,
    bars_of,
    black_threshold,
    combine,
)

Plane = npt.NDArray[np.float32]


def plane(
    height: int = 240,
    width: int = 320,
    *,
    top: int = 0,
    bottom: int = 0,
    left: int = 0,
    right: int = 0,
    bar: float = 0.0,
    picture: float = 0.5,
) -> Plane:
    luma = np.full((height, width), bar, dtype=np.float32)
    luma[top : height - bottom, left : width - right] = picture
    return luma


# --- bars_of ----------------------------------------------------------------------------


def test_letterbox_and_pillarbox() -> None:
    luma = plane(top=40, bottom=30, left=20, right=10)
    assert bars_of(luma, SDR_BLACK) == Bars(top=40, bottom=30, left=20, right=10)


def test_full_picture_has_no_bars() -> None:
    assert bars_of(plane(), SDR_BLACK) == Bars(0, 0, 0, 0)


def test_all_dark_frame_tells_nothing() -> None:
    assert bars_of(plane(picture=0.0), SDR_BLACK) is None


def test_dark_rows_inside_the_picture_are_not_bars() -> None:
    luma = plane(top=10, bottom=10)
    luma[100:120, :] = 0.0  # a black band across the middle of the picture
    luma[:, 150:160] = 0.0
    assert bars_of(luma, SDR_BLACK) == Bars(10, 10, 0, 0)


def test_a_few_bright_pixels_do_not_break_a_bar() -> None:
    """A bar row stays a bar while under 5 % of it is bright (the 95th percentile)."""
    luma = plane(top=40, bottom=40)
    luma[5, :15] = 1.0  # 15 of 320 pixels: 4.7 %
    assert bars_of(luma, SDR_BLACK) == Bars(40, 40, 0, 0)
    luma[5, :20] = 1.0  # 6.25 %: row 5 is picture now, so the top bar is rows 0-4
    assert bars_of(luma, SDR_BLACK) == Bars(5, 40, 0, 0)


@pytest.mark.parametrize(
    ("bar", "sdr", "hdr"),
    [
        (0.0, Bars(40, 40, 0, 0), Bars(40, 40, 0, 0)),
        (100 / 1023, Bars(0, 0, 0, 0), Bars(40, 40, 0, 0)),  # between the thresholds
        (0.2, Bars(0, 0, 0, 0), Bars(0, 0, 0, 0)),
    ],
)
def test_threshold_depends_on_dynamic_range(bar: float, sdr: Bars, hdr: Bars) -> None:
    luma = plane(top=40, bottom=40, bar=bar)
    assert bars_of(luma, black_threshold(DynamicRange.SDR)) == sdr
    for kind in (DynamicRange.HDR10, DynamicRange.HLG, DynamicRange.DOLBY_VISION):
        assert bars_of(luma, black_threshold(kind)) == hdr


def test_thresholds() -> None:
    assert black_threshold(DynamicRange.SDR) == SDR_BLACK == 24 / 255
    assert black_threshold(DynamicRange.HDR10) == HDR_BLACK == 128 / 1023


# --- combine ------------------------------------------------------------------------------


def test_no_samples_no_crop() -> None:
    assert combine([], 320, 240) is None


def test_one_sample() -> None:
    assert combine([Bars(40, 40, 0, 0)], 320, 240) == Crop(width=320, height=160, x=0, y=40)


def test_least_aggressive_side_by_side() -> None:
    samples = [Bars(40, 10, 30, 8), Bars(10, 40, 6, 30), Bars(60, 60, 40, 40)]
    assert combine(samples, 320, 240) == Crop(width=320 - 6 - 8, height=220, x=6, y=10)


def test_a_sample_without_bars_cancels_the_crop() -> None:
    assert combine([Bars(40, 40, 20, 20), Bars(0, 0, 0, 0)], 320, 240) is None


def test_odd_bars_round_down_to_even() -> None:
    crop = combine([Bars(37, 33, 21, 19)], 320, 240)
    assert crop == Crop(width=320 - 20 - 18, height=240 - 36 - 32, x=20, y=36)


@pytest.mark.parametrize(
    ("top", "bottom", "expected"),
    [
        (2, 1, None),  # 3 rows < 1 % of 400
        (2, 2, Crop(width=320, height=396, x=0, y=2)),  # exactly 1 %: kept
        (1, 3, Crop(width=320, height=398, x=0, y=0)),  # kept, then 1 and 3 round to 0 and 2
    ],
)
def test_one_percent_rule(top: int, bottom: int, expected: Crop | None) -> None:
    assert combine([Bars(top, bottom, 0, 0)], 320, 400) == expected


def test_negligible_axis_is_dropped_alone() -> None:
    """Two columns of 320 (< 1 %) are left; 40-row bars are still cropped."""
    assert combine([Bars(40, 40, 1, 1)], 320, 240) == Crop(width=320, height=160, x=0, y=40)
    assert combine([Bars(2, 0, 40, 40)], 320, 240) == Crop(width=240, height=240, x=40, y=0)


def test_crop_filter_string() -> None:
    assert Crop(width=320, height=160, x=0, y=40).filter() == "crop=320:160:0:40"
