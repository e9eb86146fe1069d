"""Shared fixtures: offline, one torch thread, a private HF_HOME holding the tiny SmolVLM."""

import os
import tempfile

# Before anything imports huggingface_hub (it reads HF_HOME at import time).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if "MEMLENS_TEST_HF_HOME" not in os.environ:
    os.environ["MEMLENS_TEST_HF_HOME"] = tempfile.mkdtemp(prefix="memlens-hf-")
os.environ["HF_HOME"] = os.environ["MEMLENS_TEST_HF_HOME"]

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def tiny_vlm():
    """The tiny SmolVLM installed into this session's Hub cache (config, tokenizer, processor)."""
    from memlens.models import install_vlm

    return install_vlm("tiny", hf_home=os.environ["HF_HOME"])


@pytest.fixture(scope="session")
def cue_dataset(tmp_path_factory):
    """A small cue-recall dataset (short delay) recorded with the scripted expert."""
    from memlens.tasks.record import record_dataset

    root = tmp_path_factory.mktemp("data") / "cue_short"
    return record_dataset(root=root, repo_id="local/cue_short", task="cue_recall", variant="short",
                          n_episodes=6, seed=0, progress=False)
