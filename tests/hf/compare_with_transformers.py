#!/usr/bin/env python3
"""Compare Nexus' logits with Hugging Face transformers' BambaForCausalLM on an exported model.

Local check, not part of CI (it needs torch + transformers):

    python3 -m venv /tmp/hfenv
    /tmp/hfenv/bin/pip install numpy safetensors transformers torch

Usage, either from files already written:

    compare_with_transformers.py EXPORT_DIR --tokens 1,2,3 --logits NEXUS_LOGITS.npy

or letting the `nexus` command write them from a checkpoint (or an export folder):

    compare_with_transformers.py --nexus build/nexus --model runs/x/checkpoints \\
        [--tokens 1,2,3 | --text "hello"] [--work DIR]

    which runs `nexus export MODEL --out WORK/hf --dtype fp32` and
    `nexus eval --model MODEL --tokens ... --logits-out WORK/nexus_logits.npy`.

EXPORT_DIR may also be a directory holding tokens.txt and nexus_logits.npy next to the export
(what a driver program writes); then --tokens and --logits are optional.

The model is loaded with torch_dtype=float32 and attn_implementation="eager" (the pure-PyTorch
Mamba-2 path; no CUDA kernels). Exit status 0 when the max relative error
max|hf - nexus| / max|hf| is below --tol (default 1e-4), 1 otherwise.

--ungroup-gated-norm makes transformers' gated RMSNorm span all of d_inner (one group) as Nexus'
does, to check everything else of a model with mamba_n_groups > 1.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export_dir", nargs="?", help="exported Hugging Face folder")
    ap.add_argument("--tokens", help="comma-separated token ids")
    ap.add_argument("--text", help="text for the byte tokenizer (one token per byte)")
    ap.add_argument("--logits", help="Nexus logits [T, V] float32 .npy")
    ap.add_argument("--nexus", help="path to the nexus binary (with --model)")
    ap.add_argument("--model", help="checkpoint file/dir or export folder for nexus export/eval")
    ap.add_argument("--work", help="scratch folder for --nexus mode (default: a temporary one)")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--ungroup-gated-norm", action="store_true")
    return ap.parse_args()


def main():
    a = parse_args()
    if a.nexus:
        if not a.model:
            sys.exit("--nexus needs --model")
        work = a.work or tempfile.mkdtemp(prefix="nexus_hf_")
        export_dir = os.path.join(work, "hf")
        logits_path = os.path.join(work, "nexus_logits.npy")
        seq = ["--tokens", a.tokens] if a.tokens else ["--text", a.text or "Hello, Bamba! " * 5]
        subprocess.run([a.nexus, "export", a.model, "--out", export_dir, "--dtype", "fp32"], check=True)
        subprocess.run([a.nexus, "eval", "--model", a.model, *seq, "--logits-out", logits_path], check=True)
        tokens = [int(t) for t in a.tokens.split(",")] if a.tokens else list((a.text or "Hello, Bamba! " * 5).encode())
    else:
        if not a.export_dir:
            sys.exit("give EXPORT_DIR (or --nexus and --model)")
        export_dir = a.export_dir
        logits_path = a.logits or os.path.join(export_dir, "nexus_logits.npy")
        if a.tokens:
            tokens = [int(t) for t in a.tokens.split(",")]
        elif a.text:
            tokens = list(a.text.encode())
        else:
            with open(os.path.join(export_dir, "tokens.txt")) as f:
                tokens = [int(t) for t in f.read().strip().split(",")]

    import torch
    import transformers
    from transformers import BambaForCausalLM
    from transformers.models.bamba import modeling_bamba

    if a.ungroup_gated_norm:
        init = modeling_bamba.BambaRMSNormGated.__init__

        def one_group(self, hidden_size, group_size, eps=1e-6):
            init(self, hidden_size, hidden_size, eps)

        modeling_bamba.BambaRMSNormGated.__init__ = one_group

    with open(os.path.join(export_dir, "config.json")) as f:
        cfg = json.load(f)
    model = BambaForCausalLM.from_pretrained(export_dir, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([tokens], dtype=torch.long), labels=torch.tensor([tokens], dtype=torch.long))
    hf = out.logits[0].float().numpy()
    ours = np.load(logits_path)
    if ours.shape != hf.shape:
        sys.exit(f"shape mismatch: nexus {ours.shape}, transformers {hf.shape}")
    err = np.abs(hf - ours)
    rel = err.max() / np.abs(hf).max()
    per_pos = err.max(axis=1) / np.abs(hf).max()
    chunk = cfg.get("mamba_chunk_size")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"export {export_dir}: T = {len(tokens)}, V = {hf.shape[1]}, chunk = {chunk}, "
          f"attention layers {cfg.get('attn_layer_indices')}")
    print(f"max |hf - nexus| = {err.max():.3e}, max |hf| = {np.abs(hf).max():.3e}, max relative error = {rel:.3e}")
    print(f"transformers loss (mean next-token) = {out.loss.item():.6f}")
    worst = int(per_pos.argmax())
    print(f"worst position {worst} (relative error {per_pos[worst]:.3e}); "
          f"first position above tol: {next((i for i, e in enumerate(per_pos) if e > a.tol), None)}")
    ok = rel < a.tol
    print("PASS" if ok else "FAIL", f"(tol {a.tol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
