"""affine-train: SFT + RL training and validator-aligned evaluation for the Affine environments."""

from affine.threads import set_openmp_defaults

__version__ = "0.1.0"

# before any affine module imports torch: libgomp reads its wait policy once, when torch loads it (affine.threads)
set_openmp_defaults()
