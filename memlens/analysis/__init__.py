"""What does the memory hold, and does the policy use it? Analyses over trace stores.

Every public function takes a trace store (a `TraceStore` or its path) and returns data plus, where it
draws something, a plotly figure.

The names below load on first use (PEP 562), so `import memlens.analysis.data` (what the app needs to open
a store) does not import scikit-learn, umap-learn and plotly first.
"""

import importlib

_WHERE = {
    "data": ["AnalysisInputError", "MemoryStates", "available_labels", "check_same_checkpoint", "memory_states",
             "token_norms"],
    "attention": ["AttentionOverTime", "attention_over_time"],
    "dynamics": ["MemoryDynamics", "memory_dynamics"],
    "embedding": ["EmbeddedStates", "MemoryMap", "UmapView", "load_embedding_points", "fit_map", "memory_umap",
                  "trajectory_figure"],
    "figures": ["FigureExportError", "save_figure"],
    "heatmap": ["MemoryHeatmap", "memory_heatmap"],
    "compare": ["CompareResult", "compare_checkpoints"],
    "estimators": ["MemoryEmbedding", "MemoryProbe", "SubsampledPCA"],
    "probe_data": ["FutureAction", "ProbeData", "probe_data"],
    "probes": ["ProbeResult", "control_labels", "grouped_folds", "probe", "probe_baselines", "probe_figure",
               "probe_on"],
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = list(_MODULE_OF)


# `probe_data` is both a submodule and a function: importing the submodule (as `memlens.analysis.probes`
# does) would set the package's attribute to the module, so the function is bound now, after it.
from memlens.analysis.probe_data import probe_data  # noqa: E402

_BOUND_NOW = (probe_data,)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'memlens.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"memlens.analysis.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
