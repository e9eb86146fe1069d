"""What does the memory hold, and does the policy use it? Analyses over trace stores.

Every public function takes a trace store (a `TraceStore` or its path) and returns data plus, where it
draws something, a plotly figure.
"""

from memlens.analysis.data import (
    AnalysisInputError,
    MemoryStates,
    available_labels,
    check_same_checkpoint,
    memory_states,
    token_norms,
)

__all__ = ["AnalysisInputError", "MemoryStates", "available_labels", "check_same_checkpoint", "memory_states", "token_norms"]
