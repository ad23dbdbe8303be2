"""The paper's theory, computed (the paper's Sections 3, 5 and 6): decay curves, hand-built positional heads,
the NoPE counter-example and the breaking of one-frequency semantic matches.

Convention: a query at position ``m`` and a key at ``n <= m`` score ``<R^m q, R^n k> = q^T R^(n-m) k``;
``r = m - n >= 0`` is the relative distance, so the score is ``q^T R^(-r) k``. Chunks use the
halves layout and the frequencies ``theta^(-2k/d)``.
"""

from __future__ import annotations

import numpy as np

from ropescope.prope.frequencies import paper_inv_freq


def _split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half = x.shape[-1] // 2
    return x[..., :half], x[..., half:]


def rotated_score(q: np.ndarray, k: np.ndarray, distances: np.ndarray, theta: float = 10_000.0) -> np.ndarray:
    """``q^T R^(-r) k`` for every ``r`` in ``distances`` (q, k: ``[d]`` or ``[len(distances), d]``)."""
    g = paper_inv_freq(q.shape[-1], theta)
    angles = -np.asarray(distances, dtype=np.float64)[:, None] * g  # [R, d/2]
    qa, qb = _split(np.broadcast_to(q, (len(angles), q.shape[-1])))
    ka, kb = _split(np.broadcast_to(k, (len(angles), k.shape[-1])))
    # R(a) k per chunk = (ka cos a - kb sin a, kb cos a + ka sin a)
    ra, rb = ka * np.cos(angles) - kb * np.sin(angles), kb * np.cos(angles) + ka * np.sin(angles)
    return (qa * ra + qb * rb).sum(-1)


def decay_curves(d: int = 256, theta: float = 10_000.0, max_distance: int = 5000, seed: int = 0) -> dict:
    """F2: ``q^T R^(-r) k / d`` for all-ones q, k (decays, oscillating) and fresh Gaussian q, k at
    every r (zero-mean noise), r = 0..max_distance."""
    r = np.arange(max_distance + 1)
    ones = np.ones(d)
    rng = np.random.default_rng(seed)
    gauss_q, gauss_k = rng.standard_normal((len(r), d)), rng.standard_normal((len(r), d))
    return {
        "distance": r,
        "ones": rotated_score(ones, ones, r, theta) / d,
        "gaussian": rotated_score(gauss_q, gauss_k, r, theta) / d,
    }


def random_rope_curves(length: int, n_tokens: int = 2000, d: int = 256, theta: float = 10_000.0, seed: int = 0) -> dict:
    """F8: Random RoPE (Ruoss et al.): sorted positions drawn without replacement from 1..length;
    scores of token ``i`` against token 0 use distance ``p_i - p_0``."""
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(np.arange(1, length + 1), size=n_tokens, replace=False))
    distances = positions - positions[0]
    ones = np.ones(d)
    gauss_q, gauss_k = rng.standard_normal((n_tokens, d)), rng.standard_normal((n_tokens, d))
    return {
        "index": np.arange(n_tokens),
        "distance": distances,
        "ones": rotated_score(ones, ones, distances, theta) / d,
        "gaussian": rotated_score(gauss_q, gauss_k, distances, theta) / d,
    }


def fixed_gaussian_curve(theta: float, d: int = 256, max_distance: int = 5000, seed: int = 0) -> dict:
    """F9: one Gaussian pair (q, k) held fixed, its score against distance."""
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal(d), rng.standard_normal(d)
    r = np.arange(max_distance + 1)
    return {"distance": r, "score": rotated_score(q, k, r, theta) / d}


def peak_key(q: np.ndarray, distance: int, theta: float = 10_000.0) -> np.ndarray:
    """P3.1: the key ``k = R^distance q`` whose score with q peaks exactly at ``distance``."""
    g = paper_inv_freq(q.shape[-1], theta)
    a = distance * g
    qa, qb = _split(q)
    return np.concatenate([qa * np.cos(a) - qb * np.sin(a), qb * np.cos(a) + qa * np.sin(a)])


def gaussian_mean_scores(distances, d: int = 64, samples: int = 20_000, theta: float = 10_000.0, seed: int = 0):
    """P3.2: Monte Carlo mean and standard error of the score of Gaussian q, k at each distance."""
    rng = np.random.default_rng(seed)
    means, errors = [], []
    for r in distances:
        q, k = rng.standard_normal((samples, d)), rng.standard_normal((samples, d))
        s = rotated_score(q, k, np.full(samples, r), theta)
        means.append(s.mean())
        errors.append(s.std(ddof=1) / np.sqrt(samples))
    return np.array(means), np.array(errors)


def nope_bos_x_x(n_heads: int = 1000, d_model: int = 16, d_head: int = 8, scale: float = 3.0, seed: int = 0):
    """P5.2: random NoPE heads on tokens [bos, x, x]; attention of the last token on itself and on
    the previous x (always equal, so at most 1/2 each). Returns ``[n_heads, 2]``."""
    rng = np.random.default_rng(seed)
    bos, x = rng.standard_normal(d_model), rng.standard_normal(d_model)
    tokens = np.stack([bos, x, x])
    out = []
    for _ in range(n_heads):
        wq, wk = rng.standard_normal((2, d_model, d_head)) * scale
        logits = (tokens[2] @ wq) @ (tokens @ wk).T
        p = np.exp(logits - logits.max())
        p /= p.sum()
        out.append([p[2], p[1]])
    return np.array(out)


def constructed_head(norm: float, shift: int, chunks=range(8), d: int = 64, seq: int = 64, theta: float = 10_000.0):
    """T5.3: queries ``R^i psi`` and keys ``R^(j + shift) psi``; ``psi`` has norm ``norm`` spread
    evenly over ``chunks`` (first dim of each). ``shift`` 0 gives a diagonal head, 1 a previous-token
    head. Returns the causal attention matrix ``[seq, seq]`` (rows: queries; logits unscaled)."""
    psi = np.zeros(d)
    psi[list(chunks)] = norm / np.sqrt(len(chunks))
    qs = np.stack([peak_key(psi, i, theta) for i in range(seq)])  # R^i psi
    ks = np.stack([peak_key(psi, i + shift, theta) for i in range(seq)])  # R^(j + shift) psi
    logits = qs @ ks.T
    logits[np.triu_indices(seq, 1)] = -np.inf
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def head_sharpness(attention: np.ndarray, shift: int) -> float:
    """Smallest attention on the intended offset over rows where it exists (1 = perfectly sharp)."""
    rows = np.arange(shift, attention.shape[0])
    return float(attention[rows, rows - shift].min())


def semantic_break_distance(frequency: float, alignment: float) -> int:
    """T6.1: with one chunk of frequency ``frequency``, a perfectly matching key at distance r scores
    ``|q|^2 cos(r g)``; a distractor aligned at ``alignment`` < 1 can score ``alignment |q|^2``. The
    first distance at which the match loses: ``floor(arccos(alignment) / g) + 1``."""
    return int(np.floor(np.arccos(alignment) / frequency)) + 1


def semantic_match_scores(frequency: float, alignment: float, max_distance: int) -> dict:
    """T6.1 curves: the matching key's score against distance, and the distractor's best score."""
    r = np.arange(max_distance + 1)
    return {"distance": r, "match": np.cos(r * frequency), "distractor_best": np.full(len(r), alignment)}
