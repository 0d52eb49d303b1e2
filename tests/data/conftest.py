"""Fixtures of the data tests (recorder, bag conversion, audit)."""

from __future__ import annotations

import pytest
from ate_data_testkit import H, TASK, W


@pytest.fixture
def small_recorder_cfg(tmp_path):
    from ate_policy.recording.recorder import RecorderConfig

    return RecorderConfig(root=str(tmp_path / "ds"), task=TASK, image_height=H, image_width=W)
