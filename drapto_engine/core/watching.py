"""Watched folders as a client sees and sets them: the output policy and its job options.

A watched folder's `output` is `"beside"` (the `.av1.mkv` next to the source),
`"replace"` (the encode takes the source's place once it validates; the original goes to
`.drapto-trash/` at the watched root, keeping its path relative to the root) or
`"folder:/x"` (the same tree under /x). `job_options` turns it into the job options
every entry queued from the folder carries.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from drapto_engine.core.jobs import JobOptions

TRASH_NAME = ".drapto-trash"
"""The trash folder at a watched root (replace)."""
DEFAULT_SETTLE_S = 60.0
"""Seconds a file's size and modification time must stay the same before it is queued."""

OUTPUT_POLICIES = '"beside", "replace" or "folder:/path"'


def check_policy(text: str) -> str:
    """`text` if it is an output policy; ValueError saying what they are otherwise."""
    if text in ("beside", "replace"):
        return text
    if text.startswith("folder:"):
        folder = text.removeprefix("folder:")
        if not folder.strip():
            raise ValueError('"folder:" needs a folder after it, like "folder:/srv/av1"')
        if "\0" in folder:
            raise ValueError("must not contain a NUL character")
        return text
    raise ValueError(f"must be {OUTPUT_POLICIES}, not {text!r}")


def job_options(
    policy: str, root: Path, min_saving: float | None = None, keep_days: int | None = None
) -> JobOptions:
    """The options of an entry queued from a folder watched at `root` with `policy`."""
    if policy == "replace":
        return JobOptions(
            replace=True,
            trash_dir=root / TRASH_NAME,
            min_saving=min_saving,
            keep_days=keep_days,
        )
    if policy.startswith("folder:"):
        return JobOptions(output_dir=Path(policy.removeprefix("folder:")))
    return JobOptions()


class FolderState(StrEnum):
    WATCHING = "watching"
    MISSING = "missing"
    """The folder is not there (an unmounted disk): nothing is forgotten, and watching
    resumes when it comes back."""
    STARTING = "starting"
    """Added; its first scan has not finished."""


class WatchedFolder(BaseModel):
    """One watched folder as it is set: from a `[[watch]]` table or `drapto watch add`."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    path: str
    output: str = "beside"
    settle_s: float = Field(default=DEFAULT_SETTLE_S, ge=0)
    min_saving: float | None = None
    keep_days: int | None = None
    from_config: bool = False
    """Set by a `[[watch]]` table (removed by editing the file), not by `watch add`."""


class WatchView(BaseModel):
    """A watched folder and how its watching goes (`drapto watch list`)."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    folder: WatchedFolder
    state: FolderState = FolderState.STARTING
    pending: int = 0
    """Files seen but not yet settled (or not yet probed)."""
    queued: int = 0
    """Files this watcher has put in the queue since the engine started."""
    last_scan: float | None = None
    """Unix time the last full rescan finished."""
    last_scan_s: float | None = None
    """How long it took."""
    problem: str | None = None
