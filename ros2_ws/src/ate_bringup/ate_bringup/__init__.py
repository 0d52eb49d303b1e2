"""Bring-up of the dual-arm RealMan cell: config loading, graph descriptions, launch helpers."""
