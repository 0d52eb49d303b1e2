"""The lockstep protocol between the simulated cell and the nodes that drive it (pure Python, no rclpy).

In lockstep the simulated time advances only when every consumer (the policy node, the teleop node) is done
with the current tick, so slow CPU rendering or inference costs wall time only and a run is the same on any
machine (docs/architecture.md (workflows), docs/sim.md). Over ROS 2 it goes like this, once per 20 Hz tick k at simulated
time t_k:

1. the sim node publishes ``/clock`` = t_k, then every observation stream (joint states, gripper states,
   wrench, camera images), each stamped exactly t_k;
2. a consumer waits until it holds every stream it needs stamped t_k (:class:`TickCollector`), computes its
   commands, publishes them stamped t_k, and then acknowledges on ``/sim/tick_done``
   (std_msgs/Header: stamp t_k, frame_id ``"<consumer> <number of commands it sent for t_k>"``);
3. the sim node (:class:`TickGate`) steps once every expected consumer acknowledged t_k *and* every announced
   command stamped t_k arrived (topics are not ordered with each other in DDS, so an ack may overtake the
   commands it announces); then tick k + 1 begins.

Images travel best-effort: a lost frame would stall the tick, so the sim node publishes the same observation
again when no acknowledgement came within ``republish_s`` of wall time; consumers treat a repeat of a tick
they already handled as a request to acknowledge it again, never to act twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

TICK_DONE_TOPIC = "/sim/tick_done"
CLOCK_TOPIC = "/clock"


def ack_frame_id(consumer: str, n_commands: int) -> str:
    if not consumer or " " in consumer:
        raise ValueError(f"consumer name must be one word, got {consumer!r}")
    return f"{consumer} {int(n_commands)}"


def parse_ack(frame_id: str) -> tuple[str, int]:
    """(consumer, number of commands announced); ValueError for anything else."""
    parts = frame_id.split()
    if len(parts) != 2 or not parts[1].isdigit():
        raise ValueError(f"bad lockstep ack {frame_id!r}; expected '<consumer> <n_commands>'")
    return parts[0], int(parts[1])


@dataclass
class TickGate:
    """Sim side: may the cell step past the current tick?"""

    consumers: list[str]
    tick_ns: int | None = None
    acked: dict[str, int] = field(default_factory=dict)   # consumer -> commands it announced for tick_ns
    commands_seen: int = 0
    unknown_acks: int = 0
    late_acks: int = 0

    def begin(self, tick_ns: int) -> None:
        """A new tick's observation goes out now."""
        self.tick_ns, self.acked, self.commands_seen = int(tick_ns), {}, 0

    def on_ack(self, frame_id: str, stamp_ns: int) -> None:
        consumer, n = parse_ack(frame_id)
        if consumer not in self.consumers:
            self.unknown_acks += 1
            return
        if stamp_ns != self.tick_ns:
            self.late_acks += 1   # a repeat for an earlier tick: already counted there
            return
        self.acked.setdefault(consumer, n)

    def on_command(self, stamp_ns: int) -> None:
        """A command arrived; those stamped with the current tick count towards the announced number."""
        if stamp_ns == self.tick_ns:
            self.commands_seen += 1

    @property
    def waiting_for(self) -> list[str]:
        return [c for c in self.consumers if c not in self.acked]

    def ready(self) -> bool:
        if self.tick_ns is None:
            return False
        return not self.waiting_for and self.commands_seen >= sum(self.acked.values())


class TickCollector:
    """Consumer side: the newest stamp at which every required stream has delivered a sample."""

    def __init__(self, streams: Iterable[str]):
        self.streams = list(streams)
        if not self.streams:
            raise ValueError("a lockstep consumer needs at least one stream")
        self._stamps: dict[str, int] = {}
        self.handled_ns: int | None = None
        self._repeat = False

    def put(self, stream: str, stamp_ns: int) -> None:
        if stream not in self.streams:
            raise ValueError(f"unknown stream {stream!r}; expected one of {self.streams}")
        stamp_ns = int(stamp_ns)
        if stamp_ns == self._stamps.get(stream) == self.handled_ns:
            self._repeat = True  # the sim published the handled tick again: it is waiting for our ack
        self._stamps[stream] = stamp_ns

    def complete_ns(self) -> int | None:
        """The tick every stream is at, or None while some stream is missing or on another tick."""
        if len(self._stamps) < len(self.streams):
            return None
        values = set(self._stamps.values())
        return values.pop() if len(values) == 1 else None

    def next_tick(self) -> tuple[int, bool] | None:
        """``(tick stamp, True)`` the first time a tick is complete (act on it), ``(tick stamp, False)`` when the
        sim repeated the tick already handled (acknowledge it again, do not act twice), else None."""
        t = self.complete_ns()
        if t is None:
            return None
        if self.handled_ns is None or t > self.handled_ns:
            self.handled_ns, self._repeat = t, False
            return t, True
        if t == self.handled_ns and self._repeat:
            self._repeat = False
            return t, False
        return None
