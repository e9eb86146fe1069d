"""Training at scale: gradient accumulation (`--batch_chunk`), several processes, per-segment activation
checkpointing and mixed precision give the update of the plain run (tiny model, CPU)."""

import logging

import numpy as np

import pytest
import torch
from accelerate import Accelerator
from lerobot.utils.constants import OBS_STATE
from lerobot.utils.logging_utils import AverageMeter, MetricsTracker
from safetensors.torch import load_file

from memlens.errors import UserError
from memlens.workflows.train import prepare_args, tiny_train_args
from memlens.workflows.train_step import micro_slices, update_policy

from conftest import BIN, run_ok
from policy_helpers import IMG, make_policy, train_batch


def padded_batch(policy, batch_size=4):
    """A batch whose samples start before the episode (padded segments) or end inside the chunk."""
    batch = train_batch(policy, batch_size=batch_size, seed=3)
    for row, n_pad in ((0, 1), (1, 2)):
        batch[f"{OBS_STATE}_is_pad"][row, :n_pad] = True
        batch[f"{IMG}_is_pad"][row, :n_pad] = True
    batch["action_is_pad"][2, -7:] = True
    return batch


def one_step(batch_chunk, *, seed=0, **overrides):
    """Parameters after one lerobot-style step (SGD, lr 1, so the change is the gradient) and the metrics."""
    torch.manual_seed(seed)
    policy = make_policy(num_mem_tokens=4, n_mem_segments=3, batch_chunk=batch_chunk, train_expert_only=False,
                         **overrides)
    before = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    batch = padded_batch(policy)
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=1.0)
    policy, optimizer = accelerator.prepare(policy, optimizer)
    meters = {name: AverageMeter(name) for name in ("loss", "grad_norm", "lr", "update_s")}
    tracker = MetricsTracker(4, 100, 100, meters)
    torch.manual_seed(1)
    _, out = update_policy(tracker, policy, batch, optimizer, 1e6, accelerator)
    after = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    return before, after, out


def relative_difference(a, b, before):
    num = sum(((a[k] - b[k]) ** 2).sum() for k in a) ** 0.5
    den = sum(((a[k] - before[k]) ** 2).sum() for k in a) ** 0.5
    return float(num / den)


def test_micro_batches_make_the_update_of_the_whole_batch_with_padded_segments():
    before, whole, out_whole = one_step(1)
    assert out_whole["n_valid_segments"] == 4 * 3 - 3  # the padding above is really in the batch
    for n in (2, 3):  # 3 does not divide 4: micro-batches of 2, 1, 1
        _, split, out = one_step(n)
        assert relative_difference(whole, split, before) < 1e-5, n
        assert out["loss"] == pytest.approx(out_whole["loss"], rel=1e-5)
        assert out["n_valid_segments"] == out_whole["n_valid_segments"]
    moved = (whole["model.mem_tokens"] - before["model.mem_tokens"]).abs().max()
    assert moved > 1e-4  # memory is trained through the segments


def test_micro_slices_cover_every_row_once():
    for batch_size in range(1, 9):
        for n in range(1, 5):
            slices = micro_slices(batch_size, n)
            rows = [r for s in slices for r in range(s.start, s.stop)]
            assert rows == list(range(batch_size)) and len(slices) == min(n, batch_size)
            sizes = [s.stop - s.start for s in slices]
            assert max(sizes) - min(sizes) <= 1


def test_batch_chunk_flag_is_the_guides_micro_batch_count():
    args, notes = prepare_args(["--policy.type=smolvla_rmt", "--batch_size=2", "--batch_chunk=2"])
    assert "--batch_size=4" in args and "--policy.batch_chunk=2" in args and "--batch_chunk=2" not in args
    assert "2 micro-batches of 2" in notes[0]
    args, _ = prepare_args(["--policy.type=smolvla_rmt", "--batch_chunk", "3"])  # lerobot's default batch 8
    assert "--batch_size=24" in args and "--policy.batch_chunk=3" in args


def test_plain_lerobot_train_refuses_a_bad_batch_chunk_in_one_paragraph(cue_dataset, tmp_path):
    import subprocess

    proc = subprocess.run([str(BIN / "lerobot-train"), *_run_args(cue_dataset, tmp_path / "x"), "--batch_chunk=0"],
                          capture_output=True, text=True, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "memlens: --batch_chunk (micro-batches per optimiser step) and --batch_size" in proc.stderr


@pytest.mark.parametrize("args, expected", [
    (["--batch_chunk=0"], "at least 1"),
    (["--batch_chunk=two"], "must be integers"),
    (["--batch_chunk=2", "--policy.batch_chunk=2"], "Give one of them"),
])
def test_bad_batch_chunk_is_one_paragraph(args, expected):
    with pytest.raises(UserError, match=expected):
        prepare_args(["--policy.type=smolvla_rmt", "--batch_size=2", *args])


def test_a_batch_that_batch_chunk_does_not_divide_trains_and_says_how_it_split(caplog, monkeypatch):
    from memlens.workflows import train_step

    monkeypatch.setattr(train_step, "_said", set())  # said once per process: forget earlier tests' notices
    with caplog.at_level(logging.WARNING):
        one_step(3)
    assert "micro-batches of [2, 1] rows" in caplog.text


def _run_args(dataset, out):
    args = tiny_train_args(dataset_root=dataset, output_dir=out, steps=2, batch_size=4, num_mem_tokens=4,
                           n_mem_segments=3)
    return [a for a in args if not a.startswith(("--batch_size", "--save_freq"))] + ["--save_freq=1"]


def _params(out, step):
    return load_file(out / "checkpoints" / f"{step:06d}" / "pretrained_model" / "model.safetensors")


def test_two_processes_with_micro_batches_train_the_parameters_of_one_process(cue_dataset, tmp_path):
    """Plain lerobot-train under torchrun (gloo), 2 processes x the guide's `--batch_size=1 --batch_chunk=2`,
    against `memlens train` in one process at batch 4: the same data, noise and update, memory tokens
    included, to float tolerance."""
    one, two = tmp_path / "one", tmp_path / "two"
    run_ok([BIN / "memlens", "train", *_run_args(cue_dataset, one), "--batch_size=4"])
    proc = run_ok([BIN / "torchrun", "--nproc_per_node=2", "--no-python", "lerobot-train",
                   *_run_args(cue_dataset, two), "--batch_size=1", "--batch_chunk=2"])
    log = proc.stdout + proc.stderr
    assert "Effective batch size: 2 x 2 = 4" in log and "2 micro-batches of 1 per optimiser step" in log
    step1, step2 = _params(one, 1), _params(one, 2)
    for step in (1, 2):
        assert relative_difference(_params(one, step), _params(two, step), step1 if step == 2 else step2) < 1e-3
    assert (step2["model.mem_tokens"] - step1["model.mem_tokens"]).abs().max() > 0
    assert torch.allclose(_params(two, 2)["model.mem_tokens"], step2["model.mem_tokens"], atol=1e-7)


def _loss_and_grads(checkpointing, **overrides):
    torch.manual_seed(0)
    policy = make_policy(num_mem_tokens=4, n_mem_segments=3, mem_checkpoint_segments=checkpointing, **overrides).train()
    batch = padded_batch(policy)
    calls = []
    embed_prefix = policy.model.embed_prefix
    policy.model.embed_prefix = lambda *a, **k: calls.append(1) or embed_prefix(*a, **k)
    torch.manual_seed(5)
    loss, _ = policy.forward(batch)
    loss.backward()
    assert len(calls) == 3 * (2 if checkpointing else 1)  # each segment's prefix is rebuilt in the backward pass
    return loss.detach(), {n: p.grad for n, p in policy.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("overrides", [
    {},  # lerobot's defaults: the VLM is frozen, its image features are computed once outside the recompute
    {"train_expert_only": False},  # the connector trains: only the vision encoder's output is kept
    {"train_expert_only": False, "freeze_vision_encoder": False, "mem_at_end": True, "read_mem_from_cache": True},
], ids=["expert-only", "connector-trains", "all-trains-kv-history"])
def test_per_segment_checkpointing_gives_identical_gradients(overrides):
    loss_off, off = _loss_and_grads(False, **overrides)
    loss_on, on = _loss_and_grads(True, **overrides)
    assert torch.equal(loss_off, loss_on)
    assert off.keys() == on.keys() and "model.mem_tokens" in off
    for name in off:
        assert torch.equal(off[name], on[name]), name
    assert off["model.mem_tokens"].abs().sum() > 0


def test_checkpointing_with_one_segment_says_it_does_nothing(caplog):
    torch.manual_seed(0)
    policy = make_policy(num_mem_tokens=4, n_mem_segments=1, mem_checkpoint_segments=True).train()
    assert not policy.config.checkpoints_segments
    with caplog.at_level(logging.WARNING):
        loss, _ = policy.forward(train_batch(policy, batch_size=2))
    assert "nothing is recomputed" in caplog.text and loss.requires_grad


def test_use_amp_runs_inference_in_bfloat16_with_the_memory_recurrence_in_float32():
    """select_action under `use_amp` (bfloat16 autocast on CPU): actions and memory stay float32 tensors; with
    the default `amp_memory_fp32` the memory follows the float32 run far closer than an all-bf16 pass."""
    from policy_helpers import obs_batch

    def run(**overrides):
        torch.manual_seed(0)
        policy = make_policy(num_mem_tokens=4, n_mem_segments=2, **overrides).eval()
        policy.reset()
        noise = torch.zeros(1, policy.config.chunk_size, policy.config.max_action_dim)
        actions, memories = [], []
        for t in range(10 * policy.config.n_action_steps):  # 10 memory updates
            actions.append(policy.select_action(obs_batch(1, seed=t // policy.config.n_action_steps), noise=noise))
            memories.append(policy.memory.read(1))
        return torch.stack(actions), torch.stack(memories)

    a32, m32 = run()
    a_amp, m_amp = run(use_amp=True)
    a_bf16, m_bf16 = run(use_amp=True, amp_memory_fp32=False)
    assert a_amp.dtype == m_amp.dtype == m_bf16.dtype == torch.float32
    assert not torch.equal(a_amp, a32) and torch.allclose(a_amp, a32, atol=0.1)  # autocast really ran
    err_default = ((m_amp - m32).norm() / m32.norm()).item()
    err_bf16 = ((m_bf16 - m32).norm() / m32.norm()).item()
    assert 0 < err_default < err_bf16 / 2


def test_amp_on_a_device_without_autocast_says_it_runs_in_float32(caplog):
    from types import SimpleNamespace

    from memlens.policy import precision

    with caplog.at_level(logging.WARNING):
        ctx = precision.amp_context(SimpleNamespace(use_amp=True, device="meta"))
    assert not isinstance(ctx, torch.autocast) and "runs in float32" in caplog.text
    assert precision.compute_precision(SimpleNamespace(use_amp=True, device="cpu")) == "bfloat16 autocast"


def test_lerobot_train_with_use_amp_trains_and_capture_records_float32_and_says_how_it_computed(cue_dataset, tmp_path):
    from memlens.capture.dataset import capture
    from memlens.store import TraceStore

    out = tmp_path / "amp"
    args = tiny_train_args(dataset_root=cue_dataset, output_dir=out, steps=2, batch_size=2, num_mem_tokens=4,
                           n_mem_segments=2, use_amp=True, mem_checkpoint_segments=True)
    proc = run_ok([BIN / "memlens", "train", *args])
    assert "n_valid_segments" in proc.stdout + proc.stderr
    ckpt = out / "checkpoints" / "last" / "pretrained_model"
    capture(str(ckpt), str(cue_dataset), str(tmp_path / "trace"), episodes=[0], attention=True)
    store = TraceStore.open(tmp_path / "trace")
    assert store.provenance["precision"] == {"compute": "bfloat16 autocast", "memory_pass": "float32",
                                             "stored": "float32"}
    episode = store.episode(store.episodes()[0])
    write = episode["memory/write"][:]
    assert write.dtype == np.float32 and np.isfinite(write).all()
