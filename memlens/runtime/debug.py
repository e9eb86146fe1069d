"""The guide's debugging snippets, as a function: memory parameters, then memory per chunk of an episode."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from memlens.errors import UserError
from memlens.runtime.checkpoint import load_policy
from memlens.runtime.replay import open_matching_dataset, replay_episode


def memory_trace(loaded, dataset, episode: int) -> list[tuple[int, torch.Tensor]]:
    """Replay `episode`; return (frame index, memory `[M, H]` of batch row 0) at every memory update."""
    trace: list[tuple[int, torch.Tensor]] = []
    listener = lambda commit: trace.append((commit.frame, commit.memory[0].float().cpu()))  # noqa: E731
    loaded.policy.memory.listeners.append(listener)
    try:
        replay_episode(loaded, dataset, episode)
    finally:
        loaded.policy.memory.listeners.remove(listener)
    return trace


def inspect_checkpoint(ckpt: str, *, dataset: str | None = None, root: Path | None = None, episode: int = 0,
                       device: str = "cpu", console: Console | None = None) -> list[tuple[int, torch.Tensor]]:
    console = console or Console()
    loaded = load_policy(ckpt, device=device)
    cfg, model = loaded.config, loaded.policy.model
    console.print(f"[bold]{loaded.path}[/bold]  type={cfg.type}")
    mem = getattr(model, "mem_tokens", None)
    if mem is None:
        console.print("no memory tokens (num_mem_tokens=0 or a plain SmolVLA checkpoint)")
    else:
        console.print(
            f"mem_tokens: shape={tuple(mem.shape)} requires_grad={mem.requires_grad} "
            f"mem_at_end={cfg.mem_at_end} read_mem_from_cache={cfg.read_mem_from_cache} "
            f"trained with K={cfg.n_mem_segments} segments, stride {cfg.mem_segment_stride}, BPTT {cfg.mem_bptt_segments}"
        )
    if dataset is None or mem is None:
        return []
    ds = open_matching_dataset(loaded, dataset, root)
    if not 0 <= episode < ds.meta.total_episodes:
        raise UserError(f"episode {episode} is out of range: the dataset has episodes 0..{ds.meta.total_episodes - 1}.")
    trace = memory_trace(loaded, ds, episode)
    table = Table(title=f"memory state per chunk, episode {episode} (policy.memory.state [M, B, H] = "
                        f"[{mem.shape[0]}, 1, {mem.shape[-1]}])")
    table.add_column("frame")
    for j in range(mem.shape[0]):
        table.add_column(f"|m{j}|", justify="right")
    table.add_column("cos to prev", justify="right")
    prev = None
    for t, m in trace:
        cos = "" if prev is None else f"{torch.nn.functional.cosine_similarity(m, prev, dim=-1).mean():.3f}"
        table.add_row(str(t), *[f"{v:.2f}" for v in m.norm(dim=-1).tolist()], cos)
        prev = m
    console.print(table)
    return trace
