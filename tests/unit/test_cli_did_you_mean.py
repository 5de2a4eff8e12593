"""A mistyped command, option or choice is one line with the closest real name, exit 2.

Run in-process through the CLI's one error boundary (main), as a subprocess would, since
these mistakes are refused while the command line is parsed, before any work."""

from __future__ import annotations

import pytest

from drapto_engine.cli.main import main


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["encdoe", "x.mkv"], "did you mean 'encode'?"),
        (["stauts"], "did you mean 'status'?"),
        (["encode", "x.mkv", "--prset", "4"], "did you mean --preset?"),
        (["encode", "x.mkv", "--max-segmnt=3"], "did you mean --max-segment?"),
        (["encode", "x.mkv", "--progress", "jsn"], "did you mean 'json'?"),
        (["serve", "--workres", "2"], "did you mean --workers?"),
    ],
)
def test_a_typo_names_the_closest_real_name(
    argv: list[str], suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("drapto: ")
    assert suggestion in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv", [["xyz"], ["encode", "x.mkv", "--frobnicate"], ["encode", "x.mkv", "--progress", "z"]]
)
def test_nothing_close_suggests_nothing(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean" not in err


@pytest.mark.parametrize(
    ("argv", "answer"),
    [
        (
            ["status", "--state-dir", "x"],
            "drapto status has no --state-dir (drapto --batch,"
            " drapto encode, drapto serve, drapto stats and drapto restore have)",
        ),
        (
            ["status", "--config", "c.toml"],
            "--config goes before the command (drapto --config ... status)",
        ),
    ],
)
def test_a_real_option_given_to_another_command_says_where_it_belongs(
    argv: list[str], answer: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and answer in err, err
    assert "did you mean" not in err


def test_encode_help_sends_readers_to_drapto_flags_for_the_flag_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["encode", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert "(`drapto flags` lists them)" in text, text
    assert "README" not in text
