#!/usr/bin/python3
"""Plot the receptive field per layer that `nexus inspect --receptive-field` computed.

    trainer/plot_receptive_field.py receptive_field.png.jsonl --out receptive_field.png   (python3-matplotlib)

Left: how far back the last position can have received information after each layer (log scale,
T - 1 is the whole prefix). Right: which distances are reached, per layer (dilated and log
neighborhoods leave gaps that the reach alone does not show).
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")  # files only: works on headless machines
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="the .jsonl file nexus inspect --receptive-field wrote")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--title", default="", help="plot title (the config)")
    args = parser.parse_args()

    rows = []
    with open(args.data) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                print(f"{args.data}:{number}: not a JSON line ({e})", file=sys.stderr)
                return 1
    if not rows:
        print(f"{args.data}: no layers", file=sys.stderr)
        return 1
    T = rows[0]["T"]
    layers = [r["layer"] for r in rows]

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    reach = [max(r["reach"], 0.5) for r in rows]  # a reach of 0 still shows on a log axis
    colors = ["tab:orange" if r["mixer"] == "A" else "tab:blue" for r in rows]
    ax.plot(layers, reach, "-", color="gray", linewidth=1)
    ax.scatter(layers, reach, c=colors, zorder=3)
    ax.axhline(T - 1, color="black", linestyle="--", linewidth=1, label=f"whole prefix (T-1 = {T - 1})")
    for r, y in zip(rows, reach):
        if r["mixer"] == "A":
            ax.annotate(r["neighborhood"], (r["layer"], y), textcoords="offset points", xytext=(4, -12), fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("layer (orange: attention, blue: Mamba-2)")
    ax.set_ylabel("reach (positions back)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)

    density = [r["density"] for r in rows]
    image = ax2.imshow(density, aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1,
                       extent=(0, T, layers[0] - 0.5, layers[-1] + 0.5), interpolation="nearest")
    ax2.set_xlabel("distance back from position T-1")
    ax2.set_ylabel("layer")
    fig.colorbar(image, ax=ax2, label="fraction of positions reached")
    if args.title:
        fig.suptitle(f"receptive field: {args.title}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
