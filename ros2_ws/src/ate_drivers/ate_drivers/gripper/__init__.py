"""AgiBot OmniPicker gripper over CAN (python-can): byte layout, backend, emulator."""
