"""The scene scan's cut rules: CutDetector's per-frame measures on synthetic luma
frames (no ffmpeg)."""

from __future__ import annotations

import numpy as np

from drapto_engine.services.segmentation.detector import BLACK_LEVEL, CutDetector

H, W = 144, 256


def black_with_lit_share(share: float, level: int = 16) -> np.ndarray:
    """A black frame whose top `share` of rows is white (captions, a logo)."""
    frame = np.full((H, W), level, np.uint8)
    frame[: round(H * share)] = 255
    return frame


def test_black_frames_may_carry_lit_captions() -> None:
    """90% black counts as black even with the rest at full white (the brightest such
    frame); 11% lit does not. Black and still frames build up a black run."""
    picture = np.random.default_rng(3).integers(40, 200, (H, W), dtype=np.uint8)
    frames = [picture] * 4
    frames += [black_with_lit_share(0.1, BLACK_LEVEL)] * 5  # 10% white, 90% at the level
    frames += [black_with_lit_share(0.11)] * 3
    detector = CutDetector()
    detector.feed(np.stack(frames))
    assert detector.black_run == [0, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0]  # the first moved
    assert detector.dark_run == [0, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0]


def test_changes_are_exact_mean_differences() -> None:
    """change: mean absolute luma difference; structure: the same with each frame's mean
    removed (a uniform brightening scores 0), across batch boundaries too."""
    rng = np.random.default_rng(5)
    a = rng.integers(50, 150, (H, W), dtype=np.uint8)
    frames = np.stack([a, a + 10, a + 10, rng.integers(0, 255, (H, W), dtype=np.uint8)])
    whole = CutDetector()
    whole.feed(frames)
    split = CutDetector()
    split.feed(frames[:2])
    split.feed(frames[2:])
    for detector in (whole, split):
        assert detector.change[:3] == [0.0, 10.0, 0.0]
        assert detector.structure[:3] == [0.0, 0.0, 0.0]
        y = frames.astype(np.float64)
        expected = np.abs((y[3] - y[3].mean()) - (y[2] - y[2].mean())).mean()
        assert abs(detector.structure[3] - expected) < 1e-3
