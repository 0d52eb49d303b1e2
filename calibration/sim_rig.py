"""The calibration rig on the simulated cell: a ChArUco board rendered as a textured plane, the sim's arms behind
the drivers' safety layer, its cameras, and a scripted operator.

The cell is built from a ``CalibrationConfig`` (``ate_sim``'s ``CellConfig.calibration``): the tests put the bases
and camera mounts where they like and run the procedures, which are told nothing of it. The board exists twice in
the model (on the table, and on a bracket on the right flange); the scripted operator "moves" it by showing one
and hiding the other (render group 3 is not drawn), as the person does by hand on the real cell.

``python -m calibration cameras --robot sim`` runs the same on the nominal cell (a dry run of the procedure).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ate_description.calibration import CalibrationConfig
from ate_description.contract import ARMS, GRIPPER_FINGER_LEN_M, GRIPPER_PALM_LEN_M, GRIPPER_STROKE_M, PERIOD_S
from ate_description.errors import UserError
from ate_description.kinematics import fk, inv_transform, rot_x, rot_z
from calibration.charuco import BoardSpec, Intrinsics
from calibration.geometry import make_transform
from calibration.rig import ArmMover, Rig

HOME_Q = np.array([0.0, 0.2, 0.0, 1.7, 0.0, 1.25, 0.0])
BOARD_MARGIN_SQUARES = 0.5
HIDDEN_GROUP = 3            # MuJoCo renders geom groups 0-2 by default



def _table_board(centre_xy=(0.22, 0.20), yaw_deg: float = 10.0) -> np.ndarray:
    """The board lying on the table (T_cell_board), printed face up, its centre at ``centre_xy`` (cell frame)."""
    R = rot_z(np.radians(yaw_deg)) @ rot_x(np.pi)
    w, h = BoardSpec().size_m
    return make_transform(R, np.array([*centre_xy, -0.0995]) - R @ np.array([w / 2, h / 2, 0.0]))


# Where the board lies on the table: between the arms, within reach of both wrist cameras, turned 10 deg.
TABLE_BOARD_T_CELL = _table_board()


# Postures that keep an arm out of the other's way: turned outwards.
PARKED_Q = {"left": HOME_Q + np.array([0.7, 0, 0, 0, 0, 0, 0]), "right": HOME_Q - np.array([0.7, 0, 0, 0, 0, 0, 0])}

# Points the scripted operator touches in ``bases`` dry runs (cell frame, m): between the arms, one raised.
TOUCH_POINTS_CELL = np.array([[0.18, 0.10, -0.05], [0.34, 0.12, -0.05], [0.30, 0.30, -0.05], [0.20, 0.27, 0.03]])

# The right arm's posture for the cam_high step: turned out to its right, so its own links do not hide the board.
HIGH_START_Q = np.array([-0.9, 0.2, 0.0, 1.7, 0.0, 1.25, 0.0])


def _flange_board_mount() -> np.ndarray:
    """The bracket of the board on the right flange (T_flange_board): the board's centre 12 cm ahead of the flange,
    below the fingers, tilted so the board faces cam_high's nominal position at ``HIGH_START_Q``."""
    F = fk(HIGH_START_Q)
    centre = F[:3, 3] + np.array([-0.12, 0.0, -0.10])
    cam = np.array([-0.40, 0.20, 0.95])
    n = (cam - centre) / np.linalg.norm(cam - centre)        # the printed face looks along -z of the board
    z = -n
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    R = np.column_stack([x, np.cross(z, x), z])
    w, h = BoardSpec().size_m
    T_cell_board = make_transform(R, centre - R @ np.array([w / 2, h / 2, 0.0]))
    return inv_transform(F) @ T_cell_board


def board_mjcf(spec: BoardSpec, png: Path, table_T_cell: np.ndarray, flange_mount: np.ndarray,
               world_from_cell: np.ndarray) -> dict[str, str]:
    """``CellConfig.extra_xml`` with the board on the table and on the right flange (both visible)."""
    from ate_sim.model import mat_to_quat

    w, h = spec.size_m
    m = BOARD_MARGIN_SQUARES * spec.square_m
    # A quad over the printed area (margin included) in the board frame; its front face looks along -z.
    verts = [(-m, -m, 0.0), (w + m, -m, 0.0), (w + m, h + m, 0.0), (-m, h + m, 0.0)]
    uv = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]

    def fmt(rows):
        return " ".join(f"{v:.9g}" for r in rows for v in r)

    def body(name: str, T: np.ndarray) -> str:
        return (f'<body name="{name}" pos="{fmt([T[:3, 3]])}" quat="{fmt([mat_to_quat(T[:3, :3])])}">'
                '<inertial pos="0 0 0" mass="0.01" diaginertia="1e-5 1e-5 1e-5"/>'
                f'<geom name="{name}" type="mesh" mesh="calib_board" material="calib_board" contype="0" '
                'conaffinity="0" group="0"/></body>')

    return {
        "asset": (f'<texture name="calib_board" type="2d" file="{png}"/>'
                  '<material name="calib_board" texture="calib_board" specular="0" shininess="0" emission="0.4"/>'
                  f'<mesh name="calib_board" inertia="shell" vertex="{fmt(verts)}" texcoord="{fmt(uv)}" '
                  'face="0 2 1 0 3 2"/>'),
        "worldbody": body("calib_board_table", world_from_cell @ table_T_cell),
        "right_gripper": body("calib_board_flange", flange_mount),
    }


class SimOperator:
    """The person at the cell, scripted: ``actions[key]()`` performs the instruction ``key``; measurements come from
    ``measurements[key]`` (a number or a callable)."""

    def __init__(self, actions: dict[str, Callable[[], None]] | None = None,
                 measurements: dict[str, float | Callable[[], float]] | None = None, log: list | None = None):
        self.actions = dict(actions or {})
        self.measurements = dict(measurements or {})
        self.log = log if log is not None else []

    def say(self, text: str) -> None:
        self.log.append(text)

    def do(self, key: str, text: str) -> None:
        self.log.append(f">>> {text}")
        if key in self.actions:
            self.actions[key]()

    def measure(self, key: str, text: str) -> float:
        if key not in self.measurements:
            raise UserError(f"the scripted operator has no measurement {key!r}")
        v = self.measurements[key]
        return float(v() if callable(v) else v)


class SimRig(Rig):
    """A ``Rig`` on a lockstep ``SimCell`` built from ``calibration`` (the truth the procedures must find)."""

    def __init__(self, calibration: CalibrationConfig | None = None, board: BoardSpec | None = None,
                 image_hw: dict[str, tuple[int, int]] | None = None, table_board_T_cell: np.ndarray | None = None,
                 flange_board_mount: np.ndarray | None = None, workdir: str | Path | None = None,
                 operator: SimOperator | None = None, cameras=("cam_high", "cam_left_wrist", "cam_right_wrist")):
        import cv2

        from ate_drivers.arm_driver import ArmDriver
        from ate_drivers.safety import EStop
        from ate_sim.backends import SimArm, SimCamera, SimGripper
        from ate_sim.cell import SimCell
        from ate_sim.model import CellConfig

        self.board = board or BoardSpec()
        self.table_board_T_cell = TABLE_BOARD_T_CELL if table_board_T_cell is None else table_board_T_cell
        self.flange_board_mount = _flange_board_mount() if flange_board_mount is None else flange_board_mount
        self.image_hw = {"cam_high": (540, 960), "cam_left_wrist": (360, 640), "cam_right_wrist": (360, 640),
                         **(image_hw or {})}
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="calib_sim_")
            workdir = self._tmp.name
        png = Path(workdir) / "charuco_board.png"
        cv2.imwrite(str(png), self.board.image(px_per_square=80, margin_squares=BOARD_MARGIN_SQUARES))
        cfg = CellConfig(calibration=calibration or CalibrationConfig())
        cfg.extra_xml = board_mjcf(self.board, png, self.table_board_T_cell, self.flange_board_mount,
                                   cfg.world_from_cell())
        self.cell = SimCell(cfg=cfg, clock="lockstep")
        self.calibration = cfg.cell_calibration()
        super().__init__(operator=operator or SimOperator(), wait_s=self._wait, now_s=lambda: self.cell.sim_time)
        estop = EStop()
        for arm in ARMS:
            a = SimArm(self.cell, arm)
            driver = ArmDriver(arm, a, estop=estop, clock=lambda: self.cell.sim_time)
            driver.ensure_connected()
            self.arms[arm] = ArmMover(driver, lambda: self.cell.step(PERIOD_S), speed_rad_s=1.0)
            g = SimGripper(self.cell, arm)
            g.connect()
            self.grippers[arm] = g
        for name in cameras:
            cam = SimCamera(self.cell, name, self.image_hw[name])
            cam.open()
            self.cameras[name] = cam
        self.factory_intrinsics = self._factory_intrinsics
        ops = self.operator
        if isinstance(ops, SimOperator):
            ops.actions.setdefault("board_on_flange", self.board_on_flange)
            ops.actions.setdefault("board_on_table", self.board_on_table)
            tip = GRIPPER_PALM_LEN_M + GRIPPER_FINGER_LEN_M
            for arm in ARMS:
                ops.actions.setdefault(f"wrist_start_{arm}", lambda arm=arm: self.wrist_start(arm))
                for k, p in enumerate(TOUCH_POINTS_CELL):
                    ops.actions.setdefault(f"touch_{arm}_{k}",
                                           lambda arm=arm, p=p, k=k: self.touch(arm, p, tip, 0.3 * k))
                for k in range(50):   # the sim's "calliper": its fingers' gap
                    ops.measurements.setdefault(
                        f"gap_{arm}_{k}", lambda arm=arm: self.cell.gripper_opening(arm) * GRIPPER_STROKE_M * 1e3)
        self.show_board(None)

    # --- time ------------------------------------------------------------------------------------------------
    def _wait(self, seconds: float) -> None:
        self.cell.step(max(seconds, PERIOD_S))

    # --- cameras ---------------------------------------------------------------------------------------------
    def _factory_intrinsics(self, name: str) -> Intrinsics | None:
        """The D405s' "factory calibration": the sim camera's pinhole (MuJoCo: vertical field of view, square
        pixels, centred principal point). cam_high (the L515 read as UVC) has none, as on the real cell."""
        if name == "cam_high":
            return None
        m = self.cell.model
        fovy = np.radians(m.cam_fovy[m.camera(name).id])
        h, w = self.image_hw[name]
        f = (h / 2.0) / np.tan(fovy / 2.0)
        return Intrinsics(w, h, f, f, (w - 1) / 2.0, (h - 1) / 2.0)

    # --- the operator's hands ----------------------------------------------------------------------------------
    def show_board(self, where: str | None) -> None:
        """Show the board on the ``table``, on the ``flange``, or nowhere (None)."""
        m = self.cell.model
        for place in ("table", "flange"):
            m.geom_group[m.geom(f"calib_board_{place}").id] = 0 if place == where else HIDDEN_GROUP
        for cam in self.cameras.values():
            cam.forget_frame()

    def board_on_flange(self) -> None:
        self.show_board("flange")
        self.arms["left"].move_to(HOME_Q)
        self.arms["right"].move_to(HIGH_START_Q)

    def board_on_table(self) -> None:
        self.show_board("table")
        for arm in ARMS:
            self.arms[arm].move_to(HOME_Q)

    def wrist_start(self, arm: str, height_m: float = 0.30) -> None:
        """Jog ``arm`` so its wrist camera looks straight down at the table board's centre from ``height_m``."""
        from ate_description.ik import IKConfig, PinocchioIK

        w, h = self.board.size_m
        centre_cell = self.table_board_T_cell @ np.array([w / 2, h / 2, 0.0, 1.0])
        base = self.calibration.t_cell_base(arm)
        centre = (inv_transform(base) @ centre_cell)[:3]
        X = self.calibration.camera(f"cam_{arm}_wrist").transform()        # the true mount: the operator looks
        # optical z down, optical x along the base's -y (the image's rows along the arm's reach)
        R_cam = np.column_stack([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
        T_cam = make_transform(R_cam, centre + np.array([0.0, 0.0, height_m]))
        F = T_cam @ inv_transform(X)
        sol = PinocchioIK(IKConfig(max_iter=300)).solve(F, HOME_Q)
        if not sol.converged:
            raise UserError(f"sim operator: no posture puts cam_{arm}_wrist over the board ({sol.pos_err_m:.3f} m)")
        for other in ARMS:   # the other arm parked out of the way first (both reach over the same board)
            if other != arm:
                self.arms[other].move_to(PARKED_Q[other])
        self.arms[arm].move_to(sol.q)

    def touch(self, arm: str, point_cell, tip_m: float, yaw_rad: float = 0.0) -> None:
        """Jog ``arm`` until a pointer ``tip_m`` along its flange z touches ``point_cell`` (gripper pointing down,
        turned by ``yaw_rad``); the other arm is parked first."""
        from ate_description.ik import IKConfig, PinocchioIK

        p = (inv_transform(self.calibration.t_cell_base(arm)) @ np.append(np.asarray(point_cell, float), 1.0))[:3]
        R = np.diag([-1.0, 1.0, -1.0]) @ rot_z(yaw_rad)
        F = make_transform(R, p) @ make_transform(np.eye(3), (0.0, 0.0, -tip_m))
        sol = PinocchioIK(IKConfig(max_iter=300)).solve(F, HOME_Q)
        if not sol.converged:
            raise UserError(f"sim operator: the {arm} arm cannot touch {np.round(point_cell, 3).tolist()}")
        for other in ARMS:
            if other != arm:
                self.arms[other].move_to(PARKED_Q[other])
        self.arms[arm].move_to(sol.q)

    def close(self) -> None:
        super().close()
        self.cell.close()
        if self._tmp is not None:
            self._tmp.cleanup()

