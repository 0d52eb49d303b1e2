"""Dual-operator teleoperation: Vision Pro / Joy-Con sources, frame alignment, IK, session, recorder."""
