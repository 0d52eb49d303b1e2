"""ATE for the dual-arm RealMan: action InfoVAE, latent-guided fine-tuning, data tools, inference runtime.

Importing the package is light (no torch): heavy modules are imported by the commands that need them.
"""

__version__ = "0.1.0"
