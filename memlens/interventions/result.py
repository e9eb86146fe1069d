"""`InterventionResult`: per-episode rows and a summary of one intervention against the unmodified run."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class InterventionResult:
    """Per-episode rows and a summary of one intervention against the unmodified reference run."""

    mode: str
    from_update: int
    every_update: bool
    source: str  # "dataset" | "env"
    checkpoint: str
    episodes: list[dict]
    summary: dict
    config: dict = field(default_factory=dict)
    figure: object = None  # plotly Figure

    def to_dict(self) -> dict:
        return {"mode": self.mode, "from_update": self.from_update, "every_update": self.every_update,
                "source": self.source, "checkpoint": self.checkpoint, "config": self.config,
                "summary": self.summary, "episodes": self.episodes}

    def save(self, path, **kw):
        from memlens.analysis.figures import save_figure

        return save_figure(self.figure, path, **kw)
