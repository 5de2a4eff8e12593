"""Queue files: every way one can be wrong is reported with its file, job, line and
problem; valid files give the options and outputs a user would expect."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import pytest
from forked import run_forked, warm_imports
from mediagen import make_audio_only

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.flags import FlagState
from drapto_engine.core.jobs import JobOptions
from drapto_engine.services import batch_file
from drapto_engine.services.batch_file import (
    BatchFile,
    BatchFileError,
    PlannedJob,
    expand_jobs,
    load_batch,
    read_batch,
)


@pytest.fixture
def video(tiny_video: Path, tmp_path: Path) -> Path:
    """One tiny real video (a copy of the worker's, conftest.py); tests copy it where they
    need more."""
    path = tmp_path / "src" / "video.mkv"
    path.parent.mkdir()
    shutil.copyfile(tiny_video, path)
    return path


def write(folder: Path, text: str, name: str = "queue.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def copy(video: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(video, target)
    return target


def problems_of(path: Path, ffmpeg: str) -> list[str]:
    """The problems of a refused queue file as `line: key: problem` (the file left off)."""
    with pytest.raises(BatchFileError) as caught:
        load_batch(path, ffmpeg)
    error = caught.value
    assert error.exit_status == 2
    assert "\n" not in error.one_line()
    assert error.one_line().startswith(f"{path}:")
    for problem in error.problems:
        assert problem.startswith(f"{path}:")
        assert "\n" not in problem
    return [p.removeprefix(f"{path}:").removeprefix(" ") for p in error.problems]


def only_problem(path: Path, ffmpeg: str) -> str:
    problems = problems_of(path, ffmpeg)
    assert len(problems) == 1, problems
    return problems[0]


# --- invalid files ----------------------------------------------------------------------


def test_toml_syntax_error_names_the_line(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'[[job]]\ninput = "{video}"\ncrf = = 3\n')
    assert only_problem(queue, ffmpeg) == "3: invalid TOML: invalid value"


def test_unknown_keys_everywhere(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(
        tmp_path,
        "\n".join(
            [
                "jobs = 1",  # 1
                "[defaults]",  # 2
                "crf = 20",  # 3
                "workerz = 2",  # 4
                "[[job]]",  # 5
                f'input = "{video}"',  # 6
                "preest = 4",  # 7
                "[[job]]",  # 8
                f'input = "{video.parent}"',  # 9
                "colour = 'red'",  # 10
            ]
        ),
    )
    assert problems_of(queue, ffmpeg) == [
        "1: jobs: unknown key (did you mean 'job'?)",
        "4: defaults.workerz: unknown key (did you mean 'workers'?)",
        "7: job[1].preest: unknown key (did you mean 'preset'?)",
        "10: job[2].colour: unknown key (keys are input, preset, crf, target_vmaf, crf_range,"
        " min_segment_s, max_segment_s, hdr10_fallback, output_dir, overwrite, keep_work,"
        " work_dir, force, replace, min_saving, keep_days, trash_dir)",
    ]


def test_unknown_table(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'[[job]]\ninput = "{video}"\n[setings]\ncrf = 3\n')
    assert only_problem(queue, ffmpeg) == "3: setings: unknown key (keys are defaults, flags, job)"


def test_wrong_types_and_ranges(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(
        tmp_path,
        f'[defaults]\nworkers = 0\noverwrite = "sure"\n'
        f'[[job]]\ninput = "{video}"\n'
        f'[[job]]\ninput = "{video}"\ncrf = 99\npreset = "fast"\n'
        f"[[job]]\ninput = 7\n",
    )
    assert problems_of(queue, ffmpeg) == [
        "2: defaults.workers: must be at least 1, not 0",
        '3: defaults.overwrite: must be true or false, not "sure"',
        "8: job[2].crf: must be at most 63, not 99",
        '9: job[2].preset: must be a whole number, not "fast"',
        "11: job[3].input: must be a path (text in quotes), not 7",
    ]


# Each of these was once read as something else: `crf = true` as CRF 1 (an output eleven
# times the size), `preset = false` as preset 0, `hdr10_fallback = 1` as true.
COERCIONS = [
    ("crf = true", "crf: must be a whole number, not true"),
    ("crf = false", "crf: must be a whole number, not false"),
    ("crf = 24.0", "crf: must be a whole number, not 24.0"),
    ('crf = "24"', 'crf: must be a whole number, not "24"'),
    ("crf = 0", "crf: must be at least 1, not 0"),
    ("crf = 1979-05-27", "crf: must be a whole number, not 1979-05-27"),
    ("crf = 64", "crf: must be at most 63, not 64"),
    ("preset = false", "preset: must be a whole number, not false"),
    ("preset = 4.5", "preset: must be a whole number, not 4.5"),
    ("preset = -3", "preset: must be at least -2, not -3"),
    ("preset = 14", "preset: must be at most 13, not 14"),
    ("hdr10_fallback = 1", "hdr10_fallback: must be true or false, not 1"),
    ('hdr10_fallback = "yes"', 'hdr10_fallback: must be true or false, not "yes"'),
    ("overwrite = 0", "overwrite: must be true or false, not 0"),
    ("keep_work = 1", "keep_work: must be true or false, not 1"),
    ('force = "yes"', 'force: must be true or false, not "yes"'),
    ("min_segment_s = true", "min_segment_s: must be a number, not true"),
    ('min_segment_s = "5"', 'min_segment_s: must be a number, not "5"'),
    ("min_segment_s = inf", "min_segment_s: must be a finite number, not inf"),
    ("max_segment_s = nan", "max_segment_s: must be a finite number, not nan"),
    ("max_segment_s = 0", "max_segment_s: must be more than 0, not 0"),
    ("max_segment_s = -1.5", "max_segment_s: must be more than 0, not -1.5"),
    ("output_dir = 5", "output_dir: must be a path (text in quotes), not 5"),
    ("output_dir = true", "output_dir: must be a path (text in quotes), not true"),
    ('work_dir = ""', "work_dir: must not be empty"),
    ("work_dir = []", "work_dir: must be a path (text in quotes), not an array"),
]


@pytest.mark.parametrize(("line", "problem"), COERCIONS)
def test_no_coercion_in_a_job(
    tmp_path: Path, ffmpeg: str, video: Path, line: str, problem: str
) -> None:
    queue = write(tmp_path, f'# a film\n[[job]]\ninput = "{video}"\n{line}\n')
    assert only_problem(queue, ffmpeg) == f"4: job[1].{problem}"


@pytest.mark.parametrize(("line", "problem"), COERCIONS)
def test_no_coercion_in_defaults(
    tmp_path: Path, ffmpeg: str, video: Path, line: str, problem: str
) -> None:
    queue = write(tmp_path, f'[defaults]\n{line}\n[[job]]\ninput = "{video}"\n')
    assert only_problem(queue, ffmpeg) == f"2: defaults.{problem}"


def test_whole_numbers_are_seconds(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'[[job]]\ninput = "{video}"\nmin_segment_s = 5\nmax_segment_s = 7.5\n')
    options = load_batch(queue, ffmpeg).jobs[0]
    assert (options.min_segment_s, options.max_segment_s) == (5.0, 7.5)
    assert (options.preset, options.crf) == (None, None)
    queue = write(tmp_path, f'[[job]]\ninput = "{video}"\npreset = -2\ncrf = 63\n')
    options = load_batch(queue, ffmpeg).jobs[0]
    assert (options.preset, options.crf) == (-2, 63)


def test_segment_lengths_in_one_table(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'[[job]]\ninput = "{video}"\nmin_segment_s = 30\nmax_segment_s = 1\n')
    assert only_problem(queue, ffmpeg) == (
        "4: job[1].max_segment_s: must be at least min_segment_s (30), not 1"
    )


def test_segment_lengths_across_layers(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(
        tmp_path,
        f'[defaults]\nmin_segment_s = 30\n[[job]]\ninput = "{video}"\n'
        f'[[job]]\ninput = "{video}"\nmax_segment_s = 1\n',
    )
    assert only_problem(queue, ffmpeg) == (
        "7: job[2].max_segment_s: min_segment_s (30) is more than max_segment_s (1)"
        " once the defaults are applied"
    )
    queue = write(tmp_path, f'[[job]]\ninput = "{video}"\nmin_segment_s = 25\n')
    with pytest.raises(BatchFileError) as caught:
        load_batch(queue, ffmpeg, JobOptions(max_segment_s=20))  # the config file's
    assert caught.value.problems == [
        f"{queue}:3: job[1].min_segment_s: min_segment_s (25) is more than max_segment_s"
        " (20) once the defaults are applied"
    ]


def test_job_and_defaults_must_be_tables(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, 'defaults = "fast"\nflags = "on"\njob = [1]\n')
    assert problems_of(queue, ffmpeg) == [
        '1: defaults: must be a table, not "fast"',
        '2: flags: must be a table, not "on"',
        "3: job[1]: must be a table, not 1",
    ]


def test_a_single_job_table(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'# one film\n[job]\ninput = "{video}"\n')
    assert (
        only_problem(queue, ffmpeg) == "2: job: jobs are [[job]] tables (two brackets, one per job)"
    )


def test_workers_is_a_whole_number(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'[defaults]\nworkers = true\n[[job]]\ninput = "{video}"\n')
    assert only_problem(queue, ffmpeg) == "2: defaults.workers: must be a whole number, not true"


def test_flags(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(
        tmp_path,
        "[flags]\n"
        "crop_detection = 'maybe'\n"
        "crop_detecton = true\n"
        "tail_threads = 'shadow'\n"
        "scene_segmentation = 3\n"
        f'[[job]]\ninput = "{video}"\n',
    )
    assert problems_of(queue, ffmpeg) == [
        '2: flags.crop_detection: flag crop_detection takes on, off or shadow, not "maybe"',
        "3: flags.crop_detecton: unknown flag 'crop_detecton' (did you mean 'crop_detection'?)",
        "4: flags.tail_threads: flag tail_threads has no shadow state (only on or off)",
        "5: flags.scene_segmentation: flag scene_segmentation takes on, off or shadow, not 3",
    ]


def test_missing_input(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'[[job]]\ninput = "{video}"\n\n[[job]]\ncrf = 20\n')
    assert only_problem(queue, ffmpeg) == (
        "4: job[2].input: missing (the file or folder to encode)"
    )


def test_empty_input(tmp_path: Path, ffmpeg: str) -> None:
    queue = write(tmp_path, '[[job]]\ninput = " "\n')
    assert only_problem(queue, ffmpeg) == "2: job[1].input: must name a file or folder"


def test_input_that_does_not_exist(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, '# films\n[[job]]\ninput = "gone/Film (2019).mkv"\n')
    assert only_problem(queue, ffmpeg) == (
        f"3: job[1].input: {tmp_path / 'gone/Film (2019).mkv'} does not exist"
    )


def test_inputs_that_are_not_videos_are_rejected_files_not_problems_of_the_queue_file(
    tmp_path: Path, ffmpeg: str
) -> None:
    """Named in the file, as found in a folder: each is one failed entry of the batch."""
    (tmp_path / "notes.mkv").write_text("not a video at all\n" * 20)
    make_audio_only(ffmpeg, tmp_path / "tone.mkv")
    queue = write(tmp_path, '[[job]]\ninput = "notes.mkv"\n[[job]]\ninput = "tone.mkv"\n')
    rejected: list[tuple[Path, str]] = []
    batch, planned = read_batch(queue, ffmpeg, on_rejected=lambda p, why: rejected.append((p, why)))
    assert planned == [] and len(batch.jobs) == 2
    assert [p for p, _ in rejected] == [tmp_path / "notes.mkv", tmp_path / "tone.mkv"]
    assert rejected[0][1].startswith("is not a readable media file")
    assert rejected[1][1] == "has no video stream"


def test_a_file_queued_twice_is_reported_beside_a_value_the_model_refuses(
    tmp_path: Path, ffmpeg: str, video: Path
) -> None:
    queue = write(
        tmp_path,
        f'[[job]]\ninput = "{video}"\n[[job]]\ninput = "src/video.mkv"\noutput_dir = "x"\n'
        '[[job]]\ninput = "src"\ncrf = "high"\n',
    )
    with pytest.raises(BatchFileError) as caught:
        read_batch(queue, ffmpeg)
    assert caught.value.problems == [
        f'{queue}:8: job[3].crf: must be a whole number, not "high"',
        f"{queue}: {video} (job 1 (line 1)) and {tmp_path / 'src/video.mkv'} (job 2 (line 3))"
        " are the same file (each file may be queued once)",
    ]


def test_every_problem_of_a_queue_file_is_reported_at_once(
    tmp_path: Path, ffmpeg: str, video: Path
) -> None:
    """A file queued twice is found beside a missing input: one run shows both."""
    queue = write(
        tmp_path,
        f'[[job]]\ninput = "gone.mkv"\n[[job]]\ninput = "{video}"\n'
        '[[job]]\ninput = "src/video.mkv"\noutput_dir = "x"\n',
    )
    with pytest.raises(BatchFileError) as caught:
        read_batch(queue, ffmpeg)
    assert caught.value.exit_status == 2
    assert caught.value.problems == [
        f"{queue}:2: job[1].input: {tmp_path / 'gone.mkv'} does not exist",
        f"{queue}: {video} (job 2 (line 3)) and {tmp_path / 'src/video.mkv'} (job 3 (line 5))"
        " are the same file (each file may be queued once)",
    ]


def test_no_jobs(tmp_path: Path, ffmpeg: str) -> None:
    queue = write(tmp_path, '[defaults]\noutput_dir = "/srv/av1"\n')
    assert only_problem(queue, ffmpeg) == "no jobs: add a [[job]] table with an input"
    queue = write(tmp_path, "job = []\n")
    assert only_problem(queue, ffmpeg) == "no jobs: add a [[job]] table with an input"


def test_every_problem_at_once_in_file_order(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(
        tmp_path,
        "[[job]]\n"  # 1
        'input = "missing.mkv"\n'  # 2
        "[flags]\n"  # 3
        "bogus = 'on'\n"  # 4
        "[defaults]\n"  # 5
        "crf = -1\n",  # 6
    )
    places = [p.split(": ", 2)[:2] for p in problems_of(queue, ffmpeg)]
    assert places == [["2", "job[1].input"], ["4", "flags.bogus"], ["6", "defaults.crf"]]


def test_lines_of_keys_written_other_ways(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    """Quoted and dotted keys, inline tables, multi-line arrays and strings, and a header
    inside a multi-line string: each problem still has its own line."""
    queue = write(
        tmp_path,
        "\n".join(
            [
                "[defaults]  # all jobs",  # 1
                'notes = """',  # 2
                "[[job]]",  # 3: text, not a table
                '"""',  # 4
                "[[job]]",  # 5
                f'"input" = "{video}"',  # 6
                "x = [1,",  # 7
                "  2]",  # 8
                "crf = true",  # 9
                "[[ job ]]",  # 10
                f"input = '{video}'",  # 11
                "'preset' = 99",  # 12
                "[[job]]",  # 13
                f'input = "{video}"',  # 14
                "flags.crop = { a = 1 }",  # 15
            ]
        ),
    )
    places = [p.split(" (keys are", 1)[0] for p in problems_of(queue, ffmpeg)]
    assert places == [
        "2: defaults.notes: unknown key",
        "7: job[1].x: unknown key",
        "9: job[1].crf: must be a whole number, not true",
        "12: job[2].preset: must be at most 13, not 99",
        "15: job[3].flags: unknown key",
    ]


def test_queue_file_missing_or_not_text(tmp_path: Path, ffmpeg: str) -> None:
    assert only_problem(tmp_path / "nope.toml", ffmpeg) == "no such file"
    latin = write(tmp_path, "", "latin.toml")
    latin.write_bytes("[[job]]\ninput = 'café.mkv'\n".encode("latin-1"))
    assert only_problem(latin, ffmpeg) == "is not UTF-8 text (invalid continuation byte at byte 20)"
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00junk")
    assert only_problem(binary, ffmpeg) == "is a binary file (a NUL byte at byte 7), not TOML text"
    assert only_problem(tmp_path, ffmpeg) == "is a folder, not a file"


def test_pathological_files(
    tmp_path: Path, ffmpeg: str, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = write(tmp_path, "a = " + "[" * 100_000 + "]" * 100_000 + "\n", "deep.toml")
    assert only_problem(deep, ffmpeg) == "1: a: nested too deeply for the TOML parser"
    deep = write(tmp_path, "[defaults]\nx = [\n" + "{a = [\n" * 50_000, "deep2.toml")
    assert only_problem(deep, ffmpeg) == "17: defaults.x: nested too deeply for the TOML parser"
    deep = write(tmp_path, "[" + ".".join(["a"] * 100_000) + "]\n", "deep3.toml")
    assert only_problem(deep, ffmpeg).startswith("1: a.a.a.a")
    assert only_problem(deep, ffmpeg).endswith("...: nested too deeply for the TOML parser")
    monkeypatch.setattr(batch_file, "QUEUE_LIMIT", 1000)
    big = write(tmp_path, f'[[job]]\ninput = "{video}"\n' * 40, "big.toml")
    assert only_problem(big, ffmpeg) == "is larger than 0 KiB: not a settings file"


def test_many_problems_are_counted(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'[[job]]\ninput = "{video}"\ncrf = true\n' * 25)
    with pytest.raises(BatchFileError) as caught:
        load_batch(queue, ffmpeg)
    problems = caught.value.problems
    assert len(problems) == 21
    assert problems[0] == f"{queue}:3: job[1].crf: must be a whole number, not true"
    assert problems[19] == f"{queue}:60: job[20].crf: must be a whole number, not true"
    assert problems[20] == f"{queue}: ... and 5 more problems"
    assert caught.value.one_line() == (
        f"{queue}:3: job[1].crf: must be a whole number, not true; "
        + "; ".join(
            f"line {3 * n}: job[{n}].crf: must be a whole number, not true" for n in (2, 3, 4, 5)
        )
        + " (and 20 more problems)"
    )


def test_error_is_a_drapto_error(tmp_path: Path, ffmpeg: str) -> None:
    queue = write(tmp_path, "job = []\n")
    with pytest.raises(DraptoError) as caught:
        load_batch(queue, ffmpeg)
    assert caught.value.path == queue
    assert caught.value.one_line() == f"{queue}: no jobs: add a [[job]] table with an input"


# --- valid files ------------------------------------------------------------------------


def test_defaults_overrides_and_relative_paths(
    tmp_path: Path, ffmpeg: str, video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / "scratch").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    library = tmp_path / "library"
    film = copy(video, library / "films" / "Some Film (2019).mkv")
    queue = write(
        library,
        "[defaults]\n"
        'output_dir = "../av1"\n'
        "preset = 8\n"
        "crf = 30\n"
        "workers = 3\n"
        'work_dir = "~/scratch"\n'
        "[flags]\n"
        "crop_detection = false\n"
        "scene_segmentation = 'shadow'\n"
        "[[job]]\n"
        'input = "films/Some Film (2019).mkv"\n'
        "crf = 24\n"
        "overwrite = true\n",
    )
    monkeypatch.chdir(tmp_path)  # relative paths follow the file, not the working folder
    batch = load_batch(queue, ffmpeg)
    assert batch.path == queue
    assert batch.defaults.workers == 3
    assert batch.defaults.output_dir == library / "../av1"
    assert batch.defaults.work_dir == home / "scratch"
    assert batch.flags == {"crop_detection": FlagState.OFF, "scene_segmentation": FlagState.SHADOW}
    assert batch.jobs[0].input == film
    assert batch.job_label(0) == "job 1 (line 10)"

    planned = expand_jobs(batch, ffmpeg)
    assert planned == [
        PlannedJob(
            input=film,
            output=library / "../av1" / "Some Film (2019).mkv",
            options=JobOptions(
                preset=8,
                crf=24,
                overwrite=True,
                output_dir=library / "../av1",
                work_dir=home / "scratch",
            ),
        )
    ]


def test_minimal_file_outputs_beside_the_input(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f"[[job]]\ninput = '{video}'\n")
    batch = load_batch(queue, ffmpeg)
    assert batch.defaults.workers is None
    assert batch.flags == {}
    (job,) = expand_jobs(batch, ffmpeg)
    assert job.output == video.with_name("video.av1.mkv")
    assert job.options == JobOptions()


def test_folder_jobs_mirror_the_tree(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    shows = tmp_path / "shows"
    ep2 = copy(video, shows / "Show" / "Season 1" / "Ep 2.mkv")
    ep10 = copy(video, shows / "Show" / "Season 1" / "Ep 10.mp4")
    pilot = copy(video, shows / "Pilot.mkv")
    (shows / "readme.txt").write_text("ignored")
    (shows / "broken.mkv").write_text("not a video")
    film = copy(video, tmp_path / "films" / "Film.mkv")
    queue = write(
        tmp_path,
        '[[job]]\ninput = "shows"\noutput_dir = "out/shows"\ncrf = 40\n[[job]]\ninput = "films"\n',
    )
    rejected: list[tuple[Path, str]] = []
    planned = expand_jobs(
        load_batch(queue, ffmpeg), ffmpeg, on_rejected=lambda p, why: rejected.append((p, why))
    )
    out = tmp_path / "out" / "shows"
    assert [(j.input, j.output, j.options.crf) for j in planned] == [
        (pilot, out / "Pilot.mkv", 40),
        (ep2, out / "Show" / "Season 1" / "Ep 2.mkv", 40),
        (ep10, out / "Show" / "Season 1" / "Ep 10.mkv", 40),
        (film, film.with_name("Film.av1.mkv"), None),
    ]
    assert [p for p, _ in rejected] == [shows / "broken.mkv"]


def test_output_dir_inside_the_library_is_not_queued(
    tmp_path: Path, ffmpeg: str, video: Path
) -> None:
    library = tmp_path / "library"
    source = copy(video, library / "a.mkv")
    copy(video, library / "av1" / "a.mkv")  # last run's output
    queue = write(tmp_path, '[defaults]\noutput_dir = "library/av1"\n[[job]]\ninput = "library"\n')
    planned = expand_jobs(load_batch(queue, ffmpeg), ffmpeg)
    assert [(j.input, j.output) for j in planned] == [(source, library / "av1" / "a.mkv")]


# --- refused plans ----------------------------------------------------------------------


def expand_problems(queue: Path, ffmpeg: str) -> list[str]:
    batch = load_batch(queue, ffmpeg)
    with pytest.raises(BatchFileError) as caught:
        expand_jobs(batch, ffmpeg)
    assert "\n" not in caught.value.one_line()
    return [p.removeprefix(f"{queue}: ") for p in caught.value.problems]


def test_same_file_twice(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(
        tmp_path,
        f'[[job]]\ninput = "{video}"\n[[job]]\ninput = "src/../src/video.mkv"\noutput_dir = "x"\n',
    )
    assert expand_problems(queue, ffmpeg) == [
        f"{video} (job 1 (line 1)) and {tmp_path / 'src/../src/video.mkv'} (job 2 (line 3))"
        " are the same file (each file may be queued once)"
    ]


def test_file_job_inside_a_folder_job(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(
        tmp_path,
        f'[[job]]\ninput = "src"\noutput_dir = "a"\n[[job]]\ninput = "{video}"\noutput_dir = "b"\n',
    )
    assert expand_problems(queue, ffmpeg) == [
        f"{video} (job 1 (line 1)) and {video} (job 2 (line 4))"
        " are the same file (each file may be queued once)"
    ]


def test_two_inputs_one_output(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    mp4 = copy(video, video.with_suffix(".mp4"))
    queue = write(tmp_path, '[[job]]\ninput = "src"\noutput_dir = "out"\n')
    assert expand_problems(queue, ffmpeg) == [
        f"{video} (job 1 (line 1)) and {mp4} (job 1 (line 1)) would both be encoded to"
        f" {tmp_path / 'out' / 'video.mkv'} (set a different output_dir for one)"
    ]


def test_output_over_an_input(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'[[job]]\ninput = "{video}"\noutput_dir = "src"\n')
    assert expand_problems(queue, ffmpeg) == [
        f"{video} (job 1 (line 1)) would be encoded to {video}, overwriting the input"
        f" {video} (job 1 (line 1)) (set an output_dir)"
    ]


def test_output_over_another_jobs_input(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    other = copy(video, tmp_path / "elsewhere" / "video.mkv")
    queue = write(
        tmp_path,
        f'[[job]]\ninput = "{video}"\noutput_dir = "elsewhere"\n[[job]]\ninput = "{other}"\n'
        "output_dir = 'out'\n",
    )
    assert expand_problems(queue, ffmpeg) == [
        f"{video} (job 1 (line 1)) would be encoded to {other}, overwriting the input"
        f" {other} (job 2 (line 4)) (set an output_dir)"
    ]


def test_batch_file_model_checks_flags_without_a_file() -> None:
    batch = BatchFile.model_validate(
        {"job": [{"input": "/x.mkv"}], "flags": {"crop_detection": "off"}}
    )
    assert batch.flags == {"crop_detection": FlagState.OFF}
    assert batch.path is None
    assert batch.job_label(0) == "job 1"
    with pytest.raises(ValueError, match="unknown flag 'nope'"):
        BatchFile.model_validate({"job": [{"input": "/x.mkv"}], "flags": {"nope": "on"}})


# --- big and pathological files ----------------------------------------------------------


def traced_lines(work: Callable[[], object]) -> int:
    """Python lines executed by `work` (loop iterations included): a measure of work that
    does not depend on how busy the machine is."""
    count = 0

    def local(frame: FrameType, event: str, arg: object) -> Callable[..., object]:
        nonlocal count
        if event == "line":
            count += 1
        return local

    sys.settrace(lambda frame, event, arg: local)
    try:
        work()
    except BatchFileError:
        pass
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize("wrong", [False, True], ids=["valid", "every-job-wrong"])
def test_checking_is_linear_in_the_number_of_jobs(tmp_path: Path, ffmpeg: str, wrong: bool) -> None:
    """Twice the jobs is twice the work (it was quadratic: each job's line was found by
    scanning every table, so 16,000 jobs took 45 s and 200,000 never finished)."""
    (tmp_path / "films").mkdir()
    job = f'[[job]]\ninput = "films"\npreset = 8\ncrf = {"true" if wrong else "20"}\n'

    def work(jobs: int) -> int:
        queue = write(tmp_path, "[defaults]\ncrf = 30\n" + job * jobs, f"q{jobs}.toml")
        return traced_lines(lambda: load_batch(queue, ffmpeg))

    small, large = work(400), work(800)
    assert small > 400 * 50  # the trace saw the checking
    assert large / small < 2.2, (small, large)


def drapto(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`drapto ARGS` forked from the test process (forked.py: a real process without a fresh
    interpreter's imports)."""
    warm_imports()
    return run_forked(args, cwd, {**os.environ, "XDG_CONFIG_HOME": str(cwd / "config")}, 120)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[job]]\ninput = 'src'\ncrf = true\n", "3: job[1].crf: must be a whole number, not true"),
        (
            "[defaults]\nmin_segment_s = 30\nmax_segment_s = 1\n[[job]]\ninput = 'src'\n",
            "3: defaults.max_segment_s: must be at least min_segment_s (30), not 1",
        ),
        (
            "x = " + "[" * 100_000 + "]" * 100_000 + "\n",
            "1: x: nested too deeply for the TOML parser",
        ),
        (
            "[[job]]\ninput = '\u00e9'\n\0",
            "is a binary file (a NUL byte at byte 21), not TOML text",
        ),
    ],
    ids=["crf-true", "segments", "deep-nesting", "binary"],
)
def test_drapto_batch_refuses_with_one_line(
    tmp_path: Path, video: Path, text: str, problem: str
) -> None:
    queue = write(tmp_path, text, "bad.toml")
    done = drapto("--batch", "bad.toml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"drapto: {queue}:{problem}\n".replace(":is a", ": is a")
    assert done.stdout == ""
    assert not list(tmp_path.rglob("*.av1.mkv"))


def test_a_work_dir_must_exist_as_work_dir_does(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    """`work_dir` follows --work-dir's rule (services/outputs.py): a missing folder is
    refused, not created."""
    afile = write(tmp_path, "x")
    queue = write(
        tmp_path,
        f'[defaults]\nwork_dir = "scratch"\n[[job]]\ninput = "{video}"\nwork_dir = "{afile}"\n',
    )
    assert problems_of(queue, ffmpeg) == [
        f"2: defaults.work_dir: {tmp_path / 'scratch'}: no such folder",
        f"5: job[1].work_dir: {afile}: is not a folder",
    ]
    assert not (tmp_path / "scratch").exists()


def test_replace_options(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    """A replace's output is written beside its source whatever output_dir says; the
    trash folder is taken from the queue file's folder and checked like --trash-dir."""
    library = tmp_path / "library"
    film = copy(video, library / "films" / "film.mkv")
    queue = write(
        library,
        "[defaults]\n"
        'output_dir = "../av1"\n'
        "[[job]]\n"
        'input = "films"\n'
        "replace = true\n"
        "min_saving = 0.25\n"
        "keep_days = 7\n"
        'trash_dir = ".drapto-trash"\n',
    )
    (job,) = expand_jobs(load_batch(queue, ffmpeg), ffmpeg)
    assert job.output == film.with_name("film.av1.mkv")
    assert job.options.trash_dir == library / ".drapto-trash"
    assert (job.options.replace, job.options.min_saving, job.options.keep_days) == (True, 0.25, 7)
    bad = write(library, "[defaults]\nmin_saving = 1.5\n[[job]]\ninput = 'films'\n"
                "keep_days = true\n", "bad.toml")  # fmt: skip
    assert problems_of(bad, ffmpeg) == [
        "2: defaults.min_saving: must be less than 1, not 1.5",
        "5: job[1].keep_days: must be a whole number, not true",
    ]
    folders = write(
        library,
        "[defaults]\n"
        'trash_dir = "no/such/trash"\n'
        "[[job]]\n"
        'input = "films"\n'
        "trash_dir = 'films/film.mkv'\n",
        "folders.toml",
    )
    assert problems_of(folders, ffmpeg) == [
        f"2: defaults.trash_dir: {library / 'no' / 'such'}: no such folder",
        f"5: job[1].trash_dir: {film}: is not a folder",
    ]


def test_a_file_a_replace_cannot_take_the_place_of_is_rejected(
    tmp_path: Path, ffmpeg: str, video: Path
) -> None:
    """film.mp4 would become film.mkv, which is another file: that file alone is
    rejected (one failed entry); the others of the folder are planned."""
    folder = tmp_path / "films"
    copy(video, folder / "film.mp4")
    mkv = copy(video, folder / "film.mkv")  # another film, under the name film.mp4's would take
    other = copy(video, folder / "other.mp4")
    queue = write(tmp_path, f"[[job]]\ninput = '{folder}'\nreplace = true\n")
    rejected: list[tuple[Path, str]] = []
    planned = expand_jobs(
        load_batch(queue, ffmpeg), ffmpeg, on_rejected=lambda p, why: rejected.append((p, why))
    )
    assert sorted(job.input for job in planned) == [mkv, other]
    assert rejected == [
        (
            folder / "film.mp4",
            f"a replace would put the AV1 file at {folder / 'film.mkv'}, where another file is",
        )
    ]
