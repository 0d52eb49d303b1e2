"""Calibration procedures that write the YAML the bring-up reads."""
