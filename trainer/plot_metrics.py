#!/usr/bin/python3
"""Plot a Nexus run's metrics.jsonl: training loss, eval loss and eval accuracy against steps.

    trainer/plot_metrics.py runs/tiny/metrics.jsonl   (Debian python3 + python3-matplotlib) [--out runs/tiny/metrics.png]
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")  # files only: works on headless machines
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", help="path to metrics.jsonl")
    parser.add_argument("--out", help="PNG to write (default: next to the metrics file)")
    args = parser.parse_args()

    steps, losses, eval_steps, eval_losses, acc_steps, accs = [], [], [], [], [], []
    with open(args.metrics) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"{args.metrics}:{number}: not a JSON line ({e})", file=sys.stderr)
                return 1
            if "loss" in row:
                steps.append(row["step"])
                losses.append(row["loss"])
            if "eval_loss" in row:
                eval_steps.append(row["step"])
                eval_losses.append(row["eval_loss"])
            if "eval_accuracy" in row:
                acc_steps.append(row["step"])
                accs.append(100.0 * row["eval_accuracy"])
    if not steps and not eval_steps:
        print(f"{args.metrics}: no step or eval lines", file=sys.stderr)
        return 1

    panels = 2 if accs else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot(steps, losses, label="train loss", linewidth=1)
    if eval_steps:
        ax.plot(eval_steps, eval_losses, "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    if accs:
        ax = axes[0][1]
        ax.plot(acc_steps, accs, "o-", color="tab:green")
        ax.set_xlabel("step")
        ax.set_ylabel("eval accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = args.out or args.metrics.rsplit(".", 1)[0] + ".png"
    fig.savefig(out, dpi=100)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
