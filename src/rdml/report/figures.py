"""The papers' figures from a study's records, each written twice in the study's tables folder, as a
vector PDF and a PNG at `DPI`, beside the data file it was drawn from (`fig_<name>.csv`: every number
on the figure, in the figure's units, with the runs it comes from).

- curves (RDML Figs. 4–5, S1, 6, S2; DML-vs-KD Figs. 4a/4b): test accuracy and loss per epoch, mean
  with an sd band over seeds, per panel of the table; every run also drawn thin where a table asks
  (`curve_runs`), so diverged runs stay visible;
- best_alpha (RDML Fig. 2): the best α of each experiment, coloured by its lead over DML;
- box and alpha_difference (thesis Figs. 3.3–3.5): accuracy per α over seeds with the vanilla line,
  and the accuracy curves' difference to α = 1;
- fraction (DML Fig. 6): accuracy against the labelled fraction;
- renyi (RDML Fig. 1): the analytic Rényi divergence of two-event distributions, from rdml.divergences;
- lr: the learning rate per epoch, one line per distinct schedule, so no hidden schedule slips in;
- tsne (DML Fig. 5): each network's t-SNE of some gallery identities' features, each image drawn as its identity's
  number (rdml.analysis.tsne).

What a reviewer reads off them is what the tables print: titles name the paper's table (the study's
`paper:`) and the layout, values are in the unit and scale the table prints (rdml.metrics: accuracy in
%), panels and lines come in the table's order, epochs are whole numbers, every line is in a legend,
and colours are Okabe & Ito's colour-blind-safe set (Okabe, M. & Ito, K., "Color Universal Design",
2008), no red beside green.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from rdml.metrics import METRICS, PRIMARY  # noqa: E402
from rdml.registry import Registry  # noqa: E402
from rdml.report.frame import RECORDED, column  # noqa: E402
from rdml.report.panels import curve_entries, panels_and_lines, strip_index  # noqa: E402
from rdml.report.table import describe  # noqa: E402
from rdml.study.layouts import LAYOUTS  # noqa: E402

__all__ = ["TABLE_FIGURES", "PALETTE", "DPI", "Drawn", "curve_data", "draw_figures", "save_figure",
           "write_figures", "renyi_data", "figure_title"]

TABLE_FIGURES: Registry = Registry("figure")
RENYI_ALPHAS = (0.5, 2.0, 10.0, 100.0)  # RDML Fig. 1 plots several α and KL (α = 1, dashed)
# the learning curves' metrics: test accuracy and loss; on a retrieval set mAP and rank-1 (the multi-query ones,
# recorded at the last epoch alone, have no curve)
CURVE_METRICS = tuple(m for m in RECORDED if m.name in ("acc", "nll", "map", "rank1"))
CURVES = [column(m) for m in CURVE_METRICS]
ACCURACY = column(METRICS[PRIMARY])
DPI = 200  # the PNG's resolution; the PDF beside it is vector
PANELS_PER_ROW = 4  # wider tables wrap their panels onto further rows, in the table's order

# Okabe & Ito (2008), "Color Universal Design", without its yellow (#F0E442: too pale for a line on
# white); ordered so that vermillion never follows bluish green. Past seven lines the colours repeat
# with the next line style.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
LINESTYLES = ("-", "--", ":", "-.")



@dataclass
class Drawn:
    """One figure, drawn and not yet written: `fig_<name>.pdf`/`.png`, and `data` (every number on it) as `.csv`."""

    name: str
    figure: Figure
    data: pd.DataFrame


def style(index: int) -> dict:
    """The colour and line style of the index-th line of a figure (PALETTE, then the next line style)."""
    return {"color": PALETTE[index % len(PALETTE)], "linestyle": LINESTYLES[index // len(PALETTE) % len(LINESTYLES)]}


def _unit_column(metric) -> str:
    """A recorded metric's column in a figure's data file, named with the unit it is drawn in: "test_acc (%)"."""
    return f"{column(metric)} ({metric.unit})"


def _axis_label(metric, statistic: str | None = None) -> str:
    """"test accuracy (%)", or what a table's cells hold ("mean test accuracy of the last 5 epochs (%)")."""
    what = f"test {metric.label}" if statistic is None else describe(statistic, metric.name)
    return f"{what} ({metric.unit})"


def _statistic(table) -> str:
    return (table.study or {}).get("metric", "final")


def _study_of(spec) -> str | None:
    return next((entry.run.study for entry in spec.entries), None)


def figure_title(paper: str | None, study: str | None, layout: str | None) -> str:
    """The paper's table the figure belongs to and the layout's human name (its `title` in rdml.study.layouts), never the
    internal layout name alone: "RDML Table 2: Ind., DML and RDML per α"."""
    source, what = LAYOUTS[layout].title if layout in LAYOUTS else (None, None)
    if layout and source is None:  # not a registered layout: its key, spelled out
        source, what = f"{layout.replace('_', ' ')} layout", None
    head = paper or ", ".join(x for x in (f"{study} study" if study else None, source) if x) or "rdml"
    return f"{head}: {what}" if what else head


def _title(fig: Figure, spec, table, what: str) -> None:
    fig.suptitle(f"{figure_title((table.study or {}).get('paper'), _study_of(spec), spec.name)}\n{what}", fontsize=10)


def _epochs(ax) -> None:
    """Whole epochs on the x axis (no 2.5, 7.5)."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _ordered(values, order: list[str]) -> list[str]:
    """`values` (each once) in `order`, any not in it after, as first seen."""
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + [v for v in present if v not in order]


def curve_data(spec, frame: pd.DataFrame) -> pd.DataFrame:
    """Per panel, line, run and epoch: the mean over the entry's students of each curve (test accuracy, loss),
    as the frame holds them (fractions), panels and lines in the table's order."""
    rows = [(panel, line, entry.run.id, model) for panel, line, entry in curve_entries(spec) for model in entry.students]
    if not rows:
        return pd.DataFrame(columns=["panel", "line", "run", "epoch", *CURVES, "status"])
    keys = pd.DataFrame(rows, columns=["panel", "line", "run", "model"]).drop_duplicates()
    wide = frame[frame.metric.isin(CURVES)].pivot_table(
        index=["run", "model", "epoch", "status"], columns="metric", values="value").reset_index()
    merged = keys.merge(wide, on=["run", "model"])
    data = merged.groupby(["panel", "line", "run", "epoch", "status"], as_index=False)[
        [c for c in CURVES if c in wide.columns]].mean()
    panels, lines = panels_and_lines(spec)
    rank = {"panel": _ordered(data.panel, panels), "line": _ordered(data.line, lines)}
    return data.sort_values(["panel", "line", "run", "epoch"], key=lambda s: s.map(
        {v: i for i, v in enumerate(rank[s.name])}) if s.name in rank else s, kind="stable").reset_index(drop=True)


def _displayed(data: pd.DataFrame) -> pd.DataFrame:
    """The curves in the units the figure draws them in (accuracy in % as the tables print it)."""
    shown = data.copy()
    for metric in _drawn(data):
        shown[_unit_column(metric)] = metric.scale * shown.pop(column(metric))
    return shown


def _drawn(data: pd.DataFrame) -> list:
    """The curve metrics these curves hold (a classification set's, or a retrieval set's)."""
    return [m for m in CURVE_METRICS if column(m) in data.columns]


@TABLE_FIGURES.register("curves")
def curves(spec, table, frame) -> Drawn | None:
    """Test accuracy and loss per epoch: one panel per table column (or row), one line per row (or column),
    mean ± sd over the seeds' runs."""
    data = curve_data(spec, frame)
    if data.empty:
        return None
    drawn = _drawn(data)
    shown = _displayed(data)
    panels, lines = list(dict.fromkeys(shown.panel)), list(dict.fromkeys(shown.line))
    looks = {line: style(i) for i, line in enumerate(lines)}
    ncols = min(len(panels), PANELS_PER_ROW)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows * len(drawn), ncols, figsize=(3.6 * ncols + 2.6, 2.8 * len(drawn) * nrows + 0.8),
                             squeeze=False, layout="constrained")
    for i, panel in enumerate(panels):
        top, col = (i // ncols) * len(drawn), i % ncols
        for line, group in shown[shown.panel == panel].groupby("line", sort=False):
            for row, metric in enumerate(drawn):
                ax, values = axes[top + row][col], _unit_column(metric)
                stats = group.groupby("epoch")[values].agg(["mean", "std"]).fillna(0.0)
                ax.plot(stats.index, stats["mean"], label=line, **looks[line])
                ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.2,
                                color=looks[line]["color"], linewidth=0)
                if spec.curve_runs:
                    for _, run in group.groupby("run"):
                        ax.plot(run.epoch, run[values], color=looks[line]["color"], alpha=0.45, linewidth=0.7,
                                linestyle=":" if (run.status == "diverged").any() else "-")
        axes[top][col].set_title(panel, fontsize=9)
        for row, metric in enumerate(drawn):
            axes[top + row][col].set_ylabel(_axis_label(metric))
            _epochs(axes[top + row][col])
    for i in range(len(panels), nrows * ncols):  # the last row's empty places
        for row in range(len(drawn)):
            axes[(i // ncols) * len(drawn) + row][i % ncols].set_visible(False)
    handles = [Line2D([], [], label=line, **looks[line]) for line in lines]
    handles.append(Patch(color=PALETTE[-1], alpha=0.2, label="± 1 sd over seeds"))
    if spec.curve_runs:
        handles += [Line2D([], [], color=PALETTE[-1], alpha=0.45, linewidth=0.7, label="each run"),
                    Line2D([], [], color=PALETTE[-1], alpha=0.45, linewidth=0.7, linestyle=":", label="a diverged run")]
    fig.legend(handles=handles, loc="outside right center", fontsize=7)
    _title(fig, spec, table, f"test {' and '.join(m.label for m in drawn)} per epoch, mean over seeds")
    return Drawn(f"curves_{table.name}", fig, shown)


@TABLE_FIGURES.register("best_alpha")
def best_alpha(spec, table, frame) -> Drawn | None:
    """Per experiment (column without its student index), the row with the highest mean over its students."""
    rows = []
    for experiment in dict.fromkeys(strip_index(c) for c in table.columns):
        columns = [c for c in table.columns if strip_index(c) == experiment]
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
        return None
    fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(data) + 2.5), 3.4), layout="constrained")
    image = ax.imshow([data.lead_over_dml], cmap="viridis", aspect="auto")  # viridis: readable in every colour vision
    low, high = image.get_clim()
    for i, r in data.iterrows():
        bright = high > low and (r.lead_over_dml - low) / (high - low) > 0.6
        ax.text(i, 0, r.best.replace("RDML ", ""), ha="center", va="center", color="black" if bright else "white",
                fontsize=8)
    ax.set_xticks(range(len(data)), data.experiment, rotation=30, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_xlabel("experiment (table column)")
    fig.colorbar(image, ax=ax, label=f"lead over DML ({table.metric.difference_unit})")
    _title(fig, spec, table, "best α per experiment (RDML Fig. 2)")
    return Drawn(f"best_alpha_{table.name}", fig, data)


@TABLE_FIGURES.register("box")
def box(spec, table, frame) -> Drawn | None:
    """Per-seed values of each row, with the first row (vanilla) as a dotted line at its mean (thesis Figs. 3.3, 3.4)."""
    columns = [c for c in table.columns if c.startswith("Average")]
    data = pd.DataFrame([{"column": c, "row": r, "seed": s, "value": table.scale * v}
                         for c in columns for r in table.rows if (cell := table.cells.get((r, c)))
                         for s, v in cell.per_seed().items()])
    if data.empty:
        return None
    columns = [c for c in columns if c in set(data.column)]
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns) + 2.4, 4.2), squeeze=False, layout="constrained")
    median = dict(color=PALETTE[0], linestyle="-", linewidth=1.6)
    mean = dict(color=PALETTE[1], linestyle="--", linewidth=1.6)
    vanilla_look = dict(color=PALETTE[6], linestyle=":", linewidth=1.2)
    vanilla_drawn = False
    for ax, column_name in zip(axes[0], columns):
        part = data[data.column == column_name]
        rows = [r for r in table.rows[1:] if r in set(part.row)]
        ax.boxplot([part[part.row == r].value for r in rows], showmeans=True, meanline=True,
                   medianprops=median, meanprops=mean)
        ax.set_xticks(range(1, len(rows) + 1), [r.split(": ")[-1] for r in rows], rotation=30, ha="right", fontsize=8)
        vanilla = part[part.row == table.rows[0]].value
        if not vanilla.empty:
            ax.axhline(vanilla.mean(), **vanilla_look)
            vanilla_drawn = True
        ax.set_title(column_name, fontsize=9)
        ax.set_ylabel(_axis_label(table.metric, _statistic(table)))
    handles = [Line2D([], [], label="median over seeds", **median), Line2D([], [], label="mean over seeds", **mean)]
    if vanilla_drawn:
        handles.append(Line2D([], [], label=f"{table.rows[0]} (mean)", **vanilla_look))
    fig.legend(handles=handles, loc="outside right center", fontsize=7)
    _title(fig, spec, table, "value of each seed per α; box: quartiles, whiskers: 1.5 × IQR (thesis Figs. 3.3–3.4)")
    return Drawn(f"box_{table.name}", fig, data)


@TABLE_FIGURES.register("alpha_difference")
def alpha_difference(spec, table, frame) -> Drawn | None:
    """Accuracy per epoch of each α and its difference to α = 1 of its data set, means over seeds (thesis Fig. 3.5)."""
    data = curve_data(spec, frame)
    means = data.groupby(["line", "epoch"], as_index=False, sort=False)[ACCURACY].mean()
    metric = METRICS[PRIMARY]
    means["dataset"] = means.line.str.split(": ").str[0]
    datasets = [d for d in dict.fromkeys(means.dataset) if f"{d}: α=1" in set(means.line)]
    means = means[means.dataset.isin(datasets)]
    if means.empty:
        return None
    accuracy, difference = _unit_column(metric), f"difference to α = 1 ({metric.difference_unit})"
    means[accuracy] = metric.scale * means.pop(ACCURACY)
    base = means[means.line == means.dataset + ": α=1"].set_index(["dataset", "epoch"])[accuracy]
    means[difference] = means[accuracy] - base.reindex(pd.MultiIndex.from_arrays([means.dataset, means.epoch])).to_numpy()
    fig, axes = plt.subplots(2, len(datasets), figsize=(6 * len(datasets) + 2.4, 6), sharex="col", squeeze=False,
                             layout="constrained")
    lines = _ordered(means.line, list(table.rows))
    looks = {line: style(i) for i, line in enumerate(dict.fromkeys(line.split(": ")[-1] for line in lines))}
    for col, dataset in enumerate(datasets):
        top, bottom = axes[0][col], axes[1][col]
        for line in [line for line in lines if line.startswith(f"{dataset}: ")]:
            group, name = means[means.line == line], line.split(": ")[-1]
            top.plot(group.epoch, group[accuracy], label=name, **looks[name])
            bottom.plot(group.epoch, group[difference], **looks[name])
        top.set_title(dataset, fontsize=9)
        top.set_ylabel(_axis_label(metric))
        bottom.set_ylabel(difference)
        _epochs(bottom)
        top.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(handles=[Line2D([], [], label=name, **look) for name, look in looks.items()],
               loc="outside right center", fontsize=7)
    _title(fig, spec, table, "test accuracy per epoch, mean over seeds, and its difference to α = 1 (thesis Fig. 3.5)")
    data = means[["dataset", "line", "epoch", accuracy, difference]]
    return Drawn(f"alpha_difference_{table.name}", fig, data)


@TABLE_FIGURES.register("fraction")
def fraction(spec, table, frame) -> Drawn | None:
    """Accuracy against the labelled fraction, mean ± sd per row, a panel per data set (DML Fig. 6)."""
    data = pd.DataFrame([{"dataset": c.split(": ")[0], "row": r, "column": c,
                          "labelled_percent": float(re.search(r"([\d.]+)% labelled", c).group(1)),
                          "mean": table.scale * cell.mean, "sd": table.scale * cell.std}
                         for r in table.rows for c in table.columns
                         if (cell := table.cells.get((r, c))) is not None and cell.mean is not None])
    if data.empty:
        return None
    datasets = list(dict.fromkeys(data.dataset))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets) + 2.4, 4), squeeze=False, layout="constrained")
    looks = {row: style(i) for i, row in enumerate(_ordered(data.row, list(table.rows)))}
    for ax, dataset in zip(axes[0], datasets):
        for row, look in looks.items():
            group = data[(data.dataset == dataset) & (data.row == row)]
            if not group.empty:
                ax.errorbar(group.labelled_percent, group["mean"], yerr=group.sd, capsize=3, marker="o", **look)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("labelled training images (%)")
        ax.set_ylabel(_axis_label(table.metric, _statistic(table)))
    fig.legend(handles=[Line2D([], [], marker="o", label=row, **look) for row, look in looks.items()]
               + [Line2D([], [], color=PALETTE[-1], marker="|", linestyle="none", markersize=10, label="± 1 sd over seeds")],
               loc="outside right center", fontsize=7)
    _title(fig, spec, table, "accuracy against the labelled fraction (DML Fig. 6)")
    return Drawn(f"fraction_{table.name}", fig, data)


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


def renyi_figure() -> Drawn:
    """RDML Fig. 1 (natural logarithms: nats)."""
    data = renyi_data()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    colours = iter(PALETTE)
    for alpha, group in data.groupby("alpha"):
        look = ({"color": PALETTE[-1], "linestyle": "--", "label": "KL (α = 1)"} if alpha == 1
                else {"color": next(colours), "linestyle": "-", "label": f"α = {alpha:g}"})
        axes[0].plot(group.x, group.fixed_q_over_p, **look)
        axes[1].plot(group.x, group.fixed_p_over_q, **look)
    axes[0].set(title="Q = (0.4, 0.6)", xlabel="p, P = (p, 1 − p)", ylabel="D_α(P‖Q) (nats)")
    axes[1].set(title="P = (0.4, 0.6)", xlabel="q, Q = (q, 1 − q)", ylabel="D_α(P‖Q) (nats)")
    fig.legend(handles=axes[0].get_lines(), loc="outside right center", fontsize=8)
    fig.suptitle("RDML Fig. 1: Rényi divergence of two-event distributions", fontsize=10)
    return Drawn("renyi", fig, data)


def _schedule(config) -> str:
    """A run's learning-rate schedule in words, from its resolved config (rdml.train.optim.make_scheduler)."""
    described = {
        "constant": f"constant {config.lr:g}",
        "step": f"step: {config.lr:g}, × {config.gamma:g} every {config.step_size} epochs",
        "multistep": f"multistep: {config.lr:g}, × {config.gamma:g} at epochs {', '.join(map(str, config.milestones))}",
        "cosine": f"cosine from {config.lr:g}",
        "onecycle": f"one-cycle to {config.lr:g}, peak at {config.pct_start:.0%}",
    }.get(config.schedule, f"{config.schedule} from {config.lr:g}")
    return f"{described}, {config.epochs} epochs"


def _runs_of(specs) -> dict:
    """Every planned run of the tables by id, teachers included."""
    runs = {}
    for spec in specs:
        for entry in spec.entries:
            run = entry.run
            while run is not None and run.id not in runs:
                runs[run.id] = run
                run = run.teacher
    return runs


def lr_figure(specs, tables, frame: pd.DataFrame) -> Drawn | None:
    """The learning rate per epoch of each configuration (its first seed's first student), one line per
    distinct schedule: configurations whose sequences are equal are drawn once, labelled with the schedule
    they share and how many configurations (of which data sets) follow it."""
    lr = frame[(frame.metric == "lr") & (frame.model == "student_0")].copy()
    if lr.empty:
        return None
    lr["configuration"] = lr.run.str.replace(r"-s\d+$", "", regex=True)
    first = lr.groupby("configuration").seed.transform("min")
    data = lr[lr.seed == first][["configuration", "run", "dataset", "epoch", "value"]].rename(columns={"value": "lr"})
    data = data.sort_values(["configuration", "epoch"]).reset_index(drop=True)
    runs = _runs_of(specs)
    sequences: dict[tuple, list[str]] = {}
    for configuration, group in data.groupby("configuration", sort=True):
        sequences.setdefault((tuple(group.epoch), tuple(group.lr)), []).append(configuration)
    total = data.configuration.nunique()
    labels = {}
    for members in sequences.values():
        member_runs = data[data.configuration.isin(members)].drop_duplicates("configuration")
        described = list(dict.fromkeys(_schedule(runs[r].config) for r in member_runs.run if r in runs))
        datasets = ", ".join(dict.fromkeys(member_runs.dataset))
        if len(members) == total:
            shared = f"all {total} configurations ({datasets})"
        elif len(members) == 1:
            shared = members[0]
        else:
            methods = ", ".join(dict.fromkeys(frame[frame.run.isin(member_runs.run)].method))
            shared = f"{len(members)} configurations ({datasets}: {methods})"
        label = f"{' / '.join(described) or 'recorded schedule'}: {shared}"
        while label in labels.values():  # two schedules the configs describe alike (records that disagree with them)
            label += " (another)"
        labels.update(dict.fromkeys(members, label))
    data["schedule"] = data.configuration.map(labels)
    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    for i, ((epochs, values), members) in enumerate(sequences.items()):
        ax.plot(epochs, values, label=labels[members[0]], **style(i))
    ax.set_ylabel("learning rate")
    _epochs(ax)
    ax.legend(fontsize=7, loc="best")
    study = tables[0].study if tables else None
    head = figure_title((study or {}).get("paper"), next(filter(None, map(_study_of, specs)), None), None)
    fig.suptitle(f"{head}\nlearning rate per epoch, one line per distinct schedule", fontsize=10)
    return Drawn("lr", fig, data)


def draw_figures(specs, tables, frame: pd.DataFrame) -> Iterator[Drawn]:
    """Every figure the study's tables ask for, RDML Fig. 1 where a Rényi table is built, and the learning
    rates, one at a time (each is closed once written)."""
    for spec, table in zip(specs, tables):
        for name in spec.figures:
            if (drawn := TABLE_FIGURES[name](spec, table, frame)) is not None:
                yield drawn
    if any(spec.name in ("rdml_table", "kd_table") for spec in specs):
        yield renyi_figure()
    if (drawn := lr_figure(specs, tables, frame)) is not None:
        yield drawn


def save_figure(drawn: Drawn, out: Path) -> list[Path]:
    """fig_<name>.png (at DPI, the figure's size × DPI pixels), .pdf and .csv, each written to a temporary
    file then renamed; the figure is closed. No creation date in the PDF: the same records give the same bytes."""
    written = []
    try:
        for suffix, options in ((".png", {"dpi": DPI}), (".pdf", {"metadata": {"CreationDate": None}})):
            path = out / f"fig_{drawn.name}{suffix}"
            temporary = path.with_suffix(f".tmp{suffix}")
            drawn.figure.savefig(temporary, format=suffix[1:], **options)
            temporary.replace(path)
            written.append(path)
    finally:
        plt.close(drawn.figure)
    csv = out / f"fig_{drawn.name}.csv"
    drawn.data.to_csv(csv.with_suffix(".tmp"), index=False)
    csv.with_suffix(".tmp").replace(csv)
    return [*written, csv]


def write_figures(specs, tables, frame: pd.DataFrame, out: Path) -> list[Path]:
    """Every figure of the study (draw_figures) written into `out`; returns the files written."""
    return [path for drawn in draw_figures(specs, tables, frame) for path in save_figure(drawn, out)]


def _epoch_of(row: str) -> int:
    """The epoch of an okdph_pac_bayes_epochs_table row ("epoch 26")."""
    found = re.fullmatch(r"epoch (\d+)", row)
    if found is None:
        raise ValueError(f"pac_bayes_epochs: row {row!r} names no epoch; its rows read 'epoch <k>'")
    return int(found.group(1))


@TABLE_FIGURES.register("pac_bayes_epochs")
def pac_bayes_epochs(spec, table, frame) -> Drawn | None:
    """OKDPH supplement Fig. 1: the PAC-Bayes bound per epoch, one line per method (mean over students and seeds,
    ± 1 sd band), one panel per data set, in the table's units (·10^6), from okdph_pac_bayes_epochs_table's cells."""
    data = pd.DataFrame([{"dataset": c.split(": ")[0], "method": c.split(": ")[-1], "epoch": _epoch_of(r),
                          "mean": table.scale * cell.mean, "sd": table.scale * cell.std, "n": len(cell.values)}
                         for c in table.columns for r in table.rows
                         if (cell := table.cells.get((r, c))) is not None and cell.mean is not None])
    if data.empty:
        return None
    bound = next((e.measure.split("@")[0].removeprefix("pac_bayes_") for e in spec.entries if e.measure), "orig")
    unit = f"PAC-Bayes bound, {bound} (·10^6)"
    data = data.rename(columns={"mean": f"mean {unit}", "sd": f"sd {unit}"})
    datasets = list(dict.fromkeys(data.dataset))
    looks = {m: style(i) for i, m in enumerate(dict.fromkeys(c.split(": ")[-1] for c in table.columns))}
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets) + 2.4, 4), squeeze=False, layout="constrained")
    for ax, dataset in zip(axes[0], datasets):
        for method, look in looks.items():
            group = data[(data.dataset == dataset) & (data.method == method)].sort_values("epoch")
            if group.empty:
                continue
            mean, sd = group[f"mean {unit}"], group[f"sd {unit}"]
            ax.plot(group.epoch, mean, marker="o", markersize=3, label=method, **look)
            ax.fill_between(group.epoch, mean - sd, mean + sd, alpha=0.2, color=look["color"], linewidth=0)
        ax.set_title(dataset, fontsize=9)
        ax.set_ylabel(unit)
        _epochs(ax)
    handles = [Line2D([], [], marker="o", markersize=3, label=method, **look) for method, look in looks.items()]
    handles.append(Patch(color=PALETTE[-1], alpha=0.2, label="± 1 sd over students and seeds"))
    fig.legend(handles=handles, loc="outside right center", fontsize=7)
    _title(fig, spec, table, "PAC-Bayes bound per epoch, mean over students and seeds (supplement Fig. 1)")
    return Drawn(f"pac_bayes_epochs_{table.name}", fig, data)


def _measured_of(spec, table, row: str, measurement: str) -> tuple[str, dict] | None:
    """The first run of a row that holds `measurement` (okdph_landscape_table's landscape, tsne_table's t-SNE: its
    first seed's run), with its run id."""
    for entry in spec.entries:
        if entry.row == row and (found := (table.measured.get(entry.run.id) or {}).get(measurement)):
            return entry.run.id, found
    return None


def _max_loss(row: str) -> float:
    """The contours' top: draw.ipynb's max_val, 6 on CIFAR-100 and 4 on CIFAR-10 (and any other data set)."""
    return 6.0 if "cifar100" in row.split(",")[0] else 4.0


@TABLE_FIGURES.register("landscape")
def landscape(spec, table, frame) -> Drawn | None:
    """OKDPH supplement Figs. 2–5: per row of okdph_landscape_table (its first seed), the training loss over the
    PCA plane (grid and path points interpolated as draw.ipynb does: rdml.analysis.landscape.surface, filled
    contours from 0 to 4, or 6 on CIFAR-100, by 0.25) and the four students' trajectories, the method's two and
    OKDPH's two, each checkpoint a dot and the first (the figures' "initial point") in crimson."""
    from rdml.analysis.landscape import surface

    panels = [(row, found) for row in table.rows if (found := _measured_of(spec, table, row, "landscape")) is not None]
    if not panels:
        return None
    columns = min(len(panels), 3)  # Base, DML, KDCL side by side, as the supplement sets them
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns + 2.0, 3.8 * rows), squeeze=False, layout="constrained")
    looks = {label: style(i) for i, label in enumerate(("student_0", "student_1", "partner.student_0", "partner.student_1"))}
    names = dict(zip(looks, table.columns))
    data, contour = [], None
    for ax, (row, (run_id, found)) in zip(axes.flat, panels):
        points = found["grid"] + found["path"]
        x_bounds, y_bounds = found["spec"]["x_bounds"], found["spec"]["y_bounds"]
        top = _max_loss(row)
        xi, yi, zi = surface([p["x"] for p in points], [p["y"] for p in points], [p["loss"] for p in points],
                             x_bounds, y_bounds, max_loss=top)
        contour = ax.contourf(xi, yi, zi, levels=[i * 0.25 for i in range(int(top / 0.25) + 1)], cmap="viridis")
        data += [{"panel": row, "run": run_id, "kind": kind, "trajectory": "", "x": p["x"], "y": p["y"], "loss": p["loss"]}
                 for kind in ("grid", "path") for p in found[kind]]
        for label, coordinates in found["coordinates"].items():
            xs, ys = [c[0] for c in coordinates], [c[1] for c in coordinates]
            look = looks.get(label, style(len(looks)))
            ax.plot(xs, ys, marker="o", markersize=2, linewidth=1, label=names.get(label, label),
                    color=look["color"], linestyle=look["linestyle"])
            ax.plot(xs[:1], ys[:1], marker="o", markersize=5, color="crimson", linestyle="none")
            data += [{"panel": row, "run": run_id, "kind": "trajectory", "trajectory": names.get(label, label), "x": x, "y": y,
                      "loss": None} for x, y in zip(xs, ys)]
        ratio = found.get("explained_variance_ratio") or [math.nan, math.nan]
        ax.set_title(row, fontsize=8)
        ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f} % of the variance)", fontsize=7)
        ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f} %)", fontsize=7)
        ax.set_xlim(*x_bounds)
        ax.set_ylim(*y_bounds)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.colorbar(contour, ax=axes, label="training loss (cross-entropy, nats)", shrink=0.8)
    handles = [Line2D([], [], marker="o", markersize=2, label=names[label], **look) for label, look in looks.items()]
    handles.append(Line2D([], [], marker="o", markersize=5, color="crimson", linestyle="none", label="first checkpoint"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7)
    _title(fig, spec, table, "loss landscape and trajectories in the PCA plane (supplement Figs. 2–5)")
    return Drawn(f"landscape_{table.name}", fig, pd.DataFrame(data))


def _network(student: str) -> str:
    """"network 1" for student_0: the paper's figure numbers its two MobileNets from 1."""
    return f"network {int(student.rsplit('_', 1)[1]) + 1}"


@TABLE_FIGURES.register("tsne")
def tsne(spec, table, frame) -> Drawn | None:
    """DML Fig. 5: per row of tsne_table (Independent, DML) and network, the t-SNE of the chosen gallery images'
    features (rdml.analysis.tsne), each image drawn as its identity's number (1..N in the order of the identities'
    Market-1501 ids; the legend names them) in that identity's colour (Okabe & Ito's, repeated past seven, the
    numbers then still apart); each panel titled with its row, its network and the embedding's trustworthiness."""
    panels = [(row, found) for row in table.rows if (found := _measured_of(spec, table, row, "tsne")) is not None]
    if not panels:
        return None
    networks = max(len(found["students"]) for _, (_, found) in panels)
    fig, axes = plt.subplots(len(panels), networks, figsize=(4.0 * networks + 1.8, 3.8 * len(panels)), squeeze=False,
                             layout="constrained")
    data, named = [], set()
    for axes_row, (row, (run_id, found)) in zip(axes, panels):
        numbers = {identity: i + 1 for i, identity in enumerate(found["identities"])}
        named |= {(number, identity) for identity, number in numbers.items()}
        for ax, (student, points) in zip(axes_row, sorted(found["students"].items())):
            for x, y, identity in zip(points["x"], points["y"], found["identity"]):
                number = numbers[identity]
                ax.text(x, y, str(number), color=PALETTE[(number - 1) % len(PALETTE)], fontsize=6, ha="center",
                        va="center")
                data.append({"panel": row, "run": run_id, "network": _network(student), "number": number,
                             "identity": identity, "x": x, "y": y, "trustworthiness": points["trustworthiness"]})
            margin = 0.05 * max(max(points["x"]) - min(points["x"]), max(points["y"]) - min(points["y"]), 1e-9)
            ax.set_xlim(min(points["x"]) - margin, max(points["x"]) + margin)
            ax.set_ylim(min(points["y"]) - margin, max(points["y"]) + margin)
            ax.set_title(f"{row}, {_network(student)}\ntrustworthiness {points['trustworthiness']:.3f}", fontsize=8)
            ax.set_xlabel("t-SNE 1", fontsize=7)
            ax.set_ylabel("t-SNE 2", fontsize=7)
            ax.tick_params(labelsize=6)
        for ax in axes_row[len(found["students"]):]:
            ax.set_visible(False)
    handles = [Patch(color=PALETTE[(number - 1) % len(PALETTE)], label=f"{number}: identity {identity:04d}")
               for number, identity in sorted(named)]
    fig.legend(handles=handles, loc="outside right center", fontsize=7, title="number: Market-1501 id", title_fontsize=7)
    spec_of = panels[0][1][1]["spec"]
    _title(fig, spec, table, f"t-SNE of each network's gallery features, {spec_of['identities']} identities, perplexity "
           f"{spec_of['perplexity']:g} (Fig. 5)")
    return Drawn(f"tsne_{table.name}", fig, pd.DataFrame(data))
