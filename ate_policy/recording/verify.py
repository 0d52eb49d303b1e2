"""Is every frame of an episode in its videos? The check every writer runs after a save and ``inspect`` runs later.

LeRobot v3.0 stores several episodes per MP4 file: an episode's frames are the packets whose presentation time lies
in its ``[from_timestamp, to_timestamp)`` span (``meta/episodes``). A video that lost a frame (LeRobot's streaming
encoder drops frames with only a log line when its queue stays full) is shorter than the episode's parquet rows,
and loading the missing frame then fails with ``IndexError`` hours into a training run.

The check is cheap: it counts packets in the span (demuxing only, no decoding) and decodes just the first and the
last frame of the span, which catches a file whose data is damaged at either end.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

# Packets are matched to a span by their presentation time with half a frame of slack on either side: LeRobot
# derives spans from stream durations (float seconds), so the boundaries carry rounding.
_HALF_FRAME = 0.5
# Demuxing stops this far past the span's end: packets come in decode order, and B-frames (x264 presets other
# than ultrafast) can present earlier than a packet read before them.
_REORDER_SLACK_S = 1.0


@dataclass
class SegmentCheck:
    """What one camera's video holds for one episode."""

    path: str
    frames: int                    # packets presented inside the episode's span
    expected: int                  # the episode's rows
    first_ok: bool | None = None   # first frame of the span decodes (None: not checked)
    last_ok: bool | None = None
    codec: str = ""
    pix_fmt: str = ""
    error: str = ""                # the file could not be opened / read at all
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def check_segment(path: str | Path, from_s: float, to_s: float, fps: float, expected: int,
                  decode: bool = True) -> SegmentCheck:
    """Count the packets of ``path``'s first video stream presented in ``[from_s, to_s)`` and decode its ends."""
    import av

    res = SegmentCheck(str(path), 0, int(expected))
    if not Path(path).exists():
        res.error = "video file missing"
        res.problems.append(res.error)
        return res
    half = _HALF_FRAME / fps
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            res.codec = stream.codec_context.name
            res.pix_fmt = str(stream.codec_context.pix_fmt or "")
            tb = stream.time_base
            if from_s > 0:
                container.seek(max(0, int((from_s - half) / tb)), stream=stream, backward=True, any_frame=False)
            pts_in = []
            for pkt in container.demux(stream):
                if pkt.pts is None:          # the demuxer's flush packet
                    continue
                t = float(pkt.pts * tb)
                if from_s - half <= t < to_s - half:
                    pts_in.append(pkt.pts)
                if pkt.dts is not None and float(pkt.dts * tb) > to_s + _REORDER_SLACK_S:
                    break
            res.frames = len(set(pts_in))
            if decode and pts_in:
                res.first_ok = _decodes(container, stream, min(pts_in))
                res.last_ok = _decodes(container, stream, max(pts_in))
    except Exception as e:  # noqa: BLE001  (any demuxer error means the file is unreadable: report it)
        res.error = f"{type(e).__name__}: {e}"
        res.problems.append(f"unreadable ({res.error})")
        return res
    if res.frames != res.expected:
        res.problems.append(f"{res.frames} frames in the video for {res.expected} rows")
    if res.first_ok is False:
        res.problems.append("first frame does not decode")
    if res.last_ok is False:
        res.problems.append("last frame does not decode")
    return res


def _decodes(container, stream, pts: int) -> bool:
    """Seek to the keyframe before ``pts`` and decode up to the frame presented at ``pts``."""
    try:
        container.seek(pts, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            if frame.pts >= pts:
                return frame.pts == pts and frame.width > 0
        return False
    except Exception:  # noqa: BLE001  (a decoder error is the answer "does not decode")
        return False


def episode_segments(meta_episode: dict, video_keys: list[str]) -> dict[str, tuple[int, int, float, float]]:
    """(chunk, file, from_s, to_s) per video key from one ``meta/episodes`` row (scalars or 1-element lists)."""

    def scalar(v):
        return v[0] if isinstance(v, (list, tuple)) else v

    out = {}
    for key in video_keys:
        out[key] = (int(scalar(meta_episode[f"videos/{key}/chunk_index"])),
                    int(scalar(meta_episode[f"videos/{key}/file_index"])),
                    float(scalar(meta_episode[f"videos/{key}/from_timestamp"])),
                    float(scalar(meta_episode[f"videos/{key}/to_timestamp"])))
    return out


def video_path(root: Path, video_path_template: str, key: str, chunk: int, file: int) -> Path:
    return Path(root) / video_path_template.format(video_key=key, chunk_index=chunk, file_index=file)
