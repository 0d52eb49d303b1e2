"""The OpenCV the calibration procedures need is the one installed (pyproject pins both wheels below 5)."""

import cv2


def test_hand_eye_and_charuco_are_available():
    # OpenCV 5.0's Python module (pulled in unpinned by avp-stream) has no calibrateHandEye; 4.x has both.
    assert int(cv2.__version__.split(".")[0]) < 5, cv2.__version__
    assert callable(cv2.calibrateHandEye)
    assert callable(cv2.calibrateRobotWorldHandEye)
    assert hasattr(cv2.aruco, "CharucoDetector") and hasattr(cv2.aruco, "CharucoBoard")
