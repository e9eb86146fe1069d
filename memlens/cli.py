"""The `memlens` command line: a thin layer over the same functions the notebooks call."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from typer.core import TyperGroup

from memlens.errors import UserError


class _Commands(TyperGroup):
    """The one place a `UserError` becomes `error: <paragraph>` and exit status 2, for every command (also
    under typer's CliRunner, which does not go through `main`)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            _fail(str(exc))


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train SmolVLA with RMT memory tokens, show whether memory helps, and show what the memory holds.",
)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command("build-models")
def build_models(
    full_size: bool = typer.Option(False, "--full-size", help="Also install the full-size SmolVLM2-500M architecture (random weights)."),
    hf_home: Path = typer.Option(None, help="Hub cache root (default: $HF_HOME or ~/.cache/huggingface)."),
):
    """Install the local SmolVLM backbones (tiny at 64 and 128 px) into the Hub cache, so nothing needs the Hub.

    Example:  memlens build-models --full-size
    """
    from memlens.models import install_vlm

    for kind in ["tiny", "tiny128"] + (["full"] if full_size else []):
        typer.echo(f"{kind}: {install_vlm(kind, hf_home=hf_home)}")


@app.command("record")
def record(
    out: Path = typer.Argument(None, help="Directory of the new dataset (must not exist or be empty); or --root."),
    root: Path = typer.Option(None, "--root", help="The same as OUT."),
    env: str = typer.Option(None, "--env", help="A MIKASA-Robo env type (mikasa_remember_color3, ...; needs "
                            "`make setup-mikasa`) instead of memlens's own tasks (--task)."),
    task: str = typer.Option("cue_recall", help="cue_recall, order or count."),
    variant: str = typer.Option("short", help="short, medium, long, extra_long or control."),
    n_episodes: int = typer.Option(50, "--n-episodes", "--episodes", help="Episodes to record."),
    n_targets: int = typer.Option(4, help="Number of targets (and cues)."),
    seed: int = typer.Option(0, help="Seed of the episode generator."),
    repo_id: str = typer.Option(None, help="Dataset repo id (default: local/<folder name>)."),
    control_mode: str = typer.Option(None, help="With --env: the action space, pd_joint_delta_pos (the default, "
                                     "MIKASA-Robo's, 8 values) or pd_ee_delta_pos (TCP deltas, 4 values)."),
):
    """Record a memory-task dataset (LeRobotDataset v3) with the scripted expert.

    Example:  memlens record data/cue_short --task cue_recall --variant short --n-episodes 50
    Example:  memlens record --env mikasa_remember_color3 --episodes 2 --root data/mikasa_rc3
    """
    if (out is None) == (root is None):
        raise UserError("give the dataset directory once: as OUT or as --root (e.g. --root data/cue_short).")
    out = out or root
    if env is not None:
        from memlens.tasks.mikasa import KNOWN_ENVS, is_installed, record_mikasa_dataset

        if env not in KNOWN_ENVS:
            raise UserError(f"unknown env {env!r}; --env takes a MIKASA-Robo env type: {', '.join(sorted(KNOWN_ENVS))} "
                            f"(memlens's own tasks: --task).")
        if not is_installed():
            raise UserError(f"{env} needs MIKASA-Robo, which is not installed; run `make setup-mikasa`, then retry.")
        path = record_mikasa_dataset(env, root=out, n_episodes=n_episodes, seed=seed, repo_id=repo_id,
                                     control_mode=control_mode or "pd_joint_delta_pos")
        typer.echo(f"dataset written to {path}")
        return
    if control_mode is not None:
        raise UserError(f"--control-mode {control_mode} chooses the action space of a MIKASA-Robo env (--env); "
                        f"memlens's own task {task} has one action space. Drop --control-mode, or add --env.")
    from memlens.tasks.record import record_dataset

    path = record_dataset(
        root=out, repo_id=repo_id or f"local/{out.name}", task=task, variant=variant,
        n_episodes=n_episodes, seed=seed, n_targets=n_targets,
    )
    typer.echo(f"dataset written to {path}")


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train(ctx: typer.Context):
    """Run lerobot-train with memlens registered; every argument is passed to lerobot-train unchanged,
    except the guide's `--batch_chunk=N`.

    `--policy.push_to_hub=false` is added when absent. `--policy.path=CKPT` with a plain SmolVLA
    checkpoint plus `--policy.num_mem_tokens=N` fine-tunes it with memory added: every SmolVLA
    weight loads, the memory parameters start fresh and are listed. `--batch_chunk=N`: gradient
    accumulation, N micro-batches of `--batch_size` per optimiser step (lerobot-train gets
    `--batch_size=B*N --policy.batch_chunk=N`). Several processes: `torchrun --nproc_per_node=P
    --no-python memlens train ...`.

    Example:  memlens train --policy.type=smolvla_rmt --policy.vlm_model_name=memlens/tiny-smolvlm
    --policy.num_mem_tokens=4 --policy.n_mem_segments=4 --dataset.repo_id=local/cue
    --dataset.root=data/cue --output_dir=outputs/rmt --steps=200 --batch_size=8
    """
    from memlens.workflows.train import run_lerobot_train

    run_lerobot_train(list(ctx.args))


@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to bind. Anything but loopback exposes a pickle-based "
                             "transport: prefer an SSH tunnel (docs/deployment.md)."),
    port: int = typer.Option(8080, help="Port to bind."),
    fps: int = typer.Option(30, help="Control frequency of the robot (lerobot's PolicyServerConfig.fps)."),
    inference_latency: float = typer.Option(1 / 30, help="Minimum seconds per chunk reply (lerobot's option)."),
    obs_queue_timeout: float = typer.Option(2.0, help="Seconds GetActions waits for an observation."),
):
    """lerobot's async policy server, serving smolvla_rmt with memory that advances as in training.

    Memory is reset on every client Ready and every new episode of `memlens robot-client`, written on
    every segment-boundary observation, and each chunk is computed at its observation's frame.

    Example:  memlens serve --port 8080    (then, on the robot: memlens robot-client --server_address=127.0.0.1:8080 ...)
    """
    from memlens.deploy.server import serve

    serve(host=host, port=port, fps=fps, inference_latency=inference_latency, obs_queue_timeout=obs_queue_timeout,
          echo=typer.echo)


@app.command(
    "robot-client",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def robot_client_cmd(ctx: typer.Context):
    """lerobot's async robot client (same flags) that sends each observation's frame and every memory boundary.

    Extra flags: --mem_segment_stride=N (read from the checkpoint when it is a local directory) and
    --episode_frames=N (a new episode, with memory reset, every N executed frames).

    Example:  memlens robot-client --robot.type=so101_follower --robot.port=/dev/ttyACM0
    --server_address=127.0.0.1:8080 --policy_type=smolvla_rmt --pretrained_name_or_path=outputs/rmt/checkpoints/last/pretrained_model
    --actions_per_chunk=50 --task="pick up the cube"
    """
    from memlens.deploy.client import run_client

    run_client(list(ctx.args))


@app.command("inspect")
def inspect(
    ckpt: str = typer.Argument(..., help="Checkpoint directory or Hub id."),
    dataset: str = typer.Option(None, help="Dataset path (or repo id with --root) to step an episode of."),
    root: Path = typer.Option(None, help="Dataset root when DATASET is a repo id."),
    episode: int = typer.Option(0, help="Episode to step through."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
):
    """The guide's debugging snippets: memory parameters, then the memory state per chunk of an episode.

    Example:  memlens inspect outputs/rmt/checkpoints/last/pretrained_model --dataset data/cue_short
    """
    from memlens.runtime.debug import inspect_checkpoint

    inspect_checkpoint(ckpt, dataset=dataset, root=root, episode=episode, device=device)


def parse_episodes(spec: str | None) -> list[int] | None:
    """'0:20' -> [0..19], '3,5,9' -> [3, 5, 9], None -> None (all)."""
    if spec is None:
        return None
    try:
        if ":" in spec:
            lo, hi = spec.split(":", 1)
            return list(range(int(lo or 0), int(hi)))
        return [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--episodes must look like 0:20 or 3,5,9; got {spec!r}.") from None


@app.command("compare")
def compare(
    baseline: str = typer.Argument(..., help="Baseline checkpoint (num_mem_tokens=0)."),
    memory: str = typer.Argument(..., help="Memory checkpoint."),
    env: str = typer.Option(None, help="Env to evaluate in (memlens_cue_recall, memlens_order, memlens_count, or a "
                            "MIKASA-Robo task such as mikasa_remember_color3)."),
    variants: str = typer.Option(None, help="Comma-separated variants (default: all; MIKASA: cue,control)."),
    n_episodes: int = typer.Option(50, help="Episodes per policy and variant (same seeds for both)."),
    batch_size: int = typer.Option(10, help="Environments stepped together."),
    seed: int = typer.Option(100_000, help="Seed of the first episode."),
    dataset: str = typer.Option(None, help="Offline mode: a dataset path (or repo id with --root) instead of --env."),
    root: Path = typer.Option(None, help="Dataset root when --dataset is a repo id."),
    episodes: str = typer.Option(None, help="Offline mode: episodes, e.g. 0:20."),
    output: Path = typer.Option(Path("evaluation_results.json"), help="Where to write the JSON results."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
):
    """Baseline against memory: success (95% CI), reward, inference time, peak memory; or offline action error.

    Example:  memlens compare runs/base/checkpoints/last/pretrained_model runs/mem/checkpoints/last/pretrained_model
    --env memlens_cue_recall --n-episodes 50 --output evaluation_results.json
    """
    from rich.progress import Progress

    from memlens.workflows.evaluate import compare_in_env, compare_on_dataset, write_results
    from memlens.workflows.report import print_comparison

    ckpts = {"baseline": baseline, "memory": memory}
    if (env is None) == (dataset is None):
        raise UserError("pass exactly one of --env NAME (closed loop) or --dataset PATH (offline action error).")
    with Progress(transient=True) as bar:
        if env is not None:
            from memlens.tasks.catalog import variants_of

            n_variants = len(variants.split(",")) if variants else len(variants_of(env))
            task = bar.add_task("evaluating", total=2 * n_variants)
            results = compare_in_env(
                ckpts, env, variants=variants.split(",") if variants else None, n_episodes=n_episodes,
                batch_size=batch_size, seed=seed, device=device,
                progress=lambda r: bar.update(task, advance=1, description=f"{r.variant}: {r.policy} {100 * r.success_rate:.0f}%"),
            )
        else:
            eps = parse_episodes(episodes)
            task = bar.add_task("replaying", total=None)
            results = compare_on_dataset(ckpts, dataset, root=root, episodes=eps, device=device,
                                         progress=lambda name, ep: bar.update(task, advance=1, description=f"{name} episode {ep}"))
    write_results(results, output)
    print_comparison(results)
    typer.echo(f"results written to {output}")


@app.command("capture")
def capture_cmd(
    ckpt: str = typer.Argument(..., help="Checkpoint directory or Hub id."),
    dataset: str = typer.Argument(None, help="Dataset path, or a repo id with --root (or use --env)."),
    out: Path = typer.Option(..., "--out", help="Trace store to write (resumes if it exists)."),
    env: str = typer.Option(None, help="Capture live rollouts in this env instead of a dataset (a memlens world or a "
                            "MIKASA-Robo task such as mikasa_remember_color3)."),
    variant: str = typer.Option(None, help="Env variant for --env (default: short; MIKASA: cue, or control)."),
    n_episodes: int = typer.Option(10, help="Live rollouts to capture with --env."),
    seed: int = typer.Option(0, help="Seed of the first live rollout."),
    root: Path = typer.Option(None, help="Dataset root when DATASET is a repo id."),
    episodes: str = typer.Option(None, help="Episodes, e.g. 0:20 or 3,5,9 (default: all)."),
    attention: bool = typer.Option(False, "--attention", help="Also record attention summaries per prefix group."),
    full_attention: bool = typer.Option(False, "--full-attention", help="Also record full prefix attention maps."),
    hidden: bool = typer.Option(False, "--hidden", help="Also record hidden states at the memory positions per layer."),
    batch_episodes: int = typer.Option(1, help="Episodes replayed together (throughput on a GPU)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing trace store at --out and start over."),
    attention_only: bool = typer.Option(False, "--attention-only", help="Capture a checkpoint without memory (attention and actions only)."),
    embed: bool = typer.Option(False, "--embed", help="Also fit the UMAP of every memory state and save it beside the "
                               "traces, so `memlens app` opens with it at once (otherwise the app fits it itself)."),
):
    """Record memory and attention at every step while dataset episodes replay (the main job).

    Example:  memlens capture runs/mem/checkpoints/last/pretrained_model data/cue_short --out traces/cue
    --episodes 0:20 --attention
    (live rollouts: memlens capture CKPT --env memlens_cue_recall --variant medium --n-episodes 10 --out traces/live)
    """
    from rich.progress import Progress

    from memlens.capture.config import CaptureConfig
    from memlens.capture.dataset import capture
    from memlens.capture.live import capture_env

    if (env is None) == (dataset is None):
        raise UserError("pass a DATASET to replay, or --env NAME to capture live rollouts (not both).")
    config = CaptureConfig(attention=attention, full_attention=full_attention, hidden=hidden,
                           attention_only=attention_only, batch_episodes=batch_episodes, device=device)
    eps = parse_episodes(episodes)
    with Progress() as bar:
        task = bar.add_task("capturing", total=None)

        def progress(kind, done, total):
            bar.update(task, completed=done, total=total,
                       description="resuming: committed episodes skipped" if kind == "skip" else "capturing")

        if env is not None:
            store = capture_env(ckpt, env, str(out), n_episodes=n_episodes, variant=variant, seed=seed, config=config,
                                overwrite=overwrite, progress=progress)
        else:
            store = capture(ckpt, dataset, str(out), root=root, episodes=eps, config=config, overwrite=overwrite,
                            progress=progress)
    typer.echo(f"{len(store.episodes())} episodes in {out}")
    if embed and not attention_only:
        from memlens.analysis.store_embedding import embed_store

        typer.echo(embed_store(store))


store_app = typer.Typer(cls=_Commands, no_args_is_help=True, help="Maintain trace stores (memlens store pack).")
app.add_typer(store_app, name="store")


@store_app.command("pack")
def store_pack(
    traces: str = typer.Argument(..., help="Trace store written by memlens capture."),
    consolidate: bool = typer.Option(False, "--consolidate", help="Replace all packs by one of every episode."),
):
    """Pack a trace store's episodes, so whole-store reads (memory_states, the app's UMAP) are fast.

    A pack holds the committed episodes' arrays (not camera frames) concatenated: a few large reads instead
    of thousands of small ones. Episodes are not changed. Rerun it after adding episodes (it packs the new
    ones); a store captured before packs existed reads as before until packed.

    Example:  memlens store pack traces/cue
    """
    import errno
    import time

    from memlens.store import TraceStore

    start = time.perf_counter()
    try:
        store = TraceStore.create(traces, manifest=TraceStore.open(traces).manifest)
        name = store.pack(consolidate=consolidate)
    except OSError as e:
        if isinstance(e, UserError) or e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise UserError(f"cannot pack the trace store at {traces}: it cannot be written here ({e.strerror}: "
                        f"{e.filename}). Nothing was changed; it reads as before (episode by episode, slower). "
                        "Pack it where it is writable, or copy it somewhere writable first.") from None
    packs = store.packs()
    packed = sorted({e for p in packs.values() for e in p["episodes"]})
    if name is None:
        typer.echo(f"nothing to pack: the {len(packed)} packed episodes of {traces} are all its committed ones "
                   f"({len(packs)} pack{'s' * (len(packs) != 1)})")
        return
    arrays = packs[name]["arrays"]
    typer.echo(f"packed {len(packs[name]['episodes'])} episodes ({len(arrays)} arrays, "
               f"{sum(a['nbytes'] for a in arrays.values()) / 1e6:.1f} MB) into {name} in "
               f"{time.perf_counter() - start:.1f} s; {len(packed)} episodes of {traces} are in "
               f"{len(packs)} pack{'s' * (len(packs) != 1)}")


@app.command("intervene")
def intervene(
    ckpt: str = typer.Argument(..., help="Memory checkpoint directory or Hub id."),
    dataset: str = typer.Argument(None, help="Dataset path (or repo id with --root) to replay; or use --env."),
    mode: str = typer.Option(..., "--mode", help="zero, reset, shuffle (across episodes), shuffle_tokens or swap."),
    from_update: int = typer.Option(0, "--from-update", help="Memory update (chunk computation) at which to intervene."),
    every_update: bool = typer.Option(False, "--every-update", help="Intervene again at every later update."),
    env: str = typer.Option(None, help="Closed loop in this env (memlens_cue_recall, memlens_order, memlens_count, or a "
                            "MIKASA-Robo task such as mikasa_remember_color3) instead of a dataset."),
    variant: str = typer.Option(None, help="Env variant for --env (default: medium; MIKASA: cue, or control)."),
    n_episodes: int = typer.Option(20, help="Episodes (--env: rollouts; dataset: the first N unless --episodes)."),
    episodes: str = typer.Option(None, help="Dataset episodes, e.g. 0:20 or 3,5,9."),
    root: Path = typer.Option(None, help="Dataset root when DATASET is a repo id."),
    batch_size: int = typer.Option(8, help="Episodes run together (shuffle and swap move memory within a batch)."),
    seed: int = typer.Option(0, help="Seed of pairings and noise (--env: episode i uses seed 100000 + seed + i)."),
    output: Path = typer.Option(Path("intervention_results.json"), "--output", help="Where to write the JSON results."),
    figure: Path = typer.Option(None, "--figure", help="Also write the figure (.html or .png)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
):
    """Override the memory at one update (zero, reset, shuffle, swap) and measure what changes: actions
    against the unmodified replay, or closed-loop success and, for swap, whose cue the policy follows.

    Example:  memlens intervene runs/mem/checkpoints/last/pretrained_model --env memlens_cue_recall
    --mode swap --from-update 2 --n-episodes 40 --output swap.json
    (offline: memlens intervene CKPT data/cue_medium --mode zero --from-update 3 --n-episodes 10)
    """
    import json

    from rich.progress import Progress

    from memlens.interventions import intervene_env, intervene_replay

    if (env is None) == (dataset is None):
        raise UserError("pass a DATASET to replay, or --env NAME for closed-loop rollouts (not both).")
    with Progress(transient=True) as bar:
        task = bar.add_task(f"{mode} at update {from_update}", total=None)

        def progress(done, total):
            bar.update(task, completed=done, total=total)

        if env is not None:
            result = intervene_env(ckpt, env, mode=mode, from_update=from_update, n_episodes=n_episodes,
                                   variant=variant, batch_size=batch_size, every_update=every_update,
                                   seed=100_000 + seed, device=device, progress=progress)
        else:
            result = intervene_replay(ckpt, dataset, mode=mode, from_update=from_update,
                                      episodes=parse_episodes(episodes), n_episodes=n_episodes, root=root,
                                      batch_episodes=batch_size, every_update=every_update, seed=seed,
                                      device=device, progress=progress)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result.to_dict(), indent=2))
    if figure is not None:
        result.save(figure)
    for key, value in result.summary.items():
        typer.echo(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    typer.echo(f"results written to {output}")


@app.command("plot")
def plot(
    traces: str = typer.Argument(..., help="Trace store written by memlens capture."),
    kind: str = typer.Option(..., "--kind", help="heatmap, dynamics, umap or attention."),
    out: Path = typer.Option(..., "--out", help="Figure to write: FILE.png or FILE.html."),
    episode: int = typer.Option(None, help="One episode (heatmap, attention: that episode instead of the mean; "
                                           "dynamics: only it; umap: highlighted)."),
    episodes: str = typer.Option(None, help="Episodes to use, e.g. 0:20 or 3,5,9 (default: all)."),
    value: str = typer.Option("norm", help="Heat-map value: norm (token norm), standardised (norm standardised per token) or delta (change since the previous update)."),
    color_by: str = typer.Option("time", help="UMAP colour: time, task, episode or a label (e.g. cue)."),
    layer: int = typer.Option(None, help="Attention of one VLM layer (default: mean over layers)."),
    event: str = typer.Option("cue_end", help="Dynamics: what to align to: cue_end or go (memlens's tasks), a frame "
                                              "number, LABEL=VALUE (first frame a label takes VALUE) or LABEL (first "
                                              "frame it changes)."),
):
    """Draw one analysis view of a trace store to PNG or HTML (the notebook API's figures).

    Example:  memlens plot traces/cue --kind heatmap --episode 3 --out memory_evolution.png
    (also: --kind umap --color-by cue --out umap.html; --kind dynamics; --kind attention --layer -1)
    """
    kinds = ("heatmap", "dynamics", "umap", "attention")
    if kind not in kinds:
        raise UserError(f"--kind must be one of {', '.join(kinds)}; got {kind!r}.")
    if out.suffix.lower() not in (".png", ".html"):
        raise UserError(f"--out must end in .png or .html; got {str(out)!r}.")
    eps = parse_episodes(episodes)
    if kind == "heatmap":
        from memlens.analysis.heatmap import memory_heatmap

        view = memory_heatmap(traces, episode, episodes=eps, value=value)
    elif kind == "dynamics":
        from memlens.analysis.dynamics import memory_dynamics

        view = memory_dynamics(traces, [episode] if episode is not None else eps,
                               event=int(event) if event.strip().lstrip("-").isdigit() else event)
    elif kind == "umap":
        from memlens.analysis.embedding import memory_umap

        typer.echo("fitting UMAP (the first fit in a process also compiles numba code: ~20-60 s)")
        view = memory_umap(traces, eps, color_by=color_by, highlight=episode)
    else:
        from memlens.analysis.attention import attention_over_time

        view = attention_over_time(traces, episode, episodes=eps, layer=layer)
    path = view.save(out)
    typer.echo(f"{kind} written to {path}")


@app.command("experiment")
def experiment(
    out: Path = typer.Option(Path("artifacts/experiment"), help="Where data, runs and results go (reruns resume)."),
    tasks: str = typer.Option("cue_recall,order", help="Comma-separated tasks: cue_recall, order, count, or MIKASA-Robo "
                              "env types such as mikasa_remember_color3 (after make setup-mikasa)."),
    steps: int = typer.Option(None, help="Training steps per policy of every task's final stage (default: "
                              "1000 for cue_recall and order, after their warm-up; 1500 for count; 2000 for MIKASA)."),
    warmup_steps: int = typer.Option(1500, help="Warm-up steps of tasks with a curriculum (cue_recall, order)."),
    n_episodes: int = typer.Option(50, help="Evaluation episodes per policy and variant."),
    mikasa_episodes: int = typer.Option(100, help="Expert episodes recorded per MIKASA variant (cue, control)."),
    seed: int = typer.Option(0, help="Seed of data and training (evaluation uses its own fixed seeds)."),
):
    """Baseline against memory on the memory tasks: record, train both with one budget, evaluate every variant.

    Example:  memlens experiment --out artifacts/experiment --tasks cue_recall --n-episodes 50
    (MIKASA-Robo: memlens experiment --out artifacts/mikasa_experiment --tasks mikasa_remember_color3)
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from memlens.tasks.catalog import is_mikasa
    from memlens.tasks.mikasa import TASKS, is_installed
    from memlens.workflows.experiment import TRAIN_VARIANTS, ExperimentConfig, run_experiment

    chosen = tuple(t.strip() for t in tasks.split(",") if t.strip())
    mikasa = [t for t in TASKS if not TASKS[t].control]
    unknown = [t for t in chosen if t not in TRAIN_VARIANTS and not (is_mikasa(t) and not TASKS[t].control)]
    if unknown or not chosen:
        _fail(f"--tasks must name tasks from {', '.join(TRAIN_VARIANTS)} or MIKASA-Robo's {', '.join(mikasa)} "
              f"(comma-separated; a control is evaluated with its task); got {tasks!r}"
              f"{f', where {unknown} are unknown' if unknown else ''}. Pick from those.")
    if any(is_mikasa(t) for t in chosen) and not is_installed():
        _fail("MIKASA-Robo tasks need MIKASA-Robo, ManiSkill and SAPIEN, which are not installed in this "
              "environment. Run `make setup-mikasa` once (docs/mikasa.md), then rerun this command.")
    if min(n_episodes, warmup_steps, mikasa_episodes, 1 if steps is None else steps) < 1:
        _fail(f"--n-episodes, --steps, --warmup-steps and --mikasa-episodes must be at least 1; got {n_episodes}, "
              f"{steps}, {warmup_steps}, {mikasa_episodes}.")
    cfg = ExperimentConfig(tasks=chosen, warmup_steps=warmup_steps, n_eval_episodes=n_episodes, seed=seed,
                           mikasa_episodes=mikasa_episodes)
    if steps is not None:
        cfg.steps = dict.fromkeys(cfg.tasks, steps)
    run_experiment(out, cfg)
    typer.echo(f"results: {out / 'results.md'}")


@app.command("app")
def app_cmd(
    traces: Path = typer.Argument(..., help="Trace store written by memlens capture."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; anything but 127.0.0.1 exposes the app to the network."),
    port: int = typer.Option(7860, help="Port to serve on."),
    compare: Path = typer.Option(None, help="A second trace store (same episodes) for the compare panel."),
):
    """Serve the Gradio app on a trace store: frames, heat map, UMAP, probes, attention, compare.

    Example:  memlens app traces/cue --port 7860
    """
    from memlens.apps.gradio_app import serve

    if host not in ("127.0.0.1", "localhost"):
        typer.secho(f"warning: binding {host}: anyone who can reach this machine on port {port} can use the app "
                    "and read the trace store.", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"memlens app on {traces}: http://{host}:{port}  (Ctrl-C to stop)")
    serve(traces, host=host, port=port, compare=compare, preview=True)


@app.command("rerun")
def rerun_cmd(
    traces: str = typer.Argument(..., help="Trace store written by memlens capture."),
    episode: int = typer.Option(None, help="Episode to show (default: the first in the store)."),
    save: Path = typer.Option(None, "--save", help="Write the recording to this .rrd file (open it with `rerun FILE`)."),
    serve: bool = typer.Option(False, "--serve", help="Serve a web viewer on 127.0.0.1 and wait for Ctrl-C."),
    web_port: int = typer.Option(9090, help="Web viewer port (--serve)."),
    grpc_port: int = typer.Option(9876, help="gRPC port the web viewer reads from (--serve)."),
    images: str = typer.Option("auto", help="Camera frames: auto (raw, JPEG above 256x256), raw, jpeg or none."),
    umap: bool = typer.Option(True, "--umap/--no-umap", help="Fit a UMAP of the store's memory states."),
    embedding: Path = typer.Option(None, help="Points of an embedding saved with MemoryMap.save, instead of a fit."),
):
    """Show one captured episode in Rerun: cameras, memory norms and heat map, attention, UMAP, actions, labels.

    Without --save or --serve the native viewer opens (it needs a display).

    Example:  memlens rerun traces/cue --episode 3 --save ep3.rrd
    (then `rerun ep3.rrd`; or memlens rerun traces/cue --serve for a web viewer on http://127.0.0.1:9090)
    """
    from memlens.apps import rerun_viewer

    try:
        if save is not None and serve:
            raise UserError("pass --save FILE or --serve, not both.")
        kw = {"images": images, "umap": umap, "embedding": embedding, "say": typer.echo}
        if save is not None:
            contents = rerun_viewer.save_rrd(traces, save, episode, **kw)
            typer.echo(f"episode {contents.episode} ({contents.length} frames) written to {save}")
        elif serve:
            rerun_viewer.serve(traces, episode, web_port=web_port, grpc_port=grpc_port, **kw)
        else:
            contents = rerun_viewer.spawn(traces, episode, **kw)
            typer.echo(f"episode {contents.episode} sent to the Rerun viewer")
    except KeyboardInterrupt:
        typer.echo("stopped")


@app.command("demo")
def demo(
    workdir: Path = typer.Option(Path("artifacts/demo"), help="Where the demo dataset and runs go."),
    steps: int = typer.Option(300, help="Training steps for the memory policy."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="End by serving the app on the captured traces."),
    port: int = typer.Option(7860, help="Port of the app."),
):
    """The built-in demo: tiny model, memory-task dataset, recurrent training, replay, capture, then the app.

    Example:  memlens demo --steps 300
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo uses only locally built models
    from memlens.workflows.demo import run_demo

    run_demo(workdir=workdir, steps=steps, serve=serve, port=port)


def main() -> None:
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 (dataset video encoding): errors only
    app()


if __name__ == "__main__":
    main()
