"""Drivers of the RealMan arms, OmniPicker grippers and RealSense cameras: backends, safety, emulators, thin ROS nodes."""
