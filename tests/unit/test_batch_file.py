"""Queue files: every way one can be wrong is reported with its file, job, line and
problem; valid files give the options and outputs a user would expect."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mediagen import MakeMedia, make_audio_only

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.flags import FlagState
from drapto_engine.core.jobs import JobOptions
from drapto_engine.services.batch_file import (
    BatchFile,
    BatchFileError,
    PlannedJob,
    expand_jobs,
    load_batch,
)


@pytest.fixture
def video(make_media: MakeMedia) -> Path:
    """One tiny real video; tests copy it where they need more."""
    return make_media("src/video.mkv", size=(64, 64), duration=1.0)


def write(folder: Path, text: str, name: str = "queue.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def copy(video: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(video, target)
    return target


def problems_of(path: Path, ffmpeg: str) -> list[str]:
    with pytest.raises(BatchFileError) as caught:
        load_batch(path, ffmpeg)
    error = caught.value
    assert "\n" not in error.one_line()
    assert error.one_line().startswith(f"{path}: ")
    for problem in error.problems:
        assert problem.startswith(f"{path}: ")
    return [p.removeprefix(f"{path}: ") for p in error.problems]


def only_problem(path: Path, ffmpeg: str) -> str:
    problems = problems_of(path, ffmpeg)
    assert len(problems) == 1, problems
    return problems[0]


# --- invalid files ----------------------------------------------------------------------


def test_toml_syntax_error_names_the_line(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'[[job]]\ninput = "{video}"\ncrf = = 3\n')
    problem = only_problem(queue, ffmpeg)
    assert problem.startswith("TOML syntax error: ")
    assert "line 3" in problem


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
        "line 1: unknown key 'jobs' (did you mean 'job'?)",
        "[defaults] (line 4): unknown key 'workerz' (did you mean 'workers'?)",
        "job 1 (line 7): unknown key 'preest' (did you mean 'preset'?)",
        "job 2 (line 10): unknown key 'colour' (keys are input, preset, crf, min_segment_s,"
        " max_segment_s, hdr10_fallback, output_dir, overwrite, keep_work, work_dir)",
    ]


def test_unknown_table(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'[[job]]\ninput = "{video}"\n[setings]\ncrf = 3\n')
    assert (
        only_problem(queue, ffmpeg)
        == "line 3: unknown key 'setings' (keys are defaults, flags, job)"
    )


def test_wrong_types_and_ranges(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(
        tmp_path,
        f'[defaults]\nworkers = 0\noverwrite = "sure"\n'
        f'[[job]]\ninput = "{video}"\n'
        f'[[job]]\ninput = "{video}"\ncrf = 99\npreset = "fast"\n'
        f"[[job]]\ninput = 7\n",
    )
    problems = problems_of(queue, ffmpeg)
    assert (
        problems[0]
        == "[defaults] (line 2): workers: input should be greater than or equal to 1, not 0"
    )
    assert problems[1].startswith("[defaults] (line 3): overwrite: input should be a valid boolean")
    assert problems[2] == "job 2 (line 8): crf: input should be less than or equal to 63, not 99"
    assert problems[3].startswith("job 2 (line 9): preset: input should be a valid integer")
    assert problems[3].endswith("not 'fast'")
    assert problems[4].startswith("job 3 (line 11): input: ")
    assert len(problems) == 5


def test_job_and_defaults_must_be_tables(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, 'defaults = "fast"\nflags = "on"\njob = [1]\n')
    assert problems_of(queue, ffmpeg) == [
        "line 1: defaults must be a table",
        "line 2: flags must be a table",
        "job 1: must be a table",
    ]


def test_workers_is_a_whole_number(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'[defaults]\nworkers = true\n[[job]]\ninput = "{video}"\n')
    assert only_problem(queue, ffmpeg) == (
        "[defaults] (line 2): workers: input should be a valid integer, not True"
    )


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
    problems = problems_of(queue, ffmpeg)
    assert (
        problems[0] == "[flags] (line 2): flag crop_detection takes on, off or shadow, not 'maybe'"
    )
    assert problems[1].startswith("[flags] (line 3): unknown flag 'crop_detecton' (flags are ")
    assert "crop_detection" in problems[1]
    assert problems[2] == "[flags] (line 4): flag tail_threads has no shadow state (only on or off)"
    assert problems[3] == "[flags] (line 5): flag scene_segmentation takes on, off or shadow, not 3"
    assert len(problems) == 4


def test_missing_input(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, f'[[job]]\ninput = "{video}"\n\n[[job]]\ncrf = 20\n')
    assert only_problem(queue, ffmpeg) == (
        "job 2 (line 4): missing input (the file or folder to encode)"
    )


def test_empty_input(tmp_path: Path, ffmpeg: str) -> None:
    queue = write(tmp_path, '[[job]]\ninput = " "\n')
    assert only_problem(queue, ffmpeg) == (
        "job 1 (line 2): input: value error, must name a file or folder, not ' '"
    )


def test_input_that_does_not_exist(tmp_path: Path, ffmpeg: str, video: Path) -> None:
    queue = write(tmp_path, '# films\n[[job]]\ninput = "gone/Film (2019).mkv"\n')
    assert only_problem(queue, ffmpeg) == (
        f"job 1 (line 3): input {tmp_path / 'gone/Film (2019).mkv'} does not exist"
    )


def test_inputs_that_are_not_videos(tmp_path: Path, ffmpeg: str) -> None:
    (tmp_path / "notes.mkv").write_text("not a video at all\n" * 20)
    make_audio_only(ffmpeg, tmp_path / "tone.mkv")
    queue = write(tmp_path, '[[job]]\ninput = "notes.mkv"\n[[job]]\ninput = "tone.mkv"\n')
    problems = problems_of(queue, ffmpeg)
    assert problems[0].startswith(f"job 1 (line 2): input {tmp_path / 'notes.mkv'} is not a")
    assert problems[1] == f"job 2 (line 4): input {tmp_path / 'tone.mkv'} has no video stream"
    assert len(problems) == 2


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
    error_lines = [p.split(": ", 1)[0] for p in problems_of(queue, ffmpeg)]
    assert error_lines == ["job 1 (line 2)", "[flags] (line 4)", "[defaults] (line 6)"]


def test_queue_file_missing_or_not_text(tmp_path: Path, ffmpeg: str) -> None:
    assert only_problem(tmp_path / "nope.toml", ffmpeg) == "no such queue file"
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00junk")
    assert only_problem(binary, ffmpeg).startswith("is not UTF-8 text")


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
