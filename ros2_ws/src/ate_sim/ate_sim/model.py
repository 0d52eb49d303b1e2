"""The cell as MJCF, generated from the contract: two RM75-6s side by side on a table, an OmniPicker-like
parallel gripper on each flange, an overhead camera behind the arms and a camera on each wrist.

The arm chain is built from ``teleop.kinematics.joint_placements()`` (the DH table of ``ate_policy.contract``),
so the sim's flange is where the teleop's FK says it is; joint ranges are the contract's limits. Both arms are
the same model (not mirrored), translated along y, as in the lab's cell.

Geometry is deliberately simple (capsules, boxes, cylinders); masses are plausible for the RM75 (~7 kg arm).
Arm links do not collide (with anything): the scripted demonstrations and teleop plan in free space, and the
real arm has no collision model either. The gripper (palm + fingers) collides with the table and objects, and
its contacts give the flange wrench.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ate_policy import contract
from teleop.kinematics import joint_placements

# Link masses (kg) for links 1..7 and the fixed base column; the RM75-6s weighs about 7.2 kg in total.
LINK_MASS_KG = (1.2, 1.1, 1.0, 0.8, 0.7, 0.6, 0.3)
BASE_MASS_KG = 1.5
LINK_RADIUS_M = 0.042
GRIPPER_MASS_KG = 0.6

# Gripper geometry (along the flange z axis): palm, then two fingers closing along the gripper's y axis.
PALM_LEN_M = 0.07
FINGER_LEN_M = 0.06
FINGER_HALF_THICK_M = 0.008
TCP_OFFSET_M = PALM_LEN_M + 0.035
"""Grasp centre (between the finger pads) along the flange z axis: where IK targets put the object."""
FINGER_MAX_M = contract.GRIPPER_STROKE_M / 2.0  # each finger travels half the stroke


@dataclass
class CellConfig:
    """Layout and controller of the simulated cell (units: m, s, rad)."""

    arm_base_y_m: float = 0.20
    """Arm bases at y = +-this (left arm at +y, seen from behind the arms looking along +x)."""
    pedestal_m: float = 0.10
    """Arms stand on risers: the shoulder sits closer to the height of the wrist over the table, more reach."""
    timestep_s: float = 0.002
    joint_kp: float = 3000.0
    """Position gain (Nm/rad) of the joint servos; stiff like an industrial arm's position loop."""
    joint_kv: float = 120.0
    """Velocity gain (Nms/rad): about critical damping for the links' inertia plus armature, so no overshoot."""
    joint_armature: float = 0.15
    gripper_kp: float = 3000.0
    gripper_force_n: float = 60.0
    """Maximum gripping force of each finger at force fraction 1."""
    gripper_time_s: float = 0.6
    """Full-stroke open/close time of the OmniPicker at speed fraction 1."""
    max_image_hw: tuple[int, int] = (540, 960)
    """Largest camera image that can be rendered (sets MuJoCo's offscreen buffer)."""
    shadows: bool = False
    """Shadow maps roughly triple the cost of a frame with CPU rendering (OSMesa); on for nicer videos."""
    wrist_cam_fovy_deg: float = 58.0
    high_cam_fovy_deg: float = 50.0
    high_cam_pos: tuple[float, float, float] = (-0.40, 0.0, 1.05)
    high_cam_target: tuple[float, float, float] = (0.36, 0.0, 0.0)


@dataclass
class SceneSpec:
    """Objects of a task scene: MJCF inside <worldbody> plus which bodies a gripper can hold."""

    name: str = "empty"
    worldbody_xml: str = ""
    graspable: list[str] = field(default_factory=list)


def _fmt(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in np.asarray(v).reshape(-1))


def mat_to_quat(R: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a rotation matrix."""
    import mujoco

    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.asarray(R, dtype=float).reshape(9))
    return q


def look_at_xyaxes(pos, target, up=(0.0, 0.0, 1.0)) -> str:
    """MJCF ``xyaxes`` of a camera at ``pos`` looking at ``target`` (MuJoCo cameras look along -z)."""
    f = np.asarray(target, float) - np.asarray(pos, float)
    f /= np.linalg.norm(f)
    right = np.cross(f, up)
    right /= np.linalg.norm(right)
    y = np.cross(right, f)
    return _fmt(np.concatenate([right, y]))


def _arm_xml(arm: str, y: float, cfg: CellConfig) -> str:
    p = f"{arm}_"
    placements = joint_placements()
    lim = contract.JOINT_LIMITS_RAD
    col = "0.85 0.85 0.88 1" if arm == "left" else "0.80 0.82 0.90 1"
    out = [f'<body name="{p}base" pos="0 {y:.4f} {cfg.pedestal_m:.4f}">',
           f'<geom type="cylinder" size="0.07 {cfg.pedestal_m / 2:.4f}" pos="0 0 {-cfg.pedestal_m / 2:.4f}" '
           f'rgba="0.3 0.3 0.32 1" contype="0" conaffinity="0" mass="0"/>',
           # The column below joint 1's frame (d1) is symmetric about J1's axis: it can live in the base.
           f'<geom type="capsule" fromto="0 0 0 0 0 {placements[0][2, 3]:.4f}" size="{LINK_RADIUS_M * 1.2}" '
           f'rgba="{col}" contype="0" conaffinity="0" mass="{BASE_MASS_KG}"/>']
    depth = 0
    for i in range(contract.N_ARM_JOINTS):
        M = placements[i]
        out.append(f'<body name="{p}link{i + 1}" pos="{_fmt(M[:3, 3])}" quat="{_fmt(mat_to_quat(M[:3, :3]))}" '
                   f'gravcomp="1">')
        depth += 1
        out.append(f'<joint name="{p}joint{i + 1}" axis="0 0 1" range="{-lim[i]:.12f} {lim[i]:.12f}" '
                   f'limited="true" armature="{cfg.joint_armature}" damping="1"/>')
        if i + 1 < contract.N_ARM_JOINTS:
            nxt = placements[i + 1][:3, 3]  # next joint's origin in this link's frame
            if np.linalg.norm(nxt) > 1e-6:
                out.append(f'<geom type="capsule" fromto="0 0 0 {_fmt(nxt)}" size="{LINK_RADIUS_M}" '
                           f'rgba="{col}" contype="0" conaffinity="0" mass="{LINK_MASS_KG[i]}"/>')
            else:  # joints 2, 4, 6 sit at the previous origin: a short joint housing
                out.append(f'<geom type="sphere" size="{LINK_RADIUS_M * 1.15}" rgba="{col}" '
                           f'contype="0" conaffinity="0" mass="{LINK_MASS_KG[i]}"/>')
        else:
            out.append(f'<geom type="cylinder" size="{LINK_RADIUS_M * 0.9} 0.01" pos="0 0 -0.01" rgba="{col}" '
                       f'contype="0" conaffinity="0" mass="{LINK_MASS_KG[i]}"/>')
            out.append(f'<site name="{p}flange" pos="0 0 0" size="0.005" rgba="0 0 0 0"/>')
            out.append(_gripper_xml(arm, cfg))
    out += ["</body>"] * depth
    out.append("</body>")
    return "\n".join(out)


def _gripper_xml(arm: str, cfg: CellConfig) -> str:
    p = f"{arm}_"
    fz = PALM_LEN_M + FINGER_LEN_M / 2
    fh = FINGER_HALF_THICK_M
    # Wrist camera (D405) on the side of the palm, looking along the approach axis (+z of the flange),
    # tilted a little towards the fingers so the grasp is in view. Camera looks along its -z.
    tilt = math.radians(12.0)
    view = np.array([0.0, math.sin(tilt), math.cos(tilt)])  # in the gripper frame
    cam_pos = np.array([0.0, -0.055, 0.045])
    return f"""
<body name="{p}gripper" pos="0 0 0" gravcomp="1">
  <geom name="{p}palm" type="box" size="0.035 0.045 {PALM_LEN_M / 2}" pos="0 0 {PALM_LEN_M / 2}"
        rgba="0.15 0.15 0.17 1" mass="{GRIPPER_MASS_KG}"/>
  <site name="{p}tcp" pos="0 0 {TCP_OFFSET_M}" size="0.006" rgba="1 0 0 0"/>
  <camera name="cam_{arm}_wrist" pos="{_fmt(cam_pos)}" xyaxes="{look_at_xyaxes(cam_pos, cam_pos + view,
                                                                             up=(-1.0, 0.0, 0.0))}"
          fovy="{cfg.wrist_cam_fovy_deg}"/>
  <body name="{p}finger_a" pos="0 {fh} {fz}" gravcomp="1">
    <joint name="{p}finger_a" type="slide" axis="0 1 0" range="0 {FINGER_MAX_M}" limited="true" damping="20"
           armature="0.05"/>
    <geom name="{p}finger_a" type="box" size="0.012 {fh} {FINGER_LEN_M / 2}" rgba="0.2 0.2 0.2 1" mass="0.05"
          friction="1.5 0.02 0.001" condim="4"/>
  </body>
  <body name="{p}finger_b" pos="0 {-fh} {fz}" gravcomp="1">
    <joint name="{p}finger_b" type="slide" axis="0 -1 0" range="0 {FINGER_MAX_M}" limited="true" damping="20"
           armature="0.05"/>
    <geom name="{p}finger_b" type="box" size="0.012 {fh} {FINGER_LEN_M / 2}" rgba="0.2 0.2 0.2 1" mass="0.05"
          friction="1.5 0.02 0.001" condim="4"/>
  </body>
</body>"""


def high_camera_xml(cfg: CellConfig) -> str:
    return (f'<camera name="cam_high" pos="{_fmt(cfg.high_cam_pos)}" '
            f'xyaxes="{look_at_xyaxes(cfg.high_cam_pos, cfg.high_cam_target)}" fovy="{cfg.high_cam_fovy_deg}"/>')


def build_mjcf(cfg: CellConfig | None = None, scene: SceneSpec | None = None) -> str:
    """MJCF text of the whole cell with ``scene``'s objects."""
    cfg = cfg or CellConfig()
    scene = scene or SceneSpec()
    h, w = cfg.max_image_hw
    arms = "\n".join(_arm_xml(a, y, cfg) for a, y in zip(contract.ARMS, (cfg.arm_base_y_m, -cfg.arm_base_y_m)))
    kp, kv = cfg.joint_kp, cfg.joint_kv
    lim = contract.JOINT_LIMITS_RAD
    actuators, equality, excludes = [], [], []
    for arm in contract.ARMS:
        for i in range(contract.N_ARM_JOINTS):
            actuators.append(f'<position name="{arm}_joint{i + 1}" joint="{arm}_joint{i + 1}" kp="{kp}" kv="{kv}" '
                             f'ctrlrange="{-lim[i]:.12f} {lim[i]:.12f}" ctrllimited="true"/>')
    for arm in contract.ARMS:
        actuators.append(f'<position name="{arm}_gripper" joint="{arm}_finger_a" kp="{cfg.gripper_kp}" kv="40" '
                         f'ctrlrange="0 {FINGER_MAX_M}" ctrllimited="true" '
                         f'forcerange="{-2 * cfg.gripper_force_n} {2 * cfg.gripper_force_n}" forcelimited="true"/>')
        # One motor drives both fingers symmetrically, as in the OmniPicker's linkage.
        equality.append(f'<joint joint1="{arm}_finger_b" joint2="{arm}_finger_a" polycoef="0 1 0 0 0" '
                        f'solref="0.005 1"/>')
        excludes.append(f'<exclude body1="{arm}_finger_a" body2="{arm}_finger_b"/>')
        for obj in scene.graspable:
            # Grasps are held by a weld switched on when the fingers close on the object (see cell.py).
            equality.append(f'<weld name="{arm}_holds_{obj}" body1="{arm}_gripper" body2="{obj}" active="false" '
                            f'solref="0.01 1"/>')
    return f"""<mujoco model="ate_dual_rm75_{scene.name}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{cfg.timestep_s}" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <global offwidth="{w}" offheight="{h}"/>
    <quality shadowsize="1024"/>
    <headlight ambient="0.3 0.3 0.3" diffuse="0.35 0.35 0.35" specular="0.05 0.05 0.05"/>
  </visual>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.35 0.35 0.38" rgb2="0.3 0.3 0.33" width="256"
             height="256"/>
    <material name="floor" texture="grid" texrepeat="6 6"/>
    <material name="table" rgba="0.72 0.6 0.45 1"/>
  </asset>
  <worldbody>
    <light pos="0.3 0 1.6" dir="0 0 -1" diffuse="0.45 0.45 0.45" specular="0.1 0.1 0.1"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" material="floor" contype="0" conaffinity="0"/>
    <geom name="table" type="box" size="0.55 0.75 0.375" pos="0.2 0 -0.375" material="table"/>
    {high_camera_xml(cfg)}
    {arms}
    {scene.worldbody_xml}
  </worldbody>
  <contact>{''.join(excludes)}</contact>
  <equality>{''.join(equality)}</equality>
  <actuator>{''.join(actuators)}</actuator>
</mujoco>"""
