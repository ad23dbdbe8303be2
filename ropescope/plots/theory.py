"""Figures of the theory (the paper's Sections 3, 5 and 6): decay curves, a peak at any distance, the NoPE
counter-example, hand-built positional heads and the breaking of one-frequency semantic matches."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ropescope import theory as syn


def _two_panels(title: str, figsize=(11, 4)):
    fig, axes = plt.subplots(1, 2, figsize=figsize)
    fig.suptitle(title)
    return fig, axes


def decay_figure(curves: dict, d: int, theta: float):
    """F2: all-ones q, k (left) and fresh Gaussian q, k at each distance (right)."""
    fig, axes = _two_panels(f"F2: does RoPE decay with distance? (d = {d}, theta = {theta:,.0f})")
    for ax, key, label in (
        (axes[0], "ones", "q = k = all ones"),
        (axes[1], "gaussian", "q, k ~ N(0, I), fresh each r"),
    ):
        ax.plot(curves["distance"], curves[key], linewidth=0.7)
        ax.set_xlabel("relative distance r (tokens)")
        ax.set_ylabel("q^T R^(-r) k / d (dimensionless)")
        ax.set_title(label, fontsize=10)
    fig.tight_layout()
    return fig


def random_rope_figure(curves_by_length: dict[int, dict]):
    """F8: Random RoPE positions (sorted draws from 1..L) for several L."""
    fig, axes = _two_panels("F8: Random RoPE, positions drawn from 1..L (d = 256, theta = 10,000)")
    for length, curves in curves_by_length.items():
        axes[0].plot(curves["index"], curves["ones"], linewidth=0.7, label=f"L = {length:,}")
        axes[1].plot(curves["index"], curves["gaussian"], linewidth=0.5, alpha=0.7, label=f"L = {length:,}")
    for ax, label in zip(axes, ("all-ones q, k", "Gaussian q, k, fresh per token"), strict=True):
        ax.set_xlabel("token index i (distance p_i - p_0)")
        ax.set_ylabel("score / d (dimensionless)")
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


def fixed_pair_figure(curves_by_theta: dict[float, dict]):
    """F9: one Gaussian pair held fixed along the sequence."""
    fig, axes = _two_panels("F9: one fixed Gaussian pair (q, k), d = 256")
    for ax, (theta, curves) in zip(axes, curves_by_theta.items(), strict=True):
        ax.plot(curves["distance"], curves["score"], linewidth=0.7)
        ax.set_title(f"theta = {theta:,.0f}", fontsize=10)
        ax.set_xlabel("relative distance r (tokens)")
        ax.set_ylabel("q^T R^(-r) k / d (dimensionless)")
    fig.tight_layout()
    return fig


def theory_figure():
    """P3.1, P5.2, T5.3 and T6.1 in four panels, each computed by :mod:`ropescope.theory`."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    rng = np.random.default_rng(0)
    q = rng.standard_normal(128)
    r = np.arange(600)
    for target in (0, 50, 300):
        axes[0, 0].plot(r, syn.rotated_score(q, syn.peak_key(q, target), r), linewidth=0.8, label=f"k = R^{target} q")
    axes[0, 0].set(
        xlabel="relative distance r (tokens)", ylabel="score q^T R^(-r) k", title="P3.1: a key peaks at any r"
    )
    axes[0, 0].legend(fontsize=8)

    attention = syn.nope_bos_x_x()
    axes[0, 1].hist(attention[:, 0], bins=40, color="#457b9d")
    axes[0, 1].axvline(0.5, color="#d62828", linestyle="--", label="1/2")
    axes[0, 1].set(
        xlabel="attention of the last x on itself (= on the previous x)",
        ylabel="random NoPE heads (count)",
        title="P5.2: NoPE on [bos, x, x] never exceeds 1/2",
    )
    axes[0, 1].legend(fontsize=8)

    norms = np.array([0.5, 1, 2, 3, 4, 6, 8])
    for label, chunks, colour in (
        ("fastest 8 chunks", range(8), "#d62828"),
        ("slowest 8 chunks", range(24, 32), "#1d3557"),
    ):
        for shift, style in ((0, "-"), (1, "--")):
            sharp = [syn.head_sharpness(syn.constructed_head(n, shift, chunks=chunks), shift) for n in norms]
            kind = "diagonal" if shift == 0 else "previous-token"
            axes[1, 0].plot(norms, sharp, style, color=colour, marker="o", markersize=3, label=f"{kind}, {label}")
    axes[1, 0].set(
        xlabel="||psi|| (norm of the constructed query/key)",
        ylabel="min attention on the intended offset",
        title="T5.3: hand-built positional heads (d = 64)",
    )
    axes[1, 0].legend(fontsize=7)

    for g, colour in ((0.1, "#d62828"), (0.01, "#f77f00"), (0.001, "#1d3557")):
        period = int(np.ceil(2 * np.pi / g))  # one full turn: the curve repeats after it
        curves = syn.semantic_match_scores(g, 0.9, min(period, 3000))
        breaks = syn.semantic_break_distance(g, 0.9)
        axes[1, 1].plot(
            curves["distance"][1:],
            curves["match"][1:],
            color=colour,
            linewidth=1.0,
            label=f"g = {g} rad/token: loses at r = {breaks:,}",
        )
        axes[1, 1].plot([breaks], [np.cos(breaks * g)], "o", color=colour, markersize=5)
    axes[1, 1].axhline(0.9, color="grey", linestyle="--", label="best distractor (alignment 0.9)")
    axes[1, 1].set_xscale("log")
    axes[1, 1].set(
        xlabel="distance of the matching key r (tokens, log scale; one turn shown)",
        ylabel="score / |q|^2",
        title="T6.1: one frequency cannot hold a semantic match",
    )
    axes[1, 1].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.suptitle("The paper's propositions, computed")
    fig.tight_layout()
    return fig
