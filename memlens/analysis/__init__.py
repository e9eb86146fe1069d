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
from memlens.analysis.attention import AttentionOverTime, attention_over_time
from memlens.analysis.dynamics import MemoryDynamics, memory_dynamics
from memlens.analysis.embedding import (
    EmbeddedStates,
    MemoryEmbedding,
    UmapView,
    load_embedding_points,
    memory_umap,
    trajectory_figure,
)
from memlens.analysis.figures import FigureExportError, save_figure
from memlens.analysis.heatmap import MemoryHeatmap, memory_heatmap
from memlens.analysis.compare import CompareResult, compare_checkpoints
from memlens.analysis.interventions import InterventionResult, MemoryOverride, intervene_env, intervene_replay
from memlens.analysis.probes import (
    FutureAction,
    MemoryProbe,
    ProbeData,
    ProbeResult,
    control_labels,
    grouped_folds,
    probe,
    probe_baselines,
    probe_data,
    probe_figure,
    probe_on,
)

__all__ = ["AnalysisInputError", "MemoryStates", "available_labels", "check_same_checkpoint", "memory_states", "token_norms"]
# probes, interventions, compare
__all__ += ["CompareResult", "FutureAction", "InterventionResult", "MemoryOverride", "MemoryProbe", "ProbeData", "ProbeResult",
            "compare_checkpoints", "control_labels", "grouped_folds", "intervene_env", "intervene_replay", "probe",
            "probe_baselines", "probe_data", "probe_figure", "probe_on"]
# views: heat map, dynamics, UMAP, attention over time
__all__ += ["AttentionOverTime", "EmbeddedStates", "FigureExportError", "MemoryDynamics", "MemoryEmbedding", "MemoryHeatmap",
            "UmapView", "attention_over_time", "load_embedding_points", "memory_dynamics", "memory_heatmap", "memory_umap",
            "save_figure", "trajectory_figure"]
