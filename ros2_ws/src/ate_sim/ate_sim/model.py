"""The cell as MJCF, generated from the robot description: two RM75-6s side by side on a table, an OmniPicker-like
parallel gripper on each flange, an overhead camera behind the arms and a camera on each wrist.

The arm chain is built from ``ate_description.kinematics.joint_placements()`` (the DH table of
``ate_description.contract``, the one the URDF is generated from), so the sim's flange is where the teleop's FK
says it is; joint ranges are the contract's limits. The arm bases and the camera mounts are the calibration's
(``ate_description.calibration``: the same placements the URDF shows), so the twin renders what the calibrated
cameras see. Both arms are the same model (not mirrored). ``CellConfig.cell_origin_xy_m`` places the cell frame
(the right arm's base) on the table.

Geometry is deliberately simple (capsules, boxes, cylinders); masses are plausible for the RM75 (~7 kg arm).
Arm links do not collide (with anything): the scripted demonstrations and teleop plan in free space, and the
real arm has no collision model either. The gripper (palm + fingers) collides with the table and objects, and
its contacts give the flange wrench.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ate_description import contract
from ate_description.calibration import CalibrationConfig, load_calibration
from ate_description.kinematics import joint_placements

# Link masses (kg) for links 1..7 and the fixed base column; the RM75-6s weighs about 7.2 kg in total.
LINK_MASS_KG = contract.ARM_LINK_MASS_KG
BASE_MASS_KG = contract.ARM_BASE_MASS_KG
LINK_RADIUS_M = contract.ARM_LINK_RADIUS_M
# Gripper geometry: the description's (the URDF shows the same shapes).
GRIPPER_MASS_KG = contract.GRIPPER_MASS_KG
PALM_LEN_M = contract.GRIPPER_PALM_LEN_M
FINGER_LEN_M = contract.GRIPPER_FINGER_LEN_M
FINGER_HALF_THICK_M = contract.GRIPPER_FINGER_HALF_THICK_M
TCP_OFFSET_M = contract.GRIPPER_TCP_OFFSET_M
FINGER_MAX_M = contract.GRIPPER_FINGER_MAX_M


@dataclass
class CellConfig:
    """Layout and controller of the simulated cell (units: m, s, rad)."""

    cell_origin_xy_m: tuple[float, float] = (0.0, -0.20)
    """Where the cell frame (the right arm's base) stands on the table; the left base is placed by the calibration
    (nominally 0.40 m to the left, +y, seen from behind the arms looking along +x)."""
    pedestal_m: float = 0.10
    """Arms stand on risers: the shoulder sits closer to the height of the wrist over the table, more reach."""
    calibration: CalibrationConfig | None = None
    """Base placements and camera mounts; None: the bring-up's calibration.yaml (what the real cell measured)."""
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
    # Vertical fields of view used while a camera's intrinsics are not calibrated (fy = 0).
    wrist_cam_fovy_deg: float = 58.0
    high_cam_fovy_deg: float = 50.0
    extra_xml: dict[str, str] = field(default_factory=dict)
    """MJCF a caller adds to the cell (calibration targets: ``python -m calibration``): keys ``asset``,
    ``worldbody``, ``left_gripper`` / ``right_gripper`` (inside that gripper's body, i.e. in the flange frame)."""

    def cell_calibration(self) -> CalibrationConfig:
        if self.calibration is None:
            self.calibration = load_calibration()
        return self.calibration

    def world_from_cell(self) -> np.ndarray:
        """Pose of the cell frame (the right arm's base) in the sim's world frame."""
        T = np.eye(4)
        T[:3, 3] = (self.cell_origin_xy_m[0], self.cell_origin_xy_m[1], self.pedestal_m)
        return T


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


def camera_xml_axes(T_parent_optical: np.ndarray) -> tuple[np.ndarray, str]:
    """MJCF ``pos`` and ``xyaxes`` of a camera whose optical frame (x right, y down, z forward) is at ``T``
    (MuJoCo cameras look along their -z with y up: x stays, y flips)."""
    T = np.asarray(T_parent_optical, dtype=float)
    return T[:3, 3], _fmt(np.concatenate([T[:3, 0], -T[:3, 1]]))


def _fovy_deg(cam, default_deg: float) -> float:
    """Vertical field of view of a calibrated camera (fy > 0), else the default."""
    if cam.fy > 0 and cam.height > 0:
        return math.degrees(2.0 * math.atan(cam.height / (2.0 * cam.fy)))
    return default_deg


def _arm_xml(arm: str, cfg: CellConfig) -> str:
    p = f"{arm}_"
    placements = joint_placements()
    lim = contract.JOINT_LIMITS_RAD
    col = "0.85 0.85 0.88 1" if arm == "left" else "0.80 0.82 0.90 1"
    B = cfg.world_from_cell() @ cfg.cell_calibration().t_cell_base(arm)
    out = [f'<body name="{p}base" pos="{_fmt(B[:3, 3])}" quat="{_fmt(mat_to_quat(B[:3, :3]))}">',
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
    # Wrist camera (D405) on the side of the palm at its calibrated mount (the gripper frame is the flange's).
    cam = cfg.cell_calibration().camera(f"cam_{arm}_wrist")
    cam_pos, cam_axes = camera_xml_axes(cam.transform())
    return f"""
<body name="{p}gripper" pos="0 0 0" gravcomp="1">
  <geom name="{p}palm" type="box" size="0.035 0.045 {PALM_LEN_M / 2}" pos="0 0 {PALM_LEN_M / 2}"
        rgba="0.15 0.15 0.17 1" mass="{GRIPPER_MASS_KG}"/>
  <site name="{p}tcp" pos="0 0 {TCP_OFFSET_M}" size="0.006" rgba="1 0 0 0"/>
  <camera name="cam_{arm}_wrist" pos="{_fmt(cam_pos)}" xyaxes="{cam_axes}"
          fovy="{_fovy_deg(cam, cfg.wrist_cam_fovy_deg):.6g}"/>
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
  {cfg.extra_xml.get(f"{arm}_gripper", "")}
</body>"""


def high_camera_xml(cfg: CellConfig) -> str:
    cam = cfg.cell_calibration().camera("cam_high")
    pos, axes = camera_xml_axes(cfg.world_from_cell() @ cam.transform())   # cam_high is mounted in the cell frame
    return (f'<camera name="cam_high" pos="{_fmt(pos)}" xyaxes="{axes}" '
            f'fovy="{_fovy_deg(cam, cfg.high_cam_fovy_deg):.6g}"/>')


def build_mjcf(cfg: CellConfig | None = None, scene: SceneSpec | None = None) -> str:
    """MJCF text of the whole cell with ``scene``'s objects."""
    cfg = cfg or CellConfig()
    scene = scene or SceneSpec()
    h, w = cfg.max_image_hw
    arms = "\n".join(_arm_xml(a, cfg) for a in contract.ARMS)
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
    {cfg.extra_xml.get("asset", "")}
  </asset>
  <worldbody>
    <light pos="0.3 0 1.6" dir="0 0 -1" diffuse="0.45 0.45 0.45" specular="0.1 0.1 0.1"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" material="floor" contype="0" conaffinity="0"/>
    <geom name="table" type="box" size="0.55 0.75 0.375" pos="0.2 0 -0.375" material="table"/>
    {high_camera_xml(cfg)}
    {arms}
    {scene.worldbody_xml}
    {cfg.extra_xml.get("worldbody", "")}
  </worldbody>
  <contact>{''.join(excludes)}</contact>
  <equality>{''.join(equality)}</equality>
  <actuator>{''.join(actuators)}</actuator>
</mujoco>"""
