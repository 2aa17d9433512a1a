#!/usr/bin/env python3
"""Write the golden fixture tests/hf/golden/: logits of a tiny hybrid model computed by Hugging Face
transformers' BambaForCausalLM, which tests/trainer/test_hf_golden.cpp compares Nexus' forward
pass with in CI, without torch.

Run once (and again only when the fixture's design changes), with torch + transformers installed:

    python3 -m venv /tmp/hfenv && /tmp/hfenv/bin/pip install numpy torch transformers
    /tmp/hfenv/bin/python tests/hf/make_golden_fixture.py [--out tests/hf/golden]

The model's weights are not stored: every tensor is generated from (seed, tensor name) by
SplitMix64, which this script and the C++ test implement identically, so the fixture stays a few
KB. Value i of tensor `name` is

    s  = seed ^ fnv1a64(name);  z_i = splitmix64(s) (s advanced by 0x9E3779B97F4A7C15 per value)
    u  = (z_i >> 40) / 2^24                       exact in float and double
    w  = float32(offset + scale * (2u - 1))       offset, scale: float32 values, per tensor

with the arithmetic in double: scale has 24 significant bits and 2u - 1 at most 25, so the
product is exact and the sum rounds once, with or without a fused multiply-add. Both sides hence
get bit-identical weights. Offsets and scales give a trained-looking model: norms near 1,
projections with variance 1/fan_in, dt and A in Mamba-2's usual ranges, so every layer matters.

The configuration exercises what the golden test is there to guard: the Mamba B and C
projections and their groups (mamba_n_groups = 2, 2 heads per group), a ragged last SSD chunk
(T = 19 over chunks of 8), one attention layer between Mamba layers (GQA, partial RoPE), and a
batch of two different sequences. transformers runs in fp32 with attn_implementation="eager" (the
pure-PyTorch Mamba-2 path); the script also runs it in fp64 (where transformers keeps some steps in
fp32) and prints the difference, the fp32 reference's own rounding.
"""
import argparse
import json
import os
import sys

import numpy as np

SEED = 20261207
MASK64 = (1 << 64) - 1

CONFIG = dict(
    vocab_size=16,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=4,
    attn_layer_indices=[1],  # pattern MAMM
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    mamba_n_heads=4,
    mamba_d_head=16,
    mamba_n_groups=2,
    mamba_d_state=8,
    mamba_d_conv=4,
    mamba_expand=2,
    mamba_chunk_size=8,
    mamba_conv_bias=True,
    mamba_proj_bias=False,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=False,
    pad_token_id=None,
    bos_token_id=None,
    eos_token_id=None,
)
BATCH, SEQ_LEN = 2, 19


def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


def generate(name, numel, offset, scale):
    """The tensor's values as float32, exactly as the C++ test makes them."""
    state = (SEED ^ fnv1a64(name)) & MASK64
    out = np.empty(numel, dtype=np.float32)
    for i in range(numel):
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        u = (z >> 40) / float(1 << 24)
        out[i] = np.float32(offset + scale * (2.0 * u - 1.0))
    return out


def f32(x):
    return float(np.float32(x))


def rule(name, shape):
    """(offset, scale) of tensor `name`: uniform on [offset - scale, offset + scale]."""
    if name.endswith("layernorm.weight") or name.endswith("mamba.norm.weight"):
        return 1.0, 0.25
    if name.endswith("embed_tokens.weight"):
        return 0.0, 1.0
    if name.endswith("conv1d.weight"):
        return 0.0, 0.5
    if name.endswith("conv1d.bias"):
        return 0.0, 0.1
    if name.endswith("dt_bias"):
        return -2.0, 1.0  # softplus(-3 .. -1) = 0.05 .. 0.31: short and long memory
    if name.endswith("A_log"):
        return 1.0, 1.0   # A = -exp(0 .. 2) = -1 .. -7.4
    if name.endswith(".D"):
        return 1.0, 0.5
    if len(shape) == 2:   # projections: variance 1 / fan_in
        return 0.0, f32((3.0 / shape[1]) ** 0.5)
    sys.exit(f"no generation rule for tensor {name} {shape}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden"))
    a = ap.parse_args()

    import torch
    import transformers
    from transformers import BambaConfig, BambaForCausalLM

    torch.manual_seed(0)
    config = BambaConfig(**CONFIG)
    config._attn_implementation = "eager"  # the plain PyTorch path, no fused kernels
    model = BambaForCausalLM(config).eval()
    tensors, state = [], {}
    for name, value in model.state_dict().items():
        shape = list(value.shape)
        offset, scale = rule(name, shape)
        offset, scale = f32(offset), f32(scale)
        tensors.append({"name": name, "shape": shape, "offset": offset, "scale": scale})
        state[name] = torch.from_numpy(generate(name, int(np.prod(shape)), offset, scale).reshape(shape))
    model.load_state_dict(state, strict=True)

    rng = np.random.default_rng(SEED)
    tokens = rng.integers(0, CONFIG["vocab_size"], size=(BATCH, SEQ_LEN)).tolist()
    ids = torch.tensor(tokens, dtype=torch.long)

    def run(dtype):
        m = BambaForCausalLM(config).eval()
        m.load_state_dict(state, strict=True)
        m = m.to(dtype)
        with torch.no_grad():
            return m(ids).logits.to(torch.float64).numpy()

    logits32 = run(torch.float32)
    logits64 = run(torch.float64)
    scale = np.abs(logits64).max()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"logits {list(logits32.shape)}, max |logit| = {scale:.4f}")
    fp32_error = np.abs(logits32 - logits64).max() / scale
    print(f"fp32 vs fp64 transformers: max |diff| / max |logit| = {fp32_error:.3e}")

    os.makedirs(a.out, exist_ok=True)
    config.save_pretrained(a.out)
    header = {
        "about": "Made by tests/hf/make_golden_fixture.py (see there); read by tests/trainer/test_hf_golden.cpp. "
                 "Do not edit: regenerate.",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "reference_dtype": "float32",
        "fp32_vs_fp64_relative": float(f"{fp32_error:.3g}"),
        "seed": SEED,
    }
    # One line per tensor and per sequence, so the file reads (and diffs) well; the logits,
    # flattened [B, T, V], with the 9 significant digits that round-trip a float32.
    lines = ["{"] + [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in header.items()]
    lines += [' "tensors": ['] + [f"  {json.dumps(t)}," for t in tensors]
    lines[-1] = lines[-1].rstrip(",")
    lines += [" ],", ' "tokens": [' + ", ".join(json.dumps(t) for t in tokens) + "],"]
    lines += [f' "logits_shape": {json.dumps(list(logits32.shape))},']
    lines += [' "logits": [' + ",".join(f"{v:.9g}" for v in logits32.astype(np.float32).ravel()) + "]", "}", ""]
    text = "\n".join(lines)
    path = os.path.join(a.out, "golden.json")
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote {path} ({len(text)} bytes) and {os.path.join(a.out, 'config.json')}")


if __name__ == "__main__":
    main()
