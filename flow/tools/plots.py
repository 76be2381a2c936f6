"""Plots of evaluation summaries (matplotlib, Agg backend, PNG files).

Every function takes the per-run summary dicts written by :mod:`flow.evaluate`
(``temperature``, ``label``, metric keys; infinities as ``float('inf')`` in memory)
and returns the path it wrote.  Non-finite values are left out of a curve and the
omission is written on the plot.
"""
from __future__ import annotations

import math
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _series(runs, key):
    xs, ys, dropped = [], [], 0
    for r in runs:
        v = r.get(key)
        if r.get("temperature") is None:
            continue
        if _finite(v):
            xs.append(r["temperature"])
            ys.append(v)
        elif v is not None:
            dropped += 1
    return xs, ys, dropped


def _vs_temperature(runs, keys: dict, ylabel: str, title: str, path: Path, note: str = "") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=110)
    notes = [note] if note else []
    plotted = 0
    for key, label in keys.items():
        xs, ys, dropped = _series(runs, key)
        if xs:
            ax.plot(xs, ys, "o-", label=label)
            plotted += 1
        if dropped:
            notes.append(f"{label}: {dropped} point(s) = +inf not drawn")
    ax.set_xlabel("temperature τ")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if plotted:
        ax.legend(fontsize=8)
    if notes:
        ax.text(0.02, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=7, va="bottom",
                wrap=True, bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_psnr(runs, path, shave_key: str) -> Path:
    return _vs_temperature(runs, {"psnr_rgb": "PSNR RGB (no shave)", shave_key: shave_key.replace("_", " ")},
                           "PSNR (dB)", "PSNR vs temperature", Path(path))


def plot_lr_psnr(runs, path) -> Path:
    return _vs_temperature(runs, {"lr_psnr_mean": "LR-PSNR NTIRE mean", "lr_psnr_worst": "LR-PSNR NTIRE worst",
                                  "lr_psnr_given": "LR-PSNR vs given LR"},
                           "LR-PSNR (dB)", "LR consistency vs temperature", Path(path),
                           note="NTIRE counts every method >= 45 dB as equal")


def plot_diversity(runs, path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=110)
    ax2 = ax.twinx()
    notes = []
    xs, ys, _ = _series(runs, "pixel_std")
    if xs:
        ax2.plot(xs, ys, "s--", color="tab:green", label="pixel std σ (0-255, right axis)")
    for key, label, color in (("mse_diversity", "MSE diversity (NTIRE 2022)", "tab:blue"),
                              ("ntire_diversity", "NTIRE LPIPS diversity", "tab:red")):
        xs, ys, _ = _series(runs, key)
        if xs:
            ax.plot(xs, ys, "o-", color=color, label=label)
        elif key == "ntire_diversity":
            notes.append("NTIRE LPIPS diversity unavailable (no AlexNet weights)")
    ax.set_xlabel("temperature τ")
    ax.set_ylabel("diversity score (0-100)")
    ax2.set_ylabel("pixel std σ")
    ax.set_title("Diversity vs temperature")
    ax.grid(alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    if h1 or h2:
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    if notes:
        ax.text(0.98, 0.03, "\n".join(notes), transform=ax.transAxes, fontsize=7, ha="right",
                bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_lpips(runs, path, reason: str | None) -> Path:
    note = "" if not reason else f"LPIPS unavailable: {reason}"
    return _vs_temperature(runs, {"lpips_mean": "LPIPS (alex v0.1)"}, "LPIPS (lower is better)",
                           "LPIPS vs temperature", Path(path), note=_wrap(note))


def _wrap(s: str, width: int = 70) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(s, width)) if s else s


def _label(r) -> str:
    t = r.get("temperature")
    return f"τ={t:g}" if t is not None else str(r.get("label", "?"))


def plot_perception_distortion(runs, path, lpips_available: bool) -> Path:
    """x = PSNR RGB (distortion), y = LPIPS (perception) when available; otherwise
    y = MSE diversity and pixel std (labelled: a diversity proxy, not perception)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=110)
    pts = [(r.get("psnr_rgb"), r) for r in runs]
    if lpips_available:
        keys = [("lpips_mean", "LPIPS (alex v0.1)", ax)]
        ax.set_ylabel("LPIPS (lower = better perception)")
        title = "Perception-distortion (LPIPS vs PSNR)"
    else:
        ax2 = ax.twinx()
        keys = [("mse_diversity", "MSE diversity (NTIRE 2022)", ax), ("pixel_std", "pixel std σ (right)", ax2)]
        ax.set_ylabel("MSE diversity score")
        ax2.set_ylabel("pixel std σ (0-255)")
        title = "Distortion vs diversity (LPIPS unavailable)"
    for (key, label, axis), marker, color in zip(keys, ("o-", "s--"), ("tab:blue", "tab:green")):
        xs, ys, labs = [], [], []
        for x, r in pts:
            y = r.get(key)
            if _finite(x) and _finite(y):
                xs.append(x)
                ys.append(y)
                labs.append(_label(r))
        if xs:
            axis.plot(xs, ys, marker, color=color, label=label)
            for x, y, lab in zip(xs, ys, labs):
                axis.annotate(lab, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("PSNR RGB (dB, no shave)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    handles = []
    for a in fig.axes:
        h, l_ = a.get_legend_handles_labels()
        handles += list(zip(h, l_))
    if handles:
        ax.legend([h for h, _ in handles], [l_ for _, l_ in handles], fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_best_of_n(runs, path) -> Path:
    """Mean over images of the best PSNR among the first n samples, vs n (SRFlow Fig. 17)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=110)
    for r in runs:
        curve = [v for v in r.get("best_of_n_psnr") or []]
        if curve and all(_finite(v) for v in curve):
            ax.plot(range(1, len(curve) + 1), curve, "o-", label=_label(r), markersize=3)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("n (samples)")
    ax.set_ylabel("best-of-n PSNR RGB (dB)")
    ax.set_title("Best of n samples")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_all(runs, out_dir, shave_key: str, lpips_reason: str | None) -> list[Path]:
    """All plots for a list of runs: the temperature plots when at least one run has a
    temperature, and always the perception-distortion and best-of-n plots."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if any(r.get("temperature") is not None for r in runs):
        paths += [plot_psnr(runs, out / "psnr_vs_temperature.png", shave_key),
                  plot_lr_psnr(runs, out / "lr_psnr_vs_temperature.png"),
                  plot_diversity(runs, out / "diversity_vs_temperature.png"),
                  plot_lpips(runs, out / "lpips_vs_temperature.png", lpips_reason)]
    paths += [plot_perception_distortion(runs, out / "perception_distortion.png", lpips_reason is None),
              plot_best_of_n(runs, out / "best_of_n.png")]
    return paths
