"""Episode recording: stream synchronisation (``sync``), crash-safe commits (``durable``), the recorder."""
