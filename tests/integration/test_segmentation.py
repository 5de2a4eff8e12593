"""Segmentation on real ffmpeg output: frame times, scene cuts, segment plans.

Synthetic scenes come from mediagen (lavfi sources at 320x240, 25 fps, so a scene of
d seconds is 25*d frames); transitions mediagen cannot join (dissolves) are made here.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from mediagen import BITEXACT, Cut, MakeMedia, cut_frames, remux, run_ffmpeg

from drapto_engine.core.errors import MediaError
from drapto_engine.services.segmentation import (
    plan_segments,
    segment_video,
    stream_segments,
)
from drapto_engine.services.segmentation import scenes as scenes_module
from drapto_engine.services.segmentation.detector import (
    BATCH,
    CUT_SCORE,
    CutDetector,
    analysis_size,
)
from drapto_engine.services.segmentation.scenes import DECODER, detect_cuts, scan_cuts
from drapto_engine.services.segmentation.timestamps import frame_times

SIZE = "s=320x240:r=25"
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *BITEXACT]


def lavfi(ffmpeg: str, out: Path, graph: str, *args: str) -> Path:
    """A video from a whole lavfi graph (for joins mediagen does not make)."""
    run_ffmpeg(ffmpeg, ["-f", "lavfi", "-i", graph, *X264, *args, str(out)])
    return out


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


def near(found: list[int], expected: list[int], tolerance: int) -> bool:
    return len(found) == len(expected) and all(
        abs(f - e) <= tolerance for f, e in zip(found, expected, strict=True)
    )


# --- frame times -------------------------------------------------------------------------

REAL_FRAMES = {
    "testvideo.mp4": 720,
    "fades.mp4": 250,
    "counter.mp4": 30,
    "issue-236-split-copy.mkv": 48,
    "dv-p81-regular.mkv": 259,
}


@pytest.mark.parametrize(("name", "frames"), REAL_FRAMES.items())
def test_frame_times_of_real_files(shared_media: Path, name: str, frames: int) -> None:
    times = frame_times(shared_media / name)
    assert len(times) == frames
    assert times[0] == pytest.approx(0.0, abs=0.05)
    assert all(b > a for a, b in itertools.pairwise(times))


def test_frame_times_counter_is_10_fps(shared_media: Path) -> None:
    assert frame_times(shared_media / "counter.mp4") == pytest.approx([i / 10 for i in range(30)])


def test_frame_times_with_b_frames(ffmpeg: str, make_media: MakeMedia) -> None:
    path = make_media("b.mp4", duration=2.0, output_args=["-bf", "3"])
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    assert any(p.pts != p.dts for p in packets), "the test file has no reordered frames"
    times = frame_times(path)
    assert times == pytest.approx([i / 25 for i in range(50)])


def test_frame_times_skip_frames_an_edit_list_discards(
    ffmpeg: str, make_media: MakeMedia, tmp_path: Path
) -> None:
    """A stream copy starting between keyframes keeps the frames before the start in an
    mp4 but marks them discarded: they are decoded, never shown, and not frames."""
    source = make_media("gop.mkv", duration=4.0, gop=50)
    copied = tmp_path / "copy.mp4"
    run_ffmpeg(ffmpeg, ["-ss", "1.2", "-i", str(source), "-c", "copy", str(copied)])
    with av.open(str(copied)) as container:
        assert any(p.is_discard for p in container.demux(video=0))
    times = frame_times(copied)
    assert len(times) == decoded_frames(copied)
    assert times[0] == pytest.approx(0.0, abs=0.05)


def test_frame_times_variable_rate(ffmpeg: str, make_media: MakeMedia) -> None:
    # frames 0-9 at 25 fps, then a one second gap, then 25 fps again
    path = make_media(
        "vfr.mkv",
        duration=1.0,
        filters="setpts='(N/25+if(gte(N,10),1,0))/TB'",
        output_args=["-fps_mode", "passthrough"],
    )
    times = frame_times(path)
    assert len(times) == 25
    assert times[10] - times[9] == pytest.approx(1.04, abs=0.002)


def test_frame_times_without_timestamps(ffmpeg: str, make_media: MakeMedia, tmp_path: Path) -> None:
    raw = tmp_path / "raw.h264"
    run_ffmpeg(ffmpeg, ["-i", str(make_media("a.mkv", duration=1.0)), "-c", "copy", str(raw)])
    times = frame_times(raw)
    assert len(times) == 25
    assert times == pytest.approx([i / 25 for i in range(25)])


def test_frame_times_skip_cover_art(ffmpeg: str, make_media: MakeMedia, tmp_path: Path) -> None:
    video = make_media("v.mkv", duration=1.0)
    cover = tmp_path / "cover.png"
    run_ffmpeg(ffmpeg, ["-f", "lavfi", "-i", "color=red:s=64x64", "-frames:v", "1", str(cover)])
    out = tmp_path / "with cover.mp4"
    run_ffmpeg(
        ffmpeg,
        [
            "-i",
            str(cover),
            "-i",
            str(video),
            "-map",
            "0",
            "-map",
            "1",
            "-c",
            "copy",
            "-disposition:v:0",
            "attached_pic",
            str(out),
        ],
    )
    assert len(frame_times(out)) == 25


def test_frame_times_of_a_broken_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(MediaError, match=r"junk\.mkv"):
        frame_times(junk)


# --- cuts on real footage ----------------------------------------------------------------


async def test_testvideo_hard_cuts(ffmpeg: str, shared_media: Path) -> None:
    cuts = await detect_cuts(shared_media / "testvideo.mp4")
    expected = [30, 180, 394]
    assert all(any(abs(c - e) <= 2 for c in cuts) for e in expected), cuts
    extra = [c for c in cuts if all(abs(c - e) > 2 for e in expected)]
    assert all(abs(c - 691) <= 2 for c in extra), cuts


@pytest.mark.parametrize("name", ["fades.mp4", "counter.mp4", "dv-p81-regular.mkv"])
async def test_no_cuts_in_real_files_without_any(
    ffmpeg: str, shared_media: Path, name: str
) -> None:
    assert await detect_cuts(shared_media / name) == []


async def test_anime_cut_in_fast_motion(ffmpeg: str, shared_media: Path) -> None:
    """The clip pans fast throughout; frame 19 is the one hard cut."""
    assert await detect_cuts(shared_media / "issue-236-split-copy.mkv") == [19]


def reshoot(ffmpeg: str, source: Path, out: Path, frames: tuple[int, int], filters: str) -> Path:
    """Frames [start, end) of real footage, filtered (frame n of `filters` is the clip's n)."""
    start, end = frames
    graph = f"trim=start_frame={start}:end_frame={end},setpts=PTS-STARTPTS,{filters}"
    run_ffmpeg(ffmpeg, ["-i", str(source), "-vf", graph, *X264, "-an", str(out)])
    return out


# The level of a hard cut, pinned on real footage by two edits of testvideo.mp4 whose
# structural change lies on either side of it: half the level lets a camera jolt through,
# twice the level loses the real cuts of a dark, low-contrast copy. Both use literal
# thresholds, not CUT_SCORE, so a changed level fails here.


async def test_real_cuts_in_a_dark_low_contrast_copy_are_found(
    ffmpeg: str, shared_media: Path, tmp_path: Path
) -> None:
    """At a fifth of the contrast and a quarter darker, the cuts at frames 30 and 180
    change the structure by about 10.4 luma levels: above the level (8), below twice it."""
    dark = reshoot(
        ffmpeg,
        shared_media / "testvideo.mp4",
        tmp_path / "dark.mp4",
        (0, 240),
        "eq=contrast=0.2:brightness=-0.25,scale=320:-2",
    )
    scan = await scan_cuts(dark)
    assert [cut.frame for cut in scan.cuts] == [30, 180]
    assert all(9.5 < cut.score < 11.5 for cut in scan.cuts), scan.cuts
    assert await detect_cuts(dark, threshold=16.0) == []


async def test_a_camera_jolt_within_a_real_scene_is_no_cut(
    ffmpeg: str, shared_media: Path, tmp_path: Path
) -> None:
    """Within the scene from frame 30 to 180, the picture jumps 8 pixels sideways (0.7%
    of its width) at the clip's frame 60: about 6.7 levels of structural change, below
    the level (8) but above half of it, where it would be a cut."""
    jolt = reshoot(
        ffmpeg,
        shared_media / "testvideo.mp4",
        tmp_path / "jolt.mp4",
        (45, 165),
        "crop=1200:680:x='if(gte(n,60),48,40)':y=20,scale=320:-2",
    )
    assert await detect_cuts(jolt) == []
    found = (await scan_cuts(jolt, threshold=4.0)).cuts
    assert [cut.frame for cut in found] == [60], found
    assert 5.0 < found[0].score < 8.0, found


async def test_scan_counts_every_decoded_frame(ffmpeg: str, shared_media: Path) -> None:
    for name, frames in REAL_FRAMES.items():
        assert (await scan_cuts(shared_media / name)).frames == frames


# --- cuts on synthetic scenes ------------------------------------------------------------


async def test_cuts_at_scene_boundaries(ffmpeg: str, make_media: MakeMedia) -> None:
    scenes = [Cut(2.0, "testsrc2"), Cut(3.0, "smptebars"), Cut(1.5, "mandelbrot"), Cut(2.0)]
    cuts = await detect_cuts(make_media("scenes.mkv", cuts=scenes))
    assert near(cuts, cut_frames(scenes), 1), cuts  # [50, 125, 163]


async def test_cuts_at_other_sizes_and_rates(ffmpeg: str, make_media: MakeMedia) -> None:
    scenes = [Cut(1.0, "mandelbrot"), Cut(1.0, "smptebars"), Cut(1.0, "testsrc2")]
    path = make_media("small.mp4", cuts=scenes, size=(176, 144), rate="30000/1001")
    cuts = await detect_cuts(path, analysis_width=128)
    assert near(cuts, cut_frames(scenes, "30000/1001"), 1), cuts


async def test_a_dissolve_is_no_cut(ffmpeg: str, tmp_path: Path) -> None:
    graph = (
        f"testsrc2={SIZE}:d=3[a];smptebars={SIZE}:d=3[b];"
        "[a][b]xfade=transition=dissolve:duration=1:offset=2"
    )
    assert await detect_cuts(lavfi(ffmpeg, tmp_path / "dissolve.mkv", graph)) == []
    graph = graph.replace("dissolve", "fade")
    assert await detect_cuts(lavfi(ffmpeg, tmp_path / "crossfade.mkv", graph)) == []


async def test_a_fade_of_a_picture_is_no_cut(ffmpeg: str, make_media: MakeMedia) -> None:
    path = make_media("fade.mkv", cuts=[Cut(4.0, "testsrc2", "fade=in:d=2,fade=out:st=2:d=2")])
    assert await detect_cuts(path) == []


async def test_fade_through_black_with_a_hold_cuts_where_the_fade_in_starts(
    ffmpeg: str, make_media: MakeMedia
) -> None:
    scenes = [
        Cut(2.0, "testsrc2", "fade=out:st=1:d=1"),
        Cut(1.0, "color"),  # black
        Cut(2.0, "smptebars", "fade=in:d=1"),
    ]
    cuts = await detect_cuts(make_media("hold.mkv", cuts=scenes))
    assert near(cuts, [76], 1), cuts  # frame 75 is the fade-in's first, still black


async def test_a_cut_into_black_is_the_only_cut(ffmpeg: str, make_media: MakeMedia) -> None:
    scenes = [Cut(2.0, "testsrc2"), Cut(1.0, "color"), Cut(2.0, "smptebars", "fade=in:d=1")]
    cuts = await detect_cuts(make_media("cut to black.mkv", cuts=scenes))
    assert near(cuts, [50], 1), cuts


async def test_flashes_are_no_cuts(ffmpeg: str, make_media: MakeMedia) -> None:
    one = "geq=lum='if(eq(N,50),235,lum(X,Y))':cb='cb(X,Y)':cr='cr(X,Y)'"
    two = "eq=brightness='if(between(n,40,41),0.5,0)':eval=frame"
    for name, flash in [("one.mkv", one), ("two.mkv", two)]:
        path = make_media(name, cuts=[Cut(4.0, "testsrc2", flash)])
        assert await detect_cuts(path) == [], name


async def test_a_fast_pan_is_no_cut(ffmpeg: str, make_media: MakeMedia) -> None:
    path = make_media("pan.mkv", cuts=[Cut(3.0, "testsrc2", "scroll=horizontal=0.08")])
    assert await detect_cuts(path) == []


async def test_threshold_changes_what_counts(ffmpeg: str, make_media: MakeMedia) -> None:
    scenes = [Cut(2.0, "testsrc2"), Cut(2.0, "smptebars")]
    path = make_media("two.mkv", cuts=scenes)
    assert await detect_cuts(path) == [50]
    assert await detect_cuts(path, threshold=500.0) == []


# --- the ffmpeg child --------------------------------------------------------------------


async def test_a_broken_file_raises_naming_it(ffmpeg: str, tmp_path: Path) -> None:
    junk = tmp_path / "broken file.mkv"
    junk.write_bytes(b"\x1a\x45\xdf\xa3 this is not matroska" * 50)
    with pytest.raises(MediaError, match=r"broken file\.mkv") as caught:
        await detect_cuts(junk)
    assert "decoder exit 1" in str(caught.value)


@pytest.mark.parametrize("width", [128, 100])  # 100: rows padded in the decoder's frames
def test_the_decoder_child_gives_ffmpegs_frames_byte_for_byte(
    ffmpeg: str, shared_media: Path, width: int
) -> None:
    """The scan's decoder (PyAV in a child, luma.py) writes exactly what the ffmpeg
    command it replaced wrote, on every real file: the cuts cannot differ."""
    height = analysis_size(width)[1]
    files = sorted(p for p in shared_media.iterdir() if p.suffix in {".mp4", ".mkv"})
    assert len(files) >= 5
    for path in files:
        mine = subprocess.run(
            [sys.executable, str(DECODER), str(path), str(width), str(height)],
            capture_output=True,
            check=True,
        )
        assert mine.stderr == b"", path.name
        theirs = subprocess.run(
            [
                ffmpeg, "-v", "error", "-threads", "1", "-skip_loop_filter", "all",
                "-i", str(path), "-map", "0:V:0",
                "-vf", f"scale={width}:{height}:flags=area,format=gray",
                "-fps_mode", "passthrough", "-f", "rawvideo", "-",
            ],
            capture_output=True,
            check=True,
        )  # fmt: skip
        assert len(mine.stdout) == len(theirs.stdout) > 0, path.name
        assert mine.stdout == theirs.stdout, path.name


def test_the_scan_child_scores_the_frames_and_reports_every_batch(shared_media: Path) -> None:
    """What the scan runs: luma.py with a threshold decodes and scores testvideo.mp4 in
    the child, a JSON line per batch of BATCH frames (the cuts found since the last one,
    and the frame below which everything is decided) and a last line with every cut."""
    width, height = analysis_size(128)
    done = subprocess.run(
        [sys.executable, str(DECODER), str(shared_media / "testvideo.mp4"), "128", str(height),
         repr(CUT_SCORE)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert done.stderr == ""
    *batches, final = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(batches) == -(-720 // BATCH)
    settled = [b["settled"] for b in batches]
    assert settled == sorted(settled) and 0 < settled[-1] <= 720
    assert final["frames"] == 720
    assert [frame for frame, _, _ in final["cuts"]] == [30, 180, 394]
    # two hard cuts and the end of a fade to black (its score is the plain change)
    assert [kind for _, _, kind in final["cuts"]] == ["hard", "hard", "black_exit"]
    assert all(score >= CUT_SCORE for _, score, _ in final["cuts"][:2])
    # every cut was reported once, with the batch that decided it
    assert [c for b in batches for c in b["cuts"]] == [30, 180, 394]
    assert width == 128


async def test_a_scan_child_that_ends_mid_line_is_one_error(
    tmp_path: Path, shared_media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that exits 0 after half a line (its findings cut short) fails the scan with
    a MediaError naming the file, not a JSON error."""
    child = tmp_path / "cut_short.py"
    child.write_text('import sys\nsys.stdout.write(\'{"settled": 33, "cuts": [3\')\n')
    monkeypatch.setattr(scenes_module, "DECODER", child)
    source = shared_media / "counter.mp4"
    with pytest.raises(MediaError) as caught:
        await detect_cuts(source)
    assert caught.value.path == source
    assert caught.value.problem == "scene detection failed: its child ended without its findings"


def kernel_wait(pid: int) -> str:
    """Where in the kernel a process sleeps ("wait_for_partner": opening a FIFO)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


async def test_cancelling_kills_ffmpeg(
    ffmpeg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ffmpeg blocks opening a FIFO nobody writes to: only a kill ends it."""
    fifo = tmp_path / "never.mkv"
    os.mkfifo(fifo)
    started: list[asyncio.subprocess.Process] = []
    spawn = asyncio.create_subprocess_exec

    async def spy(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        proc = await spawn(*args, **kwargs)
        started.append(proc)
        return proc

    monkeypatch.setattr(asyncio, "create_subprocess_exec", spy)
    task = asyncio.create_task(detect_cuts(fifo))
    async with asyncio.timeout(10):  # until ffmpeg blocks opening the FIFO
        while not started or kernel_wait(started[0].pid) != "wait_for_partner":
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert started[0].returncode is not None


# --- the detector on its own -------------------------------------------------------------


def synthetic_frames(seed: int = 1) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Three smooth random patterns, 40 frames each, drifting slowly: cuts at 40 and 80."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:36, 0:64].astype(np.float32)
    frames = []
    for _ in range(3):
        waves = [(rng.uniform(0.05, 0.4, 2), rng.uniform(0, 6.3)) for _ in range(4)]
        for t in range(40):
            picture = sum(np.sin(fy * y + fx * (x + t) + phase) for (fy, fx), phase in waves)
            noisy = 128 + 25 * picture + rng.normal(0, 1.5, size=picture.shape)
            frames.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return np.stack(frames)


@pytest.mark.parametrize("batch", [1, 2, 5, 32, 120])
def test_batches_do_not_change_the_result(batch: int) -> None:
    frames = synthetic_frames()
    detector = CutDetector()
    for start in range(0, len(frames), batch):
        detector.feed(frames[start : start + batch])
    detector.finish()
    assert detector.cut_frames == [40, 80]
    whole = CutDetector()
    whole.feed(frames)
    whole.finish()
    assert detector.structure == pytest.approx(whole.structure)
    assert detector.cuts == whole.cuts


@pytest.mark.parametrize("batch", [1, 5, 32])
def test_the_feeder_may_reuse_its_buffer(batch: int) -> None:
    """The scan reads every batch into the same buffer: what the detector keeps of a
    batch (the last frame, frames a flash check compares) must survive the next read."""
    frames = synthetic_frames()
    whole = CutDetector()
    whole.feed(frames)
    whole.finish()
    detector = CutDetector()
    buffer = np.empty((batch, *frames.shape[1:]), np.uint8)
    for start in range(0, len(frames), batch):
        chunk = frames[start : start + batch]
        buffer[: len(chunk)] = chunk
        detector.feed(buffer[: len(chunk)])
        buffer.fill(255)  # the next read overwrites it
    detector.finish()
    assert detector.change == whole.change
    assert detector.structure == whole.structure
    assert detector.cuts == whole.cuts
    assert whole.cut_frames == [40, 80]


def test_cuts_settle_as_frames_arrive() -> None:
    frames = synthetic_frames()
    detector = CutDetector()
    settled_with: dict[int, int] = {}
    for i in range(len(frames)):
        detector.feed(frames[i : i + 1])
        for cut in detector.cut_frames:
            settled_with.setdefault(cut, i + 1)
        assert all(c < detector.settled for c in detector.cut_frames)
    assert settled_with == {40: 48, 80: 88}  # a few frames of look-ahead, not the whole video


def test_a_video_of_one_frame() -> None:
    detector = CutDetector()
    detector.feed(synthetic_frames()[:1])
    detector.finish()
    assert detector.cuts == [] and detector.frames == 1


# --- segment plans -----------------------------------------------------------------------


async def test_segment_video_on_scenes(ffmpeg: str, make_media: MakeMedia) -> None:
    scenes = [Cut(2.0, "testsrc2"), Cut(3.0, "smptebars"), Cut(0.5, "mandelbrot"), Cut(2.0)]
    path = make_media("plan.mkv", cuts=scenes)
    segments = await segment_video(path, min_s=1.0, max_s=10.0)
    # the 0.5 s scene is too short to start a segment: its cut is dropped
    total = len(frame_times(path))
    assert [(s.start_frame, s.end_frame) for s in segments] == [(0, 50), (50, 125), (125, total)]
    assert segments[1].start_s == pytest.approx(49.5 / 25)


async def test_segment_video_splits_long_scenes(ffmpeg: str, make_media: MakeMedia) -> None:
    path = make_media("long.mkv", duration=6.0)
    segments = await segment_video(path, min_s=1.0, max_s=2.5)
    assert [s.start_frame for s in segments] == [0, 50, 100]


async def test_fixed_segments_without_detection(ffmpeg: str, make_media: MakeMedia) -> None:
    scenes = [Cut(2.0, "testsrc2"), Cut(3.0, "smptebars")]
    path = make_media("fixed.mkv", cuts=scenes)
    segments = await segment_video(path, min_s=1.0, max_s=2.0, scene_detection=False)
    assert sorted(s.frame_count for s in segments) == [41, 42, 42]
    [whole] = await segment_video(path, min_s=1e9, max_s=1e9, scene_detection=False)
    assert whole.frame_count == 125


async def test_streamed_plan_is_the_plan(ffmpeg: str, make_media: MakeMedia) -> None:
    scenes = [
        Cut(d, s)
        for d, s in zip([1.5, 2, 1, 2.5, 1.5], ["testsrc2", "smptebars"] * 3, strict=False)
    ]
    path = make_media("stream.mkv", cuts=scenes)
    whole = await segment_video(path, min_s=1.0, max_s=2.0)
    streamed = [s async for s in stream_segments(path, min_s=1.0, max_s=2.0)]
    assert streamed == whole
    assert len(whole) > 3


async def test_closing_the_stream_early_stops_detection(ffmpeg: str, make_media: MakeMedia) -> None:
    scenes = [Cut(1.5, "testsrc2"), Cut(1.5, "smptebars"), Cut(1.5, "mandelbrot")] * 4
    path = make_media("many.mkv", cuts=scenes)
    stream = stream_segments(path, min_s=1.0, max_s=5.0)
    first = await anext(stream)
    await stream.aclose()
    assert first.start_frame == 0


async def test_real_segments_decode_to_their_frame_counts(ffmpeg: str, shared_media: Path) -> None:
    """start_s/end_s as exact input seeks (-ss, -to before -i) give each segment's frames."""
    source = shared_media / "testvideo.mp4"
    segments = await segment_video(source, min_s=3.0, max_s=8.0)
    assert segments[1].start_frame == 180 and segments[2].start_frame == 394
    for segment in segments:
        cmd = [ffmpeg, "-v", "error", "-ss", f"{segment.start_s:.6f}"]
        cmd += ["-to", f"{segment.end_s:.6f}", "-i", str(source), "-map", "0:V:0"]
        done = subprocess.run([*cmd, "-f", "framemd5", "-"], capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line and line[0] != "#"]
        assert len(lines) == segment.frame_count, segment


async def test_plan_from_real_times(ffmpeg: str, shared_media: Path) -> None:
    times = frame_times(shared_media / "testvideo.mp4")
    segments = plan_segments([30, 180, 394], times, min_s=5.0, max_s=20.0)
    # 30 is 1 s from the start: dropped; 180 and 394 start segments
    assert [s.start_frame for s in segments] == [0, 180, 394]
    assert segments[-1].end_s == pytest.approx(720 * 1001 / 30000)


def test_remux_keeps_frame_times(ffmpeg: str, make_media: MakeMedia, tmp_path: Path) -> None:
    source = make_media("orig.mkv", duration=2.0)
    copy = remux(ffmpeg, source, tmp_path / "copy.mp4")
    assert frame_times(copy) == pytest.approx(frame_times(source), abs=1e-3)
