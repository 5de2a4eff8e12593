"""Where the engine's socket lives, and making sure only one engine owns it.

The socket is `$XDG_RUNTIME_DIR/drapto/engine.sock`. Without XDG_RUNTIME_DIR (cron,
some SSH sessions) it is `/tmp/drapto-<uid>/engine.sock`, the tmux convention: short
enough for the 107-byte socket path limit, and the folder is checked to be ours and
private before it is used, so another user cannot plant it.

One engine per socket and per state folder: each is claimed with an exclusive
`flock` on a lock file beside it, held for the engine's life. The kernel releases it
when the process dies however it dies, so a socket file left by an engine killed with
SIGKILL is known to be stale and is replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import stat
from pathlib import Path

from drapto_engine.core.errors import DraptoError

log = logging.getLogger(__name__)

SOCKET_NAME = "engine.sock"
MAX_SOCKET_PATH = 107
"""sun_path holds 108 bytes on Linux, the terminating NUL included."""


def default_socket() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_absolute():
        return Path(runtime) / "drapto" / SOCKET_NAME
    return Path("/tmp") / f"drapto-{os.getuid()}" / SOCKET_NAME


def prepare_folder(folder: Path) -> None:
    """Create the socket's folder 0700; refuse one that is not a folder of this user's."""
    created = not folder.exists()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError as exc:
        raise DraptoError(f"cannot create the socket's folder: {exc.strerror}", folder) from exc
    if not stat.S_ISDIR(info.st_mode):
        raise DraptoError("the socket's folder is not a folder (a link?)", folder)
    if info.st_uid != os.getuid():
        raise DraptoError(
            f"the socket's folder belongs to uid {info.st_uid}, not to you",
            folder,
            hint="remove it or choose another path with --socket",
        )
    if created or folder == default_socket().parent:
        os.chmod(folder, 0o700)
    elif info.st_mode & 0o077:
        # A folder the user named may be shared on purpose; the socket itself is 0600
        # and every peer's uid is checked, so this is a warning, not a refusal.
        log.warning("%s is open to other users; the socket in it is still 0600", folder)


class Claim:
    """An exclusive lock on a file, held until release() or the process's death."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DraptoError(f"cannot open the lock file: {exc.strerror}", path) from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(self._fd)
            os.close(self._fd)
            pid = f" (pid {holder})" if holder else ""
            raise DraptoError(f"an engine is already running on {what}{pid}") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None


def claim_socket(path: Path) -> Claim:
    """Claim `path` for this engine: refuse when an engine listens there, else clear a
    stale socket file left by a dead one."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise DraptoError(
            f"socket path is longer than {MAX_SOCKET_PATH} bytes",
            path,
            hint="use a shorter --socket",
        )
    prepare_folder(path.parent)
    claim = Claim(path.with_name(path.name + ".lock"), str(path))
    try:
        _clear_stale(path)
    except BaseException:
        claim.release()
        raise
    return claim


def _clear_stale(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise DraptoError("exists and is not a socket; not replacing it", path)
    if answers(path):  # its lock file was deleted under a live engine
        raise DraptoError(f"an engine is already running on {path}")
    log.info("replacing the stale socket %s", path)
    path.unlink(missing_ok=True)


def answers(path: Path) -> bool:
    """Whether something accepts connections on the socket now."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def bind(path: Path) -> socket.socket:
    """A listening-ready socket at `path`, created 0600 (the umask is set around bind
    because chmod after it leaves a moment where the mode is wider)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise DraptoError(f"cannot listen: {exc.strerror}", path) from exc
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    return sock
