"""Write the notebooks in notebooks/ from the cell lists below (run after editing: python scripts/make_notebooks.py).

Notebooks are stored without outputs; the test suite executes them with nbclient on tiny data
(MEMLENS_NOTEBOOK_FAST=1), users run them as they are.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent.parent / "notebooks"

SETUP = '''import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here uses models and data built locally
from pathlib import Path

FAST = os.environ.get("MEMLENS_NOTEBOOK_FAST") == "1"  # the test suite runs this notebook on tiny settings
WORK = Path(os.environ.get("MEMLENS_NOTEBOOK_DIR", "../artifacts/quickstart")).resolve()
WORK.mkdir(parents=True, exist_ok=True)
SHOW = not FAST  # draw figures inline when a person runs the notebook'''

QUICKSTART = [
    ("md", """# memlens quickstart: what does the memory hold, and does the policy use it?

This notebook runs the whole path on the built-in demo, on a CPU, with a tiny SmolVLA built locally:

1. **train** a `smolvla_rmt` policy (4 memory tokens) with lerobot-train over recurrent segments (a short run), then
   turn to the checkpoints memlens ships, trained long enough for memory to work (README, "The demo"),
2. **capture** memory, attention and hidden states at every step while episodes replay (`memlens capture`),
3. **look**: token-norm heat map (the guide's `memory_evolution.png`), memory dynamics around the cue, UMAP trajectories,
4. **probe** what the memory encodes, grouped by episode, against control tasks and memory-free baselines,
5. **attention** over time: what memory reads, and how much the actions read from memory,
6. **intervene**: zero or swap the memory and measure what changes in the actions and in closed-loop success,
7. **compare** two checkpoints on the same episodes.

The analyses use the shipped memory policy and its same-budget baseline (`memlens/demo_assets/cue_recall`: 100% on
cue recall against the baseline's 0-15%); point `CKPT` and `BASE` at your own checkpoints to look at yours
(`memlens experiment`, docs/experiment.md, trains both on every task)."""),
    ("code", SETUP),
    ("md", "## 1. Train (a short lerobot-train run over recurrent segments), and the shipped checkpoints"),
    ("code", '''from memlens.models import install_vlm
from memlens.tasks.record import record_dataset
from memlens.workflows.demo_checkpoints import demo_checkpoint
from memlens.workflows.train import run_lerobot_train, tiny_train_args

install_vlm("tiny")
SHORT = WORK / "data" / "cue_short"
if not (SHORT / "meta" / "info.json").is_file():
    record_dataset(root=SHORT, repo_id="local/cue_short", task="cue_recall", variant="short",
                   n_episodes=8 if FAST else 30, seed=0, progress=False)
RUN = WORK / "runs" / "rmt"
if not (RUN / "checkpoints" / "last" / "pretrained_model" / "model.safetensors").is_file():
    run_lerobot_train(tiny_train_args(dataset_root=SHORT, output_dir=RUN, steps=2 if FAST else 300, batch_size=8,
                                      num_mem_tokens=4, n_mem_segments=5))
# what follows uses the shipped checkpoints: 1500 steps at K=9 (python -m memlens.workflows.demo_checkpoints)
CKPT, BASE = demo_checkpoint("memory"), demo_checkpoint("baseline")
CKPT'''),
    ("md", """## 2. Capture a medium-delay dataset (the cue is hidden for 3 action chunks)

The short run trained on short delays (the shipped checkpoints on short, medium and control); here we record a dataset where the cue disappears 30 frames before the agent
may move, and capture memory, attention and hidden states at every step. `hidden=True` also records the
memory-free observation embedding the probes use as a baseline."""),
    ("code", '''from memlens.capture.dataset import capture
from memlens.tasks.record import record_dataset

DATA = WORK / "data" / "cue_medium"
if not (DATA / "meta" / "info.json").is_file():
    record_dataset(root=DATA, repo_id="local/cue_medium", task="cue_recall", variant="medium",
                   n_episodes=16 if FAST else 40, seed=1, progress=False)
TRACES = WORK / "traces" / "cue_medium"
store = capture(str(CKPT), str(DATA), str(TRACES), attention=True, hidden=True, batch_episodes=4)
ep = store.episode(store.episodes()[0])
print(len(store.episodes()), "episodes;", {n: s for n, s in ep.shapes.items() if not n.startswith("label")})'''),
    ("md", """## 3. Look at the memory

**Heat map** of memory-token norms over the steps of one episode, and averaged over episodes (`value="delta"`
shows the norm of each update's change instead: memory states are RMSNorm outputs, so raw norms are nearly flat)."""),
    ("code", '''from memlens.analysis import memory_heatmap, memory_dynamics, memory_umap, fit_map, MemoryMap, load_embedding_points

hm = memory_heatmap(TRACES, episode=0)
print("heat map (updates x tokens):", hm.values.shape)
hm.save(WORK / "memory_evolution.png")  # the guide's figure
mean_delta = memory_heatmap(TRACES, value="delta")
if SHOW:
    hm.figure.show(); mean_delta.figure.show()'''),
    ("md", "**Dynamics**: per-token cosine distance between consecutive memory states, aligned to the moment the cue disappears."),
    ("code", '''dyn = memory_dynamics(TRACES, event="cue_end")
for rel, row in zip(dyn.rel_frames, dyn.mean.round(4)):
    print(f"{int(rel):+4d} frames from the cue's end: cosine distance per token {row}")
if SHOW:
    dyn.figure.show()'''),
    ("md", """**UMAP trajectories**: fit on the memory states of all episodes (PCA to 50 dimensions first), draw each
episode's path coloured by the cue. Save the fitted embedding and project new episodes into the same map."""),
    ("code", '''umap_map = fit_map(TRACES, random_state=0)      # a MemoryEmbedding (scikit-learn estimator) fitted on the store's rows
print(umap_map.points.coords.shape)
umap_map.save(WORK / "umap_cue")                  # embedding.npz (plain arrays) + reducer.joblib (pickle: trusted files only)
points = load_embedding_points(WORK / "umap_cue")  # the coordinates, without unpickling
again = MemoryMap.load(WORK / "umap_cue").project(TRACES, episodes=[0, 1])
print("re-projected", len(again), "states of episodes 0 and 1")
view = memory_umap(TRACES, color_by="cue", highlight=0)
if SHOW:
    view.figure.show()'''),
    ("md", """## 4. Probes: when does the memory know the cue, and how long does it keep it?

A linear probe predicts a label from the memory. Cross-validation is **grouped by episode** (frames of one episode
never sit on both sides), a **control task** (random labels assigned per episode) measures what a probe can get
by memorising episodes, and **selectivity** is accuracy minus control. Baselines without memory: the current
observation's embedding, and the initial memory."""),
    ("code", '''from memlens.analysis import probe, probe_baselines, available_labels

print("labels in the store:", available_labels(TRACES))
res = probe(TRACES, "cue", features="memory", n_splits=4)
print(res.summary())
print(res.by_step[["update", "score", "control_score", "chance"]].to_string(index=False))
results, table, fig = probe_baselines(TRACES, "cue", n_splits=4)
print(table[["features", "mean", "control", "selectivity", "chance"]].to_string(index=False))
if SHOW:
    fig.show()'''),
    ("md", "Per token and per layer (`hidden/memory`), and other labels: the phase of the episode, the future action."),
    ("code", '''for feats in ["token:0", "token:3", "layer:0", "layer:3"]:
    print(probe(TRACES, "cue", features=feats, n_splits=4, by_step=False).summary())
print(probe(TRACES, "phase", n_splits=4, by_step=False).summary())
print(probe(TRACES, "future_action", n_splits=4, by_step=False).summary())'''),
    ("md", "## 5. Attention over time"),
    ("code", '''from memlens.analysis import attention_over_time

att = attention_over_time(TRACES, episode=0)
print("groups:", att.groups)
print("share of the actions' attention on memory per update:", att.action_from_memory.round(3))
if SHOW:
    att.figure.show()'''),
    ("md", """## 6. Interventions: does the policy use its memory?

Zero the memory from update 2 on during replay and measure how far the predicted actions move; swap the memory of
episodes with different cues in closed-loop rollouts and count which target each episode reaches (a policy that
uses its memory follows the donor's cue; see docs/probes.md for the figures with a fully trained checkpoint)."""),
    ("code", '''from memlens.interventions import intervene_env, intervene_replay

zero = intervene_replay(CKPT, DATA, mode="zero", from_update=2, n_episodes=4 if FAST else 12)
print({k: round(v, 4) if isinstance(v, float) else v for k, v in zero.summary.items()})
swap = intervene_env(CKPT, "memlens_cue_recall", mode="swap", from_update=2, variant="medium",
                     n_episodes=4 if FAST else 20, batch_size=4 if FAST else 10)
print(swap.summary)
if SHOW:
    zero.figure.show(); swap.figure.show()'''),
    ("md", "## 7. Compare two checkpoints on the same episodes (here: the memory policy and its same-budget baseline)"),
    ("code", '''from memlens.analysis import compare_checkpoints

BASE_TRACES = WORK / "traces" / "baseline_medium"
capture(str(BASE), str(DATA), str(BASE_TRACES), attention_only=True, batch_episodes=4)
cmp = compare_checkpoints(BASE_TRACES, TRACES, names=("baseline", "memory"), n_splits=4)
print(cmp.summary)
print(cmp.per_episode.head().to_string(index=False))
if SHOW:
    cmp.figure.show()'''),
    ("md", """## Next

- `memlens app TRACES` opens all of this in a browser, tied to the camera frames; `memlens rerun TRACES` writes a Rerun recording.
- `memlens plot TRACES --kind heatmap --out memory_evolution.png` draws any view from the command line.
- `memlens experiment` trains and evaluates baseline against memory on every task variant (docs/experiment.md)."""),
]


def build(cells) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating gives the same file
        cell.id = f"cell-{i:02d}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def main() -> None:
    HERE.mkdir(exist_ok=True)
    nbformat.write(build(QUICKSTART), HERE / "quickstart.ipynb")
    print("wrote", HERE / "quickstart.ipynb")


if __name__ == "__main__":
    main()
