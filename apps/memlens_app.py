"""The memlens app as a script, for gradio's live-reload workflow:

    MEMLENS_TRACES=traces/cue gradio apps/memlens_app.py

`memlens app TRACES` serves the same app (same code, `memlens.apps.gradio_app.build_app`).
"""

import os
import sys

from memlens.apps.gradio_app import build_app

traces = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else os.environ.get("MEMLENS_TRACES", "traces")
compare = os.environ.get("MEMLENS_COMPARE")
demo = build_app(traces, compare=compare)

if __name__ == "__main__":
    demo.launch(server_name="127.0.0.1")
