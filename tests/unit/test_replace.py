"""A replace (services/replace.py) on real files: the AV1 file takes the source's place,
the original waits in the trash, and a stop at any point between two file system
operations (an exception, or a real kill -9 of the process) never leaves the name empty
or loses the original; the next start finishes it."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.jobs import JobOptions
from drapto_engine.core.savings import SavingState
from drapto_engine.infrastructure.savings import SavingsStore
from drapto_engine.infrastructure.store import StateStore
from drapto_engine.services import replace as replace_module
from drapto_engine.services.replace import STEPS, ReplaceError, Replacer
from drapto_engine.services.upkeep import Upkeep

ORIGINAL = os.urandom(4000)
ENCODED = os.urandom(1000)
MTIME_NS = 1_600_000_000_123_456_789


class Crash(Exception):
    """Stands for the process dying at a step."""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SavingsStore]:
    state = StateStore(tmp_path / "state" / "drapto.db")
    yield SavingsStore(state)
    state.close()


def library(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A source `name` (mode 0640, an old mtime) and its validated AV1 file beside it."""
    folder = tmp_path / "lib" / "films"
    folder.mkdir(parents=True)
    source = folder / name
    source.write_bytes(ORIGINAL)
    source.chmod(0o640)
    os.utime(source, ns=(MTIME_NS, MTIME_NS))
    output = folder / f"{source.stem}.av1.mkv"
    output.write_bytes(ENCODED)
    return source, output


def options(tmp_path: Path, **more: object) -> JobOptions:
    return JobOptions.model_validate(
        {"replace": True, "trash_dir": tmp_path / "lib" / ".drapto-trash", **more}
    )


def trash_of(tmp_path: Path, source: Path) -> Path:
    return tmp_path / "lib" / ".drapto-trash" / "films" / source.name


def assert_safe(source: Path, trash: Path) -> None:
    """What must hold at every moment: the original's bytes under its name or in the
    trash, and the original's name or the final name holding the original or the AV1 file."""
    final = source.with_suffix(".mkv")
    held = {p.read_bytes() for p in (source, trash) if p.exists()}
    assert ORIGINAL in held, "the original is lost"
    assert any(p.exists() and p.read_bytes() in (ORIGINAL, ENCODED) for p in {source, final})


def assert_replaced(source: Path, trash: Path, store: SavingsStore, files: int = 1) -> None:
    final = source.with_suffix(".mkv")
    assert final.read_bytes() == ENCODED
    assert trash.read_bytes() == ORIGINAL
    assert not source.with_name(f"{source.stem}.av1.mkv").exists()
    if final != source:
        assert not source.exists()
    done = final.stat()
    assert stat.S_IMODE(done.st_mode) == 0o640
    assert done.st_mtime_ns == MTIME_NS
    saving = store.in_trash(str(source))
    assert saving is not None and saving.state is SavingState.REPLACED
    assert (saving.bytes_before, saving.bytes_after) == (len(ORIGINAL), len(ENCODED))
    assert store.report().total.files == files
    assert not list(store.store.path.parent.joinpath("replace").glob("*.json"))


@pytest.mark.parametrize("name", ["film.mp4", "film.mkv"])
def test_a_replace(tmp_path: Path, store: SavingsStore, name: str) -> None:
    source, output = library(tmp_path, name)
    outcome = Replacer(tmp_path / "state", store).replace(source, output, options(tmp_path))
    assert outcome.note is None
    assert_replaced(source, trash_of(tmp_path, source), store)
    report = store.report()
    assert report.total.bytes_saved == len(ORIGINAL) - len(ENCODED)
    assert list(report.folders) == [str(tmp_path / "lib")]


def test_a_small_saving_keeps_the_original(tmp_path: Path, store: SavingsStore) -> None:
    source, output = library(tmp_path, "film.mp4")
    output.write_bytes(ORIGINAL[:3840])  # 4% smaller
    outcome = Replacer(tmp_path / "state", store).replace(source, output, options(tmp_path))
    assert outcome.note == "kept the original: saved only 4% (less than 10%)"
    assert source.read_bytes() == ORIGINAL and not output.exists()
    assert not (tmp_path / "lib" / ".drapto-trash").exists()
    assert store.report().total.files == 0
    source2, output2 = source, source.with_name("film.av1.mkv")
    output2.write_bytes(ORIGINAL[:3840])
    low = options(tmp_path, min_saving=0.03)
    assert Replacer(tmp_path / "state", store).replace(source2, output2, low).note is None


@pytest.mark.parametrize("name", ["film.mp4", "film.mkv"])
@pytest.mark.parametrize("step", STEPS)
def test_a_stop_at_any_step_is_finished_by_the_next_start(
    tmp_path: Path, store: SavingsStore, name: str, step: str
) -> None:
    source, output = library(tmp_path, name)
    trash = trash_of(tmp_path, source)
    seen: list[str] = []

    def die(at: str) -> None:
        seen.append(at)
        assert_safe(source, trash)
        if at == step:
            raise Crash

    if step == "unlink" and name == "film.mkv":
        pytest.skip("film.mkv takes its own name: no name is unlinked")
    with pytest.raises(Crash):
        Replacer(tmp_path / "state", store, die).replace(source, output, options(tmp_path))
    assert seen[-1] == step
    assert_safe(source, trash)
    assert Replacer(tmp_path / "state", store).recover() == []
    assert_replaced(source, trash, store)


@pytest.mark.parametrize("name", ["film.mp4", "film.mkv"])
def test_kill_9_between_every_pair_of_steps(tmp_path: Path, name: str) -> None:
    """A real process, killed with SIGKILL after each step in turn; each time the next
    start (a new process's recover) finishes the replace."""
    for step in STEPS:
        if step == "unlink" and name == "film.mkv":
            continue
        root = tmp_path / step
        source, output = library(root, name)
        pid = os.fork()
        if pid == 0:  # the child: its own store, killed at `step`
            try:
                state = StateStore(root / "state" / "drapto.db")

                def kill(at: str, step: str = step) -> None:
                    if at == step:
                        os.kill(os.getpid(), signal.SIGKILL)

                Replacer(root / "state", SavingsStore(state), kill).replace(
                    source, output, options(root)
                )
            finally:
                os._exit(0)  # reached only if the kill did not come
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, step
        trash = trash_of(root, source)
        assert_safe(source, trash)
        state = StateStore(root / "state" / "drapto.db")
        try:
            store = SavingsStore(state)
            assert Replacer(root / "state", store).recover() == []
            assert_replaced(source, trash, store)
        finally:
            state.close()


def test_without_hard_links_the_trash_gets_a_verified_copy(
    tmp_path: Path, store: SavingsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, output = library(tmp_path, "film.mp4")

    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(replace_module.os, "link", no_links)
    Replacer(tmp_path / "state", store).replace(source, output, options(tmp_path))
    monkeypatch.undo()
    trash = trash_of(tmp_path, source)
    assert_replaced(source, trash, store)
    assert trash.stat().st_nlink == 1


def test_a_trash_the_original_cannot_be_linked_into_is_refused(
    tmp_path: Path, store: SavingsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trash on another file system (a mount below the trash's folder: link(2) says
    EXDEV) gets no copy: the replace is refused and everything stays."""
    source, output = library(tmp_path, "film.mp4")

    def elsewhere(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(replace_module.os, "link", elsewhere)
    with pytest.raises(DraptoError, match="cannot move it into the trash"):
        Replacer(tmp_path / "state", store).replace(source, output, options(tmp_path))
    monkeypatch.undo()
    assert source.read_bytes() == ORIGINAL and output.read_bytes() == ENCODED
    assert not trash_of(tmp_path, source).exists()
    assert Replacer(tmp_path / "state", store).recover() == []
    assert store.report().total.files == 0


def test_another_file_under_the_final_name_is_never_replaced(
    tmp_path: Path, store: SavingsStore
) -> None:
    source, output = library(tmp_path, "film.mp4")
    other = source.with_suffix(".mkv")
    other.write_bytes(b"someone else's")
    with pytest.raises(DraptoError, match="another file is"):
        Replacer(tmp_path / "state", store).replace(source, output, options(tmp_path))
    assert other.read_bytes() == b"someone else's" and source.read_bytes() == ORIGINAL


@pytest.mark.parametrize("name", ["film.mp4", "film.mkv"])
def test_restore(tmp_path: Path, store: SavingsStore, name: str) -> None:
    source, output = library(tmp_path, name)
    replacer = Replacer(tmp_path / "state", store)
    replacer.replace(source, output, options(tmp_path))
    aside = replacer.restore(source)
    assert source.read_bytes() == ORIGINAL
    assert aside == output and aside.read_bytes() == ENCODED
    if name == "film.mp4":
        assert not source.with_suffix(".mkv").exists()
    assert not (tmp_path / "lib" / ".drapto-trash").exists()
    assert store.report().total.files == 0
    with pytest.raises(DraptoError, match="restored already"):
        replacer.restore(source)
    with pytest.raises(DraptoError, match="no original of this file"):
        replacer.restore(source.with_name("other.mkv"))


def test_the_trash_is_emptied_after_keep_days(tmp_path: Path, store: SavingsStore) -> None:
    source, output = library(tmp_path, "film.mkv")
    replacer = Replacer(tmp_path / "state", store)
    replacer.replace(source, output, options(tmp_path, keep_days=2))
    saving = store.in_trash(str(source))
    assert saving is not None and saving.keep_until is not None
    assert replacer.empty_trash(now=saving.keep_until - 60) == []
    trash = trash_of(tmp_path, source)
    assert replacer.empty_trash(now=saving.keep_until) == [trash]
    assert not (tmp_path / "lib" / ".drapto-trash").exists()
    assert (tmp_path / "lib" / "films").is_dir()
    assert store.report().total.files == 1  # the saving stays
    with pytest.raises(DraptoError, match="deleted from the trash"):
        replacer.restore(source)


def test_a_replace_whose_av1_file_vanished_keeps_the_original(
    tmp_path: Path, store: SavingsStore
) -> None:
    source, output = library(tmp_path, "film.mkv")

    def lose(at: str) -> None:
        if at == "link":
            output.unlink()

    with pytest.raises(ReplaceError, match="is gone"):
        Replacer(tmp_path / "state", store, lose).replace(source, output, options(tmp_path))
    assert source.read_bytes() == ORIGINAL
    assert not trash_of(tmp_path, source).exists()
    assert Replacer(tmp_path / "state", store).recover() == []


def test_an_encode_beside_its_source_is_counted_once(tmp_path: Path, store: SavingsStore) -> None:
    source, output = library(tmp_path, "film.mp4")
    replacer = Replacer(tmp_path / "state", store)
    assert replacer.finish(source, output, JobOptions(), "job1").saving is not None
    replacer.finish(source, output, JobOptions(), "job1")  # the same job again: one record
    assert source.read_bytes() == ORIGINAL and output.read_bytes() == ENCODED
    report = store.report()
    assert report.total.files == 1 and list(report.folders) == ["other"]
    assert report.total.bytes_saved == len(ORIGINAL) - len(ENCODED)


async def test_upkeep_finishes_replaces_and_empties_the_trash(
    tmp_path: Path, store: SavingsStore
) -> None:
    """At its start, and again every `trash_every_s` while it runs; the daily summary is
    looked at every `check_s`."""
    half, half_output = library(tmp_path / "a", "film.mp4")
    old, old_output = library(tmp_path / "b", "film.mkv")
    state = tmp_path / "state"

    def die(at: str) -> None:
        if at == "rename":
            raise Crash

    with pytest.raises(Crash):
        Replacer(state, store, die).replace(half, half_output, options(tmp_path / "a"))
    Replacer(state, store).replace(old, old_output, options(tmp_path / "b", keep_days=0))
    warnings: list[str] = []
    sent: list[str] = []

    class Summary:
        async def send_if_due(self) -> str | None:
            sent.append("looked")
            return "HTTP 500" if len(sent) == 1 else None

    upkeep = Upkeep(
        Replacer(state, store), warnings.append, Summary(),  # type: ignore[arg-type]
        check_s=0.01, trash_every_s=0.05,
    )  # fmt: skip
    await upkeep.start()
    try:
        assert_replaced(half, trash_of(tmp_path / "a", half), store, files=2)
        assert not trash_of(tmp_path / "b", old).exists()
        later, later_output = library(tmp_path / "c", "film.mkv")
        Replacer(state, store).replace(later, later_output, options(tmp_path / "c", keep_days=0))
        assert trash_of(tmp_path / "c", later).exists()
        for _ in range(500):
            if not trash_of(tmp_path / "c", later).exists() and len(sent) > 2:
                break
            await asyncio.sleep(0.01)
        assert not trash_of(tmp_path / "c", later).exists()
    finally:
        await upkeep.stop()
    assert warnings == ["the daily summary could not be sent: HTTP 500"]


def test_restore_without_a_record_finds_the_default_trash(tmp_path: Path) -> None:
    """The state folder lost: the original is found in a `.drapto-trash` of its folders."""
    source, output = library(tmp_path, "film.mp4")
    first = StateStore(tmp_path / "state" / "drapto.db")
    try:
        Replacer(tmp_path / "state", SavingsStore(first)).replace(
            source, output, JobOptions(replace=True)
        )
    finally:
        first.close()
    assert (source.parent / ".drapto-trash" / "film.mp4").read_bytes() == ORIGINAL
    other = StateStore(tmp_path / "other" / "drapto.db")
    try:
        aside = Replacer(tmp_path / "other", SavingsStore(other)).restore(source)
    finally:
        other.close()
    assert source.read_bytes() == ORIGINAL and aside.read_bytes() == ENCODED
    assert not (source.parent / ".drapto-trash").exists()


@pytest.mark.parametrize("name", ["film.mp4", "film.mkv"])
def test_a_restore_stopped_midway_is_finished_by_running_it_again(
    tmp_path: Path, store: SavingsStore, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, output = library(tmp_path, name)
    replacer = Replacer(tmp_path / "state", store)
    replacer.replace(source, output, options(tmp_path))

    def stop(*args: object) -> None:
        raise Crash

    # stopped after the AV1 file got its second name, before the original came back
    monkeypatch.setattr(replace_module.os, "replace" if name == "film.mkv" else "unlink", stop)
    with pytest.raises(Crash):
        replacer.restore(source)
    monkeypatch.undo()
    assert_safe(source, trash_of(tmp_path, source))
    assert replacer.restore(source).read_bytes() == ENCODED
    assert source.read_bytes() == ORIGINAL


def test_a_copy_into_the_trash_stopped_before_the_journal_said_so_is_finished(
    tmp_path: Path, store: SavingsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, output = library(tmp_path, "film.mkv")

    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    writes: list[object] = []
    real_write = Replacer._write_journal

    def journal(self: Replacer, plan: replace_module.ReplacePlan) -> None:
        writes.append(plan)
        if plan.copied:
            raise Crash  # the copy has its name in the trash; the journal does not know
        real_write(self, plan)

    monkeypatch.setattr(replace_module.os, "link", no_links)
    monkeypatch.setattr(Replacer, "_write_journal", journal)
    with pytest.raises(Crash):
        Replacer(tmp_path / "state", store).replace(source, output, options(tmp_path))
    monkeypatch.undo()
    assert_safe(source, trash_of(tmp_path, source))
    assert Replacer(tmp_path / "state", store).recover() == []
    assert_replaced(source, trash_of(tmp_path, source), store)


def test_a_stale_journal_of_the_same_path_does_not_stop_its_next_replace(
    tmp_path: Path, store: SavingsStore
) -> None:
    """A replace stopped after its link whose AV1 file was then deleted: the next
    replace of the path undoes it (the trash's link goes) and replaces afresh."""
    source, output = library(tmp_path, "film.mkv")

    def die(at: str) -> None:
        if at == "link":
            raise Crash

    with pytest.raises(Crash):
        Replacer(tmp_path / "state", store, die).replace(source, output, options(tmp_path))
    output.unlink()  # someone removed the stopped replace's AV1 file
    output.write_bytes(ENCODED)  # and a new encode wrote another
    Replacer(tmp_path / "state", store).replace(source, output, options(tmp_path))
    assert_replaced(source, trash_of(tmp_path, source), store)


def test_a_second_original_of_one_name_gets_its_own_name_in_the_trash(
    tmp_path: Path, store: SavingsStore
) -> None:
    """film.mkv replaced, then a new film.mkv put in its place and replaced too: both
    originals stay in the trash, and restore brings back the newest."""
    source, output = library(tmp_path, "film.mkv")
    replacer = Replacer(tmp_path / "state", store)
    replacer.replace(source, output, options(tmp_path))
    source.write_bytes(b"a newer original" * 100)
    output.write_bytes(b"its encode")
    replacer.replace(source, output, options(tmp_path))
    first = trash_of(tmp_path, source)
    assert first.read_bytes() == ORIGINAL
    assert first.with_name("film.2.mkv").read_bytes() == b"a newer original" * 100
    replacer.restore(source)
    assert source.read_bytes() == b"a newer original" * 100
    assert first.read_bytes() == ORIGINAL


def test_a_replace_that_cannot_be_finished_now_is_a_line_and_waits(
    tmp_path: Path, store: SavingsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file system refuses a step now (a mount gone read-only, say): recover says so
    in one line and keeps the journal for the next start, and the original stays."""
    source, output = library(tmp_path, "film.mp4")

    def die(at: str) -> None:
        if at == "link":
            raise Crash

    with pytest.raises(Crash):
        Replacer(tmp_path / "state", store, die).replace(source, output, options(tmp_path))

    def refused(path: object, mode: int) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(replace_module.os, "chmod", refused)
    (problem,) = Replacer(tmp_path / "state", store).recover()
    monkeypatch.undo()
    assert problem.endswith("Read-only file system") and "\n" not in problem
    assert_safe(source, trash_of(tmp_path, source))
    assert Replacer(tmp_path / "state", store).recover() == []
    assert_replaced(source, trash_of(tmp_path, source), store)
