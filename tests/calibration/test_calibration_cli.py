"""``python -m calibration``: the command line around the procedures (sim dry run, report, show, clear errors)."""

import pytest
import yaml

from ate_description.calibration import load_calibration
from calibration.__main__ import main

pytest.importorskip("mujoco")


def test_gripper_dry_run_on_the_sim_writes_yaml_and_report_and_show_prints_them(tmp_path, capsys):
    out = tmp_path / "cal.yaml"
    assert main(["gripper", "--robot", "sim", "--arms", "left", "--steps", "3", "--output", str(out)]) == 0
    cal = load_calibration(out)
    g = cal.left.gripper
    assert g.command == pytest.approx([0.0, 0.5, 1.0])
    assert g.gap_mm[-1] == pytest.approx(120.0, abs=1.0)           # the sim's fingers open the full 120 mm
    assert not cal.right.gripper.calibrated()
    rec = cal.procedures["gripper"]
    assert rec.date and rec.report == "cal_report/gripper.md"
    report = tmp_path / "cal_report"
    assert (report / "gripper.md").exists() and (report / "gripper_stroke.png").exists()
    assert yaml.safe_load(out.read_text())["version"] == 1
    capsys.readouterr()
    assert main(["show", "--config", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "gripper stroke: 0." in shown and "mm over commands 0.00 .. 1.00 (3 points)" in shown
    assert "procedure gripper" in shown and "left base in the cell" in shown


def test_print_board_writes_the_printable_pattern(tmp_path):
    png = tmp_path / "board.png"
    assert main(["cameras", "--print-board", str(png), "--squares", "7x5", "--square-mm", "40"]) == 0
    import cv2

    from calibration.charuco import BoardSpec, detect

    img = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    det = detect(img, BoardSpec())
    assert det is not None and len(det) == 24                       # every inner corner of a 7x5 board


@pytest.mark.parametrize("argv, message", [
    (["bases", "--robot", "sim"], "--robot sim is a dry run"),
    (["cameras", "--squares", "7by5", "--robot", "sim", "--output", "x.yaml"], "--squares must look like 7x5"),
    (["gripper", "--robot", "sim", "--arms", "left", "--steps", "3", "--left-gaps-mm", "100,2", "--output", "x.yaml"],
     "has 2 values; the sweep has --steps 3"),
    (["cameras", "--dictionary", "DICT_9X9", "--print-board", "x.png"], "unknown ArUco dictionary"),
])
def test_bad_command_lines_are_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_gripper_on_the_emulated_cell_uses_the_real_backend_and_the_given_gaps(tmp_path):
    # robot emulated: drivers.yaml's gripper backend (python-can, USB-CAN-A framing) against the emulator on a pty.
    out = tmp_path / "cal.yaml"
    argv = ["gripper", "--robot", "emulated", "--arms", "left", "--steps", "3", "--left-gaps-mm", "117.5,61,1.5",
            "--yes", "--output", str(out)]
    assert main(argv) == 0
    g = load_calibration(out).left.gripper
    assert g.gap_mm == [1.5, 61.0, 117.5] and g.command == pytest.approx([0.0, 0.5, 1.0])
    assert g.feedback == pytest.approx([0.0, 0.5, 1.0], abs=0.02)
