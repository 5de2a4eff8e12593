"""config.toml: every field strict, finite and in range, each problem as file:line: key."""

from __future__ import annotations

from pathlib import Path

import pytest

from drapto_engine.config import Config, load_config
from drapto_engine.core.flags import FlagState
from drapto_engine.core.jobs import JobOptions
from drapto_engine.infrastructure.toml_file import FileProblems


def problems(path: Path) -> list[str]:
    with pytest.raises(FileProblems) as caught:
        load_config(path)
    assert caught.value.exit_status == 2
    assert "\n" not in caught.value.one_line()
    return [p.removeprefix(f"{path}:").removeprefix(" ") for p in caught.value.problems]


WRONG = [
    ("workers = true", "workers: must be a whole number, not true"),
    ("workers = 2.0", "workers: must be a whole number, not 2.0"),
    ("workers = 0", "workers: must be at least 1, not 0"),
    ('workers = "4"', 'workers: must be a whole number, not "4"'),
    ("stall_timeout_s = inf", "stall_timeout_s: must be a finite number, not inf"),
    ("stall_timeout_s = nan", "stall_timeout_s: must be a finite number, not nan"),
    ("stall_timeout_s = 0", "stall_timeout_s: must be more than 0, not 0"),
    ("stall_timeout_s = true", "stall_timeout_s: must be a number, not true"),
    ("slow_encoder_ratio = 1", "slow_encoder_ratio: must be more than 1, not 1"),
    ("slow_encoder_ratio = -inf", "slow_encoder_ratio: must be a finite number, not -inf"),
    ("memory_reserve_percent = 91", "memory_reserve_percent: must be at most 90, not 91"),
    ("memory_reserve_percent = -1", "memory_reserve_percent: must be at least 0, not -1"),
    ("memory_reserve_percent = false", "memory_reserve_percent: must be a number, not false"),
    ("rollback_limit = 0", "rollback_limit: must be at least 1, not 0"),
    ("rollback_limit = true", "rollback_limit: must be a whole number, not true"),
    ("ffmpeg_path = 7", "ffmpeg_path: must be text (in quotes), not 7"),
    ('ffmpeg_path = ""', "ffmpeg_path: must not be empty"),
    ('notify_url = "ntfy.sh/x"', "notify_url: must be an http:// or https:// URL"),
    ("notify_url = true", "notify_url: must be text (in quotes), not true"),
    ("socket_path = 1", "socket_path: must be a path (text in quotes), not 1"),
    ('socket_path = ""', "socket_path: must not be empty"),
    ("defaults = 3", "defaults: must be a table, not 3"),
    ("flags = []", "flags: must be a table, not an array"),
    ("workres = 2", "workres: unknown key (did you mean 'workers'?)"),
    ('notify_daily = "8h"', "notify_daily: must be a time of day as HH:MM (e.g. 08:00), not '8h'"),
    (
        'notify_daily = "24:00"',
        "notify_daily: must be a time of day as HH:MM (e.g. 08:00), not '24:00'",
    ),
    ("notify_daily = 8", "notify_daily: must be text (in quotes), not 8"),
    ('notify_dayly = "08:00"', "notify_dayly: unknown key (did you mean 'notify_daily'?)"),
]


@pytest.mark.parametrize(("line", "problem"), WRONG)
def test_every_field_is_checked(tmp_path: Path, line: str, problem: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"# drapto\n{line}\n")
    assert problems(config) == [f"2: {problem}"]


def test_defaults_are_job_options(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[defaults]\n"  # 1
        "crf = true\n"  # 2
        "preset = false\n"  # 3
        "hdr10_fallback = 1\n"  # 4
        "min_segment_s = 30\n"  # 5
        "max_segment_s = 1\n"  # 6
        "ouput_dir = '/srv'\n"  # 7
        "[flags]\n"  # 8
        "crop_detection = 1\n"  # 9
        "tail_threads = 'shadow'\n"  # 10
    )
    assert problems(config) == [
        "2: defaults.crf: must be a whole number, not true",
        "3: defaults.preset: must be a whole number, not false",
        "4: defaults.hdr10_fallback: must be true or false, not 1",
        "6: defaults.max_segment_s: must be at least min_segment_s (30), not 1",
        "7: defaults.ouput_dir: unknown key (did you mean 'output_dir'?)",
        "9: flags.crop_detection: flag crop_detection takes on, off or shadow, not 1",
        "10: flags.tail_threads: flag tail_threads has no shadow state (only on or off)",
    ]


def test_a_good_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "workers = 3\nstall_timeout_s = 90\nslow_encoder_ratio = 2.5\n"
        "memory_reserve_percent = 0\nnotify_url = 'https://ntfy.sh/x'\n"
        "[defaults]\npreset = 13\ncrf = 1\nmin_segment_s = 4\nmax_segment_s = 4\n"
        "[flags]\ncrop_detection = false\nscene_segmentation = 'shadow'\n"
    )
    loaded = load_config(config)
    assert loaded.workers == 3 and loaded.stall_timeout_s == 90.0
    assert loaded.defaults == JobOptions(preset=13, crf=1, min_segment_s=4, max_segment_s=4)
    assert loaded.flags == {"crop_detection": FlagState.OFF, "scene_segmentation": FlagState.SHADOW}
    assert Config.model_validate(loaded.model_dump(mode="json")) == loaded  # round trip


def test_unreadable_configs(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert problems(config) == ["config file not found"]
    config.write_bytes("workers = 'ü'\n".encode("utf-16"))
    assert problems(config) == ["is a binary file (a NUL byte at byte 3), not TOML text"]
    config.write_bytes(b"notify_url = 'caf\xe9'\n")
    assert problems(config) == ["is not UTF-8 text (invalid continuation byte at byte 17)"]
    config.write_text("# " + "x" * (1 << 20) + "\n")
    assert problems(config) == ["is larger than 1 MiB: not a settings file"]
    config.write_text("[defaults]\ncrf = 3\n[defaults]\n")
    assert problems(config) == ["3: invalid TOML: cannot declare ('defaults',) twice"]


def test_replace_keys_in_defaults(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[defaults]\n"  # 1
        "replace = 1\n"  # 2
        "min_saving = 1\n"  # 3
        "keep_days = -1\n"  # 4
        "trash_dir = 5\n"  # 5
        "keep_day = 3\n"  # 6
    )
    assert problems(config) == [
        "2: defaults.replace: must be true or false, not 1",
        "3: defaults.min_saving: must be less than 1, not 1",
        "4: defaults.keep_days: must be at least 0, not -1",
        "5: defaults.trash_dir: must be a path (text in quotes), not 5",
        "6: defaults.keep_day: unknown key (did you mean 'keep_days'?)",
    ]
    config.write_text("[defaults]\nmin_saving = true\nkeep_days = 2.0\nmin_saving_ = nan\n")
    assert problems(config) == [
        "2: defaults.min_saving: must be a number, not true",
        "3: defaults.keep_days: must be a whole number, not 2.0",
        "4: defaults.min_saving_: unknown key (did you mean 'min_saving'?)",
    ]
    config.write_text(f"[defaults]\n\ntrash_dir = '{tmp_path / 'no' / 'trash'}'\n")
    assert problems(config) == [f"3: defaults.trash_dir: {tmp_path / 'no'}: no such folder"]
    config.write_text(
        f"[defaults]\nreplace = true\nmin_saving = 0\nkeep_days = 0\n"
        f"trash_dir = '{tmp_path / 'trash'}'\n"
    )
    assert load_config(config).defaults == JobOptions(
        replace=True, min_saving=0.0, keep_days=0, trash_dir=tmp_path / "trash"
    )


def test_watch_and_schedule_tables_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[[watch]]\n"  # 1
        "path = '/srv/a'\n"  # 2
        "output = 'replce'\n"  # 3
        "setle_s = 3\n"  # 4
        "[[watch]]\n"  # 5
        "path = 3\n"  # 6
        "min_saving = 1.0\n"  # 7
        "settle_s = -1\n"  # 8
        "[[watch]]\n"  # 9
        "path = '/srv/b'\n"  # 10
        "output = 'folder:'\n"  # 11
        "keep_days = true\n"  # 12
        "[schedule]\n"  # 13
        "windows = ['01:00-07:00', 'Mox 01:00-02:00']\n"  # 14
        "yield_cpu = 0\n"  # 15
        "windws = 1\n"  # 16
    )
    assert problems(config) == [
        '3: watch[1].output: must be "beside", "replace" or "folder:/path", not \'replce\'',
        "4: watch[1].setle_s: unknown key (did you mean 'settle_s'?)",
        "6: watch[2].path: must be a path (text in quotes), not 3",
        "7: watch[2].min_saving: must be less than 1, not 1.0",
        "8: watch[2].settle_s: must be at least 0, not -1",
        '11: watch[3].output: "folder:" needs a folder after it, like "folder:/srv/av1"',
        "12: watch[3].keep_days: must be a whole number, not true",
        "14: schedule.windows: 'Mox 01:00-02:00': 'Mox' is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)",
        "15: schedule.yield_cpu: must be more than 0, not 0",
        "16: schedule.windws: unknown key (did you mean 'windows'?)",
    ]


def test_a_good_watch_and_schedule(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "watch_rescan_s = 30\n"
        "[[watch]]\npath = '/srv/films'\noutput = 'replace'\nsettle_s = 5\nmin_saving = 0.2\n"
        "[[watch]]\npath = '/srv/tv'\noutput = 'folder:/srv/av1'\n"
        "[schedule]\nwindows = ['Mon-Fri 22:00-06:00', 'Sat,Sun 00:00-24:00']\nyield_cpu = 0.5\n"
    )
    loaded = load_config(config)
    assert [(w.path, w.output, w.settle_s) for w in loaded.watch] == [
        (Path("/srv/films"), "replace", 5.0),
        (Path("/srv/tv"), "folder:/srv/av1", 60.0),
    ]
    assert loaded.watch[0].min_saving == 0.2 and loaded.watch_rescan_s == 30
    assert loaded.schedule.yield_cpu == 0.5 and len(loaded.schedule.schedule().windows) == 2
    assert Config.model_validate(loaded.model_dump(mode="json")) == loaded  # round trip
