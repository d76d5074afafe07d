"""Frozen bfloat16 layers computing in float32 on a CPU without bfloat16 instructions (labkit.training.bf16_linear)."""

import subprocess
import sys

from labkit.training import bf16_linear

SAME_STEP = """
import torch
from labkit.training import bf16_linear
torch.manual_seed(0)
layer = torch.nn.Linear(64, 300).bfloat16().requires_grad_(False)
lora = torch.nn.Linear(64, 4, bias=False).bfloat16()              # trainable: PyTorch's own path
x = torch.randn(5, 64, dtype=torch.bfloat16, requires_grad=True)

def step():
    x.grad = None
    lora.weight.grad = None
    (layer(x).float().square().sum() + lora(x).float().sum()).backward()
    return layer(x).detach(), x.grad.clone(), lora.weight.grad.clone()

before = step()
bf16_linear.install()
after = step()
reference = (x.float() @ layer.weight.float().T + layer.bias.float())
print(all(torch.allclose(a.float(), b.float(), rtol=0.02, atol=0.05) for a, b in zip(before, after)),
      torch.equal(before[2], after[2]),
      torch.allclose(after[0].float(), reference, rtol=0.01, atol=0.02),
      after[0].dtype == torch.bfloat16 and after[1].dtype == torch.bfloat16,
      type(layer(x).grad_fn).__name__, type(lora(x).grad_fn).__name__,
      type(layer(input=x).grad_fn).__name__)                       # as llmcompressor's AWQ calls a layer
"""


def test_frozen_bf16_layers_give_the_same_step_in_float32():
    """The same outputs and input gradients as PyTorch's bfloat16 path, bfloat16 in and out; LoRA's own layer
    untouched. In a process of its own: install() patches nn.Linear for the whole process."""
    done = subprocess.run([sys.executable, "-c", SAME_STEP], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"] * 4 + ["Float32LinearBackward", "MmBackward0",
                                                   "Float32LinearBackward"]


def test_only_x86_cpus_without_bfloat16_instructions_need_it(monkeypatch):
    monkeypatch.delenv("LABKIT_BF16_LINEAR", raising=False)
    assert bf16_linear.needed({"avx", "avx2", "fma"})                      # AMD Zen 3, Intel before Cooper Lake
    assert not bf16_linear.needed({"avx2", "avx512f", "avx512_bf16"})      # Zen 4, Sapphire Rapids
    assert not bf16_linear.needed({"avx2", "amx_bf16"})
    assert not bf16_linear.needed(set())                                    # macOS, Windows: no /proc/cpuinfo
    assert not bf16_linear.needed({"asimd", "bf16"})                        # Arm
    monkeypatch.setenv("LABKIT_BF16_LINEAR", "native")
    assert not bf16_linear.needed({"avx2"})
    monkeypatch.setenv("LABKIT_BF16_LINEAR", "float32")
    assert bf16_linear.needed({"avx2", "avx512_bf16"})
