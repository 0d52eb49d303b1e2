"""The data contract and the robot's fixed facts: one source for every module that needs them.

Recorder, bag converter, trainer, policy node, drivers, sim, teleop, the URDF and the kinematics all import from
here (docs/architecture.md: data contract, hardware facts). This module imports nothing heavier than the
standard library so a robot PC without torch can use it.
"""

from __future__ import annotations

import math

# --- rates and robot identity ---------------------------------------------------------------------------------
FPS = 20
"""Control and recording rate in Hz."""
PERIOD_S = 1.0 / FPS
ROBOT_TYPE = "realman_rm75_dual"

ARMS = ("left", "right")
N_ARM_JOINTS = 7

# --- joint order of observation.state / action ------------------------------------------------------------------
ARM_JOINT_NAMES = tuple(f"joint{i}" for i in range(1, N_ARM_JOINTS + 1))


def arm_joint_names(arm: str) -> list[str]:
    """ROS joint names of one arm, e.g. ``left_joint1``; used in JointState messages."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; expected one of {ARMS}")
    return [f"{arm}_{j}" for j in ARM_JOINT_NAMES]


STATE_NAMES: list[str] = []
for _arm in ARMS:
    STATE_NAMES += arm_joint_names(_arm) + [f"{_arm}_gripper"]
STATE_DIM = len(STATE_NAMES)  # 16
ACTION_NAMES = list(STATE_NAMES)
ACTION_DIM = STATE_DIM


def arm_slice(arm: str) -> slice:
    """Indices of one arm's 7 joints + gripper inside a 16-vector."""
    i = ARMS.index(arm)
    return slice(i * (N_ARM_JOINTS + 1), (i + 1) * (N_ARM_JOINTS + 1))


EFFORT_NAMES = [f"{arm}_{k}" for arm in ARMS for k in ("fx", "fy", "fz", "tx", "ty", "tz")]
EFFORT_DIM = len(EFFORT_NAMES)  # 12

# --- cameras (ALOHA names that pi0 checkpoints know) --------------------------------------------------------------
CAMERA_NAMES = ("cam_high", "cam_left_wrist", "cam_right_wrist")
IMAGE_KEYS = tuple(f"observation.images.{c}" for c in CAMERA_NAMES)
CAMERA_RESOLUTION = (540, 960)  # (height, width) recorded from the real cameras

STATE_KEY = "observation.state"
ACTION_KEY = "action"
EFFORT_KEY = "observation.effort"
CAPTURE_TIME_KEY = "observation.capture_time"  # per-frame capture time of every stream, s since episode start
CAPTURE_STREAMS = ("state",) + CAMERA_NAMES

# --- gripper ------------------------------------------------------------------------------------------------------
GRIPPER_STROKE_M = 0.120
"""Gripper opening fraction: 0 = closed, 1 = fully open (120 mm)."""
# OmniPicker geometry along the flange z axis (simple shapes for the URDF and the sim): a palm, then two fingers
# closing symmetrically along the gripper's y axis, each travelling half the stroke.
GRIPPER_PALM_LEN_M = 0.07
GRIPPER_FINGER_LEN_M = 0.06
GRIPPER_FINGER_HALF_THICK_M = 0.008
GRIPPER_TCP_OFFSET_M = GRIPPER_PALM_LEN_M + 0.035
"""Grasp centre (between the finger pads) along the flange z axis: where IK targets put the object."""
GRIPPER_FINGER_MAX_M = GRIPPER_STROKE_M / 2.0
"""Travel of each finger joint (``<arm>_finger_a``; ``_finger_b`` mirrors it): opening fraction x this."""
GRIPPER_MASS_KG = 0.6

# --- RM75-6s link shapes and masses (simple geometry for the URDF and the sim; the arm weighs about 7.2 kg) -------
ARM_LINK_MASS_KG = (1.2, 1.1, 1.0, 0.8, 0.7, 0.6, 0.3)
ARM_BASE_MASS_KG = 1.5
ARM_LINK_RADIUS_M = 0.042

# --- RM75-6s joint limits (docs/architecture.md (safety rules)) -------------------------------------------------------------------
JOINT_LIMITS_DEG = (178.0, 130.0, 178.0, 135.0, 178.0, 128.0, 360.0)
JOINT_LIMITS_RAD = tuple(math.radians(d) for d in JOINT_LIMITS_DEG)
# Max joint speeds: 180 deg/s on J1-J2, 225 deg/s on J3-J7.
JOINT_MAX_SPEED_DEG_S = (180.0, 180.0, 225.0, 225.0, 225.0, 225.0, 225.0)
JOINT_MAX_SPEED_RAD_S = tuple(math.radians(d) for d in JOINT_MAX_SPEED_DEG_S)

# --- RM75-6s kinematics: modified DH (RealMan's published table, 6F variant) ------------------------------------
# Rows: (a_m, alpha_rad, d_m, theta_offset_rad) for joints 1..7 in Craig's convention.
DH_MODIFIED = (
    (0.0, 0.0, 0.2405, 0.0),
    (0.0, -math.pi / 2, 0.0, 0.0),
    (0.0, math.pi / 2, 0.256, 0.0),
    (0.0, -math.pi / 2, 0.0, 0.0),
    (0.0, math.pi / 2, 0.210, 0.0),
    (0.0, -math.pi / 2, 0.0, 0.0),
    (0.0, math.pi / 2, 0.1725, 0.0),
)


def features(image_shape: tuple[int, int, int] = (CAMERA_RESOLUTION[0], CAMERA_RESOLUTION[1], 3),
             use_videos: bool = True, with_effort: bool = True, with_capture_time: bool = True) -> dict:
    """LeRobot feature spec of the dual-arm data contract (`LeRobotDataset.create(features=...)`)."""
    h, w, c = image_shape
    feats: dict = {
        STATE_KEY: {"dtype": "float32", "shape": (STATE_DIM,), "names": list(STATE_NAMES)},
        ACTION_KEY: {"dtype": "float32", "shape": (ACTION_DIM,), "names": list(ACTION_NAMES)},
    }
    if with_effort:
        feats[EFFORT_KEY] = {"dtype": "float32", "shape": (EFFORT_DIM,), "names": list(EFFORT_NAMES)}
    if with_capture_time:
        feats[CAPTURE_TIME_KEY] = {
            # Seconds since the episode's first tick: float32 keeps microseconds over an hour-long episode,
            # where absolute Unix times would lose whole minutes.
            "dtype": "float32",
            "shape": (len(CAPTURE_STREAMS),),
            "names": list(CAPTURE_STREAMS),
        }
    for key in IMAGE_KEYS:
        feats[key] = {
            "dtype": "video" if use_videos else "image",
            "shape": (h, w, c),
            "names": ["height", "width", "channels"],
        }
    return feats
