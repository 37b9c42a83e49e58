"""Maintenance commands run by hand (``python -m affine.tools.<name>``), not by any stage."""
