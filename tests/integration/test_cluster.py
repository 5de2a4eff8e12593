"""Segments encoded on another process through real Dask: a scheduler started by
drapto's start_scheduler on loopback TLS, a real `drapto worker` subprocess holding a
bundle from `drapto cluster init`, and a Dask client submitting drapto's segment tasks.

One scheduler and one worker serve the whole module (Dask start-ups are slow here).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shlex
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import av
import numpy as np
import psutil
import pytest

pytest.importorskip("distributed", reason="the cluster extra (distributed) is not installed")
pytest.importorskip("cryptography", reason="the cluster extra (cryptography) is not installed")

from distributed import Client, Worker
from ffmpeg_wrappers import cutting_ffmpeg
from mediagen import make_video

from drapto_engine.cluster import ClusterUsageError
from drapto_engine.cluster.host import engine_client
from drapto_engine.cluster.scheduler import (
    ENCODER,
    QuietScheduler,
    refused_workers,
    start_scheduler,
)
from drapto_engine.cluster.security import engine_security, parse_address, worker_security
from drapto_engine.cluster.tasks import (
    FileIdentity,
    MappedSourceMismatch,
    encode_mapped_segment,
    encode_shipped_segment,
    file_identity,
    packet_index,
    segment_result,
    segment_task,
    ship_segment,
)
from drapto_engine.cluster.toolchain import fingerprint
from drapto_engine.core.errors import EncodeError, MediaError
from drapto_engine.core.models import EncodeSettings, Segment
from drapto_engine.infrastructure.hdr_probe import frame_side_data
from drapto_engine.infrastructure.scratch import OWNED, scratch_root
from drapto_engine.services.detection import analyze_video
from drapto_engine.services.encoding.plan import VideoPlan
from drapto_engine.services.encoding.svt import SEGMENT_SUFFIX, encoder_for
from drapto_engine.services.segmentation.timestamps import frame_times

# The module's scheduler and worker processes are made once: every test of the module
# runs on one xdist worker (each would otherwise start its own set).
pytestmark = pytest.mark.xdist_group("cluster")

DRAPTO = [sys.executable, "-m", "drapto_engine.cli"]
T = TypeVar("T")
THREADS = 1  # the same thread share for remote and local encodes: SVT is then deterministic
RANGES = ((0, 37), (37, 100))  # the second starts mid-GOP: 12 frames of pre-roll to drop


class LoopThread:
    """An asyncio loop in a thread: the engine's side (the scheduler) lives here."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def drapto(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    return subprocess.run(
        [*DRAPTO, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@dataclass
class Cluster:
    address: str
    engine_dir: Path
    bundle: Path
    scheduler: QuietScheduler
    loop: LoopThread
    client: Client
    worker: subprocess.Popen[str]
    shared: Path  # the folder the worker reads through its path map
    alias: Path  # the same folder, under the worker's own path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`drapto cluster init` in the session's isolated config folder."""
    done = drapto("cluster", "init")
    assert done.returncode == 0, done.stderr
    folder = Path(os.environ["XDG_CONFIG_HOME"]) / "drapto" / "cluster"
    return folder, folder / "worker-bundle"


@pytest.fixture(scope="module")
def cluster(
    certs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    engine_dir, bundle = certs
    loop = LoopThread()
    security = engine_security(parse_address("tls://127.0.0.1:0"), engine_dir)
    scheduler = loop.run(
        start_scheduler("tls://127.0.0.1:0", security, None, toolchain=fingerprint())
    )
    shared = tmp_path_factory.mktemp("shared")
    alias = tmp_path_factory.mktemp("mount") / "media"
    alias.symlink_to(shared, target_is_directory=True)
    log = tmp_path_factory.mktemp("worker") / "stderr.txt"
    with log.open("w") as err:
        worker = subprocess.Popen(
            [
                *DRAPTO,
                "worker",
                scheduler.address,
                "--bundle",
                str(bundle),
                "--slots",
                "2",
                "--path-map",
                f"{shared}={alias}",
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    client = engine_client(scheduler.address, security, timeout=60)
    try:
        client.wait_for_workers(1, timeout=120)
        yield Cluster(
            scheduler.address,
            engine_dir,
            bundle,
            scheduler,
            loop,
            client,
            worker,
            shared,
            alias,
        )
    finally:
        client.close()
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(60)
        finally:
            worker.kill()
            loop.run(scheduler.close())
            loop.stop()
        assert code == 128 + signal.SIGTERM, log.read_text()
        assert log.read_text() == ""  # Dask's own logging goes to drapto's log file


@dataclass
class Source:
    path: Path
    plan: VideoPlan
    times: list[float]

    def segment(self, start: int, end: int) -> Segment:
        end_s = self.times[end] if end < len(self.times) else self.times[-1] + 0.04
        return Segment(
            index=start, start_frame=start, end_frame=end, start_s=self.times[start], end_s=end_s
        )


@pytest.fixture(scope="module")
def source(cluster: Cluster, ffmpeg: str) -> Source:
    """100 frames of H.264 with B-frames and a keyframe every 25 (so segments start
    mid-GOP), in the folder the worker also sees through its path map."""
    path = make_video(
        ffmpeg,
        cluster.shared / "source.mkv",
        size=(192, 108),
        duration=4.0,
        rate="25",
        gop=25,
        output_args=["-bf", "3"],
    )
    analysis = asyncio.run(analyze_video(path, ffmpeg))
    plan = VideoPlan.make(ffmpeg, analysis, EncodeSettings(preset=12))
    return Source(path, plan, frame_times(path))


def decoded(path: Path) -> list[tuple[int, str, np.ndarray[Any, Any]]]:
    """(pts, checksum of the decoded picture, luma) of every frame."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            picture = frame.to_ndarray()
            luma = frame.to_ndarray(format="gray").astype(np.float64)
            frames.append((frame.pts, hashlib.md5(picture.tobytes()).hexdigest(), luma))
    return frames


def psnr(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * float(np.log10(255**2 / mse))


def local_encode(source: Source, segment: Segment, output: Path) -> Path:
    argv = encoder_for(source.plan).segment_argv(source.plan, segment, output, THREADS)
    subprocess.run(argv, check=True, capture_output=True, timeout=300)
    return output


def test_init_writes_private_files_and_keeps_the_ca(certs: tuple[Path, Path]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    folder, bundle = certs
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    names = {p.name for p in folder.iterdir() if p.is_file()}
    assert names == {
        "ca.pem",
        "ca-key.pem",
        "engine.pem",
        "engine-key.pem",
        "issued.json",
        "revoked.json",
    }
    assert {p.name for p in bundle.iterdir()} == {"ca.pem", "worker.pem", "worker-key.pem"}
    for path in [*folder.glob("*.pem"), *folder.glob("*.json"), *bundle.glob("*.pem")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    for cert_file in (folder / "engine.pem", bundle / "worker.pem"):
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        public = ca.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        cert.verify_directly_issued_by(ca)  # raises when another CA signed it
    # Another bundle for another machine, from the same CA.
    second = folder.parent / "second-bundle"
    made = drapto("cluster", "bundle", str(second))
    assert made.returncode == 0, made.stderr
    other = x509.load_pem_x509_certificate((second / "worker.pem").read_bytes())
    other.verify_directly_issued_by(ca)
    assert (
        other.serial_number
        != x509.load_pem_x509_certificate((bundle / "worker.pem").read_bytes()).serial_number
    )
    assert stat.S_IMODE((second / "worker-key.pem").stat().st_mode) == 0o600
    # Each certificate names its worker (by default its folder's name), once.
    assert other.subject.rfc4514_string().startswith("CN=drapto-worker:second-bundle,")
    taken = drapto("cluster", "bundle", str(folder.parent / "third"), "--name", "second-bundle")
    assert taken.returncode == 2
    assert "already issued" in one_line(taken.stderr)
    assert not (folder.parent / "third").exists()
    before = (folder / "ca.pem").read_bytes()
    again = drapto("cluster", "init")
    assert again.returncode == 2
    assert "already exists" in one_line(again.stderr)
    assert (folder / "ca.pem").read_bytes() == before


def test_worker_joins_with_its_slots_and_no_http_listener(cluster: Cluster) -> None:
    info = cluster.client.scheduler_info(n_workers=-1)["workers"]
    assert len(info) == 1
    (address, worker), *_ = info.items()
    assert address.startswith("tls://127.0.0.1:")
    assert worker["resources"] == {ENCODER: 2}
    assert worker["nthreads"] == 2
    # Nothing but the Dask ports listens: no dashboard, /info, /json or /metrics. (This
    # process may also hold other tests' listeners when xdist runs them here, so the
    # scheduler's own HTTP server is asked for its sockets as well.)
    ours = {c.laddr.port for c in psutil.Process().net_connections() if c.status == "LISTEN"}
    assert int(cluster.address.rsplit(":", 1)[1]) in ours
    assert 8787 not in ours
    assert not cluster.scheduler.http_server._sockets  # tornado's listening sockets
    tree = [psutil.Process(cluster.worker.pid), *psutil.Process(cluster.worker.pid).children(True)]
    ports = {
        c.laddr.port for p in tree for c in p.net_connections() if c.status == psutil.CONN_LISTEN
    }
    expected = {int(address.rsplit(":", 1)[1]), int(worker["nanny"].rsplit(":", 1)[1])}
    assert ports == expected


def test_shipped_segments_encode_remotely_as_they_do_locally(
    cluster: Cluster, source: Source, tmp_path: Path
) -> None:
    index = packet_index(source.path)
    futures = []
    shipped_bytes = []
    for start, end in RANGES:
        packets, preroll = ship_segment(source.path, start, end, index)
        shipped_bytes.append(len(packets))
        futures.append(
            cluster.client.submit(
                encode_shipped_segment,
                packets,
                preroll,
                source.plan,
                source.segment(start, end),
                THREADS,
                index.time_base,
                resources={ENCODER: 1},
                pure=False,
            )
        )
    assert [ship_segment(source.path, s, e, index)[1] for s, e in RANGES] == [0, 12]
    results = cluster.client.gather(futures, errors="raise")
    assert len(cluster.client.who_has(futures)) == 2
    original = decoded(source.path)
    for (start, end), data in zip(RANGES, results, strict=True):
        remote = tmp_path / f"remote-{start}{SEGMENT_SUFFIX}"
        remote.write_bytes(data)
        local = local_encode(
            source, source.segment(start, end), tmp_path / f"local-{start}{SEGMENT_SUFFIX}"
        )
        got, want = decoded(remote), decoded(local)
        assert len(got) == end - start
        # Same frames, same times, same pictures as the local encode of the range.
        assert [(pts, digest) for pts, digest, _ in got] == [(p, d) for p, d, _ in want]
        pts = [p for p, _, _ in got]
        assert pts == sorted(pts) and pts[0] == 0
        # And the pictures are the source's frames of that range, not shifted by one.
        for i, (_, _, luma) in enumerate(got):
            right = psnr(luma, original[start + i][2])
            assert right > 30, (start + i, right)
            for neighbour in (start + i - 1, start + i + 1):
                if 0 <= neighbour < len(original):
                    assert psnr(luma, original[neighbour][2]) < right


def test_shared_storage_worker_reads_through_its_path_map(
    cluster: Cluster, source: Source, tmp_path: Path
) -> None:
    start, end = RANGES[1]
    segment = source.segment(start, end)
    expected = file_identity(source.path)
    future = cluster.client.submit(
        encode_mapped_segment,
        source.plan,
        segment,
        THREADS,
        expected=expected,
        resources={ENCODER: 1},
        pure=False,
    )
    remote = tmp_path / f"remote{SEGMENT_SUFFIX}"
    remote.write_bytes(future.result(timeout=300))
    local = local_encode(source, segment, tmp_path / f"local{SEGMENT_SUFFIX}")
    assert [(p, d) for p, d, _ in decoded(remote)] == [(p, d) for p, d, _ in decoded(local)]
    # A source outside the map fails with a line naming the worker, not a traceback.
    outside = VideoPlan(**{**source.plan.__dict__, "source": tmp_path / "elsewhere.mkv"})
    # The engine runs the task through segment_task: its error comes back as plain data.
    failed = cluster.client.submit(
        segment_task,
        encode_mapped_segment,
        outside,
        segment,
        THREADS,
        expected=expected,
        resources={ENCODER: 1},
        pure=False,
    )
    with pytest.raises(MediaError, match="not under any --path-map of worker"):
        segment_result(failed.result(timeout=120))
    # A mapped file whose content differs from the engine's (same size) is refused.
    other = FileIdentity(expected.size, "0" * 64)
    refused = cluster.client.submit(
        segment_task,
        encode_mapped_segment,
        source.plan,
        segment,
        THREADS,
        expected=other,
        resources={ENCODER: 1},
        pure=False,
    )
    with pytest.raises(MappedSourceMismatch, match="a file of another content fingerprint"):
        segment_result(refused.result(timeout=120))


def test_worker_from_another_ca_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "other")}
    made = drapto("cluster", "init", env=env)
    assert made.returncode == 0, made.stderr
    other_bundle = tmp_path / "other" / "drapto" / "cluster" / "worker-bundle"
    before = set(cluster.scheduler.workers)
    done = drapto(
        "worker", cluster.address, "--bundle", str(other_bundle), "--timeout", "5", timeout=120
    )
    assert done.returncode == 1
    assert "cannot join the engine" in one_line(done.stderr)
    assert set(cluster.scheduler.workers) == before
    # A Dask client holding that CA's certificate is refused too.
    security = worker_security(parse_address(cluster.address), other_bundle)
    with pytest.raises((OSError, TimeoutError)):
        Client(cluster.address, security=security, timeout=5)


def test_connection_without_a_certificate_is_refused(cluster: Cluster, tmp_path: Path) -> None:
    """A TLS client that trusts the CA but presents no certificate gets no Dask handshake."""
    host, port = cluster.address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(cluster.bundle / "ca.pem"))
    context.check_hostname = False
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(b"\0" * 8)
        assert tls.recv(1) != b""  # TLS 1.3 reports the refusal on the first read
    missing = drapto("worker", cluster.address, "--bundle", str(tmp_path / "empty"))
    assert missing.returncode == 2
    assert "no such certificate file" in one_line(missing.stderr)


def test_plain_tcp_beyond_loopback_and_open_dashboards_are_refused(
    cluster: Cluster,
) -> None:
    done = drapto("worker", "tcp://0.0.0.0:8786", "--bundle", str(cluster.bundle))
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "refusing plain tcp://" in line and "pickled code" in line
    security = engine_security(parse_address("tcp://0.0.0.0:0"))
    with pytest.raises(ClusterUsageError, match="pickled code"):
        cluster.loop.run(start_scheduler("tcp://0.0.0.0:0", security, None))
    tls = engine_security(parse_address("tls://127.0.0.1:0"), cluster.engine_dir)
    with pytest.raises(ClusterUsageError, match="dashboard"):
        cluster.loop.run(start_scheduler("tls://127.0.0.1:0", tls, "0.0.0.0:8787"))
    dashboard = drapto(
        "worker", cluster.address, "--bundle", str(cluster.bundle), "--dashboard", ":8788"
    )
    assert dashboard.returncode == 2
    assert "dashboard" in one_line(dashboard.stderr)
    zero = drapto("worker", cluster.address, "--bundle", str(cluster.bundle), "--slots", "0")
    assert zero.returncode == 2
    assert "--slots: must be an integer from 1 to" in one_line(zero.stderr)
    # With --insecure it goes ahead, saying the risk first (192.0.2.1 is unroutable).
    risky = drapto("worker", "tcp://192.0.2.1:8786", "--insecure", "--timeout", "2", "--slots", "1")
    assert risky.returncode == 1
    warning, error = risky.stderr.strip().splitlines()
    assert warning.startswith("drapto: warning: insecure: Dask runs pickled code")
    assert "cannot join the engine at tcp://192.0.2.1:8786" in error


def test_worker_with_another_toolchain_is_refused(
    cluster: Cluster, ffmpeg: str, tmp_path: Path
) -> None:
    """A wrapper that passes every check and encode through to the real ffmpeg but reports
    another version: the worker refuses to join, with one line."""
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do if [ "$a" = -version ]; then\n'
        f'  "{ffmpeg}" "$@" | sed "1s/^ffmpeg version [^ ]*/ffmpeg version n9.9.9-other/"\n'
        "  exit 0\nfi; done\n"
        f'exec "{ffmpeg}" "$@"\n'
    )
    wrapper.chmod(0o755)
    env = {**os.environ, "DRAPTO_FFMPEG": str(wrapper)}
    before = set(cluster.scheduler.workers)
    done = drapto("worker", cluster.address, "--bundle", str(cluster.bundle), env=env)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert "n9.9.9-other" in line and "differs from the engine's" in line
    assert set(cluster.scheduler.workers) == before


PATCHED_WORKER = Path(__file__).with_name("patched_worker.py")


def patched_worker(cluster: Cluster, patches: str, timeout: float = 60) -> Any:
    return subprocess.run(
        [
            sys.executable,
            str(PATCHED_WORKER),
            patches,
            cluster.address,
            "--bundle",
            str(cluster.bundle),
            "--slots",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_worker_of_another_drapto_or_other_encoder_arguments_is_refused(
    cluster: Cluster,
) -> None:
    """Same ffmpeg and SVT-AV1, but another drapto version, or segment commands with one
    argument more: the worker refuses to join, with one line naming what differs."""
    before = set(cluster.scheduler.workers)
    version = patched_worker(cluster, "version=9.9.9")
    assert version.returncode == 1, version.stderr
    line = one_line(version.stderr)
    assert "differs from the engine's: drapto 9.9.9 (engine: drapto " in line
    assert "ffmpeg version" not in line and "encoder arguments" not in line
    argument = patched_worker(cluster, "argument=-bitexact")
    assert argument.returncode == 1, argument.stderr
    line = one_line(argument.stderr)
    assert "differs from the engine's: encoder arguments " in line and "drapto 9" not in line
    assert set(cluster.scheduler.workers) == before


def test_engine_refuses_a_worker_of_another_drapto_that_skips_its_check(
    cluster: Cluster,
) -> None:
    """The engine's gate alone: a worker of another drapto version that joins without
    comparing gets no encoder slot, is closed, and the engine's line names the version."""
    before = set(refused_workers(cluster.scheduler))
    done = patched_worker(cluster, "version=9.9.9,skip-check", timeout=120)
    assert done.returncode == 1, done.stderr
    assert "closed worker" in one_line(done.stderr)
    [message] = [m for a, m in refused_workers(cluster.scheduler).items() if a not in before]
    assert "its toolchain differs from the engine's: drapto 9.9.9 (engine: drapto " in message
    assert "ffmpeg version" not in message


def test_engine_refuses_a_worker_that_skips_the_check(cluster: Cluster) -> None:
    """A plain Dask worker with a valid certificate but no drapto toolchain is let in by
    TLS, then refused by the engine: it never gets an encoder slot and is closed."""
    security = worker_security(parse_address(cluster.address), cluster.bundle)

    async def join() -> tuple[str, str]:
        worker = Worker(
            cluster.address, security=security, resources={ENCODER: 1}, nthreads=1, name="rogue"
        )
        await worker
        address = worker.address
        await asyncio.wait_for(worker.finished(), 60)
        return address, str(worker.status)

    address, status = cluster.loop.run(join())
    assert status == "Status.closed"
    assert address in refused_workers(cluster.scheduler)
    assert "no drapto toolchain" in refused_workers(cluster.scheduler)[address]
    assert address not in cluster.scheduler.workers
    assert address not in cluster.scheduler.resources.get(ENCODER, {})


def test_dolby_vision_segment_keeps_every_rpu_remotely(
    cluster: Cluster, shared_media: Path, ffmpeg: str, tmp_path: Path
) -> None:
    """Frames 100-180 of the real profile 8.1 sample (keyframes at 0 and 250 only, so
    100 frames of pre-roll): RPUs survive the stream copy, the worker's decode and
    -dolbyvision 1; every frame of the segment carries its RPU, as a local encode's does."""
    from drapto_engine.infrastructure.hdr_probe import count_rpu_frames

    path = shared_media / "dv-p81-regular.mkv"
    plan = VideoPlan.make(
        ffmpeg, asyncio.run(analyze_video(path, ffmpeg)), EncodeSettings(preset=12)
    )
    assert plan.dolby_vision
    dv = Source(path, plan, frame_times(path))
    segment = dv.segment(100, 180)
    packets, preroll = ship_segment(path, 100, 180)
    assert preroll == 100
    future = cluster.client.submit(
        encode_shipped_segment,
        packets,
        preroll,
        plan,
        segment,
        THREADS,
        packet_index(path).time_base,
        resources={ENCODER: 1},
        pure=False,
    )
    remote = tmp_path / f"remote{SEGMENT_SUFFIX}"
    remote.write_bytes(future.result(timeout=300))
    assert count_rpu_frames(remote) == (80, 80)
    local = local_encode(dv, segment, tmp_path / f"local{SEGMENT_SUFFIX}")

    def frames(p: Path) -> list[tuple[int, str, list[bytes]]]:
        with av.open(str(p)) as container:
            return [
                (
                    f.pts,
                    hashlib.md5(f.to_ndarray().tobytes()).hexdigest(),
                    [v for k, v in frame_side_data(f).items() if "DOVI" in k],
                )
                for f in container.decode(video=0)
            ]

    assert frames(remote) == frames(local)


def test_the_workers_own_frame_count_fails_a_short_segment(
    source: Source, ffmpeg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's check alone, with no engine to count again: an ffmpeg that leaves 2
    frames of a 37-frame segment makes the task fail with a line naming the host. The
    task runs in-process here (a plain function), with that ffmpeg found as a worker
    finds its own (DRAPTO_FFMPEG)."""
    monkeypatch.setenv("DRAPTO_FFMPEG", str(cutting_ffmpeg(ffmpeg, tmp_path / "ffmpeg")))
    index = packet_index(source.path)
    packets, preroll = ship_segment(source.path, 0, 37, index)
    with pytest.raises(EncodeError, match=f"segment 0 has 2 frames on {socket.gethostname()}"):
        encode_shipped_segment(
            packets, preroll, source.plan, source.segment(0, 37), THREADS, index.time_base
        )


def test_worker_exits_3_with_one_line_when_the_engine_goes(certs: tuple[Path, Path]) -> None:
    engine_dir, bundle = certs
    loop = LoopThread()
    try:
        security = engine_security(parse_address("tls://127.0.0.1:0"), engine_dir)
        scheduler = loop.run(
            start_scheduler("tls://127.0.0.1:0", security, None, toolchain=fingerprint())
        )
        worker = subprocess.Popen(
            [*DRAPTO, "worker", scheduler.address, "--bundle", str(bundle), "--slots", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout is not None
            joined = worker.stdout.readline()  # printed once the nanny and worker are up
            assert joined.startswith("drapto: worker ") and joined.endswith(" 1 encoder slot\n")
            assert len(scheduler.workers) == 1
            loop.run(scheduler.close())
            _, stderr = worker.communicate(timeout=120)
        finally:
            worker.kill()
        assert worker.returncode == 3
        assert "lost the engine at " in one_line(stderr)
    finally:
        loop.stop()


def test_a_worker_certificate_cannot_act_as_the_engine(cluster: Cluster) -> None:
    """Workers share the CA, but only the engine's certificate may register a client or
    run code on the scheduler: a stolen worker key does not reach the engine process."""
    from distributed.core import rpc

    security = worker_security(parse_address(cluster.address), cluster.bundle)
    clients = set(cluster.scheduler.clients)
    with pytest.raises(Exception):  # noqa: B017 (Dask reports the refusal without a type)
        Client(cluster.address, security=security, timeout=3)
    assert set(cluster.scheduler.clients) == clients

    async def run_on_scheduler() -> Any:
        async with rpc(
            cluster.address, connection_args=security.get_connection_args("client")
        ) as scheduler:
            return await scheduler.run_function(function=b"", args=b"", kwargs=b"")

    with pytest.raises(PermissionError, match="for the drapto engine only"):
        cluster.loop.run(run_on_scheduler())
    # The engine's own client still works (the module's client is one).
    assert cluster.client.scheduler_info(n_workers=-1)["workers"]


def test_shipping_real_mp4_mid_gop_matches_the_local_encode(
    shared_media: Path, ffmpeg: str, tmp_path: Path
) -> None:
    """Real H.264 footage in MP4 at 29.97 fps, frames 400-460: the keyframe before is
    frame 180, so the worker decodes and drops 220 frames of pre-roll. The task runs
    in-process here (it is a plain function); the result equals the local exact-seek
    encode frame for frame, timestamps included."""
    path = shared_media / "testvideo.mp4"
    plan = VideoPlan.make(
        ffmpeg, asyncio.run(analyze_video(path, ffmpeg)), EncodeSettings(preset=12)
    )
    real = Source(path, plan, frame_times(path))
    segment = real.segment(400, 460)
    packets, preroll = ship_segment(path, 400, 460)
    assert preroll == 220
    assert len(packets) < path.stat().st_size / 2
    remote = tmp_path / f"remote{SEGMENT_SUFFIX}"
    time_base = packet_index(path).time_base
    remote.write_bytes(encode_shipped_segment(packets, preroll, plan, segment, THREADS, time_base))
    local = local_encode(real, segment, tmp_path / f"local{SEGMENT_SUFFIX}")
    got = [(p, d) for p, d, _ in decoded(remote)]
    assert len(got) == 60
    assert got == [(p, d) for p, d, _ in decoded(local)]


def _owned(root: Path, pids: set[int]) -> set[Path]:
    """The scratch folders under `root` named after one of `pids`."""
    return {
        f
        for f in root.iterdir()
        if (m := OWNED.match(f.name)) is not None and int(m["pid"]) in pids
    }


def test_a_killed_workers_folders_are_removed_by_the_next_worker_and_no_live_ones(
    cluster: Cluster, source: Source, ffmpeg: str, tmp_path: Path
) -> None:
    """A worker SIGKILLed mid-segment leaves its Dask scratch space and its segment's
    folder (the shipped packets) in drapto's own scratch folder, not /tmp; the next worker
    to start removes them, and leaves the live module worker's folder alone."""
    wrapper = tmp_path / "ffmpeg"  # a segment encode that waits, so it is caught mid-way
    wrapper.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do last="$a"; done\n'
        f'case "$last" in */segment-*{SEGMENT_SUFFIX}) sleep 60;; esac\n'
        f'exec "{ffmpeg}" "$@"\n'
    )
    wrapper.chmod(0o755)
    root = scratch_root()
    live = _owned(root, {p.pid for p in _tree(cluster.worker.pid)})
    assert live and all(f.name.startswith("drapto-dask-") for f in live)
    env = {**os.environ, "DRAPTO_FFMPEG": str(wrapper)}
    victim = start_worker(cluster, "victim", env)
    packets, preroll = ship_segment(source.path, 0, 37)
    address = next(a for a, ws in cluster.scheduler.workers.items() if ws.name == "victim")
    future = cluster.client.submit(
        encode_shipped_segment,
        packets,
        preroll,
        source.plan,
        source.segment(0, 37),
        THREADS,
        resources={ENCODER: 1},
        pure=False,
        workers=[address],
        allow_other_workers=False,
    )
    try:
        tree = _tree(victim.pid)
        deadline = time.monotonic() + 60
        while not any(p.name() == "sleep" for p in _tree(victim.pid)):
            assert time.monotonic() < deadline, "the victim's encode did not start"
            time.sleep(0.1)
        tree = _tree(victim.pid)
        left = _owned(root, {p.pid for p in tree})
        assert {f.name.split("-")[1] for f in left} == {"dask", "segment"}, left
        [segment] = [f for f in left if f.name.startswith("drapto-segment-")]
        assert (segment / "source.nut").read_bytes() == packets
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(tree, timeout=30)
        assert all(f.exists() for f in left)  # nobody cleaned up after the kill
    finally:
        cluster.client.cancel([future], force=True)
    after = start_worker(cluster, "after", None)
    try:
        assert not any(f.exists() for f in left)
        assert all(f.exists() for f in live)
        mine = _owned(root, {after.pid})
        assert len(mine) == 1
    finally:
        after.send_signal(signal.SIGTERM)
        assert after.wait(60) == 128 + signal.SIGTERM
    assert not any(f.exists() for f in mine)  # a worker that stops removes its own


def _tree(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def start_worker(cluster: Cluster, name: str, env: dict[str, str] | None) -> Any:
    """A `drapto worker`, once it says it joined."""
    worker = subprocess.Popen(
        [*DRAPTO, "worker", cluster.address, "--bundle", str(cluster.bundle), "--name", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().startswith(f"drapto: worker {name} joined")
    return worker


class Evil:
    """Unpickling this runs a shell command: the proof of concept of issue #20."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_a_worker_certificate_never_reaches_an_unpickler_in_the_engine(
    cluster: Cluster, tmp_path: Path
) -> None:
    """With only a worker bundle, a peer sends pickles the way Dask's own protocol carries
    them (ToPickle in a message, in the connection's handshake, and a Serialized payload
    with a pickle header): nothing of it is unpickled in the engine's process, which keeps
    serving its own client."""
    from distributed.comm import connect
    from distributed.protocol.pickle import dumps
    from distributed.protocol.serialize import Serialized, ToPickle

    security = worker_security(parse_address(cluster.address), cluster.bundle)
    args = security.get_connection_args("worker")
    markers: list[Path] = []

    def evil(name: str) -> Evil:
        markers.append(tmp_path / name)
        return Evil(markers[-1])

    async def send(message: dict[str, Any], **handshake: Any) -> None:
        try:
            comm = await connect(cluster.address, timeout=10, handshake_overrides=handshake, **args)
        except OSError:
            return  # refused during the handshake
        try:
            await comm.write(message)
            await asyncio.wait_for(comm.read(), 10)  # the reply, or the connection closed
        except (OSError, TimeoutError):
            pass
        finally:
            comm.abort()

    for op in ("identity", "gather", "register-worker", "heartbeat_worker", "no-such-op"):
        cluster.loop.run(send({"op": op, "x": ToPickle(evil(op))}))
    cluster.loop.run(send({"op": "identity"}, x=ToPickle(evil("handshake"))))
    payload = Serialized({"serializer": "pickle", "writeable": ()}, [dumps(evil("serialized"))])
    cluster.loop.run(send({"op": "identity", "x": payload}))
    # The last connection was served to its end; the others ran before it.
    time.sleep(1)
    assert [m.name for m in markers if m.exists()] == []
    assert cluster.client.scheduler_info(n_workers=-1)["workers"]
    assert cluster.client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3


def test_a_worker_certificate_cannot_send_client_messages_or_pickled_arguments(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Dask reads any stream with the table of a client's (whose graphs it unpickles), and
    some of its operations unpickle plain bytes arguments: a worker's certificate reaches
    neither."""
    from distributed.comm import connect
    from distributed.core import rpc
    from distributed.protocol.pickle import dumps
    from distributed.protocol.serialize import Serialized

    security = worker_security(parse_address(cluster.address), cluster.bundle)
    graph = tmp_path / "graph"
    key = tmp_path / "key"

    async def send_a_graph() -> None:
        comm = await connect(cluster.address, timeout=10, **security.get_connection_args("worker"))
        try:
            await comm.write({"op": "connection_stream"})  # a client's stream, unregistered
            await comm.write(
                [
                    {
                        "op": "update-graph",
                        "client": "rogue",
                        "expr_ser": Serialized(
                            {"serializer": "pickle", "writeable": ()}, [dumps(Evil(graph))]
                        ),
                        "keys": [],
                        "span_metadata": {},
                        "internal_priority": None,
                        "submitting_task": None,
                    }
                ]
            )
            await asyncio.wait_for(comm.read(), 10)
        except (OSError, TimeoutError):
            pass
        finally:
            comm.abort()

    async def pickled_key(op: str) -> Any:
        async with rpc(
            cluster.address, connection_args=security.get_connection_args("worker")
        ) as scheduler:
            return await getattr(scheduler, op)(key=dumps(Evil(key)))

    cluster.loop.run(send_a_graph())
    time.sleep(1)
    assert not graph.exists()
    for op in ("workers_to_close", "retire_workers"):
        with pytest.raises(PermissionError, match="for the drapto engine only"):
            cluster.loop.run(pickled_key(op))
    time.sleep(1)
    assert not graph.exists() and not key.exists()
    assert cluster.client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3


def test_a_revoked_worker_is_dropped_and_refused_while_others_keep_working(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    laptop = cluster.engine_dir.parent / "laptop-bundle"
    made = drapto("cluster", "bundle", str(laptop), "--name", "laptop")
    assert made.returncode == 0, made.stderr
    cert = x509.load_pem_x509_certificate((laptop / "worker.pem").read_bytes())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [n.value for n in names] == ["drapto-worker:laptop"]
    worker = subprocess.Popen(
        [*DRAPTO, "worker", cluster.address, "--bundle", str(laptop), "--slots", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def laptops() -> list[str]:
        return [a for a, ws in cluster.scheduler.workers.items() if ws.nthreads == 1]

    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().rstrip().endswith(" with 1 encoder slot")
        assert len(laptops()) == 1
        with caplog.at_level("WARNING", logger="drapto_engine.cluster.scheduler"):
            revoked = drapto("cluster", "revoke", "laptop")
            assert revoked.returncode == 0, revoked.stderr
            assert revoked.stdout.startswith("revoked worker certificate laptop (serial ")
            start = time.monotonic()
            while laptops() and time.monotonic() - start < 10:
                time.sleep(0.1)
            assert laptops() == []
            time.sleep(3)  # it does not come back
            assert laptops() == []
        dropped = [r.getMessage() for r in caplog.records if "was revoked" in r.getMessage()]
        assert len(dropped) == 1 and "drapto-worker:laptop" in dropped[0]
        _, stderr = worker.communicate(timeout=60)  # it stops on its own
        assert worker.returncode == 3
        assert "lost the engine at " in one_line(stderr)
    finally:
        worker.kill()
        worker.wait(30)
    assert stat.S_IMODE((cluster.engine_dir / "revoked.json").stat().st_mode) == 0o600
    # A new connection with it is refused at the handshake; the other worker still works.
    again = drapto("worker", cluster.address, "--bundle", str(laptop), "--timeout", "5")
    assert again.returncode == 1
    assert "cannot join the engine" in one_line(again.stderr)
    assert cluster.client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
    listed = drapto("cluster", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("\t")[0]: line for line in listed.stdout.splitlines()}
    assert "revoked" in rows["laptop"] and rows["worker-bundle"].endswith("valid")
    # An unknown name, or the engine's certificate: one line, exit 2, nothing written.
    before = (cluster.engine_dir / "revoked.json").read_bytes()
    for name, problem in (("nobody", "no worker certificate named"), ("drapto-engine", "cannot")):
        refused = drapto("cluster", "revoke", name)
        assert refused.returncode == 2
        assert problem in one_line(refused.stderr)
    assert (cluster.engine_dir / "revoked.json").read_bytes() == before


def test_another_bundle_cannot_reach_a_worker_or_its_nanny(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A `drapto worker` and its nanny accept only the engine's certificate and their own:
    another machine's bundle (signed by the same CA) cannot run a function there."""
    from distributed.core import rpc
    from distributed.protocol.pickle import dumps

    thief = cluster.engine_dir.parent / "thief-bundle"
    made = drapto("cluster", "bundle", str(thief), "--name", "thief")
    assert made.returncode == 0, made.stderr
    security = worker_security(parse_address(cluster.address), thief)
    info = cluster.client.scheduler_info(n_workers=-1)["workers"]
    (address, worker), *_ = info.items()
    markers = []

    async def run_there(target: str, name: str) -> None:
        markers.append(tmp_path / name)
        async with rpc(
            target, connection_args=security.get_connection_args("worker"), timeout=5
        ) as node:
            await node.run(function=dumps(Evil(markers[-1])), args=dumps(()), kwargs=dumps({}))

    for target, name in ((address, "worker"), (worker["nanny"], "nanny")):
        with pytest.raises((OSError, TimeoutError)):
            cluster.loop.run(run_there(target, name))
    time.sleep(1)
    assert [m.name for m in markers if m.exists()] == []
    # The engine still reaches them: the module's worker runs a task.
    assert cluster.client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3


def test_a_worker_certificate_cannot_send_the_engines_client_an_event_to_unpickle(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The engine's client follows Dask's "print" and "warn" topics, and unpickles what a
    "warn" event carries (and any pickled payload of an event it reads). Events from a
    worker's certificate, on its stream or by a call, reach it only as drapto's
    progress, and only as plain data."""
    from distributed.core import rpc
    from distributed.protocol.pickle import dumps
    from distributed.protocol.serialize import Serialized

    security = worker_security(parse_address(cluster.address), cluster.bundle)
    args = security.get_connection_args("worker")
    markers: list[Path] = []

    def evil(name: str) -> bytes:
        markers.append(tmp_path / name)
        return bytes(dumps(Evil(markers[-1])))

    def events(prefix: str) -> list[dict[str, Any]]:
        pickled = Serialized({"serializer": "pickle", "writeable": ()}, [evil(f"{prefix}-print")])
        return [
            {"topic": "warn", "msg": {"message": evil(f"{prefix}-warn")}},
            {"topic": "print", "msg": pickled},
            {"topic": "drapto-segment-progress", "msg": {"key": "x", "frame": pickled}},
        ]

    def on_stream(stream: list[dict[str, Any]], dask_worker: Any) -> None:
        # Runs in the module's worker process (pickled by value): its own stream.
        for event in stream:
            dask_worker.log_event(event["topic"], event["msg"])

    async def by_call() -> None:
        async with rpc(cluster.address, connection_args=args) as scheduler:
            for event in events("call"):
                with contextlib.suppress(PermissionError):
                    await scheduler.log_event(**event)

    [address] = [a for a, ws in cluster.scheduler.workers.items() if ws.nthreads == 2]
    cluster.client.run(on_stream, events("stream"), workers=[address])
    cluster.loop.run(by_call())
    time.sleep(2)
    assert [m.name for m in markers if m.exists()] == []
    assert cluster.client.submit(sum, [1, 2], pure=False).result(timeout=60) == 3
