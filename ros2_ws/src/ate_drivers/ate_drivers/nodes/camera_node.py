"""Camera node (one per camera): ``cameras/<name>/image_raw`` (sensor_msgs/Image, rgb8, stamped with the capture
time) and ``/diagnostics``. A camera that stops delivering (unplugged, playback ended) is reported and retried;
the node stays up."""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import Image

from ate_drivers import registry
from ate_drivers.nodes.common import IMAGE_QOS, diagnostic_array, load_config, monotonic_to_stamp, spin
from ate_drivers.nodes.messages import image_msg


class CameraNode(Node):
    def __init__(self):
        super().__init__("camera_driver")
        self.declare_parameter("camera", "cam_high")
        self.cam_name = self.get_parameter("camera").value
        self.cfg = load_config(self)
        from ate_drivers.camera.configuration_cameras import CameraConfig
        cam_cfg = self.cfg.cameras.get(self.cam_name, CameraConfig())
        self.camera = registry.make_camera(self.cfg.backend_names().camera, name=self.cam_name, config=cam_cfg,
                                           width=cam_cfg.width, height=cam_cfg.height)
        self.cam_cfg = cam_cfg
        self.opened = False
        self.published = 0
        self.errors = 0
        self.last_error = ""
        self.pub = self.create_publisher(Image, f"cameras/{self.cam_name}/image_raw", IMAGE_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._last_index = -1
        self.create_timer(1.0 / max(cam_cfg.fps, 1), self.on_tick)
        self.create_timer(self.cfg.diagnostics_period_s, self.on_diagnostics)

    def on_tick(self) -> None:
        try:
            if not self.opened:
                self.camera.open()
                self.opened = True
            frame = self.camera.read_latest(self.cam_cfg.max_age_ms)
        except Exception as e:  # unplugged / stalled / ended: report, keep the node up
            self.errors += 1
            if str(e) != self.last_error:
                self.get_logger().error(f"camera {self.cam_name}: {e}")
            self.last_error = str(e)
            return
        if frame.index == self._last_index:
            return
        self._last_index = frame.index
        self.pub.publish(image_msg(frame.image, self.cam_name, monotonic_to_stamp(self, frame.capture_time_s)))
        self.published += 1

    def on_diagnostics(self) -> None:
        level = 2 if self.last_error else 0
        values = {"published": str(self.published), "errors": str(self.errors), "last_error": self.last_error}
        self.pub_diag.publish(diagnostic_array(self, f"camera/{self.cam_name}", level,
                                               self.last_error or "ok", values))

    def close(self) -> None:
        try:
            self.camera.close()
        except Exception:
            pass


def main(argv=None) -> int:
    return spin(CameraNode)


if __name__ == "__main__":
    sys.exit(main())
