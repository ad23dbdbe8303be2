"""Streaming, mergeable statistics of chunk norms over tokens.

For one tensor kind (q, k or v) the accumulator keeps, per layer, head and chunk, the token count,
mean, sum of squared deviations (``m2``, for the standard deviation) and maximum of the chunk
2-norm. While prompts run, each batch only adds to float64 running sums on the device (the token
count, the sum and the sum of squares of the norms, their maximum): a handful of kernels and no
host synchronisation per batch. The running sums are folded into mean and m2 when they are read,
and whole accumulators merge exactly with Chan et al.'s pairwise formula, so the order in which
prompts arrive changes the result only by float64 rounding.

Why float64 sums of squares are exact enough: the norms are float32, so each square is exact in
float64 (24-bit mantissas, 48-bit products); m2 = sum(x^2) - sum(x)^2 / n then carries a relative
error of about ``1e-16 * log2(n) * (1 + mean^2 / var)``, below 1e-9 even for a chunk whose norm
varies by only 0.1% over the tokens, far under the float32 rounding of the norms themselves.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ropescope.hooks.precision import in_full_float32
from ropescope.model.geometry import chunk_norms, split_pairs

# most elements (batch x heads x tokens x chunks) one joint update reduces at a time, by device:
# longer prompts go through in token blocks. On a CPU the blocks stay cache-sized (2 MB of float64:
# larger fresh buffers cost more in page faults than the operators they save); elsewhere (a GPU,
# where each operator is a kernel launch) 128 MB.
JOINT_BLOCK_ELEMENTS = {"cpu": 1 << 18}
JOINT_BLOCK_ELEMENTS_ELSEWHERE = 1 << 24


class ChunkNormStats:
    """Per-(layer, head, chunk) count, mean, m2 and max of chunk norms, accumulated in float64.

    Arrays live on ``device`` while accumulating (no host synchronisation inside hooks); call
    :meth:`to_cpu` (or :meth:`to_arrays`) at the end.

    ``sizes`` (one ``(heads, chunks)`` per layer) gives layers smaller than the arrays (Gemma 4's
    256-dim sliding heads beside 512-dim global ones, or fewer KV heads on global layers): the heads
    and chunks a layer does not have are NaN in mean, m2 and max, and stay NaN through every merge.
    """

    def __init__(self, n_layers: int, n_heads: int, n_chunks: int, device="cpu", sizes=None):
        shape = (n_layers, n_heads, n_chunks)
        self._count = torch.zeros(n_layers, dtype=torch.float64, device=device)
        self._mean = torch.zeros(shape, dtype=torch.float64, device=device)
        self._m2 = torch.zeros(shape, dtype=torch.float64, device=device)
        self._max = torch.full(shape, -torch.inf, dtype=torch.float64, device=device)
        self.nonfinite = torch.zeros(n_layers, dtype=torch.float64, device=device)
        for layer, (heads, chunks) in enumerate(sizes or ()):
            for array in (self._mean, self._m2, self._max):
                array[layer, heads:] = torch.nan
                array[layer, :, chunks:] = torch.nan
        self._running = None  # (n, sum, sum of squares, max, tokens offered) since the last fold
        self._before_fold = None  # a joint update's: adds its logged tokens offered to the running sums
        self._mask_seen, self._mask_tokens = None, None

    # the folded statistics: reading one folds the running sums in first
    count = property(lambda self: self._folded("_count"), lambda self, v: setattr(self, "_count", v))
    mean = property(lambda self: self._folded("_mean"), lambda self, v: setattr(self, "_mean", v))
    m2 = property(lambda self: self._folded("_m2"), lambda self, v: setattr(self, "_m2", v))
    max = property(lambda self: self._folded("_max"), lambda self, v: setattr(self, "_max", v))

    def _folded(self, name: str) -> torch.Tensor:
        self.fold()
        return getattr(self, name)

    @property
    def absent(self) -> torch.Tensor:
        """``[layers, heads, chunks]`` bool: True for a head or chunk its layer does not have."""
        return torch.isnan(self.mean) & torch.isnan(self.max)

    @in_full_float32
    def update(self, layer: int, norms: torch.Tensor, mask: torch.Tensor) -> None:
        """Add one batch: ``norms[B, H, S, C]`` of which tokens ``mask[B, S]`` count (``H`` and ``C``
        may be fewer than the arrays hold: the layer's own heads and chunks).

        Everything stays on the device, with no host synchronisation: the batch's norms go to
        float64 and add to the running count, sum, sum of squares and maximum (a float64 sum of
        float32 or half norms cannot overflow). A token counts where every one of its norms is
        finite; tokens with a non-finite norm (half-precision overflow) are left out and counted in
        ``nonfinite``, which is read once, when the run ends.
        """
        if self._count.device != norms.device:
            self._move(norms.device)
        if self._running is None:
            self._running = _zeros_like_running(self._mean, self._count)
        n, total, squares, peak, offered = self._running
        heads, chunks = norms.shape[1], norms.shape[3]
        x = norms.double()
        mask = mask.to(norms.device)
        # a token counts where its norms' sum is finite (norms are >= 0: nothing cancels)
        keep = mask & torch.isfinite(x.sum(dim=(1, 3)))  # [B, S]
        x = torch.where(keep[:, None, :, None], x, 0.0)  # [B, H, S, C], 0 where not counted
        if mask is not self._mask_seen:  # one count per forward pass, shared by its layers
            self._mask_seen, self._mask_tokens = mask, mask.sum()
        n[layer].add_(keep.sum())
        offered[layer].add_(self._mask_tokens)
        total[layer, :heads, :chunks].add_(x.sum(dim=(0, 2)))
        squares[layer, :heads, :chunks].add_(x.square().sum(dim=(0, 2)))
        # norms are >= 0, so the zeros of tokens left out never exceed a counted token's norm
        torch.maximum(peak[layer, :heads, :chunks], x.amax(dim=(0, 2)), out=peak[layer, :heads, :chunks])

    def fold(self) -> None:
        """Fold the running sums into count, mean, m2 and max (Chan et al.'s pairwise merge), all
        layers at once; a layer that counted no token since the last fold merges as nothing."""
        if self._before_fold is not None:
            self._before_fold()
        if self._running is None:
            return
        n_b, total, squares, peak, offered = self._running
        self._running = None
        counts = n_b[:, None, None]
        mean_b = total / counts.clamp(min=1)
        m2_b = (squares - total * mean_b).clamp(min=0)
        max_b = torch.where(counts > 0, peak, -torch.inf)
        self._merge(n_b, mean_b, m2_b, max_b)
        self.nonfinite = self.nonfinite + (offered - n_b)

    def _merge(self, n_b, mean_b, m2_b, max_b) -> None:
        """Merge per-layer counts ``n_b[L]`` and ``mean_b[L, H, C]`` (and m2, max) into the totals."""
        n_a = self._count
        total = n_a + n_b
        share = (n_b / total.clamp(min=1))[:, None, None]  # 0 for a layer with no token (and none before)
        delta = mean_b - self._mean
        self._m2 = self._m2 + m2_b + delta * delta * (n_a[:, None, None] * share)
        self._mean = self._mean + delta * share
        self._max = torch.maximum(self._max, max_b)
        self._count = total

    def _move(self, device) -> None:
        self.fold()
        for name in ("_count", "_mean", "_m2", "_max", "nonfinite"):
            setattr(self, name, getattr(self, name).to(device))

    def merged(self, other: ChunkNormStats) -> ChunkNormStats:
        """A new accumulator equal to having seen both token sets."""
        if self.mean.shape != other.mean.shape:
            raise ValueError(f"cannot merge statistics of shapes {self.mean.shape} and {other.mean.shape}")
        out = ChunkNormStats(*self.mean.shape)
        absent = self.to_cpu().absent | other.to_cpu().absent
        for src in (self, other):
            src = src.to_cpu()
            out._merge(src._count, src._mean, src._m2, src._max)
            out.nonfinite += src.nonfinite
        for array in (out._mean, out._m2, out._max):
            array[absent] = torch.nan
        return out

    def to_cpu(self) -> ChunkNormStats:
        self._move("cpu")
        return self

    @property
    def std(self) -> torch.Tensor:
        """Population standard deviation of the chunk norm over tokens (0 where count < 1)."""
        counts = self.count.clamp(min=1)[:, None, None]
        return torch.sqrt(self.m2 / counts)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        self.to_cpu()
        return {
            f"{prefix}.count": self.count.numpy().copy(),
            f"{prefix}.mean": self.mean.numpy().copy(),
            f"{prefix}.m2": self.m2.numpy().copy(),
            f"{prefix}.max": self.max.numpy().copy(),
            f"{prefix}.nonfinite": self.nonfinite.numpy().copy(),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> ChunkNormStats:
        mean = arrays[f"{prefix}.mean"]
        out = cls(*mean.shape)
        for name in ("count", "mean", "m2", "max", "nonfinite"):
            value = torch.from_numpy(np.ascontiguousarray(arrays[f"{prefix}.{name}"], dtype=np.float64))
            if value.shape != getattr(out, name).shape:
                raise ValueError(f"array {prefix}.{name} has shape {tuple(value.shape)}")
            setattr(out, name, value)
        return out


class JointUpdate:
    """One update of several accumulators at once: a layer's q, k and v chunk norms in one pass.

    ``members`` maps names (``"q"``, ``"k"``, ``"v"``) to :class:`ChunkNormStats` of the same
    layers and chunks. Their running sums live in one shared set of device buffers, one row per
    layer holding each member's heads x chunks followed by one *counting column*, and each member's
    running sums are views into them. A layer's tensors are concatenated along the head axis (one
    copy, in float32), and their chunk norms written in float64 straight into a reused scratch
    block laid out as the buffers are: each tensor's norms followed by its counting column (1 where
    the token counts, NaN where the mask leaves it out, so padding and BOS drop out with the
    non-finite tokens). One set of kernels then reduces them all: each tensor's per-token sum (a
    token counts for a tensor where it is finite), one ``where`` in place, and the sum and sum of
    squares over tokens as matrix products accumulated straight into the buffers (``addmm_``), the
    maximum likewise; the counting column's sum is the token count. About 11 kernels a layer for q,
    k and v together (two more where their head counts differ), no host synchronisation, and no
    fresh memory per layer (on a CPU, fresh megabyte buffers cost more in page faults than the
    operators that fill them). The tokens each tensor was offered are counted once per forward pass
    and added when the statistics are read.

    The arithmetic is :meth:`ChunkNormStats.update`'s: float32 chunk norms summed in float64, and a
    token is counted for a tensor where all of that tensor's norms are finite (a non-finite key
    leaves the token's query counted): the statistics equal separate updates up to float64
    summation order.
    """

    def __init__(self, members: dict[str, ChunkNormStats]):
        self.members = members
        self.names = list(members)
        self.heads = {name: stats._mean.shape[1] for name, stats in members.items()}
        self.chunks = members[self.names[0]]._mean.shape[2]
        self.offset, first = {}, 0  # each member's first column; its counting column follows its heads
        for name in self.names:
            self.offset[name], first = first, first + self.heads[name] * self.chunks + 1
        self.columns = first
        self._buffers = None  # sum, sum of squares, max [L, columns]; tokens offered [L, members]
        self._views: dict[str, tuple[torch.Tensor, ...]] = {}
        self._constants: dict[tuple, torch.Tensor] = {}
        self._mask_seen, self._mask_tokens, self._counting = None, None, None
        self._offered_now: set[tuple[int, int]] = set()  # (layer, member) updated in this forward pass
        self._offered_log: dict[frozenset, list[torch.Tensor]] = {}  # those sets -> their passes' token counts

    def _attach(self, names: list[str], device) -> None:
        """Make the named members' running sums views into the shared buffers (zeroed when a read
        folded them in since the last update)."""
        if self._buffers is None or self._buffers[0].device != torch.device(device):
            self._flush_offered()
            layers = self.members[self.names[0]]._mean.shape[0]
            f64 = {"dtype": torch.float64, "device": device}
            self._buffers = (
                torch.zeros(layers, self.columns, **f64),
                torch.zeros(layers, self.columns, **f64),
                torch.zeros(layers, self.columns, **f64),  # maximum: 0, norms are >= 0
                torch.zeros(layers, len(self.names), **f64),
            )
            self._views = {}
        total, squares, peak, offered = self._buffers
        layers = total.shape[0]
        for name in names:
            member, views = self.members[name], self._views.get(name)
            if views is not None and member._running is views:
                continue
            if member._count.device != torch.device(device):
                member._move(device)
            member.fold()  # running sums of its own (or folded views): merged before the views restart
            first, heads = self.offset[name], self.heads[name]
            norms = slice(first, first + heads * self.chunks)
            count = total[:, first + heads * self.chunks]  # the counting column: tokens counted
            views = (count, *(a[:, norms].view(layers, heads, self.chunks) for a in (total, squares, peak)))
            views = (*views, offered[:, self.names.index(name)])
            for view in views:
                view.zero_()
            member._running = self._views[name] = views
            member._before_fold = self._flush_offered

    @torch.inference_mode()  # the buffers may be inference tensors (made inside a profile's forward)
    def _flush_offered(self) -> None:
        """Add the logged forward passes' token counts to the tokens offered of the (layer, member)
        pairs each pass updated (once per read, not per batch)."""
        self._close_pass()
        log, self._offered_log = self._offered_log, {}
        if self._buffers is None:
            return
        offered = self._buffers[3]
        for pairs, counts in log.items():
            layers, members = zip(*sorted(pairs), strict=True)
            tokens = torch.stack(counts).sum().to(offered.dtype)
            index = (torch.tensor(layers, device=offered.device), torch.tensor(members, device=offered.device))
            offered.index_put_(index, tokens, accumulate=True)

    def _close_pass(self) -> None:
        if self._offered_now:
            self._offered_log.setdefault(frozenset(self._offered_now), []).append(self._mask_tokens)
            self._offered_now = set()

    def _new_pass(self, mask: torch.Tensor) -> None:
        """A new forward pass's mask: its token count (one kernel, added at the next read) and its
        counting column ``[B, S, 1]`` float64: 1 where ``mask`` counts the token, NaN elsewhere."""
        self._close_pass()
        self._mask_seen, self._mask_tokens = mask, mask.sum()
        self._counting = torch.where(mask.bool()[:, :, None], self._ones(1, mask.device)[0, 0], torch.nan)
        if sum(len(counts) for counts in self._offered_log.values()) >= 256:  # bounded memory
            self._flush_offered()

    @torch.inference_mode()  # the buffers and scratch blocks may be inference tensors (made in a profile's forward)
    @in_full_float32
    def update(self, layer: int, parts: list[tuple[str, torch.Tensor]], mask: torch.Tensor, layout: str) -> None:
        """Add one batch of layer ``layer``: ``parts`` are ``(name, x)`` with ``x[B, H, S, r]`` the
        tensor before RoPE cut to the layer's rotary dims (``H`` the layer's own heads), ``mask[B, S]``
        the tokens that count. No host synchronisation."""
        parts = sorted(parts, key=lambda part: self.names.index(part[0]))  # the buffers' order (v arrives first)
        xs = [x for _, x in parts]
        names = [name for name, _ in parts]
        alike = all(x.shape[0] == xs[0].shape[0] and x.shape[2:] == xs[0].shape[2:] for x in xs)
        if not alike or len(set(names)) != len(names):  # not one layer's tensors: one at a time
            for name, x in parts:
                self.members[name].update(layer, chunk_norms(x, layout), mask)
            return
        device = xs[0].device
        self._attach(names, device)
        mask = mask.to(device)
        if mask is not self._mask_seen:
            self._new_pass(mask)
        self._offered_now.update((layer, self.names.index(name)) for name in names)
        batch, seq, width = xs[0].shape[0], xs[0].shape[2], xs[0].shape[3]
        heads = [x.shape[1] for x in xs]
        budget = JOINT_BLOCK_ELEMENTS.get(device.type, JOINT_BLOCK_ELEMENTS_ELSEWHERE)
        step = max(1, budget // max(1, batch * sum(heads) * (width // 2)))
        for begin in range(0, seq, step):
            block = slice(begin, min(seq, begin + step))
            pieces = [x[:, :, block].transpose(1, 2) for x in xs]  # [B, s, H, r] each
            self._add_block(layer, names, heads, pieces, self._counting[:, block], layout)

    def _add_block(self, layer: int, names: list[str], heads: list[int], pieces: list, counting, layout: str) -> None:
        """One token block: ``pieces`` are each tensor's ``[B, s, H, r]``, ``counting`` its ``[B, s, 1]``."""
        total, squares, peak, _ = self._buffers
        batch, seq, _, width = pieces[0].shape
        chunks, tokens, device = width // 2, batch * seq, counting.device
        widths = [h * chunks + 1 for h in heads]  # each tensor's heads x chunks, then its counting column
        rows = self._scratch("block", (batch, seq, sum(widths)), torch.float64, device)
        equal = len(set(heads)) == 1  # equal head counts: each tensor's columns are one axis
        fused = None  # every tensor's halves as one [B, s, T, H, C] view: one operator writes all norms
        if all(piece.dtype == torch.float32 for piece in pieces):  # read where they are: no copy
            halves = [split_pairs(piece, layout) for piece in pieces]
        else:  # one copy, in float32: half precision goes up, float64 down
            joined = self._scratch("joined", (batch, seq, sum(heads), width), torch.float32, device)
            torch.cat(pieces, dim=2, out=joined)
            a, b = split_pairs(joined, layout)  # [B, s, all heads, C]
            if equal:
                split = (batch, seq, len(heads), heads[0], chunks)
                fused = (a.view(split), b.view(split))
            else:
                starts = [sum(heads[:t]) for t in range(len(heads))]
                halves = [(a[:, :, s : s + h], b[:, :, s : s + h]) for s, h in zip(starts, heads, strict=True)]
        if fused is not None:
            out = rows.view(batch, seq, len(heads), widths[0])[..., :-1].view(batch, seq, len(heads), heads[0], chunks)
            torch.hypot(*fused, out=out)
        else:
            column = 0
            for (a, b), h, w in zip(halves, heads, widths, strict=True):
                torch.hypot(a, b, out=rows[..., column : column + w - 1].view(batch, seq, h, chunks))
                column += w
        if equal:  # the counting columns: one axis
            rows.view(batch, seq, len(heads), widths[0])[..., -1].copy_(counting.expand(batch, seq, len(heads)))
        else:
            rows.index_copy_(2, self._counting_columns(widths, device), counting.expand(batch, seq, len(heads)))
        flat = rows.view(tokens, -1)
        # a token counts for a tensor where the sum of that tensor's norms (its counting column's
        # included: NaN for a token the mask leaves out) is finite; norms are >= 0, nothing cancels.
        # Where it does not, its norms and counting column become 0 (in place).
        zero = self._zero(device)
        if equal:
            per_tensor = flat.view(tokens, len(heads), widths[0])
            keep = torch.isfinite(per_tensor.sum(dim=2))  # [tokens, T]
            torch.where(keep[:, :, None], per_tensor, zero, out=per_tensor)
        else:  # each tensor's columns summed as a view, and the keep-mask spread back over them
            keep = torch.isfinite(torch.stack([part.sum(dim=1) for part in flat.split(widths, dim=1)], dim=1))
            spread = torch.cat([keep[:, t : t + 1].expand(tokens, w) for t, w in enumerate(widths)], dim=1)
            torch.where(spread, flat, zero, out=flat)
        ones = self._ones(tokens, device)
        top = flat.amax(dim=0)
        at = self.names.index(names[0])
        consecutive = names == self.names[at : at + len(names)]
        whole = consecutive and chunks == self.chunks and heads == [self.heads[name] for name in names]
        # the sums first, then the block squared in place (no second block in memory) and summed
        if whole:  # the block's columns are one run of the buffers' columns: accumulated in place
            first = self.offset[names[0]]
            into = slice(first, first + flat.shape[1])
            total[layer : layer + 1, into].addmm_(ones, flat)
            squares[layer : layer + 1, into].addmm_(ones, flat.mul_(flat))
            torch.maximum(peak[layer, into], top, out=peak[layer, into])
            return
        sums = ones.mm(flat)[0]
        sums_sq, local = ones.mm(flat.mul_(flat))[0], 0
        for name, h in zip(names, heads, strict=True):  # a layer with fewer heads or chunks than the buffers
            first, count = self.offset[name], self.offset[name] + self.heads[name] * self.chunks
            here, counted = slice(local, local + h * chunks), local + h * chunks
            for buffer, part in ((total, sums), (squares, sums_sq)):
                buffer[layer, first:count].view(-1, self.chunks)[:h, :chunks].add_(part[here].view(h, chunks))
                buffer[layer, count].add_(part[counted])
            view = peak[layer, first:count].view(-1, self.chunks)[:h, :chunks]
            torch.maximum(view, top[here].view(h, chunks), out=view)
            local += h * chunks + 1

    def _counting_columns(self, widths: list[int], device) -> torch.Tensor:
        """The block's counting columns (each tensor's last), as an index tensor, cached."""
        key = ("counting columns", *widths, str(device))
        return self._constant(key, lambda: (torch.tensor(widths).cumsum(0) - 1).to(device))

    def _scratch(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
        """A reused buffer of ``shape`` (contents undefined): one per name, device and dtype, grown to
        the largest block seen, so that the layers of a run allocate no fresh memory (on a CPU, fresh
        megabyte buffers cost more in page faults than the operators that fill them)."""
        key, size = (name, str(device), dtype), math.prod(shape)
        held = self._constants.get(key)
        if held is None or held.numel() < size:
            held = self._constants[key] = torch.empty(size, dtype=dtype, device=device)
        return held[:size].view(shape)

    def _zero(self, device) -> torch.Tensor:
        """A float64 zero on ``device``, cached (the ``where`` that clears tokens writes in place)."""
        return self._constant(("zero", str(device)), lambda: torch.zeros((), dtype=torch.float64, device=device))

    def _constant(self, key: tuple, make) -> torch.Tensor:
        """The cached tensor under ``key``, made by ``make()`` the first time."""
        if key not in self._constants:
            self._constants[key] = make()
        return self._constants[key]

    def _ones(self, tokens: int, device) -> torch.Tensor:
        """``[1, tokens]`` float64 ones: a view of one cached row, grown to the longest block seen (so
        prompts of many lengths keep one row, not one per length)."""
        row = self._constants.get(("ones", str(device)))
        if row is None or row.shape[1] < tokens:
            row = self._constants["ones", str(device)] = torch.ones(1, tokens, dtype=torch.float64, device=device)
        return row[:, :tokens]


def _zeros_like_running(mean: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Running count, sum, sum of squares, maximum (0: norms are >= 0) and tokens offered."""
    return (
        torch.zeros_like(count),
        torch.zeros_like(mean),
        torch.zeros_like(mean),
        torch.zeros_like(mean),
        torch.zeros_like(count),
    )
