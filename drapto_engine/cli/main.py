"""`drapto`: the entry point and the command line's one error boundary.

Every command's options are checked before it does any work, and every failure that
reaches main() ends as ONE line on stderr, `drapto: <file or option>: <what is wrong>`,
with its exit status (a traceback only with --debug):

    0    done
    1    an input could not be used, or a job failed
    2    usage: a bad option value, queue file or config file (nothing was done)
    3    the connection to the engine service was lost (batch and encode clients)
    130  stopped by SIGINT (Ctrl-C); 143 stopped by SIGTERM (128 + the signal)
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from drapto_engine import __version__
from drapto_engine.cli.args import Parser, check_folder, check_socket_folder
from drapto_engine.cli.failure import TERMINATED, Stopped, explain
from drapto_engine.cli.ui import find_ui
from drapto_engine.config import Config, load_config
from drapto_engine.core.errors import EXIT_USAGE, DraptoError, UsageError
from drapto_engine.core.text import ESCAPE
from drapto_engine.infrastructure.paths import config_file
from drapto_engine.logging_setup import LogTo, configure

log = logging.getLogger(__name__)

SHORT_COMMANDS = frozenset({"probe", "status", "flags", "config", "stats", "watch", "schedule"})
"""Commands that answer at once: they log nowhere (stderr with --debug)."""


def build_parser() -> Parser:
    """The whole command line (tests walk it to check every option's mistakes)."""
    parser = Parser(prog="drapto", description="Scene-segmented AV1 batch encoder")
    parser.add_argument("--version", action="version", version=f"drapto {__version__}")
    parser.add_argument("--debug", action="store_true", help="log to stderr and show tracebacks")
    parser.add_argument(
        "--config", type=Path, help="config file (default: ~/.config/drapto/config.toml)"
    )
    from drapto_engine.cli.batch import add_batch_options

    add_batch_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    from drapto_engine.cli.admin import add_admin_parsers
    from drapto_engine.cli.encode import add_encode_parser
    from drapto_engine.cli.probe import add_probe_parser
    from drapto_engine.cli.service import add_service_parsers

    add_probe_parser(commands)
    add_encode_parser(commands)
    add_admin_parsers(commands)
    add_service_parsers(commands)
    from drapto_engine.cli.savings import add_savings_parsers

    add_savings_parsers(commands)
    from drapto_engine.cli.cluster import add_cluster_parsers

    add_cluster_parsers(commands)
    from drapto_engine.cli.watch import add_watch_parsers

    add_watch_parsers(commands)
    ui = find_ui()
    if ui is not None:
        ui.add_parser(commands)
    return parser


def checked_config(path: Path | None) -> Config:
    """The config file, or a usage error (exit 2) naming it: missing, unreadable, invalid."""
    try:
        return load_config(path)
    except UsageError:
        raise  # already `file:line: key: problem` (a FileProblems)
    except DraptoError as exc:
        raise UsageError(exc.problem, exc.path or path, exc.hint) from exc
    except RecursionError:
        raise UsageError("is nested too deeply to read", path or config_file()) from None


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    config = checked_config(args.config)
    if args.batch is not None:
        return _batch(args)
    command = args.command
    if command == "probe":
        from drapto_engine.cli.probe import run_probe

        return run_probe(args)
    if command == "encode":
        from drapto_engine.cli.encode import check_encode, run_encode

        check_encode(args, config)
        return run_encode(args)
    if command in ("flags", "config"):
        from drapto_engine.cli.admin import run_admin

        return run_admin(args)
    if command in ("serve", "status"):
        from drapto_engine.cli.service import run_service

        if command == "serve" and args.state_dir is not None:
            check_folder("--state-dir", args.state_dir, create=True)
        if command == "serve" and args.socket is not None:
            check_socket_folder("--socket", args.socket)
        return run_service(args)
    if command in ("stats", "restore"):
        from drapto_engine.cli.savings import run_savings

        return run_savings(args)
    if command in ("watch", "schedule"):
        from drapto_engine.cli.watch import run_watch

        return run_watch(args)
    if command in ("cluster", "worker"):
        from drapto_engine.cli.cluster import run_cluster

        return run_cluster(args)
    if command in ("tui", None):
        if command is None and not sys.stdout.isatty():
            raise UsageError("no command, and the TUI needs a terminal", hint="see drapto --help")
        ui = find_ui()
        if ui is None:
            raise UsageError("no command, and no UI is installed", hint="see drapto --help")
        args.paths = getattr(args, "paths", [])
        for path in args.paths:
            if not os.path.exists(path):
                raise DraptoError("no such file or folder", path)
        return ui.run(args)
    parser.print_help()
    return EXIT_USAGE


def _batch(args: argparse.Namespace) -> int:
    if args.command is not None:
        raise UsageError(f"takes no command (got {args.command})", "--batch")
    if not args.batch.is_file():
        why = "is a folder, not a queue file" if args.batch.is_dir() else "no such file"
        raise UsageError(why, args.batch)
    if args.state_dir is not None:
        check_folder("--state-dir", args.state_dir, create=True)
    from drapto_engine.cli.batch import run_batch

    try:
        return run_batch(args)
    except RecursionError:  # tomllib on a pathologically nested queue file
        raise UsageError("is nested too deeply to read", args.batch) from None


def _log_to(args: argparse.Namespace) -> LogTo:
    if args.batch is None and args.command in SHORT_COMMANDS:
        return LogTo.NOWHERE
    return LogTo.SERVICE if args.command == "serve" else LogTo.RUN


def _log_folder(args: argparse.Namespace) -> Path | None:
    """A service with its own --state-dir keeps its log there (tests, several engines)."""
    state: Path | None = getattr(args, "state_dir", None)
    if args.command == "serve" and state is not None:
        return state / "logs"
    return None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM for a command without a handler of its own.

    Outside asyncio it unwinds with `Stopped`. Inside `asyncio.run` an exception raised
    from a signal handler lands in whatever the loop happens to run (a timeout, a read)
    and reads as that failing; there it takes the loop's own Ctrl-C path instead, which
    cancels the main task cleanly, and the boundary reports SIGTERM."""
    on_interrupt = signal.getsignal(signal.SIGINT)
    if callable(on_interrupt) and on_interrupt is not signal.default_int_handler:
        TERMINATED.append(signum)
        on_interrupt(signal.SIGINT, frame)
        return
    raise Stopped(signum)


def _escaping_streams() -> None:
    """stdout and stderr write a file name that is not UTF-8 with its bytes escaped
    (`bad\xff.mp4`), whatever the locale's error handler (strict under en_US.UTF-8)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors=ESCAPE)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _escaping_streams()
    debug = "--debug" in argv  # known before parsing, for errors in parsing itself
    signal.signal(signal.SIGTERM, _on_sigterm)  # commands with their own handlers replace it
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        debug = args.debug
        if args.command in ("tui", None) and args.batch is None:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the TUI's own terminal handling
        configure(debug=debug, directory=_log_folder(args), to=_log_to(args))
        log.info("drapto %s: %s", __version__, " ".join(sys.argv))
        return _dispatch(parser, args)
    except SystemExit:
        raise  # --help, --version
    except BrokenPipeError:  # `drapto flags | head`: the reader has gone, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except BaseException as exc:
        status, line = explain(exc)
        log.debug("exit %d: %s", status, line, exc_info=exc)
        if debug:
            traceback.print_exception(exc)
        print(f"drapto: {line}", file=sys.stderr, flush=True)
        return status


if __name__ == "__main__":
    sys.exit(main())
