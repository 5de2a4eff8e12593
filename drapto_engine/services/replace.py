"""Replace a source with its validated AV1 encode, keeping the original in a trash folder.

A replace of `film.mp4` (the AV1 file validated as `film.av1.mkv` beside it) ends with
`film.mkv` the AV1 file (the original's mode, owner when allowed, and times) and the
original at `TRASH/<its path relative to the trash's parent>`. Its steps:

1. the plan is written to a journal (`<state>/replace/<hash of the path>.json`, atomically);
2. the original is hard-linked into the trash (the same file system: a link is never a
   copy; where the file system has no hard links, a copy verified by size and SHA-256);
3. the original's mode, owner and times are carried to the AV1 file;
4. the AV1 file is renamed to the final name (for `film.mkv`, over the original's name:
   the original lives on in the trash's link);
5. the original's own name is unlinked (only when the final name is another);
6. the saving is recorded (once, by its key) and the journal removed.

Each step looks first whether it was done (by the files' inode numbers), so a replace
stopped anywhere (kill -9 between any two file system operations) is finished by
`recover` at the engine's next start, or by the next replace of the same path: at every
moment the original's bytes are under its name or in the trash, and the original's name
or the final name holds the original or the AV1 file.

The trash is emptied of originals older than keep_days by `empty_trash`; `restore` puts
an original back and keeps the AV1 file beside it as `NAME.av1.mkv` (the name drapto
writes beside a source, so a watched folder sees the source as done).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydantic
from pydantic import BaseModel, ConfigDict

from drapto_engine.core.errors import DraptoError
from drapto_engine.core.jobs import JobOptions
from drapto_engine.core.names import OUTPUT_SUFFIX
from drapto_engine.core.savings import Saving, SavingState
from drapto_engine.core.text import model_from_json, model_json
from drapto_engine.infrastructure.savings import SavingsStore
from drapto_engine.services.outputs import (
    TRASH_NAME,
    check_replace,
    replaced_name,
    trash_path,
    trash_root,
)

MIN_SAVING = 0.10
"""The least saving for which an original is replaced, unless min_saving says."""
KEEP_DAYS = 30
"""Days an original stays in the trash, unless keep_days says."""
JOURNALS = "replace"
"""The folder of replace journals in the state folder."""
STEPS = ("journal", "mkdir", "link", "chmod", "carry", "rename", "unlink", "record", "done")
"""Every point between two file system operations of a replace (`on_step` is called at
each once its operation is done), for the tests' crash-point matrix."""
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
"""What link(2) says on a file system without hard links (vfat, some FUSE and SMB mounts)."""


class ReplaceError(DraptoError):
    """A replace that cannot be done or finished; the original is kept."""


class ReplacePlan(BaseModel):
    """What a replace does, written to its journal before its first step."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    key: str
    source: str
    output: str
    final: str
    trash: str
    root: str | None
    source_ino: int
    source_size: int
    source_mtime_ns: int
    source_atime_ns: int
    source_mode: int
    source_uid: int
    source_gid: int
    output_ino: int
    output_size: int
    output_mtime_ns: int
    time: float
    keep_until: float
    copied: bool = False
    """The trash holds a verified copy, not a link (a file system without hard links)."""

    def saving(self, state: SavingState = SavingState.REPLACED) -> Saving:
        return Saving(
            key=self.key,
            path=self.source,
            output=self.final,
            root=self.root,
            bytes_before=self.source_size,
            bytes_after=self.output_size,
            time=self.time,
            state=state,
            trash=self.trash,
            keep_until=self.keep_until,
        )


@dataclass(frozen=True)
class Outcome:
    """What a replace did: `note` says why the original was kept, when it was."""

    saving: Saving | None
    note: str | None = None


Step = Callable[[str], None]


def _nothing(step: str) -> None:
    pass


def journal_folder(state_dir: Path) -> Path:
    return state_dir / JOURNALS


def saving_note(before: int, after: int, least: float) -> str | None:
    """Why an encode does not replace its source (`kept the original: saved only 4%`), or
    None when it saves at least `least`."""
    saved = 1 - after / before if before else 0.0
    if saved >= least:
        return None
    if saved <= 0:
        return f"kept the original: the encode is not smaller ({after - before:+,} bytes)"
    return f"kept the original: saved only {saved:.0%} (less than {least:.0%})"


class Replacer:
    """Replaces, recovers and restores with the journals of one state folder and its
    savings records. `on_step` is called after each step (see STEPS)."""

    def __init__(self, state_dir: Path, savings: SavingsStore, on_step: Step = _nothing) -> None:
        self.journals = journal_folder(state_dir)
        self.savings = savings
        self.on_step = on_step

    # --- replacing ------------------------------------------------------------------------

    def replace(self, source: Path, output: Path, options: JobOptions) -> Outcome:
        """Put `output` (validated) in `source`'s place, or keep the original and remove
        `output` when it saves less than min_saving."""
        source, output = source.absolute(), output.absolute()
        journal = self._journal(source)
        try:
            self._finish_journal(journal)  # an earlier replace of this path, stopped
        except ReplaceError:
            if journal.exists():  # still half done: nothing more is safe to do here
                raise
        before, after = source.stat(), output.stat()
        least = MIN_SAVING if options.min_saving is None else options.min_saving
        note = saving_note(before.st_size, after.st_size, least)
        if note is not None:
            output.unlink()
            return Outcome(None, note)
        check_replace(source, options.trash_dir)
        if before.st_dev != after.st_dev:
            raise ReplaceError(
                f"the AV1 file {output} is on another file system than the source", source
            )
        now = time.time()
        days = KEEP_DAYS if options.keep_days is None else options.keep_days
        root = trash_root(source, options.trash_dir).parent if options.trash_dir else None
        plan = ReplacePlan(
            key=f"replace-{_digest(source)}-{int(now * 1000)}",
            source=str(source),
            output=str(output),
            final=str(replaced_name(source)),
            trash=str(_free(trash_path(source, options.trash_dir))),
            root=str(root) if root is not None else None,
            source_ino=before.st_ino,
            source_size=before.st_size,
            source_mtime_ns=before.st_mtime_ns,
            source_atime_ns=before.st_atime_ns,
            source_mode=stat.S_IMODE(before.st_mode),
            source_uid=before.st_uid,
            source_gid=before.st_gid,
            output_ino=after.st_ino,
            output_size=after.st_size,
            output_mtime_ns=after.st_mtime_ns,
            time=now,
            keep_until=now + days * 86400,
        )
        self._write_journal(plan)
        self.on_step("journal")
        return Outcome(self._run(plan))

    def finish(self, source: Path, output: Path, options: JobOptions, key: str) -> Outcome:
        """After an encode validated: the replace its options ask for, else the saving
        of an output written beside (or away from) its source, recorded under `key`."""
        if options.replace:
            return self.replace(source, output, options)
        saving = Saving(
            key=key,
            path=str(source.absolute()),
            output=str(output.absolute()),
            bytes_before=source.stat().st_size,
            bytes_after=output.stat().st_size,
        )
        self.savings.add(saving)
        return Outcome(saving)

    def recover(self) -> list[str]:
        """Finish every replace a stopped process left (at the engine's start); what could
        not be finished, one line each (the original is kept in each)."""
        problems: list[str] = []
        for journal in sorted(self.journals.glob("*.json")) if self.journals.is_dir() else []:
            try:
                self._finish_journal(journal)
            except DraptoError as exc:
                problems.append(exc.one_line())
            except OSError as exc:  # a folder unmounted or not ours: tried at the next start
                problems.append(f"{journal}: {exc.strerror or exc}")
        return problems

    def _journal(self, source: Path) -> Path:
        return self.journals / f"{_digest(source)}.json"

    def _finish_journal(self, journal: Path) -> None:
        try:
            text = journal.read_bytes()
        except FileNotFoundError:
            return
        try:
            plan = model_from_json(ReplacePlan, text)
        except pydantic.ValidationError:
            # a journal is written whole (renamed into place): this one is not drapto's
            raise ReplaceError("is not a replace journal; it is left alone", journal) from None
        self._run(plan)

    def _write_journal(self, plan: ReplacePlan) -> None:
        self.journals.mkdir(parents=True, exist_ok=True)
        journal = self._journal(Path(plan.source))
        partial = journal.with_name(f".{journal.name}.partial")
        with partial.open("wb") as file:
            file.write(model_json(plan).encode())
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, journal)
        _sync_folder(self.journals)

    def _run(self, plan: ReplacePlan) -> Saving:
        """Every step from the first, each skipped when it was done."""
        plan = self._to_trash(plan)
        source, output, final = Path(plan.source), Path(plan.output), Path(plan.final)
        if _is_output(output, plan):
            _sync_file(output)  # its bytes on disk before it takes a name the original had
            os.chmod(output, plan.source_mode)
            with contextlib.suppress(OSError):  # only root may give a file to another user
                os.chown(output, plan.source_uid, plan.source_gid)
            self.on_step("chmod")
            os.utime(output, ns=(plan.source_atime_ns, plan.source_mtime_ns))
            self.on_step("carry")
            if final != source and _stat(final) is not None and not _is_output(final, plan):
                raise ReplaceError(
                    f"another file took the name {final}; the original stays", source
                )
            os.replace(output, final)
            _sync_folder(final.parent)
            self.on_step("rename")
        elif not _is_output(final, plan):
            self._undo(plan)
            raise ReplaceError(
                f"the AV1 file {output} is gone before it took the source's place; the"
                " original stays",
                source,
            )
        if final != source and _ino(source) == plan.source_ino:
            source.unlink()
            _sync_folder(source.parent)
            self.on_step("unlink")
        saving = plan.saving()
        self.savings.add(saving)
        self.on_step("record")
        self._journal(source).unlink(missing_ok=True)
        self.on_step("done")
        return saving

    def _to_trash(self, plan: ReplacePlan) -> ReplacePlan:
        """The original in the trash: a hard link to it (or a verified copy)."""
        source, trash = Path(plan.source), Path(plan.trash)
        now = _stat(source)
        if trash.exists():
            held = trash.stat()
            if held.st_ino == plan.source_ino or (plan.copied and held.st_size == plan.source_size):
                return plan
            if now is not None and now.st_ino == plan.source_ino and _same_bytes(source, trash):
                # a verified copy renamed into the trash before the journal said so
                plan = plan.model_copy(update={"copied": True})
                self._write_journal(plan)
                return plan
            raise ReplaceError(f"the trash holds another file at {trash}", source)
        if now is None or now.st_ino != plan.source_ino:
            self._journal(source).unlink(missing_ok=True)
            raise ReplaceError("the source is gone or another file took its name", source)
        if (now.st_size, now.st_mtime_ns) != (plan.source_size, plan.source_mtime_ns):
            self._journal(source).unlink(missing_ok=True)
            raise ReplaceError("the source changed after its encode; it is kept", source)
        trash.parent.mkdir(parents=True, exist_ok=True)
        self.on_step("mkdir")
        try:
            os.link(source, trash)
        except OSError as exc:
            if exc.errno not in _NO_LINKS:  # EXDEV above all: the trash is on another disk
                self._journal(source).unlink(missing_ok=True)
                raise ReplaceError(
                    f"cannot move it into the trash {trash} ({exc.strerror}); it is kept", source
                ) from exc
            _verified_copy(source, trash)
            plan = plan.model_copy(update={"copied": True})
            self._write_journal(plan)
        _sync_folder(trash.parent)
        self.on_step("link")
        return plan

    def _undo(self, plan: ReplacePlan) -> None:
        """The AV1 file is lost before it took the source's place: the original, still
        under its name, leaves the trash."""
        source, trash = Path(plan.source), Path(plan.trash)
        if _ino(source) == plan.source_ino and (_ino(trash) == plan.source_ino or plan.copied):
            trash.unlink(missing_ok=True)
        self._journal(source).unlink(missing_ok=True)

    # --- the trash --------------------------------------------------------------------------

    def empty_trash(self, now: float | None = None) -> list[Path]:
        """Delete the originals whose keep_days are over; the files deleted."""
        deleted: list[Path] = []
        for saving in self.savings.due(now):
            if saving.trash is not None:
                trash = Path(saving.trash)
                with contextlib.suppress(FileNotFoundError):
                    trash.unlink()
                    deleted.append(trash)
                _prune(trash.parent, _trash_of(trash, Path(saving.path)))
            self.savings.set_state(saving.key, SavingState.EMPTIED)
        return deleted

    def restore(self, path: Path) -> Path:
        """Put the original of `path` back from the trash; the AV1 file is kept beside it
        as `NAME.av1.mkv`. Returns where the AV1 file is now. Each step looks whether it
        was done, so a restore stopped anywhere is finished by running it again."""
        path = path.absolute()
        saving = self.savings.in_trash(str(path))
        if saving is None or saving.trash is None:
            last = self.savings.last_of(str(path))
            found = _default_trash(path) if last is None else None
            if found is None:
                raise DraptoError(_not_in_trash(last), path)
            # no record (a state folder lost or another): the trash drapto makes by default
            return _put_back(path, found, replaced_name(path), found.stat().st_size)
        aside = _put_back(path, Path(saving.trash), Path(saving.output), saving.bytes_before)
        self.savings.set_state(saving.key, SavingState.RESTORED)
        return aside


def _default_trash(path: Path) -> Path | None:
    """The original of `path` in a `.drapto-trash` of one of its folders, if one is there."""
    for folder in path.parents:
        candidate = folder / TRASH_NAME / path.relative_to(folder)
        if candidate.is_file():
            return candidate
    return None


def _put_back(path: Path, trash: Path, final: Path, size: int) -> Path:
    """The original at `trash` back at `path`, the AV1 file at `final` kept aside."""
    aside = path.with_name(f"{path.stem}{OUTPUT_SUFFIX}")
    if not trash.exists():
        back = _stat(path)
        if back is None or back.st_size != size or not aside.exists():
            raise DraptoError(f"the original is no longer in the trash ({trash})", path)
    else:  # a restore stopped after its last step (above) has nothing left to do
        if final.exists() and not _same(final, aside):
            if aside.exists():
                raise DraptoError(f"cannot keep the AV1 file aside: {aside} exists", path)
            os.link(final, aside)  # the AV1 file under two names until the original is back
            _sync_folder(aside.parent)
        if final == path:
            os.replace(trash, path)  # the name holds the AV1 file, then the original
        else:
            if path.exists() and not _same(path, trash):
                raise DraptoError("exists: move it away to restore the original", path)
            with contextlib.suppress(FileExistsError):
                os.link(trash, path)
            if _same(final, aside):
                final.unlink()
            trash.unlink()
        _sync_folder(path.parent)
        _prune(trash.parent, _trash_of(trash, path))
    return aside


def _not_in_trash(last: Saving | None) -> str:
    if last is None:
        return "drapto has no original of this file in its trash"
    if last.state is SavingState.EMPTIED:
        when = time.strftime("%Y-%m-%d", time.localtime(last.keep_until or last.time))
        return f"the original was deleted from the trash on {when} (keep_days)"
    if last.state is SavingState.RESTORED:
        return "the original was restored already"
    return "this file was encoded beside its source, not replaced: nothing is in the trash"


def _digest(source: Path) -> str:
    return hashlib.sha256(os.fsencode(source)).hexdigest()[:16]


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _ino(path: Path) -> int | None:
    found = _stat(path)
    return found.st_ino if found is not None else None


def _free(path: Path) -> Path:
    """`path`, or `NAME.2.EXT`, `NAME.3.EXT`... when the trash holds an earlier original
    of that name (a file replaced, then a new one under its name replaced again)."""
    candidate, number = path, 1
    while candidate.exists() or candidate.is_symlink():
        number += 1
        candidate = path.with_name(f"{path.stem}.{number}{path.suffix}")
    return candidate


def _is_output(path: Path, plan: ReplacePlan) -> bool:
    """Whether `path` is the plan's AV1 file: its inode, size and modification time (its
    own, or the original's once carried): an inode number alone may be a new file's."""
    found = _stat(path)
    return (
        found is not None
        and (found.st_ino, found.st_size) == (plan.output_ino, plan.output_size)
        and found.st_mtime_ns in (plan.output_mtime_ns, plan.source_mtime_ns)
    )


def _same(a: Path, b: Path) -> bool:
    first, second = _stat(a), _stat(b)
    return first is not None and second is not None and first.st_ino == second.st_ino


def _sync_folder(folder: Path) -> None:
    """The folder's entries on disk (a rename survives a power cut, not just a kill)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _trash_of(trash: Path, source: Path) -> Path:
    """The trash folder that holds `trash`, the original of `source`: `source` is
    `P/rel`, `trash` is `P/TRASH/rel`."""
    parts, mine = trash.parts, source.parts
    kept = 0
    while kept < len(mine) - 1 and parts[-1 - kept] == mine[-1 - kept]:
        kept += 1
    return Path(*parts[: len(parts) - kept])


def _prune(folder: Path, root: Path) -> None:
    """Remove the trash's emptied folders from `folder` up to `root` (the trash itself)."""
    with contextlib.suppress(OSError):
        while folder == root or root in folder.parents:
            folder.rmdir()
            folder = folder.parent


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _verified_copy(source: Path, target: Path) -> None:
    """`source` copied to `target` through a partial name, synced, and compared by size
    and SHA-256 before it takes the name."""
    partial = target.with_name(f".{target.name}.drapto-partial")
    try:
        with source.open("rb") as reading, partial.open("wb") as writing:
            shutil.copyfileobj(reading, writing, 1 << 20)
            writing.flush()
            os.fsync(writing.fileno())
        if not _same_bytes(source, partial):
            raise ReplaceError(
                f"the copy in the trash ({target}) differs; nothing replaced", source
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and _sha256(a) == _sha256(b)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
