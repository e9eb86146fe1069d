"""`memlens demo`: the whole path on the built-in demo, on a CPU, offline, ending on a memory that works.

1. install the tiny SmolVLM into the Hub cache; 2. record a cue-recall dataset with the scripted expert;
3. train a `smolvla_rmt` policy with lerobot-train over K recurrent segments (a short run: proof that the
training path works); 4. replay an episode with `select_action` and print how the memory evolves per chunk;
5. evaluate the shipped trained checkpoints (`memlens/demo_assets/cue_recall`: a memory policy and its
same-budget baseline, made by `python -m memlens.workflows.demo_checkpoints`) with lerobot's `eval_policy`
on a few episodes of each variant; 6. swap the memory of episode pairs after the cue and count whose cue the
policy follows; 7. capture live rollouts of both into trace stores (the main job), with the UMAP saved;
8. serve the app on the memory policy's traces, the baseline's in its compare tab (`memlens app`).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

DEMO_TASK, DEMO_VARIANT = "cue_recall", "short"
DEMO_ENV, EVAL_VARIANTS, CAPTURE_VARIANT = "memlens_cue_recall", ("short", "medium", "long", "control"), "medium"


def run_demo(*, workdir: Path, steps: int = 300, n_episodes: int = 30, console: Console | None = None,
             serve: bool = False, host: str = "127.0.0.1", port: int = 7860, eval_episodes: int = 10,
             capture_episodes: int = 16) -> Path:
    """Run the demo; returns the memory policy's trace store (the one the app opens)."""
    from memlens.analysis.store_embedding import embed_store
    from memlens.capture.dataset import capture
    from memlens.capture.live import capture_env
    from memlens.interventions import intervene_env
    from memlens.models import install_vlm
    from memlens.runtime.debug import inspect_checkpoint
    from memlens.tasks.record import record_dataset
    from memlens.workflows.demo_checkpoints import demo_checkpoint
    from memlens.workflows.evaluate import compare_in_env
    from memlens.workflows.report import print_comparison
    from memlens.workflows.train import run_lerobot_train, tiny_train_args

    console = console or Console()
    workdir = Path(workdir)
    if serve:  # a busy port is found now, not after five minutes of work
        from memlens.apps.gradio_app import check_port

        check_port(host, port)
    started = time.perf_counter()
    console.rule("1/8 tiny SmolVLM backbone")
    console.print(install_vlm("tiny"))
    dataset = workdir / "data" / f"{DEMO_TASK}_{DEMO_VARIANT}"
    console.rule(f"2/8 dataset: {DEMO_TASK}/{DEMO_VARIANT}, {n_episodes} expert episodes")
    if not (dataset / "meta" / "info.json").is_file():
        record_dataset(root=dataset, repo_id=f"local/{dataset.name}", task=DEMO_TASK, variant=DEMO_VARIANT,
                       n_episodes=n_episodes, seed=0)
    console.print(dataset)
    run = workdir / "runs" / time.strftime("rmt-%Y%m%d-%H%M%S")
    console.rule(f"3/8 lerobot-train smolvla_rmt, 4 memory tokens, K=5 segments, {steps} steps (the training path)")
    run_lerobot_train(tiny_train_args(dataset_root=dataset, output_dir=run, steps=steps, batch_size=8,
                                      num_mem_tokens=4, n_mem_segments=5))
    ckpt = run / "checkpoints" / "last" / "pretrained_model"
    console.rule("4/8 replay episode 0 with select_action: memory per chunk")
    inspect_checkpoint(str(ckpt), dataset=str(dataset), episode=0, console=console)
    # the rest runs on the shipped checkpoints, trained long enough for memory to work
    memory, baseline = str(demo_checkpoint("memory")), str(demo_checkpoint("baseline"))
    console.rule(f"5/8 evaluate the shipped memory policy and its same-budget baseline ({eval_episodes} episodes of "
                 f"{', '.join(EVAL_VARIANTS)})")
    console.print(f"memory:   {memory}\nbaseline: {baseline}  (made by python -m memlens.workflows.demo_checkpoints)")
    results = compare_in_env({"baseline": baseline, "memory": memory}, DEMO_ENV, variants=list(EVAL_VARIANTS),
                             n_episodes=eval_episodes)
    print_comparison(results)  # its own console: wide enough for every column when piped
    console.rule(f"6/8 swap the memories of episode pairs after the cue ({CAPTURE_VARIANT}): whose cue is followed?")
    swap = intervene_env(memory, DEMO_ENV, mode="swap", from_update=2, n_episodes=eval_episodes,
                         variant=CAPTURE_VARIANT)
    for key, value in swap.summary.items():
        console.print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")
    traces = workdir / "traces" / "memory"
    console.rule(f"7/8 memlens capture: {capture_episodes} live rollouts of each policy ({CAPTURE_VARIANT}), "
                 "memory and attention at every step")
    for name, path, out in (("memory", memory, traces), ("baseline", baseline, workdir / "traces" / "baseline")):
        store = capture_env(path, DEMO_ENV, str(out), n_episodes=capture_episodes, variant=CAPTURE_VARIANT,
                            overwrite=True, attention=True, attention_only=name == "baseline")
        successes = sum(bool(store.episode(e).attrs.get("success")) for e in store.episodes())
        console.print(f"{name}: {len(store.episodes())} episodes in {out}, {successes} successes")
    console.print(embed_store(traces))
    ds_traces = run / "traces"  # the main job on a dataset, with the short run's checkpoint
    capture(str(ckpt), str(dataset), str(ds_traces), episodes=list(range(min(4, n_episodes))), attention=True)
    console.print(f"\ncheckpoint (short run): {ckpt}\ndataset:    {dataset}\ntraces:     {traces} (and {ds_traces}: "
                  f"the short run's checkpoint replaying the dataset)\ndemo took {time.perf_counter() - started:.0f} s")
    if serve:
        from memlens.apps.gradio_app import serve as serve_app

        console.rule("8/8 memlens app on the memory policy's traces (the baseline in the compare tab)")
        console.print(f"[bold green]memlens app: http://{host}:{port}[/bold green]  (Ctrl-C to stop; later: "
                      f"memlens app {traces} --compare {workdir / 'traces' / 'baseline'})")
        serve_app(traces, host=host, port=port, compare=str(workdir / "traces" / "baseline"), preview=True)
    return traces
