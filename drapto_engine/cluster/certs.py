"""A private certificate authority for one engine and its workers (mutual TLS).

`drapto cluster init` writes, in the config folder (0700, files 0600):

    cluster/ca.pem, ca-key.pem        the CA: it signs the engine's and every worker's certificate
    cluster/engine.pem, engine-key.pem the engine's identity (scheduler and client)
    cluster/worker-bundle/            ca.pem, worker.pem, worker-key.pem: copy to each worker
    cluster/issued.json, revoked.json  the worker certificates issued and revoked, by name

Dask checks the peer's chain against the CA and not its host name (workers are reached by
IP). Each worker certificate is named (`drapto-worker:NAME`) and has its own serial number;
`drapto cluster revoke NAME` lists it in revoked.json, which the engine reads at every
handshake.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from drapto_engine.cluster import ClusterUsageError
from drapto_engine.infrastructure.paths import config_file

log = logging.getLogger(__name__)

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
ENGINE_CERT = "engine.pem"
ENGINE_KEY = "engine-key.pem"
WORKER_CERT = "worker.pem"
WORKER_KEY = "worker-key.pem"
BUNDLE = "worker-bundle"
ENGINE_NAME = "drapto-engine"
WORKER_NAME = "drapto-worker"
"""Worker certificates are named WORKER_NAME:NAME."""
ISSUED = "issued.json"
REVOKED = "revoked.json"
VALID_DAYS = 3650


def cluster_dir() -> Path:
    """$XDG_CONFIG_HOME/drapto/cluster: the CA and the engine's certificate."""
    return config_file().parent / "cluster"


def default_bundle() -> Path:
    return cluster_dir() / BUNDLE


@dataclass(frozen=True)
class EngineFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class BundleFiles:
    ca: Path
    cert: Path
    key: Path


def engine_files(folder: Path | None = None) -> EngineFiles:
    """The engine's certificate files; a usage error naming the first one missing."""
    folder = folder or cluster_dir()
    files = EngineFiles(folder / CA_CERT, folder / ENGINE_CERT, folder / ENGINE_KEY)
    _require(files.ca, files.cert, files.key, hint="run `drapto cluster init` first")
    return files


def bundle_files(bundle: Path) -> BundleFiles:
    """A worker bundle's files; a usage error naming the first one missing."""
    files = BundleFiles(bundle / CA_CERT, bundle / WORKER_CERT, bundle / WORKER_KEY)
    _require(
        files.ca,
        files.cert,
        files.key,
        hint="copy the worker bundle made by `drapto cluster init` on the engine's machine",
    )
    return files


def _require(*paths: Path, hint: str) -> None:
    for path in paths:
        if not path.is_file():
            raise ClusterUsageError("no such certificate file", path, hint=hint)


def _write_private(path: Path, data: bytes) -> None:
    """Write a 0600 file under a temporary name, then rename it into place."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)


def _private_folder(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _name(common_name: str) -> object:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "drapto cluster"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    common_name: str, ca_cert: object | None, ca_key: object | None
) -> tuple[bytes, bytes, object, object]:
    """A new key and certificate (self-signed CA when ca_cert is None): (cert PEM, key PEM,
    cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = _name(common_name)
    assert isinstance(subject, x509.Name)
    is_ca = ca_cert is None
    if is_ca:
        issuer, signer = subject, key
    else:
        assert isinstance(ca_cert, x509.Certificate)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        issuer, signer = ca_cert.subject, ca_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        # Engine and workers both accept and open connections: server and client auth.
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        ).add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), False)
    cert = builder.sign(signer, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), cert, key


@dataclass(frozen=True)
class InitResult:
    folder: Path
    bundle: Path


def init_cluster(
    bundle: Path | None = None,
    *,
    force: bool = False,
    folder: Path | None = None,
    name: str | None = None,
) -> InitResult:
    """Create the CA, the engine's certificate and a worker bundle.

    An existing CA is kept unless `force`: a new one would lock out every worker that
    holds a bundle of the old one.
    """
    folder = folder or cluster_dir()
    bundle = bundle or folder / BUNDLE
    if (folder / CA_CERT).exists() and not force:
        raise ClusterUsageError(
            "a cluster CA already exists",
            folder / CA_CERT,
            hint="`drapto cluster bundle DIR` makes another worker bundle from it; "
            "--force makes a new CA, and every worker then needs a new bundle",
        )
    _private_folder(folder)
    _private_folder(bundle)  # where the bundle cannot go, no CA is left behind either
    ca_pem, ca_key_pem, ca_cert, ca_key = _issue("drapto cluster CA", None, None)
    engine_pem, engine_key_pem, _, _ = _issue(ENGINE_NAME, ca_cert, ca_key)
    _write_private(folder / CA_KEY, ca_key_pem)
    _write_private(folder / ENGINE_KEY, engine_key_pem)
    _write_private(folder / ENGINE_CERT, engine_pem)
    _write_private(folder / CA_CERT, ca_pem)
    # A new CA: the names issued under the old one are free again.
    _write_private(folder / ISSUED, b"{}\n")
    _write_private(folder / REVOKED, b"{}\n")
    make_bundle(bundle, folder=folder, force=True, name=name)
    return InitResult(folder, bundle)


def make_bundle(
    bundle: Path, *, folder: Path | None = None, force: bool = False, name: str | None = None
) -> Path:
    """A worker bundle (the CA's certificate, a new worker key and a certificate named
    `drapto-worker:NAME`, NAME by default the bundle folder's name) from the existing CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    folder = folder or cluster_dir()
    _require(folder / CA_CERT, folder / CA_KEY, hint="run `drapto cluster init` first")
    if (bundle / WORKER_CERT).exists() and not force:
        raise ClusterUsageError("a worker bundle already exists", bundle, hint="pass --force")
    name = check_worker_name(name or bundle.resolve().name)
    issued = read_list(folder / ISSUED)
    if name in issued:
        raise ClusterUsageError(
            f"a worker certificate named {name!r} was already issued",
            folder / ISSUED,
            hint="give this bundle another --name",
        )
    ca_pem = (folder / CA_CERT).read_bytes()
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((folder / CA_KEY).read_bytes(), password=None)
    worker_pem, worker_key_pem, cert, _ = _issue(f"{WORKER_NAME}:{name}", ca_cert, ca_key)
    assert isinstance(cert, x509.Certificate)
    _private_folder(bundle)
    _write_private(bundle / WORKER_KEY, worker_key_pem)
    _write_private(bundle / WORKER_CERT, worker_pem)
    _write_private(bundle / CA_CERT, ca_pem)
    issued[name] = {"serial": f"{cert.serial_number:X}", "issued": _now(), "bundle": str(bundle)}
    _write_list(folder / ISSUED, issued)
    return bundle


def check_worker_name(name: str) -> str:
    if not name or name != name.strip() or not name.isprintable() or name == ENGINE_NAME:
        raise ClusterUsageError(
            f"bad worker name {name!r}", hint="use a short printable name, e.g. the machine's"
        )
    return name


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def read_list(path: Path) -> dict[str, dict[str, str]]:
    """issued.json or revoked.json: {name: {"serial": HEX, ...}} ({} when absent)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ClusterUsageError(f"unreadable list of certificates: {exc}", path) from exc
    if not isinstance(data, dict):
        raise ClusterUsageError("unreadable list of certificates: not a JSON object", path)
    return data


def _write_list(path: Path, data: dict[str, dict[str, str]]) -> None:
    _write_private(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


@dataclass(frozen=True)
class WorkerCertificate:
    name: str
    serial: str
    issued: str
    revoked: str | None


def worker_certificates(folder: Path | None = None) -> list[WorkerCertificate]:
    """The worker certificates issued from this CA, oldest first."""
    folder = folder or cluster_dir()
    _require(folder / CA_CERT, hint="run `drapto cluster init` first")
    revoked = read_list(folder / REVOKED)
    return sorted(
        (
            WorkerCertificate(
                name,
                str(entry.get("serial", "")),
                str(entry.get("issued", "")),
                str(revoked[name].get("revoked", "")) if name in revoked else None,
            )
            for name, entry in read_list(folder / ISSUED).items()
        ),
        key=lambda cert: (cert.issued, cert.name),
    )


def revoke_worker(name: str, folder: Path | None = None) -> WorkerCertificate:
    """List the worker certificate NAME in revoked.json: the engine refuses it at the
    handshake and drops its open connections within seconds."""
    folder = folder or cluster_dir()
    _require(folder / CA_CERT, hint="run `drapto cluster init` first")
    if name == ENGINE_NAME:
        raise ClusterUsageError(
            "the engine's certificate cannot be revoked",
            hint="`drapto cluster init --force` replaces the CA and every certificate",
        )
    issued = read_list(folder / ISSUED)
    if name not in issued:
        known = ", ".join(sorted(issued)) or "none"
        raise ClusterUsageError(
            f"no worker certificate named {name!r}",
            folder / ISSUED,
            hint=f"issued: {known}",
        )
    revoked = read_list(folder / REVOKED)
    if name not in revoked:
        revoked[name] = {"serial": str(issued[name]["serial"]), "revoked": _now()}
        _write_list(folder / REVOKED, revoked)
    return WorkerCertificate(
        name,
        str(issued[name]["serial"]),
        str(issued[name].get("issued", "")),
        revoked[name]["revoked"],
    )


class RevocationList:
    """The engine's view of revoked.json beside its CA, read again whenever it changes."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / REVOKED
        self._stamp: tuple[int, int, int] | None = None
        self._seen: tuple[int, int, int] | None = None
        self._serials: frozenset[int] = frozenset()

    def _refresh(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            try:
                entries = read_list(self.path)
                self._serials = frozenset(int(str(e["serial"]), 16) for e in entries.values())
            except (ClusterUsageError, KeyError, TypeError, ValueError) as exc:
                log.warning("keeping the previous revocations: %s: %s", self.path, exc)
            self._stamp = stamp
        return stamp

    def revoked(self, serial: int | None) -> bool:
        self._refresh()
        return serial in self._serials

    def changed(self) -> bool:
        """Whether the list changed since the last call."""
        stamp = self._refresh()
        changed, self._seen = stamp != self._seen, stamp
        return changed
