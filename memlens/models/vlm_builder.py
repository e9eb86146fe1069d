"""Deterministic local SmolVLM backbones for lerobot's SmolVLA, installed into the Hub cache.

lerobot's SmolVLA resolves ``config.vlm_model_name`` with ``AutoConfig``, ``AutoProcessor`` and
``AutoTokenizer.from_pretrained``. The Hub is unreachable here, so this module writes a config, a
byte-level BPE tokenizer and a ``SmolVLMProcessor`` (no weights: SmolVLA builds a randomly
initialised VLM from the config when ``load_vlm_weights=False``) into the Hugging Face Hub cache
layout. With ``HF_HUB_OFFLINE=1`` a Hub-style id such as ``"memlens/tiny-smolvlm"`` then resolves
exactly like a cached ``HuggingFaceTB/SmolVLM2-500M-Video-Instruct``, and checkpoints that store the
id stay loadable when they move.

Two kinds:

* ``"tiny"`` (:data:`TINY_VLM_ID`): 64-px images, 16 image tokens per camera, text hidden 128.
* ``"tiny128"`` (:data:`TINY128_VLM_ID`): the same at 128-px images (8-px patches, 16 tokens per camera
  through a 4x4 pixel shuffle), for simulators that render small objects (MIKASA-Robo's 128-px cameras).
* ``"full"`` (:data:`FULL_VLM_ID`): the SmolVLM2-500M-Video-Instruct shapes, typed from memory,
  not read from the Hub (512-px images, 64 image tokens per image, text hidden 960).

Both share one tokenizer trained on :data:`TASK_STRINGS` (462 tokens; vocab rows 512 in the tiny
config, 49280 in the full one).

Usage::

    HF_HUB_OFFLINE=1 python -c "from memlens.models import install_vlm; install_vlm('tiny')"
    # then SmolVLAConfig(**tiny_smolvla_kwargs(), input_features=..., output_features=...)

A custom ``HF_HOME``: ``huggingface_hub`` copies ``HF_HOME``/``HF_HUB_OFFLINE`` into
``huggingface_hub.constants`` when it is first imported, so setting the env var later in a running
process does nothing. Set both before anything imports ``huggingface_hub``/``transformers``/
``lerobot`` (e.g. in the shell or a subprocess env), or pass ``cache_dir=<hf_home>/hub`` to
``from_pretrained``. SmolVLA takes no ``cache_dir``; in-process (tests) also set
``constants.HF_HUB_CACHE = <hf_home>/hub`` and ``constants.HF_HUB_OFFLINE = True``, which
transformers reads at call time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

TINY_VLM_ID = "memlens/tiny-smolvlm"
TINY128_VLM_ID = "memlens/tiny-smolvlm-128"
FULL_VLM_ID = "memlens/smolvlm2-500m-random"

# Text the byte-level BPE is trained on: generic robot instructions and the words our tasks use.
TASK_STRINGS: tuple[str, ...] = (
    "pick the cube",
    "pick up the cube and place it in the box",
    "place the cube on the target",
    "push the block to the goal",
    "reach the target",
    "reach the target that matches the cue",
    "remember the cue and reach the matching target",
    "press the button",
    "press the button that matches the cue",
    "open the drawer",
    "close the drawer",
    "move the arm to the left",
    "move the arm to the right",
    "wait for the cue",
    "go",
    "red green blue yellow",
    "circle square triangle",
    "the red circle",
    "the green square",
    "the blue triangle",
    "the yellow circle",
    "one two three four five six seven eight nine ten",
)
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

# Named special tokens (ids 0-3) and SmolVLM's image/utterance tokens (ids 4-7), in this order.
PAD, BOS, EOS, UNK = "<|pad|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SMOLVLM_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}
_BPE_VOCAB_SIZE = 1024  # upper bound; the small corpus stops the merges earlier

# Files every snapshot must contain (plus model.safetensors when installed with weights).
_REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "processor_config.json")


def build_tokenizer():
    """The shared byte-level BPE tokenizer, as a transformers fast tokenizer.

    Ids 0-3 are pad/bos/eos/unk (``<|pad|>``, ``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``),
    ids 4-7 SmolVLM's ``<fake_token_around_image>``, ``<image>``, ``<global-img>``,
    ``<end_of_utterance>``; then the 256 byte symbols and the learned merges (a few hundred tokens
    in all). No BOS/EOS is added when encoding; padding side right. ``fake_image_token_id``,
    ``image_token_id`` and ``global_image_token_id`` are available as attributes (SmolVLA reads them).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        special_tokens=[PAD, BOS, EOS, UNK, *SMOLVLM_TOKENS.values()],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [*TASK_STRINGS, *COLOURS, *SHAPES, *NUMBERS]
    tok.train_from_iterator(corpus + [s.capitalize() for s in corpus], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        extra_special_tokens=dict(SMOLVLM_TOKENS),
        padding_side="right",
        model_max_length=8192,
    )


def _vocab_size(tokenizer) -> int:
    """``len(tokenizer)`` rounded up to a multiple of 64."""
    return -(-len(tokenizer) // 64) * 64


def _smolvlm_config(tokenizer, *, vision: dict, text: dict, scale_factor: int):
    from transformers import LlamaConfig, SmolVLMConfig, SmolVLMVisionConfig

    text_config = LlamaConfig(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        **text,
    )
    text_config.head_dim = text["head_dim"]  # lerobot reads config.text_config.head_dim
    return SmolVLMConfig(
        vision_config=SmolVLMVisionConfig(**vision),
        text_config=text_config,
        scale_factor=scale_factor,
        image_token_id=tokenizer.image_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def tiny_vlm_config(*, tokenizer=None):
    """A tiny ``SmolVLMConfig`` (0.84M VLM parameters), for tests and CPU experiments.

    Vision: hidden 64, 2 layers, 2 heads, MLP 128, images 64x64, patch 8 -> 8x8=64 patches, pixel
    shuffle ``scale_factor=2`` -> 16 image tokens per camera. Text (Llama): hidden 128, 4 layers,
    4 heads, 2 KV heads, ``head_dim=32``, MLP 256, vocab ``len(tokenizer)`` rounded up to 64.
    """
    tokenizer = build_tokenizer() if tokenizer is None else tokenizer
    return _smolvlm_config(
        tokenizer,
        vision=dict(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
            image_size=64, patch_size=8,
        ),
        text=dict(
            hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            head_dim=32, intermediate_size=256, vocab_size=_vocab_size(tokenizer),
            max_position_embeddings=2048, rope_theta=100000.0, rms_norm_eps=1e-5,
        ),
        scale_factor=2,
    )


def tiny128_vlm_config(*, tokenizer=None):
    """``tiny_vlm_config`` at 128x128 images: 16x16=256 patches of 8 px, pixel shuffle ``scale_factor=4`` ->
    the same 16 image tokens per camera, each from 4x4 patches; everything else identical."""
    config = tiny_vlm_config(tokenizer=tokenizer)
    config.vision_config.image_size = 128
    config.scale_factor = 4
    return config


def tiny128_smolvla_kwargs() -> dict:
    """``tiny_smolvla_kwargs`` for the 128-px tiny VLM."""
    return {**tiny_smolvla_kwargs(), "vlm_model_name": TINY128_VLM_ID, "resize_imgs_with_padding": (128, 128)}


def full_size_vlm_config(*, tokenizer=None):
    """The SmolVLM2-500M-Video-Instruct architecture (~450M parameters with 16 text layers kept).

    Typed from memory, not read from the Hub. Text (Llama): hidden 960, 32 layers, 15 heads,
    5 KV heads, ``head_dim=64``, MLP 2560, vocab 49280, rope theta 100000, 8192 positions. Vision:
    hidden 768, 12 layers, 12 heads, MLP 3072, images 512x512, patch 16 -> 32x32 patches, pixel
    shuffle ``scale_factor=4`` -> 64 image tokens per image. Special-token ids come from the shared
    tiny tokenizer (not SmolVLM2's), which fits inside the 49280-row embedding.
    """
    tokenizer = build_tokenizer() if tokenizer is None else tokenizer
    # Typed from memory, not read from the Hub.
    return _smolvlm_config(
        tokenizer,
        vision=dict(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            image_size=512, patch_size=16,
        ),
        text=dict(
            hidden_size=960, num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5,
            head_dim=64, intermediate_size=2560, vocab_size=49280,
            max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
        ),
        scale_factor=4,
    )


def build_processor(config, *, tokenizer=None):
    """A ``SmolVLMProcessor`` matching ``config``: images resized to the vision ``image_size``, no
    splitting, ``image_seq_len = (image_size // patch_size)**2 // scale_factor**2`` (16 tiny, 64 full).
    """
    from transformers import SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    tokenizer = build_tokenizer() if tokenizer is None else tokenizer
    vision = config.vision_config
    side = {"longest_edge": vision.image_size}
    image_processor = SmolVLMImageProcessor(size=side, max_image_size=side, do_image_splitting=False)
    video_processor = SmolVLMVideoProcessor(size=side, max_image_size=side)
    seq_len = (vision.image_size // vision.patch_size) ** 2 // config.scale_factor**2
    return SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_len=seq_len,
    )


_KINDS = {"tiny": (TINY_VLM_ID, tiny_vlm_config), "tiny128": (TINY128_VLM_ID, tiny128_vlm_config),
          "full": (FULL_VLM_ID, full_size_vlm_config)}


def _revision(directory: Path) -> str:
    """40-hex SHA-1 over the sorted relative paths and bytes of every file under ``directory``."""
    digest = hashlib.sha1()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _write_files(directory: Path, kind: str, with_weights: bool) -> None:
    tokenizer = build_tokenizer()
    config = _KINDS[kind][1](tokenizer=tokenizer)
    config.save_pretrained(directory)
    build_processor(config, tokenizer=tokenizer).save_pretrained(directory)
    if with_weights:
        import torch
        from transformers import SmolVLMForConditionalGeneration

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = SmolVLMForConditionalGeneration(config)
        model.save_pretrained(directory)


def _complete(snapshot: Path, with_weights: bool) -> bool:
    names = _REQUIRED_FILES + (("model.safetensors",) if with_weights else ())
    return all((snapshot / name).is_file() for name in names)


def install_vlm(
    kind: str = "tiny",
    *,
    repo_id: str | None = None,
    hf_home: str | Path | None = None,
    with_weights: bool = False,
) -> Path:
    """Install a local SmolVLM (``kind`` "tiny" or "full") into the Hub cache; return the snapshot.

    Writes ``config.json``, ``tokenizer.json``, ``tokenizer_config.json``, ``processor_config.json``
    (and with ``with_weights=True``, tiny only, a ``model.safetensors`` of random weights drawn with
    seed 0) to ``<hf_home>/hub/models--<org>--<name>/snapshots/<revision>/`` and the revision to
    ``refs/main``. ``repo_id`` defaults to :data:`TINY_VLM_ID` / :data:`FULL_VLM_ID`; ``hf_home``
    to ``huggingface_hub.constants.HF_HOME`` (the ``HF_HOME`` env var, default ``~/.cache/huggingface``).
    The revision is a SHA-1 of the files' bytes, so identical builds give identical revisions.

    Idempotent: when ``refs/main`` names a complete snapshot it is returned at once, without
    importing transformers or rebuilding (one repo id holds one kind; after changing this module,
    delete ``models--<org>--<name>`` to rebuild). Atomic: files are built in a temporary directory
    inside ``models--<org>--<name>`` and renamed into place, so a crash leaves no half snapshot.

    To resolve the id, ``huggingface_hub`` must see the same cache. It reads ``HF_HOME`` when it is
    first imported, so either set ``HF_HOME`` (and ``HF_HUB_OFFLINE=1``) before anything imports
    ``huggingface_hub``/``transformers``/``lerobot``, or pass ``cache_dir=<hf_home>/hub`` to
    ``from_pretrained``; SmolVLA takes no ``cache_dir``, so for it set the env var or patch
    ``huggingface_hub.constants.HF_HUB_CACHE`` (see the module docstring).
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
    if with_weights and kind != "tiny":
        raise ValueError("with_weights is only supported for the tiny kind")
    if hf_home is None:
        from huggingface_hub import constants

        hf_home = constants.HF_HOME
    repo_id = repo_id or _KINDS[kind][0]
    repo_dir = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    ref = repo_dir / "refs" / "main"

    if ref.is_file():
        snapshot = repo_dir / "snapshots" / ref.read_text().strip()
        if _complete(snapshot, with_weights):
            return snapshot

    (repo_dir / "snapshots").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=repo_dir))  # same filesystem: rename is atomic
    try:
        _write_files(tmp, kind, with_weights)
        revision = _revision(tmp)
        snapshot = repo_dir / "snapshots" / revision
        if not _complete(snapshot, with_weights):
            if snapshot.exists():  # an incomplete leftover: move it aside, then replace it
                os.replace(snapshot, tmp.with_name(tmp.name + "-old"))
            for path in tmp.iterdir():
                path.chmod(0o644)
            tmp.chmod(0o755)  # mkdtemp (and safetensors) make them private
            try:
                os.replace(tmp, snapshot)
            except OSError:  # another process renamed the same revision into place first
                if not _complete(snapshot, with_weights):
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(tmp.with_name(tmp.name + "-old"), ignore_errors=True)
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref_tmp = repo_dir / f".tmp-ref-{os.getpid()}"
    ref_tmp.write_text(revision)
    os.replace(ref_tmp, ref)
    return snapshot


def tiny_smolvla_kwargs() -> dict:
    """``SmolVLAConfig`` field values that go with the tiny VLM (64-px images, 16 tokens/camera).

    The action expert keeps ``expert_width_multiplier=0.75``: hidden 96 with the VLM's explicit
    ``head_dim=32`` gives q 4x32 / kv 2x32 projections from 96 features, a valid layout.
    """
    return dict(
        vlm_model_name=TINY_VLM_ID,
        load_vlm_weights=False,
        resize_imgs_with_padding=(64, 64),
        num_vlm_layers=4,
        chunk_size=10,
        n_action_steps=10,
        max_state_dim=8,
        max_action_dim=8,
        tokenizer_max_length=16,
        num_steps=10,
    )


def full_size_smolvla_kwargs() -> dict:
    """``SmolVLAConfig`` field values for the full-size random VLM; everything else stays at
    SmolVLA's defaults (512-px images, 16 of the 32 text layers, chunk 50)."""
    return dict(vlm_model_name=FULL_VLM_ID, load_vlm_weights=False)
