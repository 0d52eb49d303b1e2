"""RealMan RM75-6s arm: SDK backend (``realman.py``), its config, and the controller emulator used by tests."""
