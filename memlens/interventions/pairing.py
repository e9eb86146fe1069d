"""Which episodes give their memory to which: pairs with different labels for `swap`, derangements for
`shuffle`, and the batches both run in."""

from __future__ import annotations

import numpy as np

from memlens.errors import UserError


def swap_pairs(labels, *, seed: int = 0) -> list[tuple[int, int]]:
    """Pairs of indices into `labels`, as many as possible with different labels (None: unknown, paired at
    random): the two most common remaining labels give one item each. An odd item out stays unpaired."""
    rng = np.random.default_rng(seed)
    buckets: dict = {}
    for i in rng.permutation(len(labels)).tolist():
        buckets.setdefault(("?", i) if labels[i] is None else labels[i], []).append(i)
    pairs = []
    while sum(len(b) for b in buckets.values()) >= 2:
        ranked = sorted((b for b in buckets.values() if b), key=len, reverse=True)
        if len(ranked) >= 2:
            pairs.append((ranked[0].pop(), ranked[1].pop()))
        else:
            pairs.append((ranked[0].pop(), ranked[0].pop()))
    return pairs


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of range(n) with no fixed point (n >= 2)."""
    order = rng.permutation(n)
    out = np.empty(n, dtype=int)
    out[order] = np.roll(order, -1)  # a random n-cycle
    return out


def chunked(items: list, batch_size: int) -> list[list[int]]:
    """Indices into `items` in consecutive batches of at most `batch_size`."""
    return [list(range(s, min(s + batch_size, len(items)))) for s in range(0, len(items), batch_size)]


def no_donors(items: list, batch_size: int) -> list[tuple[list, None]]:
    """Batches of `items` that exchange nothing."""
    return [([items[i] for i in c], None) for c in chunked(items, batch_size)]


def swap_batches(items: list, batch_size: int, labels: list, seed: int) -> list[tuple[list, list[int]]]:
    """Batches of `items` in which paired episodes (`swap_pairs` of `labels`) give each other their memory."""
    pairs = swap_pairs(labels, seed=seed)
    paired = {i for p in pairs for i in p}
    units = [list(p) for p in pairs] + [[i] for i in range(len(items)) if i not in paired]
    per_batch = max(2, batch_size - batch_size % 2)
    out, current = [], []
    for unit in units:
        if len(current) + len(unit) > per_batch:
            out.append(current)
            current = []
        current += unit
    if current:
        out.append(current)
    result = []
    for batch in out:
        donors = list(range(len(batch)))
        for a, b in pairs:
            if a in batch and b in batch:
                donors[batch.index(a)], donors[batch.index(b)] = batch.index(b), batch.index(a)
        result.append(([items[i] for i in batch], donors))
    return result


def derangement_batches(items: list, batch_size: int, seed: int) -> list[tuple[list, list[int]]]:
    """Batches of `items` in which each episode gets the memory of another of its batch (a derangement)."""
    rng = np.random.default_rng(seed)
    chunks = chunked(items, batch_size)
    if len(chunks) > 1 and len(chunks[-1]) == 1:  # never leave one episode alone in its batch
        chunks[-2].append(chunks.pop()[0])
    if any(len(c) < 2 for c in chunks):
        raise UserError("mode 'shuffle' moves memories between the episodes replayed together: it needs at least "
                        "2 episodes per batch. Pass more episodes, or a batch size of at least 2.")
    return [([items[i] for i in c], derangement(len(c), rng).tolist()) for c in chunks]
