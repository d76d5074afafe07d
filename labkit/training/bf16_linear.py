"""bfloat16 training on a CPU without bfloat16 instructions: frozen linear layers compute in float32. Lab 03.

The full-size recipe keeps Phi-3.5-mini in bfloat16 to fit 16 GB. On an x86 CPU without AVX-512 BF16 or AMX, PyTorch
2.13's bfloat16 matrix products take a slow path, and the one every LoRA step needs most, a frozen layer's input
gradient (`grad @ weight`), is the slowest: for 96 tokens through Phi-3.5's LM head, 57 s in bfloat16 against 0.3 s
with both operands turned into float32 first (2-core AMD EPYC, AVX2 only). One LoRA step of a 1-layer Phi-3.5-mini
shadow took 115 s instead of 1 s in float32.

`install()` makes every frozen `nn.Linear` that holds bfloat16 weights (and every one under `torch.no_grad()`, as in
AWQ's calibration; its forward was 2-7x slower in bfloat16) compute in float32 there, forward and backward:
one weight at a time is turned into float32 (at most 394 MB, the LM head) and the result goes back to bfloat16, so
the model stays in bfloat16 in memory. Trainable layers (the LoRA matrices, rank 8-16) keep PyTorch's own path.
No library does this for PyTorch on CPU: autocast to float32 is not offered for bfloat16 weights.
"""

from __future__ import annotations

import os

from ..core import sizing

# x86 flags of CPUs whose bfloat16 matrix products run in hardware
BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def needed(flags: set[str] | None = None) -> bool:
    """Whether this CPU lacks bfloat16 matrix instructions (an x86 CPU without AVX-512 BF16 or AMX).

    `LABKIT_BF16_LINEAR=native` or `=float32` overrides the check. Lab 03."""
    choice = os.environ.get("LABKIT_BF16_LINEAR", "")
    if choice in ("native", "float32"):
        return choice == "float32"
    flags = sizing.cpu_flags() if flags is None else flags
    return "avx2" in flags and not (BF16_FLAGS & flags)


def install() -> None:
    """Frozen bfloat16 `nn.Linear` layers compute in float32 from now on, in this process. Lab 03."""
    import torch
    import torch.nn.functional as F

    class Float32Linear(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, bias):
            ctx.save_for_backward(weight)
            out = F.linear(x.float(), weight.float(), None if bias is None else bias.float())
            return out.to(x.dtype)

        @staticmethod
        def backward(ctx, grad):
            (weight,) = ctx.saved_tensors
            grad_x = (grad.float() @ weight.float()).to(grad.dtype) if ctx.needs_input_grad[0] else None
            return grad_x, None, None

    plain_forward = torch.nn.Linear.forward

    def forward(self, input):     # nn.Linear's own signature: llmcompressor replays calls by its parameter names
        weight = self.weight
        frozen = not weight.requires_grad and (self.bias is None or not self.bias.requires_grad)
        if weight.dtype == torch.bfloat16 and weight.device.type == "cpu" and (frozen or not torch.is_grad_enabled()):
            return Float32Linear.apply(input, weight, self.bias)
        return plain_forward(self, input)

    torch.nn.Linear.forward = forward


def install_for(dtype: str) -> None:
    """`install()` when `dtype` is bfloat16 and this CPU needs it (AWQ's and the fine-tune's processes). Lab 03."""
    if dtype == "bfloat16" and needed():
        install()
