"""The same code paths on a CUDA GPU: inference (float32 and use_amp), recurrent training with per-segment
checkpointing, capture. Skipped without CUDA; `bench/gpu_check.sh` runs them with `-m cuda`."""

import numpy as np
import pytest
import torch

from policy_helpers import make_policy, obs_batch, train_batch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CUDA = torch.device("cuda")


def _to(batch, device):
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "amp"])
def test_select_action_on_cuda_matches_the_cpu_and_keeps_memory_float32(amp):
    def run(device):
        torch.manual_seed(0)
        policy = make_policy(num_mem_tokens=4, n_mem_segments=2, device=device.type, use_amp=amp).to(device).eval()
        policy.reset()
        noise = torch.zeros(1, policy.config.chunk_size, policy.config.max_action_dim, device=device)
        actions = [policy.select_action(_to(obs_batch(1, seed=t // 10), device), noise=noise) for t in range(30)]
        return torch.stack(actions).cpu(), policy.memory.read(1)

    a_cpu, m_cpu = run(torch.device("cpu"))
    a_gpu, m_gpu = run(CUDA)
    assert m_gpu.device.type == "cuda" and m_gpu.dtype == torch.float32
    tol = 0.05 if amp else 1e-3
    assert torch.allclose(a_gpu, a_cpu, atol=tol) and torch.allclose(m_gpu.cpu(), m_cpu, atol=tol * 10)


def test_checkpointed_training_on_cuda_gives_the_same_gradients_with_less_memory():
    def step(checkpointing):
        torch.manual_seed(0)
        policy = make_policy(num_mem_tokens=4, n_mem_segments=4, device="cuda",
                             mem_checkpoint_segments=checkpointing).to(CUDA).train()
        batch = _to(train_batch(policy, batch_size=8), CUDA)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        torch.manual_seed(5)
        loss, _ = policy.forward(batch)
        loss.backward()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        return peak, {n: p.grad.cpu() for n, p in policy.named_parameters() if p.grad is not None}

    peak_off, off = step(False)
    peak_on, on = step(True)
    for name in off:
        assert torch.allclose(off[name], on[name], atol=1e-6, rtol=1e-4), name
    assert peak_on < peak_off


def test_capture_on_cuda_records_the_cpu_capture(memory_checkpoint, cue_dataset, tmp_path):
    from memlens.capture.dataset import capture
    from memlens.store import TraceStore

    for device in ("cpu", "cuda"):
        capture(str(memory_checkpoint), str(cue_dataset), str(tmp_path / device), episodes=[0], attention=True,
                device=device)
    cpu, gpu = (TraceStore.open(tmp_path / d) for d in ("cpu", "cuda"))
    a, b = (s.episode(s.episodes()[0]) for s in (cpu, gpu))
    assert np.allclose(a["memory/write"][:], b["memory/write"][:], atol=1e-3)
    assert np.allclose(a["attention/mem_to_groups"][:], b["attention/mem_to_groups"][:], atol=1e-3)
