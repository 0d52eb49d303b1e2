"""The ChArUco board: its definition, detection, a board pose from one view, intrinsics from many.

One board serves every camera step (``calibration.cameras``). Its frame is OpenCV's: origin at the board's
top-left corner as printed, x along the printed columns, y down the printed rows, z into the board (the printed
face looks along -z). ``BoardSpec`` is recorded in the calibration YAML's inputs, so a result says which board
(and which square size) it was measured with.

OpenCV >= 4.7 has ArUco/ChArUco in its main module (no contrib package); the pyproject pins it below 5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ate_description.errors import UserError


@dataclass
class BoardSpec:
    """A printed ChArUco board. Measure the printed square with a calliper: the metric scale of every result
    comes from ``square_m``."""

    squares_x: int = 7
    squares_y: int = 5
    square_m: float = 0.04
    marker_m: float = 0.03
    dictionary: str = "DICT_4X4_50"

    def validate(self) -> None:
        if self.squares_x < 3 or self.squares_y < 3:
            raise UserError(f"board needs at least 3x3 squares, got {self.squares_x}x{self.squares_y}")
        if not 0 < self.marker_m < self.square_m:
            raise UserError(f"board marker_m ({self.marker_m}) must be positive and smaller than square_m "
                            f"({self.square_m})")
        import cv2

        if not hasattr(cv2.aruco, self.dictionary):
            raise UserError(f"unknown ArUco dictionary {self.dictionary!r} (e.g. DICT_4X4_50, DICT_5X5_100)")

    @property
    def size_m(self) -> tuple[float, float]:
        """(width, height) of the chequered area in metres."""
        return self.squares_x * self.square_m, self.squares_y * self.square_m

    def board(self):
        import cv2

        self.validate()
        d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_m, self.marker_m, d)

    def corners_m(self) -> np.ndarray:
        """(N, 3) chessboard corners in the board frame, indexed by ChArUco corner id."""
        return np.asarray(self.board().getChessboardCorners(), dtype=np.float64).reshape(-1, 3)

    def image(self, px_per_square: int = 100, margin_squares: float = 0.5) -> np.ndarray:
        """The printable pattern (grey uint8) with a white margin of ``margin_squares`` squares on each side."""
        m = int(round(margin_squares * px_per_square))
        w = self.squares_x * px_per_square + 2 * m
        h = self.squares_y * px_per_square + 2 * m
        return self.board().generateImage((w, h), marginSize=m, borderBits=1)


@dataclass
class Detection:
    """ChArUco corners found in one image: ids and pixel positions (sub-pixel refined by OpenCV)."""

    ids: np.ndarray       # (N,) corner ids
    corners: np.ndarray   # (N, 2) pixels, OpenCV convention (pixel centres at integers)
    image_hw: tuple[int, int]

    def __len__(self) -> int:
        return len(self.ids)


def detect(image: np.ndarray, spec: BoardSpec, min_corners: int = 6) -> Detection | None:
    """ChArUco corners in an RGB (or grey) image; None when fewer than ``min_corners`` are found."""
    import cv2

    img = np.asarray(image)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    detector = cv2.aruco.CharucoDetector(spec.board())
    corners, ids, _, _ = detector.detectBoard(grey)
    if ids is None or len(ids) < min_corners:
        return None
    return Detection(ids.reshape(-1).astype(int), corners.reshape(-1, 2).astype(np.float64), grey.shape[:2])


@dataclass
class Intrinsics:
    """Pinhole intrinsics (pixels) at ``width`` x ``height`` and OpenCV distortion (k1 k2 p1 p2 k3)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    dist: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def D(self) -> np.ndarray:
        return np.asarray(self.dist, dtype=np.float64)

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera at another image size (a resize, no crop): OpenCV pixel centres stay consistent."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(width, height, self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                          (self.cy + 0.5) * sy - 0.5, self.dist)


def project(points_cam_board: np.ndarray, T_cam_board: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Pixels of board points (N, 3) seen by a camera at pose ``T_cam_board`` (board in the camera frame)."""
    import cv2

    rvec, _ = cv2.Rodrigues(np.asarray(T_cam_board[:3, :3], dtype=np.float64))
    px, _ = cv2.projectPoints(np.asarray(points_cam_board, dtype=np.float64).reshape(-1, 1, 3), rvec,
                              np.asarray(T_cam_board[:3, 3], dtype=np.float64), intr.K, intr.D)
    return px.reshape(-1, 2)


def board_pose(det: Detection, corners_m: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, float]:
    """``(T_cam_board, rms_px)``: the board's pose in the camera's optical frame from one view (PnP, refined);
    ``corners_m`` is ``BoardSpec.corners_m()``."""
    import cv2

    obj = corners_m[det.ids]
    ok, rvec, tvec = cv2.solvePnP(obj, det.corners, intr.K, intr.D, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        raise UserError("the board's pose could not be solved from a view (corners degenerate?)")
    rvec, tvec = cv2.solvePnPRefineLM(obj, det.corners, intr.K, intr.D, rvec, tvec)
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(rvec)[0]
    T[:3, 3] = tvec.reshape(3)
    err = project(obj, T, intr) - det.corners
    return T, float(np.sqrt(np.mean(np.sum(err ** 2, axis=1))))


def estimate_intrinsics(dets: list[Detection], spec: BoardSpec) -> tuple[Intrinsics, float]:
    """``(intrinsics, rms_px)`` from several views of the board (OpenCV's calibrateCamera on ChArUco corners).

    Distortion: k1, k2 (the tangential terms and k3 stay 0: an overhead colour camera's lens needs no more, and
    fewer parameters keep the estimate stable with the few orientations an arm-held board shows)."""
    import cv2

    h, w = dets[0].image_hw
    obj = [spec.corners_m()[d.ids].astype(np.float32) for d in dets]
    img = [d.corners.astype(np.float32) for d in dets]
    flags = cv2.CALIB_ZERO_TANGENT_DIST | cv2.CALIB_FIX_K3
    rms, K, D, _, _ = cv2.calibrateCamera(obj, img, (w, h), None, None, flags=flags)
    D = np.asarray(D, dtype=float).reshape(-1)
    return Intrinsics(w, h, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                      tuple(float(x) for x in D[:5])), float(rms)
