"""Deployment runtime: a LeRobot policy behind a 20 Hz control loop with asynchronous chunk inference.

Pure Python (no rclpy): the policy node and ``ate_policy eval`` drive it. The runtime itself imports no model
class; it takes any ``select_chunk(obs) -> (L, 16)`` (``protocol.py``), and ``policy.load_policy`` makes one
from a LeRobot checkpoint. Heavy imports (torch, LeRobot) happen only in ``policy`` / ``acceleration``.

    configuration_task.py     TaskConfig + load_task("cook_bun")   (ate_bringup/config/tasks/<task>.yaml)
    configuration_runtime.py  RuntimeConfig, BlendConfig, DeviceOptions
    observation.py            Observation (state, images, capture stamps) + the freshness check
    protocol.py               ChunkPolicy (select_chunk) and RTCRequest
    plan.py                   ActionPlan: targets per tick, merging strategies (latest, blend, rtc)
    runtime.py                PolicyRuntime: tick(obs, now_s) -> TickResult, worker thread, lockstep, stats
    policy.py                 load_policy(checkpoint) -> LeRobotChunkPolicy (processors, tiny PI0, RTC)
    acceleration.py           device, bf16, torch.compile verified against eager, CUDA graphs
    tiny_checkpoint.py        write_tiny_checkpoint(): a random tiny PI0 saved like `ate_policy train` saves
    io.py                     per-stream samples -> Observation, 16-dim action -> per-arm targets (node, eval)
"""

from ate_policy.runtime.configuration_runtime import BlendConfig, DeviceOptions, RuntimeConfig
from ate_policy.runtime.configuration_task import TaskConfig, load_task
from ate_policy.runtime.observation import Observation, check_observation
from ate_policy.runtime.protocol import ChunkPolicy, RTCRequest
from ate_policy.runtime.runtime import PolicyRuntime, TickResult

__all__ = ["BlendConfig", "ChunkPolicy", "DeviceOptions", "Observation", "PolicyRuntime", "RTCRequest",
           "RuntimeConfig", "TaskConfig", "TickResult", "check_observation", "load_task"]
