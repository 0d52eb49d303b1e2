"""Child process of test_crash_safety.py: records episodes, then gets killed with SIGKILL by its parent.

usage: crash_child.py ROOT MODE
  MODE mid-episode: save 2 episodes, start a 3rd, print MID_EPISODE and keep recording until killed.
  MODE mid-save:    save 2 episodes, then SIGKILL itself inside the 3rd save, after LeRobot's save_episode()
                    has written the episode but before it is finalized (the worst moment: parquet without
                    footer, info.json already counting the episode).
"""

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ate_data_testkit import H, TASK, W, feed_tick  # noqa: E402

from ate_description import contract  # noqa: E402
from ate_policy.recording.recorder import EpisodeRecorder, RecorderConfig  # noqa: E402

root, mode = sys.argv[1], sys.argv[2]
rec = EpisodeRecorder(RecorderConfig(root=root, task=TASK, image_height=H, image_width=W))
T0 = 1000.0
for ep, n in enumerate((6, 9)):
    rec.start_episode()
    for k in range(n):  # episode ep starts at T0 + 10 ep seconds (the clock is monotonic)
        feed_tick(rec, T0 + 10.0 * ep + k * contract.PERIOD_S, k)
    rep = rec.stop_and_save()
    print(f"SAVED {rep.episode_index} {rep.frames}", flush=True)

rec.start_episode()
if mode == "mid-save":
    real_finalize = rec._ds.finalize

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    rec._ds.finalize = die  # runs right after save_episode() inside the commit
    for k in range(5):
        feed_tick(rec, T0 + 20.0 + k * contract.PERIOD_S, k)
    rec.stop_and_save()
else:
    k = 0
    while True:
        feed_tick(rec, T0 + 20.0 + k * contract.PERIOD_S, k)
        k += 1
        if k == 10:
            print("MID_EPISODE", flush=True)
        time.sleep(0.005)
