"""Runs inside vLLM's worker process: the call :meth:`affine.engine.VLLMEngine.load_weights` makes there.

vLLM mixes this class into its worker (``LLM(worker_extension_cls=...)``) so that ``LLM.collective_rpc`` can call
its methods by name.  Tensors do not travel through the RPC: the caller writes them to a safetensors file (on
``/dev/shm`` where it exists) and sends the path, which keeps the control message small whatever the model's size.
"""

from __future__ import annotations

from typing import Any


class WeightLoader:
    """Mixed into vLLM's worker class; ``self`` is the worker."""

    def affine_load_weights(self: Any, path: str) -> int:
        """Replace the served model's weights by the HF-named tensors in the safetensors file ``path``, through
        vLLM's in-place reload: the CPU backend repacks linear weights into its kernels' layout at load time (the
        original parameters are left empty), and the reload redoes that processing layer by layer."""
        from safetensors.torch import load_file

        weights = load_file(path)
        self.reload_weights(weights_iterator=iter(weights.items()), is_checkpoint_format=True)
        return len(weights)
