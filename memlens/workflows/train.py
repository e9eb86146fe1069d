"""`memlens train`: lerobot-train with memlens registered, plus memory fine-tuning from SmolVLA.

Stock `lerobot-train --policy.type=smolvla_rmt ...` works as well once memlens is installed: the
shim distribution `lerobot_policy_smolvla_rmt` (plugins/) is imported by lerobot's
`register_third_party_plugins()`. This wrapper adds two conveniences and nothing else.
"""

from __future__ import annotations

import sys

from memlens.errors import UserError


def _arg_value(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def _replace_arg(args: list[str], name: str, value: str | None) -> list[str]:
    """`args` with `name`'s value (either `name=v` or `name v`) replaced by `value`, or dropped when None."""
    out, skip = [], False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg.startswith(f"{name}=") or (arg == name and i + 1 < len(args)):
            skip = arg == name
            if value is not None:
                out.append(f"{name}={value}")
        else:
            out.append(arg)
    return out


def _validate_memory_args(args: list[str], memory_fields) -> None:
    """Check the memory fields before lerobot-train starts, so a bad value is one clear paragraph."""
    import draccus

    from memlens.policy import SmolVLARMTConfig

    names = (*memory_fields, "chunk_size", "n_action_steps")
    given = [f"--{n}={_arg_value(args, f'--policy.{n}')}" for n in names if _arg_value(args, f"--policy.{n}") is not None]
    if not given:
        return
    try:
        draccus.parse(config_class=SmolVLARMTConfig, args=given)
    except Exception as exc:  # noqa: BLE001 - draccus wraps the config's ValueError in a ParsingError
        cause = exc.__cause__ if isinstance(exc.__cause__, ValueError | TypeError) else exc
        raise UserError(f"invalid memory setting: {cause}") from exc
    except SystemExit as exc:  # draccus could not parse a value
        raise UserError(f"invalid memory setting among {given}: expected integers for counts, true/false "
                        "for flags, and one of random/zeros/language for mem_init.") from exc


def _batch_chunk_args(args: list[str]) -> tuple[list[str], list[str]]:
    """The guide's `--batch_chunk=N` (gradient accumulation): N micro-batches of `--batch_size` per optimiser
    step, i.e. lerobot-train `--batch_size=batch_size*N --policy.batch_chunk=N`."""
    value = _arg_value(args, "--batch_chunk")
    if value is None:
        return args, []
    if _arg_value(args, "--policy.batch_chunk") is not None:
        raise UserError(
            "both --batch_chunk and --policy.batch_chunk were given. --batch_chunk=N means N micro-batches of "
            "--batch_size each (the guide's flag); --policy.batch_chunk=N splits lerobot's --batch_size into N. "
            "Give one of them."
        )
    micro = _arg_value(args, "--batch_size") or "8"
    try:
        n, micro_size = int(value), int(micro)
    except ValueError:
        raise UserError(f"--batch_chunk and --batch_size must be integers, got --batch_chunk={value!r} and "
                        f"--batch_size={micro!r}.") from None
    if n < 1 or micro_size < 1:
        raise UserError(f"--batch_chunk (micro-batches per optimiser step) and --batch_size (rows per micro-batch) "
                        f"must be at least 1, got --batch_chunk={n} and --batch_size={micro_size}.")
    args = _replace_arg(_replace_arg(args, "--batch_chunk", None), "--batch_size", None)
    args = [*args, f"--batch_size={micro_size * n}", f"--policy.batch_chunk={n}"]
    note = (f"gradient accumulation: {n} micro-batches of {micro_size} per optimiser step (the update of batch size "
            f"{micro_size * n}; lerobot-train logs that batch size).")
    return args, [note] if n > 1 else []


def prepare_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Return (lerobot-train arguments, notes for the user)."""
    from memlens.policy.finetune import MEMORY_FIELDS, as_memory_checkpoint, checkpoint_type, resolve_checkpoint_dir

    notes = []
    args, chunk_notes = _batch_chunk_args(args)
    notes.extend(chunk_notes)
    _validate_memory_args(args, MEMORY_FIELDS)
    if _arg_value(args, "--policy.push_to_hub") is None:
        args = [*args, "--policy.push_to_hub=false"]
    path = _arg_value(args, "--policy.path")
    wants_memory = any(_arg_value(args, f"--policy.{f}") is not None for f in MEMORY_FIELDS)
    if path is not None and wants_memory:
        try:
            src = resolve_checkpoint_dir(path)
            kind = checkpoint_type(src)
            converted = as_memory_checkpoint(src)
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(str(exc)) from exc
        if kind == "smolvla":
            m = _arg_value(args, "--policy.num_mem_tokens") or "0"
            notes.append(
                f"fine-tuning SmolVLA checkpoint {path} with memory: every SmolVLA weight loads; new parameters "
                f"start fresh: model.mem_tokens [{m}, 1, hidden] (lerobot lists them as missing keys when loading)."
            )
        args = _replace_arg(args, "--policy.path", str(converted))
    return args, notes


def run_lerobot_train(args: list[str]) -> None:
    """Run lerobot-train in this process with `args` (after `prepare_args`)."""
    import memlens.plugin  # noqa: F401
    from lerobot.scripts import lerobot_train

    from memlens.workflows.train_step import install

    install()

    args, notes = prepare_args(args)
    for note in notes:
        print(f"memlens: {note}", flush=True)
    saved = sys.argv
    sys.argv = ["lerobot-train", *args]
    try:
        lerobot_train.main()
    finally:
        sys.argv = saved


def policy_args(kwargs: dict) -> list[str]:
    """`--policy.<field>=<value>` arguments for lerobot-train from config field values."""
    out = []
    for key, value in kwargs.items():
        if isinstance(value, tuple | list):
            value = "[" + ",".join(str(v) for v in value) + "]"
        elif isinstance(value, bool):
            value = str(value).lower()
        out.append(f"--policy.{key}={value}")
    return out


def tiny_train_args(*, dataset_root, output_dir, steps: int, batch_size: int = 8, **policy_overrides) -> list[str]:
    """lerobot-train arguments for a `smolvla_rmt` run on the tiny model (CPU, offline)."""
    from pathlib import Path

    from memlens.models import tiny_smolvla_kwargs

    policy = {**tiny_smolvla_kwargs(), "device": "cpu", **policy_overrides}
    return ["--policy.type=smolvla_rmt", *policy_args(policy),
            *_run_args(dataset_root=dataset_root, output_dir=output_dir, steps=steps, batch_size=batch_size)]


def continue_train_args(checkpoint, *, dataset_root, output_dir, steps: int, batch_size: int = 8,
                        **policy_overrides) -> list[str]:
    """lerobot-train arguments that continue training `checkpoint` (its config, overridden by
    `policy_overrides`, e.g. a deeper `n_mem_segments`) with a fresh optimizer and schedule."""
    return [f"--policy.path={checkpoint}", *policy_args(policy_overrides),
            *_run_args(dataset_root=dataset_root, output_dir=output_dir, steps=steps, batch_size=batch_size)]


def _run_args(*, dataset_root, output_dir, steps: int, batch_size: int) -> list[str]:
    from pathlib import Path

    dataset_root = Path(dataset_root)
    return [
        "--policy.push_to_hub=false",
        f"--dataset.repo_id=local/{dataset_root.name}",
        f"--dataset.root={dataset_root}",
        f"--output_dir={output_dir}",
        f"--steps={steps}",
        f"--batch_size={batch_size}",
        f"--save_freq={steps}",
        f"--log_freq={max(1, steps // 10)}",
        "--num_workers=0",
        "--wandb.enable=false",
        "--seed=0",
    ]
