"""Measured figures: resource samples, per-segment and per-job metrics, the job summary."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Figures(BaseModel):
    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")


class EncoderSample(_Figures):
    pid: int
    segment: int | None
    """The segment the encoder works on, when the orchestrator said."""
    job: str | None = None
    """The job the encoder works for."""
    cpu_percent: float
    """Percent of one core, its children included (400 is four busy cores)."""
    rss_bytes: int
    """Resident memory of the process and its children."""
    suspended: bool


class ResourceSnapshot(_Figures):
    time: float
    """Unix time of the sample."""
    cpu_percent: float
    """Whole-machine CPU use since the previous sample, 0-100."""
    memory_total: int
    memory_available: int
    reserve_bytes: int
    """Memory kept free: below it nothing is admitted and encoders get suspended."""
    workers: int
    """The worker limit."""
    running: int
    """Admitted encoders, suspended ones included."""
    suspended: int
    encoders: tuple[EncoderSample, ...]


class ClusterWorker(_Figures):
    """A remote worker of the engine's cluster, as its last heartbeat described it."""

    name: str
    address: str
    host: str
    slots: int
    """Encoder slots it offers."""
    running: int
    """Segments it is encoding for this engine."""
    cpu_percent: float
    """Its machine's CPU use, 0-100, as the worker's own psutil reads it."""
    memory_total: int
    memory_available: int


class SegmentMetrics(_Figures):
    index: int
    frames: int
    wall_s: float
    fps: float
    speed: float
    """Encode speed relative to real time (1.0 encodes a second of video a second)."""
    peak_rss_bytes: int
    """The encoder's largest sampled resident memory, children included; 0 if never sampled."""
    cpu_percent: float
    """The encoder's mean CPU use in percent of one core."""
    queue_wait_s: float
    """Time from the segment being planned to its encoder starting."""
    attempts: int = 1
    host: str = ""
    """The machine that encoded it."""
    remote: bool = False
    shipped_bytes: int = 0


class JobMetrics(_Figures):
    segments: list[SegmentMetrics] = Field(default_factory=list)
    encoded_segments: int = 0
    """Segments encoded by this run (resumed ones excluded)."""
    resumed_segments: int = 0
    remote_segments: int = 0
    """Segments this run encoded on cluster workers: their encoders' memory and CPU are
    not sampled there, so peak_rss_bytes and mean_cpu_percent cover the others only."""
    median_fps: float = 0.0
    median_speed: float = 0.0
    peak_rss_bytes: int = 0
    """Over the segments encoded here (not remote_segments)."""
    mean_cpu_percent: float = 0.0
    """Over the segments encoded here (not remote_segments)."""
    mean_queue_wait_s: float = 0.0
    alerts: dict[str, int] = Field(default_factory=dict)
    """Threshold warnings raised, by kind."""
    stage_s: dict[str, float] = Field(default_factory=dict)
    """Wall time spent in each job stage."""


class SegmentQuality(_Figures):
    """A segment's CRF and, with a target VMAF, its measured score."""

    index: int
    crf: int | None = None
    vmaf: float | None = None
    vmaf_low5: float | None = None
    target: str | None = None
    """met, missed, bound, fallback or short (core.events.SegmentDone.target)."""


class QualitySummary(_Figures):
    """A target-quality job's segments and their spread."""

    target_vmaf: float
    segments: list[SegmentQuality]
    vmaf_min: float | None = None
    vmaf_mean: float | None = None
    """The plain mean of the segments' means."""
    vmaf_max: float | None = None
    crf_min: int | None = None
    crf_max: int | None = None
    in_band: int = 0
    """Segments whose target status is met."""

    @classmethod
    def of(cls, target_vmaf: float, segments: list[SegmentQuality]) -> QualitySummary:
        scores = [s.vmaf for s in segments if s.vmaf is not None]
        crfs = [s.crf for s in segments if s.crf is not None]
        return cls(
            target_vmaf=target_vmaf,
            segments=sorted(segments, key=lambda s: s.index),
            vmaf_min=min(scores) if scores else None,
            vmaf_mean=sum(scores) / len(scores) if scores else None,
            vmaf_max=max(scores) if scores else None,
            crf_min=min(crfs) if crfs else None,
            crf_max=max(crfs) if crfs else None,
            in_band=sum(s.target == "met" for s in segments),
        )


class JobSummary(_Figures):
    """The closing figures of one encode."""

    input: str
    output: str
    input_bytes: int
    output_bytes: int
    reduction_percent: float
    wall_s: float
    frames: int
    encode_fps: float
    """Frames per second of wall time, over the frames this run encoded (after a resume,
    the kept segments' frames are not counted)."""
    segments: int
    metrics: JobMetrics | None = None
    not_kept: tuple[str, ...] = ()
    """Source streams the output lacks by design (a second video stream), described."""
    quality: QualitySummary | None = None
    """With a target VMAF: each segment's CRF and score, and their spread."""

    @property
    def grew(self) -> bool:
        """Whether the output is larger than the source."""
        return self.output_bytes > self.input_bytes


def counted(n: int, noun: str) -> str:
    """`1 segment`, `3 segments`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def size_change(reduction_percent: float, decimals: int = 1) -> str:
    """How the output's size compares with the source's: "26.0% smaller", or "12.0%
    larger" for an output that grew (never a negative "smaller")."""
    if reduction_percent >= 0:
        return f"{reduction_percent:.{decimals}f}% smaller"
    return f"{-reduction_percent:.{decimals}f}% larger"
