"""`drapto probe`: the real console script, run as a user runs it, for all the shared files
and hostile names; the other checks run it in a child forked from the test process (a real
process without a fresh interpreter's ~0.5 CPU-s of imports, see forked.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from forked import run_forked, warm_imports
from mediagen import Audio, Subtitle, make_audio_only, make_video, remux, truncate

SCRIPT = Path(sys.executable).parent / "drapto"
DRAPTO = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "drapto_engine.cli"]


def drapto(
    *args: str | Path, cwd: Path, debug: bool = False, real: bool = False
) -> subprocess.CompletedProcess[str]:
    """`drapto probe ARGS`: forked from this process, or with `real` the console script."""
    env = dict(os.environ, DRAPTO_STATE_DIR=str(cwd / "state"), XDG_CONFIG_HOME=str(cwd / "cfg"))
    env.pop("DRAPTO_FFMPEG", None)
    argv = [*(["--debug"] if debug else []), "probe", *map(str, args)]
    if not real:
        return run_forked(argv, cwd, env, timeout=120)
    return subprocess.run(
        [*DRAPTO, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module", autouse=True)
def _imports_before_forking() -> None:
    warm_imports()


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


# --- real media ---------------------------------------------------------------------------

NO_STREAMS: dict[str, Any] = {"audio": [], "subtitles": [], "chapters": 0, "attachments": 0}
SDR = {"dynamic_range": "sdr", "dolby_vision": None}
EXPECTED: dict[str, dict[str, Any]] = {
    "testvideo.mp4": {
        "duration_s": 24.023333,
        "video": (1280, 720, "30000/1001", 720, "yuv420p"),
        **SDR,
        **NO_STREAMS,
        "resolution_class": "SD",
    },
    "fades.mp4": {
        "duration_s": 10.0,
        "video": (480, 320, "25/1", 250, "yuv420p"),
        **SDR,
        **NO_STREAMS,
        "resolution_class": "SD",
    },
    "counter.mp4": {
        "duration_s": 3.0,
        "video": (1920, 1080, "10/1", 30, "yuv420p"),
        **SDR,
        **NO_STREAMS,
        "resolution_class": "HD",
    },
    "issue-236-split-copy.mkv": {
        "duration_s": 2.017,
        "video": (1920, 1080, "24000/1001", 48, "yuv420p"),
        **SDR,
        "audio": [
            {
                "index": 1,
                "codec": "aac",
                "channels": 2,
                "layout": "stereo",
                "language": "jpn",
                "title": None,
            }
        ],
        "subtitles": [
            {"index": 2, "codec": "ass", "language": "eng", "title": "English"},
            {"index": 3, "codec": "ass", "language": "por", "title": "Portuguese(Brazil)"},
            {"index": 4, "codec": "ass", "language": "spa", "title": "Spanish(Latin_America)"},
        ],
        "chapters": 0,
        "attachments": 6,
        "resolution_class": "HD",
    },
    "dv-p81-regular.mkv": {
        "duration_s": 10.803,
        "video": (256, 144, "24000/1001", 259, "yuv420p10le"),
        "dynamic_range": "dolby_vision",
        "dolby_vision": {"profile": 8, "bl_compat_id": 1},
        **NO_STREAMS,
        "resolution_class": "SD",
    },
}


def test_probe_json_for_every_shared_file(shared_media: Path, tmp_path: Path) -> None:
    names = list(EXPECTED)
    done = drapto("--json", *(shared_media / n for n in names), cwd=tmp_path, real=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    objects = json_lines(done.stdout)
    assert [Path(o["path"]).name for o in objects] == names
    for name, obj in zip(names, objects, strict=True):
        want = EXPECTED[name]
        assert obj["path"] == str(shared_media / name)
        assert obj["duration_s"] == pytest.approx(want["duration_s"], abs=1e-6), name
        v = obj["video"]
        got = (v["width"], v["height"], v["frame_rate"], v["frame_count"], v["pix_fmt"])
        assert got == want["video"], name
        assert (v["rotation"], v["sar"], v["variable_frame_rate"]) == (0, "1/1", False), name
        assert obj["crop"] is None, name
        for key in ("dynamic_range", "dolby_vision", "resolution_class"):
            assert obj[key] == want[key], (name, key)
        for key in ("audio", "subtitles", "chapters", "attachments"):
            assert obj[key] == want[key], (name, key)
        assert obj["default_crf"] == {"SD": 24, "HD": 26}[want["resolution_class"]]


def test_probe_human_summary(shared_media: Path, tmp_path: Path) -> None:
    done = drapto(shared_media / "dv-p81-regular.mkv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == str(shared_media / "dv-p81-regular.mkv")
    assert "hevc 256x144 yuv420p10le (10-bit)" in done.stdout
    assert "259 frames" in done.stdout
    assert "dolby_vision (Dolby Vision profile 8, compatibility id 1)" in done.stdout
    assert "crop        none" in done.stdout


def test_probe_says_unknown_for_absent_colour_tags(shared_media: Path, tmp_path: Path) -> None:
    done = drapto(shared_media / "counter.mp4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "None" not in done.stdout
    assert (
        "  colour      primaries unknown, transfer unknown, matrix unknown, range unknown\n"
        in done.stdout
    )
    assert "  mastering   none\n  light level none\n" in done.stdout


MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"


def test_probe_shows_hdr10_mastering_and_light_level(ffmpeg: str, tmp_path: Path) -> None:
    path = make_video(
        ffmpeg,
        tmp_path / "hdr10.mkv",
        size=(160, 96),
        codec="libx265",
        pix_fmt="yuv420p10le",
        primaries="bt2020",
        trc="smpte2084",
        colorspace="bt2020nc",
        master_display=MASTER_DISPLAY,
        max_cll="1000,400",
        duration=0.4,
    )
    done = drapto(path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[3:6] == [
        "  colour      primaries bt2020, transfer smpte2084, matrix bt2020nc, range tv",
        "  mastering   R (0.6800, 0.3200) G (0.2650, 0.6900) B (0.1500, 0.0600)"
        " WP (0.3127, 0.3290), luminance 0.0001 to 1000 cd/m2",
        "  light level MaxCLL 1000 cd/m2, MaxFALL 400 cd/m2",
    ]
    assert "  range       hdr10" in lines


# --- synthetic: crop and streams through the CLI --------------------------------------------


def test_probe_json_synthetic_streams_and_crop(ffmpeg: str, tmp_path: Path) -> None:
    path = make_video(
        ffmpeg,
        tmp_path / "movie.mkv",
        pad=(320, 160, 0, 40),
        gop=5,
        filters="setsar=4/3",
        audio=[Audio("5.1", "eng", "Main"), Audio("stereo", "fre")],
        subtitles=[Subtitle(language="eng", title="Signs")],
    )
    done = drapto("--json", path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [obj] = json_lines(done.stdout)
    assert obj["crop"] == {"width": 320, "height": 160, "x": 0, "y": 40}
    assert obj["video"]["sar"] == "4/3"
    assert obj["video"]["frame_count"] == 50
    assert [(a["index"], a["channels"], a["language"], a["title"]) for a in obj["audio"]] == [
        (1, 6, "eng", "Main"),
        (2, 2, "fre", None),
    ]
    assert obj["subtitles"] == [
        {"index": 3, "codec": "subrip", "language": "eng", "title": "Signs"}
    ]


def test_no_crop_flag(ffmpeg: str, tmp_path: Path) -> None:
    path = make_video(ffmpeg, tmp_path / "lb.mkv", pad=(320, 160, 0, 40), gop=5, duration=0.4)
    [obj] = json_lines(drapto("--json", "--no-crop", path, cwd=tmp_path).stdout)
    assert obj["crop"] is None


# --- bad input --------------------------------------------------------------------------


def _bad_inputs(ffmpeg: str, d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, the problem the one stderr line must state)."""
    (d / "folder.mkv").mkdir()
    (d / "empty.mkv").write_bytes(b"")
    (d / "notes.mkv").write_text("this is not a video\n" * 20)
    whole_mkv = make_video(ffmpeg, d / "whole.mkv", duration=3.0)
    whole_mp4 = make_video(ffmpeg, d / "whole.mp4", duration=3.0)
    faststart = remux(ffmpeg, whole_mp4, d / "fast.mp4", output_args=["-movflags", "+faststart"])
    return {
        "missing": (d / "missing.mkv", "no such file"),
        "directory": (d / "folder.mkv", "is a directory"),
        "empty": (d / "empty.mkv", "is empty (0 bytes)"),
        "text": (d / "notes.mkv", "is not a readable media file"),
        "audio only": (make_audio_only(ffmpeg, d / "music.mka"), "has no video stream"),
        # Matroska writes its header first: the cut file opens but its video stops early.
        "cut mkv": (truncate(whole_mkv, d / "cut.mkv", 0.4), "is truncated"),
        # A plain mp4 keeps its index (moov) at the end: the cut file cannot be opened.
        "cut mp4": (truncate(whole_mp4, d / "cut.mp4", 0.4), "is not a readable media file"),
        "cut faststart mp4": (truncate(faststart, d / "cutfast.mp4", 0.4), "is truncated"),
    }


@pytest.fixture(scope="module")
def bad_inputs(
    ffmpeg: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, str]]:
    return _bad_inputs(ffmpeg, tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "directory",
        "empty",
        "text",
        "audio only",
        "cut mkv",
        "cut mp4",
        "cut faststart mp4",
    ],
)
def test_bad_input_is_one_line(
    bad_inputs: dict[str, tuple[Path, str]], tmp_path: Path, case: str
) -> None:
    path, problem = bad_inputs[case]
    done = drapto("--json", path, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"drapto: {path}: ")
    assert problem in line


def test_truncated_mkv_says_where_the_video_stops(
    bad_inputs: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    cut, _ = bad_inputs["cut mkv"]  # 3 s of video, cut at 40 %
    [line] = drapto(cut, cwd=tmp_path).stderr.splitlines()
    assert line.startswith(f"drapto: {cut}: is truncated: its video stops at ")
    assert line.endswith(" of 3.00 s")


def test_all_bad_inputs_in_one_call(
    bad_inputs: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    cases = list(bad_inputs.values())
    done = drapto("--json", *(path for path, _ in cases), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == len(cases)
    for line, (path, problem) in zip(lines, cases, strict=True):
        assert line.startswith(f"drapto: {path}: {problem}")


def test_debug_keeps_the_message_and_may_add_a_traceback(
    bad_inputs: dict[str, tuple[Path, str]], tmp_path: Path
) -> None:
    path, problem = bad_inputs["cut mkv"]
    done = drapto("--json", path, cwd=tmp_path, debug=True)
    assert done.returncode == 1
    assert f"drapto: {path}: {problem}" in done.stderr


def test_mixed_good_and_bad_files(
    bad_inputs: dict[str, tuple[Path, str]], ffmpeg: str, tmp_path: Path
) -> None:
    good = make_video(ffmpeg, tmp_path / "good.mkv", duration=1.0)
    other = make_video(ffmpeg, tmp_path / "other.mp4", duration=0.4, size=(160, 120))
    missing, _ = bad_inputs["missing"]
    text, _ = bad_inputs["text"]
    done = drapto("--json", missing, good, text, other, cwd=tmp_path)
    assert done.returncode == 1
    objects = json_lines(done.stdout)
    assert [o["path"] for o in objects] == [str(good), str(other)]
    assert [o["video"]["frame_count"] for o in objects] == [25, 10]
    assert [line.split(": ")[1] for line in done.stderr.splitlines()] == [str(missing), str(text)]


def test_hostile_file_name_works(ffmpeg: str, tmp_path: Path) -> None:
    name = "a b 'q' \"d\" ;$(touch pwned) é 日本.mkv"
    path = make_video(ffmpeg, tmp_path / name, duration=1.0, audio=[Audio("stereo", "jpn")])
    done = drapto("--json", path, cwd=tmp_path, real=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    [obj] = json_lines(done.stdout)
    assert obj["path"] == str(path)
    assert (obj["video"]["width"], obj["video"]["height"], obj["video"]["frame_count"]) == (
        320,
        240,
        25,
    )
    assert obj["audio"][0]["language"] == "jpn"
    assert not (tmp_path / "pwned").exists()
    assert not Path("pwned").exists()


def test_hostile_file_name_in_an_error(tmp_path: Path) -> None:
    path = tmp_path / "x ;$(touch pwned) 日本.mkv"
    path.write_text("not media")
    done = drapto(path, cwd=tmp_path, real=True)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"drapto: {path}: is not a readable media file")
    assert not (tmp_path / "pwned").exists()


def test_bad_ffmpeg_override_is_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, DRAPTO_FFMPEG=str(tmp_path / "no-ffmpeg"))
    env["DRAPTO_STATE_DIR"] = str(tmp_path / "state")
    done = subprocess.run(
        [*DRAPTO, "probe", str(tmp_path / "x.mkv")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert "no such ffmpeg binary" in line and "DRAPTO_FFMPEG" in line
