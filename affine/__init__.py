"""affine-train: SFT + RL training and validator-aligned evaluation for the Affine environments."""

__version__ = "0.1.0"
