"""The operator's console for a running cell: start / pause the policy, resume a cell hold, e-stop.

    python -m ate_deploy.operator              (a second terminal, next to ``ros2 launch ... policy.launch.py``)
    python -m ate_deploy.operator --joycon L   (the same from a Joy-Con, besides the keyboard)

Keys (then Enter): ``s`` /policy/start, ``p`` /policy/pause, ``r`` /cell/resume (after a hold), ``e`` e-stop
(publishes the latched /estop itself and calls /estop/trigger), ``x`` /estop/reset, ``q`` quit. Every service call
has a timeout, so a missing node is reported instead of hanging the prompt.

Joy-Con buttons (``JOYCON_KEYS``): L up start, down pause, right resume, capture e-stop, minus reset; R x start, b
pause, a resume, home e-stop, plus reset (the e-stop buttons are the teleop's).
"""

from __future__ import annotations

import sys
import time

KEYS = {"s": "/policy/start", "p": "/policy/pause", "r": "/cell/resume", "x": "/estop/reset"}
JOYCON_KEYS = {"L": {"up": "s", "down": "p", "right": "r", "capture": "e", "minus": "x"},
               "R": {"x": "s", "b": "p", "a": "r", "home": "e", "plus": "x"}}


def main(argv=None) -> int:
    import argparse
    import queue
    import threading

    ap = argparse.ArgumentParser(prog="python -m ate_deploy.operator", description=__doc__.splitlines()[0])
    ap.add_argument("--joycon", choices=("L", "R"), default=None, help="also take the keys from this Joy-Con")
    args = ap.parse_args(argv)
    import rclpy
    from std_msgs.msg import Bool
    from std_srvs.srv import Trigger

    from ate_drivers.nodes.common import ESTOP_QOS

    rclpy.init()
    node = rclpy.create_node("operator")
    estop_pub = node.create_publisher(Bool, "/estop", ESTOP_QOS)

    def call(service: str, timeout_s: float = 5.0) -> str:
        cli = node.create_client(Trigger, service)
        if not cli.wait_for_service(timeout_sec=timeout_s):
            return f"{service}: not offered (is the graph running?)"
        fut = cli.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(node, fut, timeout_sec=timeout_s)
        r = fut.result()
        return f"{service}: no answer within {timeout_s} s" if r is None else \
            f"{service}: {'ok' if r.success else 'refused'}: {r.message}"

    keys: queue.Queue[str] = queue.Queue()

    def stdin_reader() -> None:
        for line in sys.stdin:
            keys.put(line.strip().lower()[:1])
        keys.put("q")
    threading.Thread(target=stdin_reader, daemon=True).start()
    joycon = None
    if args.joycon:
        from ate_description.errors import UserError
        from teleop.buttons import JoyConConfig, JoyConSource
        joycon = JoyConSource(JoyConConfig(side=args.joycon))
        try:
            joycon.open()
        except UserError as e:
            print(f"error: {e}", flush=True)
            node.destroy_node()
            rclpy.shutdown()
            return 2
        mapping = JOYCON_KEYS[args.joycon]

        def joycon_reader() -> None:
            held: frozenset = frozenset()
            while True:
                raw = joycon.read()
                now = raw.pressed if raw is not None else frozenset()
                for b in now - held:              # a press fires once
                    if b in mapping:
                        keys.put(mapping[b])
                held = now
                time.sleep(0.02)
        threading.Thread(target=joycon_reader, daemon=True).start()
    print(__doc__.split("\n\n")[2].replace("\n", " "), flush=True)
    try:
        while True:
            key = keys.get()
            if key == "q":
                break
            if key == "e":
                estop_pub.publish(Bool(data=True))
                print("e-stop published on /estop; " + call("/estop/trigger", 1.0), flush=True)
            elif key in KEYS:
                res = call(KEYS[key])
                if key == "x" and ": ok:" in res:
                    # our latched True must not outlive the reset for a node that starts later
                    estop_pub.publish(Bool(data=False))
                print(res, flush=True)
            elif key:
                print("keys: s start, p pause, r resume the cell, e e-stop, x reset the e-stop, q quit", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        if joycon is not None:
            joycon.close()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
