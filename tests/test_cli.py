"""The `memlens` command line: help with examples, and bad input as one clear paragraph."""

import pytest
from typer.testing import CliRunner

from memlens.cli import app

runner = CliRunner()
COMMANDS = [c.name for c in app.registered_commands]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_help_has_a_copy_pasteable_example(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"memlens {command}" in result.output


def test_a_missing_checkpoint_is_a_clear_error_without_traceback(tmp_path):
    result = runner.invoke(app, ["inspect", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output
    assert "config.json" in result.output  # says what a checkpoint directory should hold


def test_recording_into_a_non_empty_directory_is_refused_and_keeps_its_files(tmp_path):
    (tmp_path / "keep.txt").write_text("data")
    result = runner.invoke(app, ["record", str(tmp_path), "--n-episodes", "1"])
    assert result.exit_code == 2 and "error:" in result.output
    assert (tmp_path / "keep.txt").read_text() == "data"


def test_fine_tuning_from_a_non_smolvla_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"type": "diffusion"}')
    result = runner.invoke(app, ["train", f"--policy.path={tmp_path}", "--policy.num_mem_tokens=4"])
    assert result.exit_code == 2
    assert "'diffusion' checkpoint" in result.output and "smolvla" in result.output


@pytest.mark.parametrize("arg, field", [("--policy.num_mem_tokens=-2", "num_mem_tokens"),
                                        ("--policy.n_mem_segments=0", "n_mem_segments"),
                                        ("--policy.mem_segment_stride=0", "mem_segment_stride")])
def test_train_rejects_bad_memory_settings_before_starting(arg, field):
    result = runner.invoke(app, ["train", "--policy.type=smolvla_rmt", arg])
    assert result.exit_code == 2 and field in result.output and "Traceback" not in result.output


def test_train_rejects_a_bptt_depth_above_k():
    result = runner.invoke(app, ["train", "--policy.type=smolvla_rmt", "--policy.n_mem_segments=2",
                                 "--policy.mem_bptt_segments=3"])
    assert result.exit_code == 2 and "mem_bptt_segments" in result.output


@pytest.mark.parametrize("args, expected", [
    (["--tasks", "cue,count"], "where ['cue'] are unknown"),
    (["--n-episodes", "0"], "must be at least 1"),
    (["--steps", "0"], "must be at least 1"),
])
def test_experiment_rejects_unknown_tasks_and_empty_budgets_before_recording(args, expected, tmp_path):
    result = runner.invoke(app, ["experiment", "--out", str(tmp_path / "exp"), *args])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output
    assert not (tmp_path / "exp").exists()
