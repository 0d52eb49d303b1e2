"""Thin rclpy nodes: parameters, topics, timers and message conversion around the pure-Python driver objects."""
