"""The operator's keyboard prompt for a running cell: start / pause the policy, resume a cell hold, e-stop.

    python -m ate_deploy.operator        (in a second terminal, next to ``ros2 launch ... policy.launch.py``)

Keys (then Enter): ``s`` /policy/start, ``p`` /policy/pause, ``r`` /cell/resume (after a hold), ``e`` e-stop
(publishes the latched /estop itself and calls /estop/trigger), ``x`` /estop/reset, ``q`` quit. Every service call
has a timeout, so a missing node is reported instead of hanging the prompt.
"""

from __future__ import annotations

import sys

KEYS = {"s": "/policy/start", "p": "/policy/pause", "r": "/cell/resume", "x": "/estop/reset"}


def main(argv=None) -> int:
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

    print(__doc__.split("\n\n")[2].replace("\n", " "), flush=True)
    try:
        for line in sys.stdin:
            key = line.strip().lower()[:1]
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
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
