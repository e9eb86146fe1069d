"""Tables of comparison results (terminal and Markdown)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def markdown_table(results: dict) -> str:
    """Baseline against memory per variant, as a Markdown table (success with 95% CI, reward, time)."""
    rows = {}
    for r in results["results"]:
        rows.setdefault((r["task"], r["variant"]), {})[r["policy"]] = r
    names = list(results["policies"])
    head = "| task | variant | " + " | ".join(f"{n} success (95% CI)" for n in names) + " | " + " | ".join(
        f"{n} ms/chunk" for n in names) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(names))]
    for (task, variant), by in rows.items():
        cells = [f"{_pct(by[n]['success_rate'])} ({_pct(by[n]['success_ci95'][0])}-{_pct(by[n]['success_ci95'][1])})"
                 for n in names]
        times = [f"{by[n]['chunk_ms_mean']:.0f}" for n in names]
        lines.append(f"| {task} | {variant} | " + " | ".join(cells) + " | " + " | ".join(times) + " |")
    return "\n".join(lines)


def print_comparison(results: dict, console: Console | None = None) -> None:
    # Wide enough for every column when piped (rich would squeeze to 80 columns and elide names).
    console = console or (Console() if sys.stdout.isatty() else Console(width=160))
    if "dataset" in results:
        table = Table(title=f"offline action error on {results['dataset']} ({len(results['episodes'])} episodes)")
        table.add_column("policy")
        table.add_column("action MSE (mean)", justify="right")
        table.add_column("95% CI", justify="right")
        for name, r in results["results"].items():
            lo, hi = r["action_mse_ci95"]
            table.add_row(name, f"{r['action_mse_mean']:.4f}", f"{lo:.4f}-{hi:.4f}")
        console.print(table)
        return
    table = Table(title=f"{results['env']}: {results['n_episodes']} episodes per policy and variant")
    for col in ("variant", "policy", "success", "95% CI", "avg reward", "ms/action p50", "p95", "ms/chunk", "peak MB"):
        table.add_column(col, justify="right" if col not in ("variant", "policy") else "left")
    for r in results["results"]:
        lo, hi = r["success_ci95"]
        table.add_row(r["variant"], r["policy"], _pct(r["success_rate"]), f"{_pct(lo)}-{_pct(hi)}",
                      f"{r['avg_sum_reward']:.2f}", f"{r['action_ms_p50']:.1f}", f"{r['action_ms_p95']:.1f}",
                      f"{r['chunk_ms_mean']:.1f}", f"{r['peak_memory_mb']:.0f}")
    console.print(table)
