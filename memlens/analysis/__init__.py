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
    MemoryMap,
    UmapView,
    load_embedding_points,
    fit_map,
    memory_umap,
    trajectory_figure,
)
from memlens.analysis.figures import FigureExportError, save_figure
from memlens.analysis.heatmap import MemoryHeatmap, memory_heatmap
from memlens.analysis.compare import CompareResult, compare_checkpoints
from memlens.analysis.estimators import MemoryEmbedding, MemoryProbe, SubsampledPCA
from memlens.analysis.probe_data import FutureAction, ProbeData, probe_data
from memlens.analysis.probes import (
    ProbeResult,
    control_labels,
    grouped_folds,
    probe,
    probe_baselines,
    probe_figure,
    probe_on,
)

__all__ = ["AnalysisInputError", "MemoryStates", "available_labels", "check_same_checkpoint", "memory_states", "token_norms"]
# probes, compare
__all__ += ["CompareResult", "FutureAction", "MemoryProbe", "ProbeData", "ProbeResult",
            "compare_checkpoints", "control_labels", "grouped_folds", "probe",
            "probe_baselines", "probe_data", "probe_figure", "probe_on"]
# views: heat map, dynamics, UMAP, attention over time
__all__ += ["AttentionOverTime", "EmbeddedStates", "FigureExportError", "MemoryDynamics", "MemoryEmbedding", "MemoryHeatmap", "MemoryMap", "SubsampledPCA", "fit_map",
            "UmapView", "attention_over_time", "load_embedding_points", "memory_dynamics", "memory_heatmap", "memory_umap",
            "save_figure", "trajectory_figure"]
