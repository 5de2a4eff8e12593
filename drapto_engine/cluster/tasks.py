"""The segment work that crosses machines: packing a frame range of the source into bytes
on the engine, and encoding it on a worker.

Shipping mode (no shared storage): the engine stream-copies the video packets from the
keyframe at or before the segment's first frame to the last packet the segment needs,
into a NUT file (which keeps the source's time base, so timestamps survive exactly). The
worker decodes it, drops the `preroll` frames before the segment by count (`trim` on
frame numbers) and encodes exactly the segment's frames with the same ffmpeg arguments a
local encode uses (svt.segment_argv). Every source frame still appears exactly once.

Shared-storage mode: the worker opens the source through its own mount (the path map)
and runs the local encode's arguments unchanged, exact seek included, once the mapped
file's size and content fingerprint match the engine's (MappedSourceMismatch otherwise:
the engine then ships that segment's packets instead).

Each segment is encoded in a folder of its own under drapto's per-user scratch folder
(infrastructure/scratch.py), named after the worker process, so that what a killed
worker left is removed when the next one starts on that machine.

Both task functions are plain blocking functions, run in a Dask worker's thread pool;
they import nothing of Dask at module level, so they also run (and are tested)
in-process. On a worker, the encoder's progress goes back to the engine as Dask events
on PROGRESS_TOPIC (at most one a PROGRESS_EVERY_S, and its last), keyed by the task, and
a target search's probes on PROBES_TOPIC as each one is measured (the engine keeps them,
so a resumed job does not probe that segment again).

The engine runs them through `segment_task`, whose result is plain data (the segment's
bytes, or the kind and text of the drapto error it raised): the engine's client reads
nothing else from a worker (msgpack only, no pickles), and `segment_result` turns it
back into bytes or that error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import os
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from drapto_engine.core.errors import DraptoError, EncodeError, MediaError
from drapto_engine.core.models import Segment
from drapto_engine.infrastructure.extents import stream_extents
from drapto_engine.infrastructure.ffmpeg.progress import Progress, ProgressParser
from drapto_engine.infrastructure.ffmpeg.toolchain import find_toolchain
from drapto_engine.infrastructure.scratch import prefix, scratch_root
from drapto_engine.infrastructure.shown import FirstShown
from drapto_engine.infrastructure.source_identity import fingerprint
from drapto_engine.infrastructure.workers import cpu_count, threads_per_worker
from drapto_engine.services.encoding.plan import VideoPlan
from drapto_engine.services.encoding.svt import SEGMENT_SUFFIX, encoder_for
from drapto_engine.services.quality.runner import Machine, Outcome, reach_target, target_of
from drapto_engine.services.segmentation.timestamps import main_video_stream

SHIP_FORMAT = "nut"
SHIP_SUFFIX = ".nut"
PATH_MAP_ENV = "DRAPTO_PATH_MAP"
PROGRESS_TOPIC = "drapto-segment-progress"
PROBES_TOPIC = "drapto-segment-probes"
PROGRESS_EVERY_S = 0.5

log = logging.getLogger(__name__)


# --- the engine's side: the packets of one segment ---


@dataclass(frozen=True)
class PacketIndex:
    """The video stream's packets in decode order: (pts, dts, keyframe), in the stream's
    time base, leaving out what frame_times leaves out (empty and discarded packets)."""

    stream_index: int
    packets: tuple[tuple[int, int | None, bool], ...]
    time_base: Fraction | None = None
    """The source stream's: the worker encodes in it, as a local encode does (NUT keeps
    the timestamps exact but may pick a finer time base, e.g. 1/60000 for 1/30000)."""
    first_shown: int | None = None
    """The pts of the first frame the decoder shows (see infrastructure/shown.py); the
    packets showing before it are kept for their decode positions but are no frame."""

    def sorted_pts(self) -> list[int]:
        """The shown frames' pts in time order: frame i of frame_times is the i-th."""
        first = self.first_shown
        return sorted(pts for pts, _, _ in self.packets if first is None or pts >= first)


def packet_index(source: Path, stream_index: int | None = None) -> PacketIndex:
    """Blocking: demux the video stream once (decoding only up to its first frame). Build
    it once per file."""
    packets: list[tuple[int, int | None, bool]] = []
    with av.open(str(source)) as container:
        stream = main_video_stream(container, stream_index)
        if stream is None:
            raise MediaError("no video stream", source)
        first = FirstShown(stream)
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            first.feed(packet)
            if packet.is_discard:
                continue
            if packet.pts is None:
                raise MediaError(
                    "video packets without timestamps cannot be shipped to a worker",
                    source,
                    hint="give that worker the source through shared storage (--path-map)",
                )
            packets.append((packet.pts, packet.dts, packet.is_keyframe))
        return PacketIndex(stream.index, tuple(packets), stream.time_base, first.pts)


@dataclass(frozen=True)
class _Cut:
    keyframe_pts: int
    first: int  # decode position of the keyframe
    last: int  # decode position of the last packet the segment needs
    preroll: int


def _plan_cut(index: PacketIndex, start_frame: int, end_frame: int, source: Path) -> _Cut:
    order = index.sorted_pts()
    if not 0 <= start_frame < end_frame <= len(order):
        raise MediaError(f"frames [{start_frame}, {end_frame}) outside 0..{len(order)}", source)
    start_pts = order[start_frame]
    end_pts = order[end_frame] if end_frame < len(order) else None
    wanted = [
        i
        for i, (pts, _, _) in enumerate(index.packets)
        if pts >= start_pts and (end_pts is None or pts < end_pts)
    ]
    first_wanted, last = min(wanted), max(wanted)
    keyframes = [
        i
        for i, (pts, _, key) in enumerate(index.packets)
        if key and pts <= start_pts and i <= first_wanted
    ]
    if not keyframes:
        raise MediaError(f"no keyframe at or before frame {start_frame}", source)
    first = keyframes[-1]
    keyframe_pts = index.packets[first][0]
    preroll = sum(
        1 for pts, _, _ in index.packets[first : last + 1] if keyframe_pts <= pts < start_pts
    )
    return _Cut(keyframe_pts, first, last, preroll)


def ship_segment(
    source: Path, start_frame: int, end_frame: int, index: PacketIndex | None = None
) -> tuple[bytes, int]:
    """Blocking: the packets of frames [start_frame, end_frame) as a NUT file, and how many
    frames before start_frame it decodes to (the pre-roll to drop).

    Packets that come after the keyframe in decode order but show before it (open-GOP
    leading pictures) are left out: they need the GOP before, and they precede the
    segment anyway, so the decoder outputs exactly `preroll` frames before the segment.
    """
    index = index or packet_index(source)
    cut = _plan_cut(index, start_frame, end_frame, source)
    wanted = cut.last - cut.first + 1
    buffer = io.BytesIO()
    with av.open(str(source)) as container:
        stream = container.streams[index.stream_index]
        keyframe_dts = index.packets[cut.first][1]
        container.seek(cut.keyframe_pts, stream=stream, backward=True, any_frame=False)
        packets = _from_keyframe(container, stream, cut.keyframe_pts, keyframe_dts)
        if packets is None:  # the seek landed past the keyframe: read from the start
            container.seek(0, stream=stream, backward=True, any_frame=False)
            packets = _from_keyframe(container, stream, cut.keyframe_pts, None)
        if packets is None:
            raise MediaError(f"keyframe at pts {cut.keyframe_pts} not found again", source)
        with av.open(buffer, mode="w", format=SHIP_FORMAT) as out:
            shipped = out.add_stream_from_template(stream)
            taken = 0
            for packet in packets:
                if packet.size == 0 or packet.is_discard:
                    continue
                taken += 1
                if packet.pts is not None and packet.pts >= cut.keyframe_pts:
                    packet.stream = shipped
                    out.mux(packet)
                if taken == wanted:
                    break
            if taken != wanted:
                raise MediaError(f"the source ended {wanted - taken} packets early", source)
    return buffer.getvalue(), cut.preroll


def _from_keyframe(container: Any, stream: Any, keyframe_pts: int, keyframe_dts: int | None) -> Any:
    """The demuxer's packets from the keyframe on, or None when the seek overshot it."""
    demuxer = container.demux(stream)
    for packet in demuxer:
        if packet.size == 0 or packet.is_discard:
            continue
        if packet.pts == keyframe_pts and packet.is_keyframe:
            return _chain(packet, demuxer)
        if keyframe_dts is not None and packet.dts is not None and packet.dts > keyframe_dts:
            return None
    return None


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


# --- the worker's side ---


def _host() -> str:
    return socket.gethostname()


def _threads(threads: int | None) -> int:
    """The segment's thread share: the caller's, or the cores over this worker's slots."""
    if threads:
        return threads
    try:
        from distributed import get_worker

        slots = get_worker().state.nthreads
    except (ImportError, ValueError):
        slots = 1
    return threads_per_worker(slots, cpu_count())


def progress_message(key: str, progress: Progress) -> dict[str, Any]:
    return {"key": key, **dataclasses.asdict(progress)}


def progress_of(message: Any) -> tuple[str, Progress] | None:
    """(task key, progress) from a PROGRESS_TOPIC event (progress_message's shape); None
    for anything else."""
    if not isinstance(message, dict):
        return None
    try:
        fields = {f.name: message[f.name] for f in dataclasses.fields(Progress)}
        return str(message["key"]), Progress(**fields)
    except KeyError:
        return None


def probes_message(key: str, probes: list[list[float]]) -> dict[str, Any]:
    return {"key": key, "probes": [[int(c), float(s)] for c, s in probes]}


MAX_PROBE_EVENTS = 8
"""More probes than one search runs: an event with more is not a search's."""


def probes_of(message: Any) -> tuple[str, list[list[float]]] | None:
    """(task key, [[crf, score], ...]) from a PROBES_TOPIC event (probes_message's shape),
    each CRF a whole number from 1 to 63 and each score a finite number from 0 to 100;
    None for anything else (a worker's event is checked, not trusted)."""
    if not isinstance(message, dict):
        return None
    key, probes = message.get("key"), message.get("probes")
    if not isinstance(key, str) or not isinstance(probes, list | tuple):
        return None  # Dask's msgpack gives tuples for lists
    if len(probes) > MAX_PROBE_EVENTS:
        return None
    checked: list[list[float]] = []
    for probe in probes:
        if not (isinstance(probe, list | tuple) and len(probe) == 2):
            return None
        crf, score = probe
        if type(crf) is not int or not 1 <= crf <= 63:
            return None
        if type(score) not in (int, float) or not 0.0 <= float(score) <= 100.0:
            return None  # NaN fails the range too
        checked.append([crf, float(score)])
    return key, checked


def _current_task() -> tuple[Any, str] | None:
    """(worker, task key) when running in a Dask worker's task thread, else None (Dask
    knows the task by the thread: a thread of the task's own has none)."""
    try:
        from distributed import get_worker

        worker = get_worker()
        return worker, str(worker.get_current_task())
    except (ImportError, ValueError, KeyError):
        return None


def _probes_sender() -> Callable[[list[list[float]]], Awaitable[None]] | None:
    """Sends this task's probes to the engine as each is measured, on a Dask worker."""
    if (current := _current_task()) is None:
        return None
    worker, key = current

    async def send(probes: list[list[float]]) -> None:
        worker.log_event(PROBES_TOPIC, probes_message(key, probes))

    return send


def _progress_sender() -> Callable[[Progress], None] | None:
    """Sends this task's progress to the engine, when running on a Dask worker."""
    if (current := _current_task()) is None:
        return None
    worker, key = current
    sent = 0.0

    def send(progress: Progress) -> None:
        nonlocal sent
        now = time.monotonic()
        if progress.ended or now - sent >= PROGRESS_EVERY_S:
            sent = now
            worker.log_event(PROGRESS_TOPIC, progress_message(key, progress))

    return send


def _run_encoder(
    argv: list[str], segment: Segment, source: Path, send: Callable[[Progress], None] | None
) -> None:
    """Run the encoder, its -progress lines (stdout) given to `send` as they come."""
    parser = ProgressParser()
    tail: deque[str] = deque(maxlen=20)
    try:
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr:
            with subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=stderr, text=True, errors="replace"
            ) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    progress = parser.feed(line)
                    if progress is not None and send is not None:
                        send(progress)
            stderr.seek(0)
            tail.extend(line.rstrip() for line in stderr if line.strip())
    except OSError as exc:
        raise EncodeError(f"cannot run ffmpeg on {_host()}: {exc.strerror}", source) from exc
    if proc.returncode != 0:
        last = tail[-1] if tail else "no message"
        raise EncodeError(
            f"segment {segment.index} encode failed on {_host()} (ffmpeg exit {proc.returncode}): {last}",
            source,
        )


def _encode(argv: list[str], output: Path, segment: Segment, source: Path) -> bytes:
    _run_encoder(argv, segment, source, _progress_sender())
    _check_frames(output, segment, source)
    return output.read_bytes()


Encoded = bytes | tuple[bytes, dict[str, Any]]
"""A segment task's encode: its bytes, and with a target VMAF the search's outcome
(`Outcome.data()`, plain data)."""


def _encode_segment(
    argv_at: Callable[[VideoPlan, Path], list[str]],
    plan: VideoPlan,
    output: Path,
    segment: Segment,
    source: Path,
    threads: int,
    known_probes: Sequence[Sequence[float]] = (),
) -> Encoded:
    """The segment encoded as the engine's slot would: at the plan's CRF, or brought to
    its target VMAF by the same loop (services/quality), measured here on the frames this
    worker has, the engine's `known_probes` not probed again and each new probe sent back
    as it is measured. `argv_at(plan, output)` is the encode's arguments for a plan."""
    target = target_of(plan)
    if target is None:
        return _encode(argv_at(plan, output), output, segment, source)
    scratch = output.with_suffix(".quality")
    scratch.mkdir()

    def argv_at_crf(crf: int, preset: int, path: Path) -> list[str]:
        return argv_at(dataclasses.replace(plan, crf=crf, preset=preset), path)

    send = _progress_sender()  # here, in the task's thread: Dask knows its task by thread

    async def run(argv: list[str]) -> None:
        await asyncio.to_thread(_run_encoder, argv, segment, source, send)

    outcome: Outcome = asyncio.run(
        reach_target(
            target,
            preset=plan.preset,
            fallback_crf=plan.crf,
            frames=segment.frame_count,
            machine=Machine(argv_at_crf, run, threads, source, on_progress=send),
            output=output,
            scratch=scratch,
            known_probes=known_probes,
            on_probe=_probes_sender(),
        )
    )
    _check_frames(output, segment, source)
    return output.read_bytes(), outcome.data()


def _check_frames(output: Path, segment: Segment, source: Path) -> None:
    """The worker's own count of the segment's frames (the engine counts them again)."""
    extents = stream_extents(output)
    frames = extents[0].packets if 0 in extents else 0
    if frames != segment.frame_count:
        raise EncodeError(
            f"segment {segment.index} has {frames} frames on {_host()}, planned {segment.frame_count}",
            source,
        )


def _replace_token(argv: list[str], option: str, old: str, new: str) -> None:
    """Replace the value after `option`; the argv builder's shape is checked, not assumed."""
    for i, token in enumerate(argv[:-1]):
        if token == option and argv[i + 1] == old:
            argv[i + 1] = new
            return
    raise EncodeError(f"the segment arguments have no {option} {old}")


def shipped_argv(
    plan: VideoPlan,
    segment: Segment,
    source: Path,
    output: Path,
    preroll: int,
    threads: int,
    time_base: Fraction | None = None,
) -> list[str]:
    """The local encode's arguments, applied to a shipped file: stream 0, no seek, the
    pre-roll dropped by frame number before the timestamps are rebased, and the encoder
    in the source's time base (`time_base`) rather than the shipped file's."""
    local = dataclasses.replace(plan, source=source)
    from_start = Segment(
        index=segment.index,
        start_frame=0,
        end_frame=segment.frame_count,
        start_s=0.0,
        end_s=segment.duration_s,
    )
    argv = list(encoder_for(local).segment_argv(local, from_start, output, threads))
    _replace_token(argv, "-map", f"0:{plan.analysis.media.video.index}", "0:0")
    if time_base is not None:
        _replace_token(argv, "-enc_time_base:v", "demux", str(time_base))
    if preroll:
        i = argv.index("-vf")
        argv[i + 1] = f"trim=start_frame={preroll},{argv[i + 1]}"
    return argv


def encode_shipped_segment(
    packets: bytes,
    preroll_frames: int,
    plan: VideoPlan,
    segment: Segment,
    threads: int | None = None,
    time_base: Fraction | None = None,
    known_probes: Sequence[Sequence[float]] = (),
) -> Encoded:
    """On a worker: encode a shipped segment with this machine's ffmpeg; the encoded
    segment as bytes, in the container and time base local segments have (MP4 whose
    track ticks in the source's time base, `time_base`): the join relies on it."""
    plan = dataclasses.replace(plan, ffmpeg=find_toolchain().ffmpeg)
    with tempfile.TemporaryDirectory(prefix=prefix("segment"), dir=scratch_root()) as folder:
        source = Path(folder) / f"source{SHIP_SUFFIX}"
        source.write_bytes(packets)
        output = Path(folder) / f"segment-{segment.index:05d}{SEGMENT_SUFFIX}"
        share = _threads(threads)

        def argv_at(at: VideoPlan, path: Path) -> list[str]:
            return shipped_argv(at, segment, source, path, preroll_frames, share, time_base)

        return _encode_segment(argv_at, plan, output, segment, plan.source, share, known_probes)


# --- shared storage ---

PathMap = tuple[tuple[Path, Path], ...]


@dataclass(frozen=True)
class FileIdentity:
    """What a worker compares before it reads a file through its path map."""

    size: int
    fingerprint: str


def file_identity(path: Path) -> FileIdentity:
    """Blocking: the file's size and source_identity.fingerprint (raises OSError)."""
    return FileIdentity(path.stat().st_size, fingerprint(path))


class MappedSourceMismatch(MediaError):
    """The file a worker's path map leads to is not the engine's file."""


def parse_path_map(items: list[str]) -> PathMap:
    """'/srv/media=/mnt/media' items: the engine's prefix, then this machine's."""
    pairs: list[tuple[Path, Path]] = []
    for item in items:
        engine, sep, local = item.partition("=")
        if not sep or not Path(engine).is_absolute() or not Path(local).is_absolute():
            raise ValueError(f"bad path map {item!r} (use /engine/path=/worker/path)")
        pairs.append((Path(engine), Path(local)))
    return tuple(pairs)


def path_map_json(pairs: PathMap) -> str:
    return json.dumps([[str(a), str(b)] for a, b in pairs])


def worker_path_map() -> PathMap:
    """This worker's path map, from the environment `drapto worker` gave its process."""
    raw = os.environ.get(PATH_MAP_ENV)
    return tuple((Path(a), Path(b)) for a, b in json.loads(raw)) if raw else ()


def map_path(path: Path, pairs: PathMap) -> Path | None:
    """The engine's path seen through this machine's mounts; None when no prefix covers it."""
    for engine, local in pairs:
        if path.is_relative_to(engine):
            return local / path.relative_to(engine)
    return None


def encode_mapped_segment(
    plan: VideoPlan,
    segment: Segment,
    threads: int | None = None,
    *,
    expected: FileIdentity,
    known_probes: Sequence[Sequence[float]] = (),
) -> Encoded:
    """On a worker with shared storage: the local encode, reading the source through this
    machine's mount, once the mapped file is known to be the engine's (`expected`);
    MappedSourceMismatch when it is not."""
    source = map_path(plan.source, worker_path_map())
    if source is None:
        raise MediaError(f"not under any --path-map of worker {_host()}", plan.source)
    if not source.is_file():
        raise MediaError(f"not found on worker {_host()} (mapped to {source})", plan.source)
    try:
        found = file_identity(source)
    except OSError as exc:
        raise MediaError(
            f"cannot read it on worker {_host()} (mapped to {source}): {exc.strerror}",
            plan.source,
        ) from exc
    if found != expected:
        what = "size" if found.size != expected.size else "content fingerprint"
        message = f"mapped to {source} on worker {_host()}, a file of another {what}"
        log.warning("%s: %s; refusing to encode it", plan.source, message)
        raise MappedSourceMismatch(message, plan.source)
    plan = dataclasses.replace(plan, ffmpeg=find_toolchain().ffmpeg, source=source)
    with tempfile.TemporaryDirectory(prefix=prefix("segment"), dir=scratch_root()) as folder:
        output = Path(folder) / f"segment-{segment.index:05d}{SEGMENT_SUFFIX}"
        share = _threads(threads)

        def argv_at(at: VideoPlan, path: Path) -> list[str]:
            return list(encoder_for(at).segment_argv(at, segment, path, share))

        return _encode_segment(argv_at, plan, output, segment, source, share, known_probes)


# --- what a segment task sends back ---

TASK_ERRORS: dict[str, type[DraptoError]] = {
    "mapped-source-mismatch": MappedSourceMismatch,
    "media": MediaError,
    "encode": EncodeError,
}
"""The drapto errors a segment task reports by kind (the first that matches); any other
is reported as a plain DraptoError."""


def segment_task(function: Callable[..., Encoded], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """On a worker: run a segment task function; its bytes (and a target search's
    outcome), or the drapto error it raised (kind, problem, path, hint), as plain data
    that msgpack carries."""
    try:
        encoded = function(*args, **kwargs)
        if isinstance(encoded, tuple):
            return {"segment": encoded[0], "quality": encoded[1]}
        return {"segment": encoded}
    except DraptoError as exc:
        kind = next((k for k, cls in TASK_ERRORS.items() if isinstance(exc, cls)), "drapto")
        return {
            "error": kind,
            "problem": exc.problem,
            "path": None if exc.path is None else str(exc.path),
            "hint": exc.hint,
        }


def segment_quality(record: object) -> Outcome | None:
    """On the engine: the target search's outcome a `segment_task` result carries, if any
    (checked field by field; ValueError when it is not one)."""
    if not isinstance(record, dict) or record.get("quality") is None:
        return None
    return Outcome.of(record["quality"])


def segment_result(record: object) -> bytes:
    """On the engine: the bytes of a `segment_task` result; the drapto error it reports
    is raised, and anything else is an EncodeError."""
    if isinstance(record, dict):
        data = record.get("segment")
        if isinstance(data, bytes):
            return data
        kind, problem = record.get("error"), record.get("problem")
        path, hint = record.get("path"), record.get("hint")
        if (
            isinstance(kind, str)
            and isinstance(problem, str)
            and isinstance(path, str | None)
            and isinstance(hint, str | None)
        ):
            raise TASK_ERRORS.get(kind, DraptoError)(problem, path, hint)
    raise EncodeError("the worker sent a result that is not a segment task's")
