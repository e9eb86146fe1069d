"""`memlens demo`: the whole path on the built-in demo, on a CPU, offline.

1. install the tiny SmolVLM into the Hub cache; 2. record a cue-recall dataset with the scripted
expert; 3. train a `smolvla_rmt` policy with lerobot-train over K recurrent segments; 4. replay an
episode with `select_action` and print how the memory evolves per chunk; 5. capture episodes with
attention into a trace store (the main job, `memlens capture`); 6. serve the app on the traces and
print its URL (`memlens app`).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

DEMO_TASK, DEMO_VARIANT = "cue_recall", "short"


def run_demo(*, workdir: Path, steps: int = 300, n_episodes: int = 30, console: Console | None = None,
             serve: bool = False, host: str = "127.0.0.1", port: int = 7860) -> Path:
    from memlens.capture.dataset import capture
    from memlens.runtime.debug import inspect_checkpoint
    from memlens.models import install_vlm
    from memlens.tasks.record import record_dataset
    from memlens.workflows.train import run_lerobot_train, tiny_train_args

    console = console or Console()
    workdir = Path(workdir)
    if serve:  # a busy port is found now, not after five minutes of work
        from memlens.apps.gradio_app import check_port

        check_port(host, port)
    console.rule("1/6 tiny SmolVLM backbone")
    console.print(install_vlm("tiny"))
    dataset = workdir / "data" / f"{DEMO_TASK}_{DEMO_VARIANT}"
    console.rule(f"2/6 dataset: {DEMO_TASK}/{DEMO_VARIANT}, {n_episodes} expert episodes")
    if not (dataset / "meta" / "info.json").is_file():
        record_dataset(root=dataset, repo_id=f"local/{dataset.name}", task=DEMO_TASK, variant=DEMO_VARIANT,
                       n_episodes=n_episodes, seed=0)
    console.print(dataset)
    run = workdir / "runs" / time.strftime("rmt-%Y%m%d-%H%M%S")
    console.rule(f"3/6 lerobot-train smolvla_rmt, 4 memory tokens, K=5 segments, {steps} steps")
    run_lerobot_train(tiny_train_args(dataset_root=dataset, output_dir=run, steps=steps, batch_size=8,
                                      num_mem_tokens=4, n_mem_segments=5))
    ckpt = run / "checkpoints" / "last" / "pretrained_model"
    console.rule("4/6 replay episode 0 with select_action: memory per chunk")
    inspect_checkpoint(str(ckpt), dataset=str(dataset), episode=0, console=console)
    traces = run / "traces"
    console.rule("5/6 memlens capture: memory and attention at every step of 10 episodes")
    store = capture(str(ckpt), str(dataset), str(traces), episodes=list(range(min(10, n_episodes))),
                    attention=True, batch_episodes=5)
    ep = store.episode(store.episodes()[0])
    console.print(f"{len(store.episodes())} episodes captured; episode 0 arrays: "
                  + ", ".join(f"{n} {list(s)}" for n, s in ep.shapes.items()))
    console.print(f"\ncheckpoint: {ckpt}\ndataset:    {dataset}\ntraces:     {traces}")
    if serve:
        from memlens.apps.gradio_app import serve as serve_app

        console.rule("6/6 memlens app on the traces")
        console.print(f"[bold green]memlens app: http://{host}:{port}[/bold green]  (Ctrl-C to stop; later: "
                      f"memlens app {traces})")
        serve_app(traces, host=host, port=port)
    return ckpt
