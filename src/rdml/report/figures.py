"""The papers' figures from a study's records, each a PNG beside the data file it was drawn from
(`fig_<name>.csv`: every number on the figure, with the runs it comes from) in the study's tables folder.

- curves (RDML Figs. 4–5, S1, 6, S2; DML-vs-KD Figs. 4a/4b): test accuracy and loss per epoch, mean
  with an sd band over seeds, per panel of the table; every run also drawn thin where a table asks
  (`curve_runs`), so diverged runs stay visible;
- best_alpha (RDML Fig. 2): the best α of each experiment, coloured by its lead over DML;
- box and alpha_difference (thesis Figs. 3.3–3.5): accuracy per α over seeds with the vanilla line,
  and the accuracy curves' difference to α = 1;
- fraction (DML Fig. 6): accuracy against the labelled fraction;
- renyi (RDML Fig. 1): the analytic Rényi divergence of two-event distributions, from rdml.divergences;
- lr: the learning rate of every configuration per epoch, so no hidden schedule slips in.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from rdml.metrics import METRICS, PRIMARY  # noqa: E402
from rdml.registry import Registry  # noqa: E402
from rdml.report.frame import RECORDED, column  # noqa: E402

__all__ = ["TABLE_FIGURES", "curve_data", "write_figures", "renyi_data"]

TABLE_FIGURES: Registry = Registry("figure")
RENYI_ALPHAS = (0.5, 2.0, 10.0, 100.0)  # RDML Fig. 1 plots several α and KL (α = 1, dashed)
CURVES = [column(m) for m in RECORDED]  # the learning curves' metrics: test accuracy and loss
ACCURACY = column(METRICS[PRIMARY])


def _save(fig, data: pd.DataFrame, out: Path, name: str) -> list[Path]:
    png, csv = out / f"fig_{name}.png", out / f"fig_{name}.csv"
    fig.savefig(png.with_suffix(".tmp.png"), dpi=110, bbox_inches="tight")
    plt.close(fig)
    png.with_suffix(".tmp.png").replace(png)
    data.to_csv(csv.with_suffix(".tmp"), index=False)
    csv.with_suffix(".tmp").replace(csv)
    return [png, csv]


def curve_data(spec, frame: pd.DataFrame) -> pd.DataFrame:
    """Per panel, line, run and epoch: the mean over the entry's students of each curve (test accuracy, loss)."""
    rows = []
    for entry in spec.entries:
        if entry.measure is not None or entry.epoch is not None:
            continue
        column = entry.columns[0]
        panel, line = ((re.sub(r"/\d+$", "", column), entry.row) if spec.curves == "rows" else (entry.row, column))
        rows += [(panel, line, entry.run.id, model) for model in entry.students]
    if not rows:
        return pd.DataFrame(columns=["panel", "line", "run", "epoch", *CURVES, "status"])
    keys = pd.DataFrame(rows, columns=["panel", "line", "run", "model"]).drop_duplicates()
    wide = frame[frame.metric.isin(CURVES)].pivot_table(
        index=["run", "model", "epoch", "status"], columns="metric", values="value").reset_index()
    merged = keys.merge(wide, on=["run", "model"])
    return merged.groupby(["panel", "line", "run", "epoch", "status"], as_index=False)[CURVES].mean()


@TABLE_FIGURES.register("curves")
def curves(spec, table, frame, out: Path) -> list[Path]:
    data = curve_data(spec, frame)
    if data.empty:
        return []
    panels = list(dict.fromkeys(data.panel))
    fig, axes = plt.subplots(len(CURVES), len(panels), figsize=(4 * len(panels), 3 * len(CURVES)), squeeze=False)
    for i, panel in enumerate(panels):
        for line, group in data[data.panel == panel].groupby("line", sort=False):
            stats = group.groupby("epoch")[CURVES].agg(["mean", "std"]).fillna(0.0)
            for row, metric in enumerate(CURVES):
                ax = axes[row][i]
                mean, sd = stats[(metric, "mean")], stats[(metric, "std")]
                drawn = ax.plot(stats.index, mean, label=line)[0]
                ax.fill_between(stats.index, mean - sd, mean + sd, alpha=0.2, color=drawn.get_color())
                if spec.curve_runs:
                    for _, run in group.groupby("run"):
                        ax.plot(run.epoch, run[metric], color=drawn.get_color(), alpha=0.35, linewidth=0.7,
                                linestyle=":" if (run.status == "diverged").any() else "-")
        axes[0][i].set_title(panel, fontsize=9)
        for row, metric in enumerate(RECORDED):
            axes[row][i].set_ylabel(f"test {metric.label}")
        axes[-1][i].set_xlabel("epoch")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{table.name}: mean ± sd over seeds" + ("; thin: each run, dotted: diverged" if spec.curve_runs else ""))
    return _save(fig, data, out, f"curves_{table.name}")


@TABLE_FIGURES.register("best_alpha")
def best_alpha(spec, table, frame, out: Path) -> list[Path]:
    """Per experiment (column without its student index), the row with the highest mean over its students."""
    rows = []
    for experiment in dict.fromkeys(re.sub(r"/\d+$", "", c) for c in table.columns):
        columns = [c for c in table.columns if re.sub(r"/\d+$", "", c) == experiment]
        means = {}
        for row in table.rows:
            cells = [table.cells.get((row, c)) for c in columns]
            values = [c.mean for c in cells if c is not None and c.mean is not None]
            if len(values) == len(columns):
                means[row] = sum(values) / len(values)
        if means:
            best = max(means, key=lambda row: table.metric.sign * means[row])
            lead = table.scale * (means[best] - means.get("DML", means[best]))
            rows.append({"experiment": experiment, "best": best, "mean": table.scale * means[best], "lead_over_dml": lead})
    data = pd.DataFrame(rows)
    if data.empty:
        return []
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(data)), 2.2))
    image = ax.imshow([data.lead_over_dml], cmap="viridis", aspect="auto")
    for i, r in data.iterrows():
        ax.text(i, 0, r.best.replace("RDML ", ""), ha="center", va="center", color="white", fontsize=8)
    ax.set_xticks(range(len(data)), data.experiment, rotation=30, ha="right", fontsize=8)
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, label=f"lead over DML ({table.metric.difference_unit})")
    ax.set_title("best α per experiment (RDML Fig. 2)")
    return _save(fig, data, out, f"best_alpha_{table.name}")


@TABLE_FIGURES.register("box")
def box(spec, table, frame, out: Path) -> list[Path]:
    """Per-seed accuracy of each row, with the first row (vanilla) as a dashed line (thesis Figs. 3.3, 3.4)."""
    columns = [c for c in table.columns if c.startswith("Average")]
    data = pd.DataFrame([{"column": c, "row": r, "seed": s, "value": table.scale * v}
                         for c in columns for r in table.rows if (cell := table.cells.get((r, c)))
                         for s, v in cell.per_seed().items()])
    if data.empty:
        return []
    fig, axes = plt.subplots(1, len(columns), figsize=(7 * len(columns), 4), squeeze=False)
    for ax, column in zip(axes[0], columns):
        part = data[data.column == column]
        rows = [r for r in table.rows[1:] if r in set(part.row)]
        ax.boxplot([part[part.row == r].value for r in rows], showmeans=True, meanline=True)
        ax.set_xticks(range(1, len(rows) + 1), [r.split(": ")[-1] for r in rows], rotation=60, fontsize=7)
        vanilla = part[part.row == table.rows[0]].value
        if not vanilla.empty:
            ax.axhline(vanilla.mean(), color="grey", linestyle="--", label=table.rows[0])
            ax.legend(fontsize=7)
        ax.set_title(column, fontsize=9)
        ax.set_ylabel(f"{table.metric.label} ({table.metric.unit})")
    return _save(fig, data, out, f"box_{table.name}")


@TABLE_FIGURES.register("alpha_difference")
def alpha_difference(spec, table, frame, out: Path) -> list[Path]:
    """Accuracy per epoch of each α and its difference to α = 1, means over seeds (thesis Fig. 3.5)."""
    data = curve_data(spec, frame)
    means = data.groupby(["line", "epoch"], as_index=False)[ACCURACY].mean()
    reference = next((line for line in dict.fromkeys(means.line) if line.endswith("α=1")), None)
    if means.empty or reference is None:
        return []
    base = means[means.line == reference].set_index("epoch")[ACCURACY]
    means["difference_to_alpha_1"] = means[ACCURACY] - means.epoch.map(base)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for line, group in means.groupby("line", sort=False):
        top.plot(group.epoch, group[ACCURACY], label=line.split(": ")[-1])
        bottom.plot(group.epoch, group.difference_to_alpha_1)
    top.set_ylabel(f"test {METRICS[PRIMARY].label}")
    bottom.set_ylabel("difference to α = 1")
    bottom.set_xlabel("epoch")
    top.legend(fontsize=6, ncol=3)
    return _save(fig, means, out, f"alpha_difference_{table.name}")


@TABLE_FIGURES.register("fraction")
def fraction(spec, table, frame, out: Path) -> list[Path]:
    """Accuracy against the labelled fraction, mean ± sd per row (DML Fig. 6)."""
    data = pd.DataFrame([{"row": r, "column": c, "labelled_percent": float(re.search(r"([\d.]+)% labelled", c).group(1)),
                          "mean": table.scale * cell.mean, "sd": table.scale * cell.std}
                         for r in table.rows for c in table.columns
                         if (cell := table.cells.get((r, c))) is not None and cell.mean is not None])
    if data.empty:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for row, group in data.groupby("row", sort=False):
        ax.errorbar(group.labelled_percent, group["mean"], yerr=group.sd, label=row, capsize=3, marker="o")
    ax.set_xlabel("labelled training images (%)")
    ax.set_ylabel(f"{table.metric.label} ({table.metric.unit})")
    ax.legend(fontsize=8)
    return _save(fig, data, out, f"fraction_{table.name}")


def renyi_data(p_fixed: float = 0.4, points: int = 199) -> pd.DataFrame:
    """RDML Fig. 1: D_α(P‖Q) for two-event P and Q, one fixed at (0.4, 0.6), the other's first
    probability over (0.001, 0.999), for the α grid and KL (α = 1)."""
    import torch

    from rdml.divergences import renyi_divergence_from_log_probs

    grid = torch.linspace(0.001, 0.999, points, dtype=torch.float64)
    moving = torch.stack([grid, 1 - grid], -1).log()
    fixed = torch.tensor([p_fixed, 1 - p_fixed], dtype=torch.float64).log().expand_as(moving)
    rows = []
    for alpha in (1.0, *RENYI_ALPHAS):
        over_p = renyi_divergence_from_log_probs(moving, fixed, alpha)
        over_q = renyi_divergence_from_log_probs(fixed, moving, alpha)
        rows += [{"alpha": alpha, "x": float(x), "fixed_q_over_p": float(a), "fixed_p_over_q": float(b)}
                 for x, a, b in zip(grid, over_p, over_q)]
    return pd.DataFrame(rows)


def renyi_figure(out: Path) -> list[Path]:
    data = renyi_data()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colours = iter(["tab:blue", "tab:green", "tab:red", "tab:purple", "tab:brown"])
    for alpha, group in data.groupby("alpha"):
        style = (dict(linestyle="--", color="tab:orange", label="KL") if alpha == 1
                 else dict(color=next(colours), label=f"α = {alpha:g}"))
        axes[0].plot(group.x, group.fixed_q_over_p, **style)
        axes[1].plot(group.x, group.fixed_p_over_q, **style)
    axes[0].set(title="Q = (0.4, 0.6)", xlabel="p", ylabel="D_α(P‖Q)")
    axes[1].set(title="P = (0.4, 0.6)", xlabel="q", ylabel="D_α(P‖Q)")
    axes[0].legend(fontsize=8)
    return _save(fig, data, out, "renyi")


def lr_figure(frame: pd.DataFrame, out: Path) -> list[Path]:
    """The learning rate per epoch of each configuration (its first seed's first student)."""
    lr = frame[(frame.metric == "lr") & (frame.model == "student_0")].copy()
    if lr.empty:
        return []
    lr["configuration"] = lr.run.str.replace(r"-s\d+$", "", regex=True)
    first = lr.groupby("configuration").seed.transform("min")
    data = lr[lr.seed == first][["configuration", "run", "epoch", "value"]].rename(columns={"value": "lr"})
    fig, ax = plt.subplots(figsize=(7, 4))
    for configuration, group in data.groupby("configuration"):
        ax.plot(group.epoch, group.lr, label=configuration, alpha=0.8)
    ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate of every configuration")
    if data.configuration.nunique() <= 12:
        ax.legend(fontsize=6)
    return _save(fig, data, out, "lr")


def write_figures(specs, tables, frame: pd.DataFrame, out: Path) -> list[Path]:
    """Every figure the study's tables ask for, the learning rates, and RDML Fig. 1 where a Rényi table is built."""
    written = []
    for spec, table in zip(specs, tables):
        for name in spec.figures:
            written += TABLE_FIGURES[name](spec, table, frame, out)
    if any(spec.name in ("rdml_table", "kd_table") for spec in specs):
        written += renyi_figure(out)
    return written + lr_figure(frame, out)
