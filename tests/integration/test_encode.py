"""`drapto encode` end to end on real ffmpeg runs, checked without drapto's own validator."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from encode_helpers import (
    ANIME_GROUP,
    DRAPTO,
    FAST,
    Run,
    encode,
    ffmpeg_processes_touching,
    inspect,
    luma_thumbnails,
    parse_events,
    peak_concurrency,
)
from mediagen import Audio, ChapterMark, Subtitle, cut_frames

pytestmark = pytest.mark.slow

# Disposition bits (libavformat).
DEFAULT, COMMENT, FORCED = 0x1, 0x8, 0x40


def test_basic_encoding(make_media, tmp_path: Path) -> None:
    scenes = [3.0, 2.5, 3.5]
    source = make_media(
        "basic source.mkv",
        cuts=scenes,
        pad=(320, 180, 0, 30),
        gop=50,
        audio=[
            Audio("stereo", language="eng", title="Main", disposition="default"),
            Audio("5.1", language="fra", title="Surround", disposition="0"),
            Audio("mono", language="eng", title="Commentary", disposition="comment"),
        ],
        subtitles=[
            Subtitle(("hello", "there"), language="eng", title="English", disposition="default"),
            Subtitle(("hallo",), language="ger", title="Deutsch", disposition="forced"),
        ],
        chapters=[ChapterMark(0, 4, "Start"), ChapterMark(4, 9, "End")],
    )
    source_facts = inspect(source)
    output = tmp_path / "out" / "basic.mkv"
    output.parent.mkdir()
    run = encode(source, output, "--workers", "2", "--min-segment", "1", "--max-segment", "4")
    assert run.returncode == 0, run.stderr

    facts = inspect(output)
    video = facts.of("video")
    assert [v.codec for v in video] == ["av1"]
    assert facts.pix_fmt == "yuv420p10le"
    assert (facts.width, facts.height) == (320, 180)  # the 30-pixel bars cropped
    assert facts.frames_decoded == source_facts.frames_decoded == 225
    assert abs(video[0].duration_s - source_facts.of("video")[0].duration_s) <= 1 / 25 + 1e-3

    audio = facts.of("audio")
    assert [(a.codec, a.channels) for a in audio] == [("opus", 2), ("opus", 6), ("opus", 1)]
    assert [(a.language, a.title) for a in audio] == [
        ("eng", "Main"),
        ("fra", "Surround"),
        ("eng", "Commentary"),
    ]
    assert audio[0].disposition & DEFAULT and not audio[1].disposition & DEFAULT
    assert audio[2].disposition & COMMENT
    for got, want in zip(audio, source_facts.of("audio"), strict=True):
        assert abs(got.duration_s - want.duration_s) <= 0.1

    subs = facts.of("subtitle")
    assert [(s.language, s.title) for s in subs] == [("eng", "English"), ("ger", "Deutsch")]
    assert subs[0].disposition & DEFAULT and subs[1].disposition & FORCED
    assert facts.chapters == ["Start", "End"]

    # Segments were cut at the scene changes and ran two at a time at most.
    planned = run.of("segments_planned")[0]
    starts = np.cumsum([0, *planned["frames"][:-1]]).tolist()
    for cut in cut_frames(scenes):
        assert any(abs(cut - s) <= 1 for s in starts), (cut, starts)
    assert len(run.of("segment_done")) == planned["count"] >= 3
    assert peak_concurrency(run.events) in (1, 2)  # never above --workers 2
    summary = run.of("job_finished")[0]["summary"]
    assert summary["output_bytes"] == output.stat().st_size
    assert summary["frames"] == 225

    # Nothing left behind but the output.
    assert sorted(p.name for p in output.parent.iterdir()) == ["basic.mkv"]


def test_every_source_frame_once_in_order(shared_media: Path, tmp_path: Path) -> None:
    """counter.mp4 shows a frame number: each output frame must match its own source frame."""
    output = tmp_path / "counter.mkv"
    run = encode(
        shared_media / "counter.mp4",
        output,
        "--crf",
        "20",
        "--no-scenes",
        "--min-segment",
        "0.5",
        "--max-segment",
        "0.9",
    )
    assert run.returncode == 0, run.stderr
    assert run.of("segments_planned")[0]["count"] >= 3
    src = luma_thumbnails(shared_media / "counter.mp4")
    out = luma_thumbnails(output)
    assert len(out) == len(src) == 30
    for i, frame in enumerate(out):
        errors = [float(np.abs(frame - s).mean()) for s in src]
        assert int(np.argmin(errors)) == i, (
            f"output frame {i} looks like source frame {np.argmin(errors)}"
        )


def test_real_footage_with_cuts(shared_media: Path, tmp_path: Path) -> None:
    output = tmp_path / "testvideo.mkv"
    run = encode(shared_media / "testvideo.mp4", output, "--min-segment", "0.5")
    assert run.returncode == 0, run.stderr
    planned = run.of("segments_planned")[0]
    starts = np.cumsum([0, *planned["frames"][:-1]]).tolist()
    for cut in (30, 180, 394):
        assert any(abs(cut - s) <= 2 for s in starts), (cut, starts)
    facts = inspect(output)
    assert facts.frames_decoded == 720
    assert facts.of("audio") == []  # a source without audio is fine


@ANIME_GROUP
def test_subtitles_fonts_and_offset_audio(
    shared_media: Path, anime_encode: tuple[Run, Path]
) -> None:
    source = shared_media / "issue-236-split-copy.mkv"
    run, output = anime_encode  # `drapto encode` of it with the default settings
    assert run.returncode == 0, run.stderr
    facts = inspect(output)
    src = inspect(source, decode=False)
    assert facts.frames_decoded == 48
    subs = facts.of("subtitle")
    assert [(s.codec, s.language, s.title) for s in subs] == [
        (s.codec, s.language, s.title) for s in src.of("subtitle")
    ]
    assert subs[0].disposition & DEFAULT
    assert len(facts.of("attachment")) == 6
    (audio,) = facts.of("audio")
    assert (audio.codec, audio.channels, audio.language) == ("opus", 2, "jpn")
    # The source's audio starts 12 ms after its video; the output keeps the offset.
    offset = audio.start_s - facts.of("video")[0].start_s
    assert abs(offset - 0.012) < 0.008, offset


def test_existing_output_needs_overwrite(make_media, tmp_path: Path) -> None:
    source = make_media("s.mkv", duration=1.0)
    output = tmp_path / "exists.mkv"
    output.write_bytes(b"keep me")
    run = encode(source, output)
    assert run.returncode != 0
    assert "output exists" in run.stderr and "--overwrite" in run.stderr
    assert output.read_bytes() == b"keep me"


def test_missing_output_folder_fails_before_encoding(make_media, tmp_path: Path) -> None:
    source = make_media("s.mkv", duration=1.0)
    run = encode(source, tmp_path / "nope" / "out.mkv")
    assert run.returncode != 0
    assert len(run.stderr.strip().splitlines()) == 1
    assert "does not exist" in run.stderr and "nope" in run.stderr
    assert run.of("segment_started") == []


def _mount(target: Path, *options: str) -> None:
    target.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")


def test_read_only_output_folder(make_media, tmp_path: Path) -> None:
    source = make_media("s.mkv", duration=1.0)
    folder = tmp_path / "ro"
    _mount(folder, "ro", "size=1m")
    try:
        run = encode(source, folder / "out.mkv")
    finally:
        subprocess.run(["umount", str(folder)], check=False)
    assert run.returncode != 0
    assert "not writable" in run.stderr and str(folder) in run.stderr
    assert run.of("segment_started") == []


def test_too_little_disk_fails_up_front(shared_media: Path, tmp_path: Path) -> None:
    folder = tmp_path / "small"
    _mount(folder, "size=1m")
    try:
        run = encode(shared_media / "testvideo.mp4", folder / "out.mkv")
        left = list(folder.iterdir())
    finally:
        subprocess.run(["umount", str(folder)], check=False)
    assert run.returncode != 0
    assert "not enough free disk" in run.stderr
    assert run.of("segment_started") == []
    assert left == []


def _kill_svt_encoders(stop: threading.Event, folder: Path, killed: list[int], limit: int) -> None:
    while not stop.is_set() and len(killed) < limit:
        for proc in ffmpeg_processes_touching(folder):
            cmd = proc.cmdline()
            if "libsvtav1" in cmd and proc.pid not in killed:
                time.sleep(0.05)
                try:
                    proc.kill()
                    killed.append(proc.pid)
                except psutil.NoSuchProcess:
                    pass
        time.sleep(0.02)


def test_killed_encoder_is_retried(make_media, tmp_path: Path) -> None:
    source = make_media("s.mkv", cuts=[2.0, 2.0], size=(320, 240))
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_svt_encoders, args=(stop, out_dir, killed, 1))
    killer.start()
    try:
        run = encode(source, out_dir / "out.mkv", "--min-segment", "1", "--workers", "1")
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1
    assert run.returncode == 0, run.stderr
    failed = run.of("segment_failed")
    assert len(failed) == 1 and failed[0]["will_retry"]
    assert inspect(out_dir / "out.mkv").frames_decoded == 100


def test_encoder_that_keeps_dying_fails_the_job_cleanly(make_media, tmp_path: Path) -> None:
    source = make_media("s.mkv", duration=3.0)
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_svt_encoders, args=(stop, out_dir, killed, 3))
    killer.start()
    try:
        run = encode(source, out_dir / "out.mkv", "--whole")
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 3
    assert run.returncode != 0
    assert [f["attempt"] for f in run.of("segment_failed")] == [1, 2, 3]
    assert run.of("job_failed")[0]["stage"] == "encoding"
    assert "segment 0 encode failed" in run.stderr
    assert list(out_dir.iterdir()) == []  # no output, no partial, no work directory


# Timed (2 s): the "timing" xdist group runs such tests one at a time on one worker.
@pytest.mark.xdist_group("timing")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_everything_quickly(make_media, tmp_path: Path, signum: int) -> None:
    source = make_media("long.mkv", duration=20.0, size=(640, 360))
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    proc = subprocess.Popen(
        [*DRAPTO, "encode", str(source), "-o", str(out_dir / "out.mkv"), *FAST, "--preset", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The 2 s bound is drapto's, not the machine's: where allowed (root), drapto and the
    # ffmpeg it starts get the CPU before other tests' encoders, so a loaded machine
    # cannot make a stop look slow. Set before drapto has started any thread or child.
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, proc.pid, -20)
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line)["type"] == "segment_progress":
            break
    assert ffmpeg_processes_touching(out_dir), "an encoder should be running"
    sent = time.monotonic()
    proc.send_signal(signum)
    rest, stderr = proc.communicate(timeout=10)
    elapsed = time.monotonic() - sent
    assert elapsed < 2.0, f"took {elapsed:.2f} s to stop"
    assert proc.returncode == 128 + signum
    assert "stopped" in stderr
    assert not any(e["type"] == "job_finished" for e in parse_events(rest))
    assert ffmpeg_processes_touching(out_dir) == []
    # No output and no partial file; only the work directory with finished segments.
    (work,) = out_dir.iterdir()
    assert work.name.startswith(".drapto-work-")
    assert [p.name for p in work.glob("*.partial.*")] == []


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    text = tmp_path / "notes.mkv"
    text.write_text("not a video")
    run = encode(text, tmp_path / "out.mkv")
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        f"drapto: {text}: is not a readable media file (ffmpeg found invalid data: not a video, or truncated)"
    ]
    assert not (tmp_path / "out.mkv").exists()
    assert os.listdir(tmp_path) == ["notes.mkv"]


# Frames 0-24 two ticks of 1/25 s apart, frames 25-49 one tick: 12.5 fps, then 25 fps.
VFR_PTS = r"setpts='if(lt(N\,25)\,N*2\,25+N)/25/TB'"


def _video_times(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times = sorted(
            float(p.pts * p.time_base) for p in c.demux(s) if p.pts is not None and p.size
        )
    return [round(t - times[0], 3) for t in times]


def test_variable_frame_rate_keeps_its_timing(make_media, tmp_path: Path) -> None:
    source = make_media(
        "vfr.mkv", filters=VFR_PTS, audio=["stereo"], output_args=["-fps_mode", "passthrough"]
    )
    output = tmp_path / "vfr-out.mkv"
    run = encode(source, output, "--no-scenes", "--min-segment", "0.5", "--max-segment", "1")
    assert run.returncode == 0, run.stderr
    assert run.of("segments_planned")[0]["count"] >= 3
    src_times, out_times = _video_times(source), _video_times(output)
    assert len(out_times) == len(src_times) == 50
    assert out_times == pytest.approx(src_times, abs=0.0015)
    assert out_times[1] - out_times[0] == pytest.approx(0.08, abs=0.002)
    assert out_times[-1] - out_times[-2] == pytest.approx(0.04, abs=0.002)


def test_source_not_starting_at_zero_keeps_its_timing(make_media, tmp_path: Path) -> None:
    source = make_media(
        "offset.mkv",
        duration=3.0,
        audio=["stereo"],
        subtitles=[Subtitle(("one", "two"), language="eng")],
        output_args=["-output_ts_offset", "1.5"],
    )
    src = inspect(source, decode=False)
    assert src.of("video")[0].start_s == pytest.approx(1.5, abs=0.01)
    output = tmp_path / "offset-out.mkv"
    run = encode(source, output, "--min-segment", "1", "--max-segment", "1.5")
    assert run.returncode == 0, run.stderr
    out = inspect(output)
    assert out.frames_decoded == 75
    video, audio = out.of("video")[0], out.of("audio")[0]
    # Audio stays aligned with the video. Packet start times include each codec's
    # priming (AAC 21 ms in the source, Opus 6.5 ms in the output), hence the margin.
    src_offset = src.of("audio")[0].start_s - src.of("video")[0].start_s
    assert abs(src_offset) < 0.025
    assert abs(audio.start_s - video.start_s) < 0.025
    assert _video_times(output) == pytest.approx(_video_times(source), abs=0.0015)
    assert len(out.of("subtitle")) == 1


def test_keep_work_keeps_segments(make_media, tmp_path: Path) -> None:
    source = make_media("k.mkv", duration=3.0)
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    run = encode(
        source, out_dir / "k.mkv", "--keep-work", "--min-segment", "1", "--max-segment", "1.5"
    )
    assert run.returncode == 0, run.stderr
    (work,) = [p for p in out_dir.iterdir() if p.name.startswith(".drapto-work-")]
    segments = sorted(p.name for p in work.glob("segment-*.mp4"))
    assert len(segments) == run.of("segments_planned")[0]["count"] >= 2
