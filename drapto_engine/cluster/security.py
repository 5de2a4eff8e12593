"""Who may connect: mutual TLS under the cluster CA, plain TCP only on loopback or when
the user says --insecure, dashboards only when asked for."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from drapto_engine.cluster import ClusterUsageError
from drapto_engine.cluster.certs import bundle_files, engine_files

if TYPE_CHECKING:
    from distributed.security import Security

log = logging.getLogger(__name__)

PICKLE_RISK = (
    "Dask runs pickled code: anyone who can reach {what} can run any program on the "
    "engine and its workers"
)


@dataclass(frozen=True)
class Address:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(text: str, default_port: int = 8786) -> Address:
    """tls://host:port or tcp://host:port (port defaults to Dask's 8786)."""
    parts = urlsplit(text if "://" in text else f"tls://{text}")
    if parts.scheme not in ("tls", "tcp"):
        raise ClusterUsageError(
            f"unsupported address {text!r}", hint="use tls://HOST:PORT (or tcp:// with --insecure)"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ClusterUsageError(f"bad port in address {text!r}") from exc
    if not parts.hostname:
        raise ClusterUsageError(f"no host in address {text!r}", hint="e.g. tls://0.0.0.0:8786")
    return Address(parts.scheme, parts.hostname, default_port if port is None else port)


def check_address(text: str, *, insecure: bool, what: str = "the cluster port") -> Address:
    """Refuse plain TCP beyond loopback unless `insecure`; warn when it is allowed."""
    address = parse_address(text)
    risk = address_risk(address, what)
    if risk and not insecure:
        raise ClusterUsageError(
            f"refusing plain tcp:// on {address.host}: {risk}",
            hint="use tls:// with the certificates of `drapto cluster init`, or pass --insecure",
        )
    if risk:
        log.warning("insecure: %s", risk)
    return address


def address_risk(address: Address, what: str = "the cluster port") -> str | None:
    """What plain TCP beyond loopback exposes; None for TLS or loopback."""
    if address.scheme == "tcp" and not address.loopback:
        return PICKLE_RISK.format(what=f"{address} ({what})")
    return None


def dashboard_risk(text: str) -> str:
    return (
        f"the dashboard on {text} has no authentication and shows every task, file name and worker"
    )


def check_dashboard(text: str | None, *, insecure: bool) -> str | None:
    """The dashboard's HOST:PORT when asked for; loopback unless `insecure`."""
    if text is None:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterUsageError(f"bad dashboard address {text!r}", hint="use HOST:PORT")
    host = host.strip("[]")
    if not is_loopback(host):
        risk = dashboard_risk(text)
        if not insecure:
            raise ClusterUsageError(
                f"refusing a dashboard on a non-loopback address: {risk}",
                hint="use 127.0.0.1:PORT and an SSH tunnel, or pass --insecure",
            )
        log.warning("insecure: %s", risk)
        host = host or "0.0.0.0"
    return f"{host}:{port}"


def engine_security(address: Address, folder: Path | None = None) -> Security:
    """The engine's side: its certificate as scheduler and as client, the CA required."""
    from distributed.security import Security

    if address.scheme == "tcp":
        return Security()
    files = engine_files(folder)
    return Security(
        require_encryption=True,
        tls_ca_file=str(files.ca),
        tls_scheduler_cert=str(files.cert),
        tls_scheduler_key=str(files.key),
        tls_client_cert=str(files.cert),
        tls_client_key=str(files.key),
        tls_worker_cert=str(files.cert),
        tls_worker_key=str(files.key),
    )


def worker_security(address: Address, bundle: Path) -> Security:
    """A worker's side: its bundle's certificate for the worker, nanny and client roles."""
    from distributed.security import Security

    if address.scheme == "tcp":
        return Security()
    files = bundle_files(bundle)
    return Security(
        require_encryption=True,
        tls_ca_file=str(files.ca),
        tls_worker_cert=str(files.cert),
        tls_worker_key=str(files.key),
        tls_client_cert=str(files.cert),
        tls_client_key=str(files.key),
    )
