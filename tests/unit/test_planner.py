"""plan_segments / fixed_segments / final_segments: pure planning from cuts and frame times."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest

from drapto_engine.core.models import Segment
from drapto_engine.services.segmentation.planner import (
    Timeline,
    final_segments,
    fixed_segments,
    plan_segments,
)


def cfr(count: int, fps: float = 25.0, start: float = 0.0) -> list[float]:
    return [start + i / fps for i in range(count)]


def check_cover(segments: Sequence[Segment], times: Sequence[float]) -> None:
    """Every frame exactly once, in order, indexes 0..n-1, seek times between frames."""
    assert [s.index for s in segments] == list(range(len(segments)))
    assert segments[0].start_frame == 0
    assert segments[-1].end_frame == len(times)
    for a, b in itertools.pairwise(segments):
        assert a.end_frame == b.start_frame
        assert a.end_s == b.start_s
    for s in segments:
        assert s.frame_count >= 1
        assert s.start_s <= times[s.start_frame]
        assert s.end_s > times[s.end_frame - 1]
        if s.start_frame > 0:
            assert s.start_s > times[s.start_frame - 1]
        if s.end_frame < len(times):
            assert s.end_s < times[s.end_frame]


def starts(segments: Sequence[Segment]) -> list[int]:
    return [s.start_frame for s in segments]


# --- boundaries and times ----------------------------------------------------------------


def test_no_cuts_short_video_is_one_segment() -> None:
    times = cfr(100)  # 4 s
    [segment] = plan_segments([], times, min_s=5, max_s=20)
    assert (segment.start_frame, segment.end_frame) == (0, 100)
    assert segment.start_s == 0.0
    assert segment.end_s == pytest.approx(4.0)


def test_cuts_in_a_video_shorter_than_min_s_are_ignored() -> None:
    times = cfr(100)
    assert len(plan_segments([30, 60], times, min_s=5, max_s=20)) == 1


def test_seek_times_are_midpoints_between_frames() -> None:
    times = cfr(500)  # 20 s at 25 fps
    first, second = plan_segments([200], times, min_s=5, max_s=20)
    assert first.end_frame == second.start_frame == 200
    assert first.end_s == pytest.approx((199 + 0.5) / 25)
    assert second.end_s == pytest.approx(20.0)  # last frame + one frame step
    check_cover([first, second], times)


def test_first_segment_starts_half_a_frame_before_a_late_first_frame() -> None:
    times = cfr(300, start=1.0)
    [segment] = plan_segments([], times, min_s=5, max_s=20)
    assert segment.start_s == pytest.approx(1.0 - 0.02)


def test_first_segment_start_is_never_negative() -> None:
    times = cfr(300, start=0.01)
    assert plan_segments([], times)[0].start_s == 0.0


def test_duration_sets_the_end_of_the_last_frame() -> None:
    times = cfr(250)
    assert plan_segments([], times, duration_s=10.5)[-1].end_s == 10.5
    # a duration before the last frame is no end at all: the frame step is used
    assert plan_segments([], times, duration_s=5.0)[-1].end_s == pytest.approx(10.0)


def test_single_frame() -> None:
    [segment] = plan_segments([], [0.0])
    assert (segment.start_frame, segment.end_frame) == (0, 1)
    assert segment.end_s > segment.start_s


def test_empty() -> None:
    assert plan_segments([5], []) == []
    assert fixed_segments([]) == []


# --- cuts --------------------------------------------------------------------------------


def test_cuts_become_boundaries() -> None:
    times = cfr(1000)  # 40 s
    segments = plan_segments([250, 500, 750], times, min_s=5, max_s=20)
    assert starts(segments) == [0, 250, 500, 750]
    check_cover(segments, times)


def test_cut_too_close_to_the_previous_start_is_dropped() -> None:
    times = cfr(1000)
    # 300 is 2 s after 250: dropped; 400 is 6 s after 250: kept
    segments = plan_segments([250, 300, 400], times, min_s=5, max_s=40)
    assert starts(segments) == [0, 250, 400]


def test_closeness_is_measured_from_the_last_kept_cut() -> None:
    times = cfr(1000)
    # each cut is 4 s after the one before, so only every other one is 5 s from a kept one
    segments = plan_segments([100, 200, 300, 400, 500], times, min_s=5, max_s=40)
    assert starts(segments) == [0, 200, 400]


def test_cut_at_frame_zero_or_out_of_range_is_ignored() -> None:
    times = cfr(1000)
    assert starts(plan_segments([0, 500, 1000, 5000, -3], times, max_s=40)) == [0, 500]


def test_unsorted_and_repeated_cuts() -> None:
    times = cfr(1000)
    assert starts(plan_segments([750, 250, 250, 500], times)) == [0, 250, 500, 750]


# --- splitting ---------------------------------------------------------------------------


def test_long_scene_is_split_evenly_into_the_fewest_pieces() -> None:
    times = cfr(1500)  # 60 s, no cuts, max 20 -> three pieces of 20 s
    segments = plan_segments([], times, min_s=5, max_s=20)
    assert starts(segments) == [0, 500, 1000]
    times = cfr(1525)  # 61 s -> four pieces of 15.25 s
    segments = plan_segments([], times, min_s=5, max_s=20)
    assert len(segments) == 4
    assert all(s.duration_s <= 20 + 0.04 for s in segments)
    lengths = [s.frame_count for s in segments]
    assert max(lengths) - min(lengths) <= 1
    check_cover(segments, times)


def test_only_the_long_scene_is_split() -> None:
    times = cfr(1500)  # 60 s; scenes of 10 s and 50 s
    segments = plan_segments([250], times, min_s=5, max_s=20)
    assert starts(segments)[:2] == [0, 250]
    assert len(segments) == 1 + 3  # 50 s -> three pieces of 16.7 s
    assert all(s.duration_s <= 20 for s in segments)
    check_cover(segments, times)


def test_a_scene_of_exactly_max_s_is_not_split() -> None:
    times = cfr(500)
    assert len(plan_segments([], times, min_s=5, max_s=20)) == 1


@pytest.mark.parametrize("fps", [23.976, 25.0, 29.97, 59.94])
def test_split_pieces_never_exceed_max_s(fps: float) -> None:
    times = cfr(int(fps * 97.3), fps)
    segments = plan_segments([], times, min_s=5, max_s=20)
    assert all(s.duration_s <= 20 + 1 / fps for s in segments)  # pieces start on frames
    assert len(segments) == 5
    check_cover(segments, times)


def test_frames_longer_than_max_s_each_make_a_segment() -> None:
    times = [0.0, 10.0, 20.0]
    segments = plan_segments([], times, min_s=1, max_s=5)
    assert starts(segments) == [0, 1, 2]


# --- the trailing scene ------------------------------------------------------------------


def test_short_trailing_scene_is_merged() -> None:
    times = cfr(1000)  # 40 s; a cut 2 s before the end
    segments = plan_segments([250, 950], times, min_s=5, max_s=40)
    assert starts(segments) == [0, 250]
    assert segments[-1].duration_s == pytest.approx(30.0, abs=0.04)


def test_merging_never_gives_a_segment_longer_than_max_s() -> None:
    times = cfr(1000)  # 40 s; last cut at 19 s from the start of its scene, 2 s from the end
    segments = plan_segments([475, 950], times, min_s=5, max_s=20)
    # 21 s of scene after 475: merged with the 2 s tail, then split in two
    assert starts(segments)[:2] == [0, 475]
    assert all(s.duration_s <= 20 for s in segments)
    check_cover(segments, times)


def test_trailing_scene_of_exactly_min_s_is_kept() -> None:
    times = cfr(500)
    assert starts(plan_segments([375], times, min_s=5, max_s=20)) == [0, 375]


# --- variable frame rate -----------------------------------------------------------------


def test_vfr_times_are_used_not_frame_counts() -> None:
    # 100 frames at 10 fps (10 s), then 600 frames at 60 fps (10 s)
    times = [i / 10 for i in range(100)] + [10 + i / 60 for i in range(600)]
    segments = plan_segments([], times, min_s=5, max_s=10)
    # by frame count the middle would be frame 350; by time it is where 10 s is
    assert starts(segments) == [0, 101]
    assert segments[0].end_s == pytest.approx((10.0 + 10 + 1 / 60) / 2)
    assert segments[1].end_s == pytest.approx(10 + 600 / 60)
    check_cover(segments, times)


def test_vfr_min_s_is_time_not_frames() -> None:
    times = [i / 10 for i in range(100)] + [10 + i / 60 for i in range(600)]
    # a cut 2 s into the 60 fps part is 120 frames, but only 2 s, from frame 100
    segments = plan_segments([100, 220], times, min_s=5, max_s=20)
    assert starts(segments) == [0, 100]


# --- properties --------------------------------------------------------------------------


def random_times(rng: random.Random) -> list[float]:
    t, times = rng.uniform(0, 0.5), []
    for _ in range(rng.randint(1, 3000)):
        times.append(t)
        t += rng.choice([1 / 24, 1 / 25, 1 / 30, 1 / 60, 0.5, 1.001 / 24])
    return times


@pytest.mark.parametrize("seed", range(40))
def test_random_plans_follow_the_rules(seed: int) -> None:
    rng = random.Random(seed)
    times = random_times(rng)
    cuts = set(rng.sample(range(len(times)), k=min(len(times), rng.randint(0, 40))))
    min_s, max_s = rng.choice([(5, 20), (1, 3), (2, 4), (10, 10)])
    segments = plan_segments(sorted(cuts), times, min_s=min_s, max_s=max_s)
    check_cover(segments, times)
    longest_frame = max((b - a for a, b in itertools.pairwise(times)), default=0.04)
    assert all(s.duration_s <= max_s + longest_frame for s in segments)
    # scenes: runs of segments between boundaries that are cuts
    scene_starts = [s for s in segments if s.start_frame == 0 or s.start_frame in cuts]
    scene_ends = [*(s.start_s for s in scene_starts[1:]), segments[-1].end_s]
    for scene, end in zip(scene_starts, scene_ends, strict=True):
        pieces = [s for s in segments if scene.start_s <= s.start_s < end]
        if len(scene_starts) > 1:
            assert end - scene.start_s >= min_s - 1e-9  # trailing scenes merged, close cuts dropped
        if len(pieces) > 1:
            assert end - scene.start_s > max_s  # split only when too long


@pytest.mark.parametrize("seed", range(20))
def test_final_segments_are_a_prefix_of_the_plan(seed: int) -> None:
    """What the streaming planner hands out early is never taken back."""
    rng = random.Random(seed)
    times = random_times(rng)
    cuts = sorted(rng.sample(range(1, len(times)), k=min(len(times) - 1, rng.randint(0, 30))))
    timeline = Timeline.of(times)
    plan = plan_segments(cuts, times, min_s=3, max_s=10)
    for settled in sorted(rng.sample(range(len(times) + 1), k=min(len(times) + 1, 20))):
        known = [c for c in cuts if c < settled]
        early = final_segments(known, timeline, settled, min_s=3, max_s=10)
        assert early == plan[: len(early)]


# --- fixed segments ----------------------------------------------------------------------


def test_fixed_segments_are_equal_and_no_longer_than_length() -> None:
    times = cfr(1525)  # 61 s
    segments = fixed_segments(times, length_s=20)
    assert len(segments) == 4
    lengths = [s.frame_count for s in segments]
    assert max(lengths) - min(lengths) <= 1
    assert all(s.duration_s <= 20 for s in segments)
    assert fixed_segments(cfr(1500), length_s=20) == plan_segments([], cfr(1500), max_s=20)
    check_cover(segments, times)


def test_fixed_segments_with_a_huge_length_are_one_segment() -> None:
    times = cfr(1000)
    [segment] = fixed_segments(times, length_s=1e9)
    assert (segment.start_frame, segment.end_frame) == (0, 1000)


def test_fixed_segments_short_video() -> None:
    assert len(fixed_segments(cfr(10), length_s=20)) == 1


# Keyframes: an even split moves to the nearest keyframe within a second.


def test_even_split_moves_to_a_keyframe_within_a_second() -> None:
    times = cfr(1250)  # 50 s at 25 fps: three even pieces of 16.67 s (frames 417, 834)
    plain = fixed_segments(times, length_s=20)
    assert [s.start_frame for s in plain] == [0, 417, 834]
    keyed = fixed_segments(times, length_s=20, keyframes=[0, 400, 860, 850, 1200])
    # 400 is 0.7 s before the first even point, 850 0.65 s after the second; 860 is 1.05 s
    assert [s.start_frame for s in keyed] == [0, 400, 850]
    check_cover(keyed, times)
    assert all(s.duration_s <= 20 for s in keyed)


def test_keyframe_more_than_a_second_away_is_ignored() -> None:
    times = cfr(1250)
    keyed = fixed_segments(times, length_s=20, keyframes=[0, 390, 860])  # 1.09 s, 1.05 s
    assert [s.start_frame for s in keyed] == [0, 417, 834]


def test_keyframe_that_would_overfill_a_piece_is_not_used() -> None:
    times = cfr(1000)  # 40 s, max 20: two pieces of exactly 20 s
    keyed = fixed_segments(times, length_s=20, keyframes=[0, 480])
    assert [s.start_frame for s in keyed] == [0, 500]  # 480 would leave 20.8 s after it
    assert len(fixed_segments(times, length_s=20.8, keyframes=[0, 480])) == 2


def test_long_scene_split_on_keyframe_but_cuts_stay() -> None:
    times = cfr(1500)  # cuts at 250 (10 s) and 1000; the scene 250-1000 (30 s) splits in two
    plan = plan_segments([250, 1000], times, min_s=5, max_s=21, keyframes=[0, 610, 1010])
    assert [s.start_frame for s in plan] == [0, 250, 610, 1000]
    check_cover(plan, times)


def test_segment_on_a_keyframe_is_sought_to_the_keyframe_itself() -> None:
    """ffmpeg seeks to the last keyframe at or before the seek point: halfway before the
    keyframe would decode the whole GOP before it."""
    times = cfr(1250)
    keyed = fixed_segments(times, length_s=20, keyframes=[0, 400, 850])
    for s in keyed[1:]:
        assert s.start_s == pytest.approx(times[s.start_frame] - 1e-6, abs=1e-9)
    plain = fixed_segments(times, length_s=20)
    for s in plain[1:]:
        assert s.start_s == pytest.approx(times[s.start_frame] - 0.02)  # halfway
    check_cover(keyed, times)


def test_keyframes_do_not_change_the_streamed_plan() -> None:
    times = cfr(3000)
    keys = list(range(0, 3000, 37))
    timeline = Timeline.of(times, keyframes=keys)
    whole = plan_segments([700, 1400, 2900], times, min_s=5, max_s=12, keyframes=keys)
    early = final_segments([700, 1400], timeline, 1500, min_s=5, max_s=12)
    assert early == whole[: len(early)] and len(early) >= 3
    assert any(s.start_frame in keys and s.start_frame not in (0, 700, 1400) for s in whole)
