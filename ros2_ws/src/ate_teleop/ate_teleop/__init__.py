"""The dual-operator teleop node (ROS 2) over the pure-Python teleop package."""
