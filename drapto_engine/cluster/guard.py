"""The engine's TLS connections: a peer holding any certificate but the engine's own never
reaches an unpickler here, and a revoked certificate is refused at the handshake.

Dask's wire format carries pickles in two ways. A `__Serialized__` payload stays an
opaque `Serialized` in the scheduler (it is created with `deserialize=False`), but
`protocol.loads` unpickles every `__Pickled__` (ToPickle) payload while reading the
message, before any handler (or drapto's rules in scheduler.py) sees it. Nothing a worker
legitimately sends the scheduler carries one (its results and errors travel as
`Serialized`), so in the engine's process every TLS connection whose peer is not the
engine's certificate (workers connecting in, and the scheduler's own connections out to
workers) is read with `__Pickled__` payloads refused: the connection is dropped with one
warning line. The engine's own client and scheduler talk to each other as before. What
a worker's `Serialized` values become further on is settled elsewhere: the engine's
client reads results and replies as msgpack only (host.py), and the scheduler replaces
the pickles in what workers report of their tasks and drops their other events
(scheduler.py).

This is Dask's comm-backend extension point: `install()` registers a "tls" backend whose
listener, connector and comm are Dask's own with these checks added.
"""

from __future__ import annotations

import logging
import struct
import weakref
from collections.abc import Callable, Iterable
from ssl import SSLError
from typing import Any

import msgpack
from distributed.comm import registry
from distributed.comm.core import CommClosedError
from distributed.comm.tcp import (
    TLS,
    TLSBackend,
    TLSConnector,
    TLSListener,
    convert_stream_closed_error,
    read_bytes_rw,
)
from distributed.comm.utils import from_frames
from distributed.protocol.utils import msgpack_opts, unpack_frames
from tornado.iostream import IOStream, StreamClosedError

from drapto_engine.cluster.certs import ENGINE_NAME

log = logging.getLogger(__name__)


def peer_certificate(comm_or_stream: Any) -> dict[str, Any]:
    """The certificate the peer presented, as Python's ssl module reports it ({} on
    plain TCP)."""
    extra = getattr(comm_or_stream, "extra_info", None)
    if isinstance(extra, dict):
        return dict(extra.get("peercert") or {})
    sock = getattr(comm_or_stream, "socket", None)
    getter = getattr(sock, "getpeercert", None)
    return dict(getter() or {}) if getter is not None else {}


def certificate_name(cert: dict[str, Any]) -> str | None:
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def certificate_serial(cert: dict[str, Any]) -> int | None:
    serial = cert.get("serialNumber")
    return int(serial, 16) if isinstance(serial, str) else None


def peer_name(comm: Any) -> str | None:
    """The common name of the certificate the peer presented (None on plain TCP)."""
    return certificate_name(peer_certificate(comm))


class PickleRefused(ValueError):
    pass


def _refuse_pickled(obj: dict[Any, Any]) -> dict[Any, Any]:
    if "__Pickled__" in obj:
        raise PickleRefused("a pickled payload")
    return obj


def check_frames(frames: list[Any]) -> None:
    """PickleRefused when the message's frames carry a `__Pickled__` payload (the only
    kind `protocol.loads` unpickles with `deserialize=False`)."""
    if frames:
        msgpack.loads(frames[0], object_hook=_refuse_pickled, use_list=False, **msgpack_opts)


_own_serials: set[int] = set()
"""In a worker's processes: its own certificate (the worker and its nanny talk to each
other with it)."""


class GuardedTLS(TLS):
    """Dask's TLS comm; a peer that is not the engine (or, on a worker, that worker
    itself) may not send pickles."""

    @property
    def trusted(self) -> bool:
        cert = peer_certificate(self)
        return certificate_name(cert) == ENGINE_NAME or certificate_serial(cert) in _own_serials

    async def read(self, deserializers: Any = None) -> Any:
        if self.trusted:
            return await super().read(deserializers)
        # Dask's TCP.read, with the frames checked before they are decoded.
        stream = self.stream
        if stream is None:
            raise CommClosedError()
        fmt = "Q"
        try:
            (nbytes,) = struct.unpack(fmt, await stream.read_bytes(struct.calcsize(fmt)))
            frames, buffers = unpack_frames(await read_bytes_rw(stream, nbytes), partial=True)
            for size in buffers:
                frames.append(await read_bytes_rw(stream, size))
        except (StreamClosedError, SSLError) as exc:
            self.stream = None
            self._closed = True
            convert_stream_closed_error(self, exc)
        except BaseException:
            self.abort()
            raise
        try:
            check_frames(frames)
        except (ValueError, TypeError) as exc:  # PickleRefused, or not msgpack at all
            log.warning(
                "refused %s from %s (certificate %s): only the engine may send code",
                exc if isinstance(exc, PickleRefused) else "a malformed message",
                self.peer_address,
                peer_name(self),
            )
            self.abort()
            raise CommClosedError(f"refused a message from {self.peer_address}") from None
        try:
            return await from_frames(
                frames,
                deserialize=self.deserialize,
                deserializers=deserializers,
                allow_offload=self.allow_offload,
            )
        except EOFError:
            self.abort()
            raise CommClosedError("aborted stream on truncated data") from None


Revoked = Callable[[int | None], bool]
"""Whether a certificate serial number is revoked."""


def _never(serial: int | None) -> bool:
    return False


class GuardedTLSListener(TLSListener):
    """Dask's TLS listener: GuardedTLS comms, and revoked certificates refused right
    after the TLS handshake, before a byte of Dask's protocol is read."""

    comm_class = GuardedTLS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.revoked: Revoked = _never
        self.only: frozenset[int] | None = None
        """On a worker: the serial of its own certificate, the only one admitted besides
        the engine's."""
        self.comms: weakref.WeakSet[GuardedTLS] = weakref.WeakSet()
        self._warned: set[int | None] = set()

    async def _prepare_stream(self, stream: IOStream, address: str) -> IOStream | None:
        prepared: IOStream | None = await super()._prepare_stream(stream, address)
        if prepared is None:
            return None
        cert = peer_certificate(prepared)
        serial = certificate_serial(cert)
        if certificate_name(cert) == ENGINE_NAME:
            return prepared
        if self.only is not None and serial not in self.only:
            problem = "only the engine and this worker may connect"
        elif self.revoked(serial):
            problem = "it is revoked"
        else:
            return prepared
        if serial not in self._warned:
            self._warned.add(serial)
            log.warning("refused %s (certificate %s): %s", address, certificate_name(cert), problem)
        prepared.close()
        return None

    async def on_connection(
        self, comm: Any, handshake_overrides: dict[str, Any] | None = None
    ) -> None:
        self.comms.add(comm)
        await super().on_connection(comm, handshake_overrides)

    def drop_revoked(self) -> dict[str, list[str]]:
        """Abort the open connections of revoked certificates: the peers' addresses by
        certificate name."""
        dropped: dict[str, list[str]] = {}
        for comm in list(self.comms):
            cert = dict(comm.extra_info.get("peercert") or {})
            name = certificate_name(cert)
            if comm.closed() or name == ENGINE_NAME:
                continue
            if self.revoked(certificate_serial(cert)):
                dropped.setdefault(str(name), []).append(comm.peer_address)
                comm.abort()
        return dropped


class GuardedTLSConnector(TLSConnector):
    comm_class = GuardedTLS


class GuardedTLSBackend(TLSBackend):
    _connector_class = GuardedTLSConnector
    _listener_class = GuardedTLSListener


def install(own_serial: int | None = None) -> None:
    """Make every tls:// connection of this process a guarded one; on a worker,
    `own_serial` is its certificate's."""
    if own_serial is not None:
        _own_serials.add(own_serial)
    if not isinstance(registry.backends.get("tls"), GuardedTLSBackend):
        registry.backends["tls"] = GuardedTLSBackend()


def listeners(server: Any) -> Iterable[GuardedTLSListener]:
    return [item for item in server.listeners if isinstance(item, GuardedTLSListener)]
