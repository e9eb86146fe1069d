"""Does memory help? The baseline-against-memory experiment on the memory tasks, end to end.

For each task: record expert datasets for the training variants with fixed seeds, merge them with
lerobot's `aggregate_datasets`, train a baseline (`num_mem_tokens=0`) and a memory policy with the same
budget (same K segments per sample, steps, batch, learning rate, seed) through lerobot-train, in two
stages where a curriculum over delays is set (a warm-up on the short delays at a shallow K, then every
training variant at the K that spans the longest delay, continuing from the warm-up checkpoint), then
evaluate both on every variant, including delays longer than any trained on and the control where
the cue stays visible, on the same seeded episodes. Results go to `OUT/<task>/evaluation_results.json`
and a Markdown table `OUT/results.md`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console

from memlens.tasks.catalog import is_mikasa, variants_of
from memlens.tasks.worlds import VARIANTS

# What each task trains on. Cue recall includes `long` (10 chunks of delay) so the goal variant is
# inside the trained span; `extra_long` (16 chunks) is never trained on: it measures extrapolation.
# Short's 3-frame delay ends inside the chunk computed on the first delay frame; the scripted expert
# commands the goal from that frame on (the world ignores it until go), so that chunk needs no guess about
# when go starts (docs/experiment.md: short went from 66-78% to 100% with it).
# Order (the second kind of memory: which of two cues came first) follows the same curriculum: medium
# and control, then with long. Count is kept as an env but not in the default experiment: the tiny
# frozen random VLM did not learn to read it, even on its control (docs/experiment.md).
TRAIN_VARIANTS = {"cue_recall": ("short", "medium", "long", "control"), "order": ("medium", "long", "control"),
                  "count": ("short", "medium", "control")}
# Curriculum over delays: a task listed here first trains on these variants with K=WARMUP_SEGMENTS, then on
# its TRAIN_VARIANTS from that checkpoint. Trained from scratch on windows 13 segments deep, where the
# long variant's informative samples (ending in `go`) are ~10% of frames, cue recall was undertrained at
# 1500 steps (long 60%, control 84%); after a warm-up that already recalls the short delays it only has
# to learn to read the cue out of memory after more updates (docs/experiment.md).
WARMUP_VARIANTS = {"cue_recall": ("short", "medium", "control"), "order": ("medium", "control")}
WARMUP_SEGMENTS = {"cue_recall": 9, "order": 7}
STEPS = {"cue_recall": 1000, "order": 1000, "count": 1500}
ENV_OF_TASK = {"cue_recall": "memlens_cue_recall", "order": "memlens_order", "count": "memlens_count"}
STRIDE = 10  # frames between memory updates: the tiny policy's n_action_steps

# MIKASA-Robo tasks (any env type of memlens.tasks.mikasa that is not itself a control): trained on the task
# and, where there is one, its cue-visible control, recorded by the scripted expert on the same seeds (the
# control is the same episodes with the cue left in view), and evaluated on both. RememberColor's cue lasts
# 1-5 frames and its delay 1-5, so the go phase starts at frame 2-10 of a ~19-frame episode: memory advances
# every 5 frames (the chunk executed before replanning) and K=3 segments reach back 10 frames, over the cue
# of any sample that ends in the first half of go. SmolVLA pads state (25) and action (8) to 32.
MIKASA_STRIDE = 5
MIKASA_SEGMENTS = 3
MIKASA_STEPS = 2000
MIKASA_POLICY = {"max_state_dim": 32, "max_action_dim": 32, "chunk_size": 10, "n_action_steps": MIKASA_STRIDE,
                 "mem_segment_stride": MIKASA_STRIDE}


def train_variants_of(task: str, cfg: "ExperimentConfig") -> tuple[str, ...]:
    return variants_of(task) if is_mikasa(task) else cfg.train_variants[task]


def eval_variants_of(task: str, cfg: "ExperimentConfig") -> tuple[str, ...]:
    return variants_of(task) if is_mikasa(task) else cfg.eval_variants


def segments_needed(task: str, variants) -> int:
    """K such that one training sample can hold the first cue frame and the first `go` frame.

    Sample frames sit `STRIDE` apart and end at the go frame, so K - 1 strides must reach back over
    the cue and the longest delay, plus one segment of slack for samples ending later in `go`.
    """
    from memlens.tasks.worlds import make_spec

    span = max(make_spec(task, variant=v).go_start for v in variants)
    return -(-span // STRIDE) + 2


@dataclass
class ExperimentConfig:
    tasks: tuple[str, ...] = ("cue_recall", "order")
    train_variants: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(TRAIN_VARIANTS))
    eval_variants: tuple[str, ...] = VARIANTS
    episodes_per_variant: int = 60
    n_mem_segments: dict[str, int] | None = None  # K per task; None: segments_needed() of its variants
    num_mem_tokens: int = 4
    # steps of the final stage (the only one for tasks without a warm-up): cue recall and order continue
    # from their warm-up; count trains from scratch at K=9.
    steps: dict[str, int] = field(default_factory=lambda: dict(STEPS))
    warmup_variants: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(WARMUP_VARIANTS))
    warmup_steps: int = 1500
    warmup_segments: dict[str, int] = field(default_factory=lambda: dict(WARMUP_SEGMENTS))
    batch_size: int = 16
    mikasa_episodes: int = 100  # expert episodes per MIKASA variant (cue, control)
    mikasa_batch_size: int = 8
    lr: float = 3e-4
    n_eval_episodes: int = 50
    seed: int = 0
    eval_seed: int = 100_000
    extra_policy_args: list[str] = field(default_factory=list)


def record_training_data(task: str, variants, cfg: ExperimentConfig, out: Path, name: str = "train") -> Path:
    """One expert dataset per variant (seed `cfg.seed + 10000 * position`; MIKASA: `cfg.seed` for every variant,
    so its control replays the task's episodes with the cue in view), merged into `out/<task>/<name>`."""
    from lerobot.datasets.aggregate import aggregate_datasets

    from memlens.tasks.record import record_dataset

    merged = out / task / name
    if (merged / "meta" / "info.json").is_file():
        return merged
    parts, ids = [], []
    for i, variant in enumerate(variants):
        seed = cfg.seed if is_mikasa(task) else cfg.seed + 10_000 * i
        root = out / task / "parts" / f"{variant}-seed{seed}"
        if (root / "meta" / "info.json").is_file():
            pass
        elif is_mikasa(task):
            from memlens.tasks.catalog import env_config
            from memlens.tasks.mikasa import record_mikasa_dataset

            record_mikasa_dataset(env_config(task, variant).type, root=root, repo_id=f"local/{task}_{variant}_{seed}",
                                  n_episodes=cfg.mikasa_episodes, seed=seed, progress=False)
        else:
            record_dataset(root=root, repo_id=f"local/{task}_{variant}_{seed}", task=task, variant=variant,
                           n_episodes=cfg.episodes_per_variant, seed=seed, progress=False)
        parts.append(root)
        ids.append(f"local/{task}_{variant}_{seed}")
    aggregate_datasets(ids, f"local/{task}_{name}", roots=parts, aggr_root=merged)
    return merged


def segments_of(task: str, cfg: ExperimentConfig) -> int:
    default = MIKASA_SEGMENTS if is_mikasa(task) else None
    return (cfg.n_mem_segments or {}).get(task) or default or segments_needed(task, cfg.train_variants[task])


def steps_of(task: str, cfg: ExperimentConfig) -> int:
    return cfg.steps.get(task) or (MIKASA_STEPS if is_mikasa(task) else STEPS[task])


def train_policy(dataset: Path, out: Path, cfg: ExperimentConfig, *, num_mem_tokens: int, segments: int,
                 steps: int, init: Path | None = None, policy: dict | None = None,
                 batch_size: int | None = None) -> Path:
    """Train (or reuse) one policy; `init` continues from a checkpoint (fresh optimizer and schedule)."""
    from memlens.workflows.train import continue_train_args, run_lerobot_train, tiny_train_args

    ckpt = out / "checkpoints" / "last" / "pretrained_model"
    if (ckpt / "model.safetensors").is_file():
        return ckpt
    if init is None:
        args = tiny_train_args(dataset_root=dataset, output_dir=out, steps=steps, batch_size=batch_size or cfg.batch_size,
                               num_mem_tokens=num_mem_tokens, n_mem_segments=segments, optimizer_lr=cfg.lr,
                               **(policy or {}))
    else:
        args = continue_train_args(init, dataset_root=dataset, output_dir=out, steps=steps,
                                   batch_size=batch_size or cfg.batch_size, n_mem_segments=segments,
                                   optimizer_lr=cfg.lr)
    run_lerobot_train([*args, f"--seed={cfg.seed}", *cfg.extra_policy_args])
    return ckpt


def train_task(task: str, cfg: ExperimentConfig, out: Path, console: Console) -> dict[str, Path]:
    """Both policies of one task, through the warm-up stage first when the task has one."""
    warmup = None if is_mikasa(task) else cfg.warmup_variants.get(task)
    variants = train_variants_of(task, cfg)
    final_data = record_training_data(task, variants, cfg, out)
    extra = {"policy": MIKASA_POLICY, "batch_size": cfg.mikasa_batch_size} if is_mikasa(task) else {}
    warm_data = record_training_data(task, warmup, cfg, out, "train_warmup") if warmup else None
    k = segments_of(task, cfg)
    ckpts = {}
    for name, m in (("memory", cfg.num_mem_tokens), ("baseline", 0)):
        init = None
        if warm_data is not None:
            console.rule(f"{task}: warm up {name} on {', '.join(warmup)} (num_mem_tokens={m}, "
                         f"K={cfg.warmup_segments[task]}, {cfg.warmup_steps} steps)")
            init = train_policy(warm_data, out / task / f"{name}_warmup", cfg, num_mem_tokens=m,
                                segments=cfg.warmup_segments[task], steps=cfg.warmup_steps)
        console.rule(f"{task}: train {name} on {', '.join(variants)} (num_mem_tokens={m}, "
                     f"K={k}, {steps_of(task, cfg)} steps{', from the warm-up' if init else ''})")
        ckpts[name] = train_policy(final_data, out / task / name, cfg, num_mem_tokens=m, segments=k,
                                   steps=steps_of(task, cfg), init=init, **extra)
    return {"baseline": ckpts["baseline"], "memory": ckpts["memory"]}


def cached_results(path: Path, ckpts: dict[str, Path], cfg: ExperimentConfig, variants=None) -> dict | None:
    """A finished evaluation of these checkpoints with these settings (on `variants`, default
    `cfg.eval_variants`), written after both were trained."""
    variants = cfg.eval_variants if variants is None else variants
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
        same = (results["n_episodes"] == cfg.n_eval_episodes and results["seed"] == cfg.eval_seed
                and {n: p["path"] for n, p in results["policies"].items()} == {n: str(c) for n, c in ckpts.items()}
                and {r["variant"] for r in results["results"]} == set(variants))
    except (ValueError, KeyError, TypeError):
        return None
    weights = [Path(c) / "model.safetensors" for c in ckpts.values()]
    if not same or not all(w.is_file() for w in weights):
        return None
    return results if all(path.stat().st_mtime > w.stat().st_mtime for w in weights) else None


def run_experiment(out: Path, cfg: ExperimentConfig | None = None, console: Console | None = None) -> dict:
    from memlens.workflows.evaluate import compare_in_env, write_results
    from memlens.workflows.report import markdown_table, print_comparison

    cfg = cfg or ExperimentConfig()
    console = console or (Console() if sys.stdout.isatty() else Console(width=160))  # piped: every column whole
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "experiment_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    tables, all_results = [], {}
    for task in cfg.tasks:
        per = cfg.mikasa_episodes if is_mikasa(task) else cfg.episodes_per_variant
        console.rule(f"{task}: data ({', '.join(train_variants_of(task, cfg))}, {per} episodes each)")
        ckpts = train_task(task, cfg, out, console)
        variants = eval_variants_of(task, cfg)
        console.rule(f"{task}: evaluate on {', '.join(variants)} ({cfg.n_eval_episodes} episodes each)")
        path = out / task / "evaluation_results.json"
        results = cached_results(path, ckpts, cfg, variants)
        if results is None:
            results = compare_in_env({k: str(v) for k, v in ckpts.items()}, ENV_OF_TASK.get(task, task),
                                     variants=list(variants), n_episodes=cfg.n_eval_episodes, seed=cfg.eval_seed)
            write_results(results, path)
        else:
            console.print(f"reusing {path} (newer than both checkpoints, same episodes and variants)")
        print_comparison(results, console)
        tables.append(markdown_table(results))
        all_results[task] = results
    (out / "results.md").write_text("\n\n".join(tables) + "\n")
    return all_results
