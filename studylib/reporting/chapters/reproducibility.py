"""The report's Reproducibility chapter (report/index.qmd): commit, command, environment, per-run wall times."""

from __future__ import annotations

import pandas as pd

from ..context import ReportContext
from ..markdown import markdown_table


def reproducibility_section(ctx: ReportContext) -> str:
    """Git commit, command, package versions, device, wall time per run, links to executed notebooks."""
    env = ctx.summaries[0].get("environment", {})
    lines = [f"- git commit: `{env.get('git_commit', '?')}`", f"- command: `{ctx.study.get('command', 'python -m studylib study')}`",
             f"- device: {env.get('device', '?')}; Python {env.get('python', '?')}",
             "- packages: " + ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items()),
             f"- wall time of the last `study` invocation: {ctx.study.get('wall_seconds', float('nan')):.0f} s "
             f"(runs it skipped as done: {ctx.study.get('skipped_as_done', 0)}); per-run wall times below", ""]
    rows = [{"run": s["run_id"], "train slices": s["n_train_slices"], "best epoch": s["best_epoch"],
             "epochs": s["epochs_run"], "wall (s)": f"{s['wall_seconds']:.0f}",
             "notebook": f"[run.ipynb](../runs/{s['run_id']}/run.ipynb)"} for s in ctx.summaries]
    return "\n".join(lines) + "\n" + markdown_table(pd.DataFrame(rows))

