"""`memlens rerun` as a script: show one captured episode in Rerun.

    python apps/rerun_viewer.py traces/cue --episode 3 --save ep3.rrd
    python apps/rerun_viewer.py traces/cue --serve

Same options and code as `memlens rerun` (`memlens.apps.rerun_viewer`).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import typer  # noqa: E402

from memlens.cli import app  # noqa: E402

if __name__ == "__main__":
    command = typer.main.get_command(app).get_command(None, "rerun")
    command.main(args=sys.argv[1:], prog_name="apps/rerun_viewer.py")
