"""The memlens app as a script, for gradio's live-reload workflow:

    MEMLENS_TRACES=traces/cue gradio apps/memlens_app.py        # reloads when the code changes
    python apps/memlens_app.py traces/cue                         # plain run

`memlens app TRACES` serves the same app (same code, `memlens.apps.gradio_app.build_app`).
"""

import os
import sys

from memlens.apps.gradio_app import build_app

if __name__ == "__main__" and len(sys.argv) > 1:
    traces = sys.argv[1]
else:  # imported by `gradio apps/memlens_app.py`: the store comes from the environment
    traces = os.environ.get("MEMLENS_TRACES", "traces")
demo = build_app(traces, compare=os.environ.get("MEMLENS_COMPARE"))

if __name__ == "__main__":
    demo.launch(server_name="127.0.0.1")
