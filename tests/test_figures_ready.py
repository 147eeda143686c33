"""Figures a reviewer accepts, checked on the figure objects of a fabricated study: titles name the
paper's table and the layout, axes carry units and the tables' scale (accuracy in %), legends name every
line (box plots' median and mean too), panels and lines come in the table's order, epochs are whole,
colours are Okabe & Ito's and stay apart for red-green colour-blind readers, one learning-rate line per
distinct schedule, and each figure is written as a PDF and a PNG at ≥ 200 dpi."""

import colorsys
import itertools
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex, to_rgb
from matplotlib.lines import Line2D

from rdml.report.figures import draw_figures, save_figure
from rdml.report.frame import long_frame
from rdml.report.records import checked_record
from rdml.report.table import build_tables
from rdml.study.layouts import LAYOUTS
from rdml.study.plan import plan_study, plan_tables
from rdml.train.integrity import summarise, write_record

EPOCHS = 20  # enough for a default locator to put ticks at 2.5, 7.5, …
STUDY = {
    "datasets": ["synthetic"],
    "seeds": [0, 1, 2],
    "metric": "last5",
    "teacher": {"arch": "cnn_wide"},
    "rdml_table": {"archs": ["mlp", "cnn"], "alphas": [2.0]},  # mlp first: not the alphabetical order
    "kd_table": {"student": "mlp", "alphas": [0.5, 1.0]},
    "pair_table": {"pairs": [["mlp", "cnn"], ["cnn", "cnn"]]},
    "semi_table": {"arch": "mlp", "fractions": [0.5, 1.0]},
}
# Okabe, M. & Ito, K. (2008), "Color Universal Design (CUD): how to make figures and presentations that
# are friendly to colorblind people", its eight colours.
OKABE_ITO = {"#000000", "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7"}
# Machado, Oliveira & Fernandes (2009), severity 1.0, on linear RGB.
COLOUR_BLIND = {
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
}


def accuracy(method: str, epoch: int, seed: int, student: int) -> float:
    return 0.4 + 0.01 * epoch + 0.001 * seed + 0.0001 * student + (0.05 if method == "dml" else 0.0)


def learning_rate(method: str, epoch: int) -> float:
    """A schedule per method: runs of one method share it, so the lr figure draws one line per method."""
    return {"independent": 0.1, "kd": 0.1 * 0.2 ** (epoch // 8)}.get(method, 0.05 * (1 + np.cos(np.pi * epoch / EPOCHS)))


def fabricate(root: Path, params: dict) -> None:
    for run in plan_study(params, "t"):
        names = [*run.students, "ensemble"][: len(run.archs) + (len(run.archs) > 1)]
        epochs = [{"lr": [learning_rate(run.method, e)] * len(run.archs),
                   "test": {n: {"acc": accuracy(run.method, e, run.seed, min(i, len(run.archs) - 1)), "loss": 1.0 / e}
                            for i, n in enumerate(names)}} for e in range(1, EPOCHS + 1)]
        write_record(root / run.directory / "record.json", {
            "format": "rdml.run/2", "status": "ok", "config_sha256": run.config_sha256, "config": {"summary_last": [5]},
            "epochs": epochs, "summary": summarise(epochs, [5])})


def build(root: Path, study: dict):
    params = {"build": ["t"], "studies": {"t": study}}
    fabricate(root, params)
    checked = [(run, checked_record(root, "t", run)) for run in plan_study(params, "t")]
    tables = build_tables(params, "t", root, {run.id: record for run, record in checked})
    return params, plan_tables(params, "t"), tables, long_frame("t", checked)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The fabricated study's figures by name, drawn and not yet written, with its tables and frame."""
    root = tmp_path_factory.mktemp("study")
    params, specs, tables, frame = build(root, {**STUDY, "paper": "RDML Table 2"})
    drawn = {d.name: d for d in draw_figures(specs, tables, frame)}
    yield {"figures": drawn, "tables": {t.name: t for t in tables}, "params": params, "root": root}
    import matplotlib.pyplot as plt

    plt.close("all")


def legend_labels(fig) -> list[str]:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


def titled_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]


def test_titles_name_the_papers_table_and_the_layout_never_the_internal_name_alone(study, tmp_path):
    figures = study["figures"]
    assert set(figures) == {"curves_rdml_table", "best_alpha_rdml_table", "curves_kd_table", "box_kd_table",
                            "alpha_difference_kd_table", "curves_pair_table", "curves_semi_table", "fraction_semi_table",
                            "renyi", "lr"}
    for name, drawn in figures.items():
        title = drawn.figure._suptitle.get_text()
        assert not re.search(r"\b\w+_table\b", title), f"{name}: {title!r} names a layout by its key"
        if name != "renyi":
            assert title.startswith("RDML Table 2"), f"{name}: {title!r}"
    assert figures["curves_rdml_table"].figure._suptitle.get_text().startswith("RDML Table 2: Ind., DML and RDML per α")
    assert figures["renyi"].figure._suptitle.get_text().startswith("RDML Fig. 1")
    # a study without `paper:` (the default digits study) names itself and the paper table the layout follows
    _, specs, tables, frame = build(tmp_path, STUDY)
    first = next(draw_figures(specs, tables, frame))
    assert first.figure._suptitle.get_text().startswith(f"t study, {LAYOUTS[specs[0].name].title[0]}: ")


def test_every_layout_has_a_human_name():
    assert all(source and what and "_" not in source + what for source, what in (LAYOUTS[n].title for n in LAYOUTS))


def test_curves_are_in_the_tables_units_and_order(study):
    fig = study["figures"]["curves_rdml_table"].figure
    table = study["tables"]["rdml_table"]
    panels = list(dict.fromkeys(c.rsplit("/", 1)[0] for c in table.columns))
    assert [ax.get_title() for ax in titled_axes(fig)] == panels == ["synthetic/mlp", "synthetic/cnn"]
    assert legend_labels(fig) == [*table.rows, "± 1 sd over seeds"]
    acc_axes = titled_axes(fig)
    assert all(ax.get_ylabel() == "test accuracy (%)" for ax in acc_axes)
    assert {ax.get_ylabel() for ax in fig.axes if ax.get_visible()} == {"test accuracy (%)", "test loss (nats)"}
    dml = next(line for line in acc_axes[0].get_lines() if line.get_label() == "DML")
    expected = [100 * statistics.mean(accuracy("dml", e, s, k) for s in (0, 1, 2) for k in (0, 1))
                for e in range(1, EPOCHS + 1)]
    assert list(dml.get_xdata()) == list(range(1, EPOCHS + 1))
    assert np.allclose(dml.get_ydata(), expected, rtol=0, atol=1e-9)  # in %, as the table prints it

    pair = study["figures"]["curves_pair_table"].figure  # curves="columns": a panel per row, a line per column
    pair_table = study["tables"]["pair_table"]
    assert [ax.get_title() for ax in titled_axes(pair)] == pair_table.rows == ["synthetic: mlp, cnn", "synthetic: cnn, cnn"]
    assert legend_labels(pair)[:-1] == [c for c in pair_table.columns if "−" not in c]


def test_box_plots_name_their_median_and_mean_lines(study):
    fig = study["figures"]["box_kd_table"].figure
    table = study["tables"]["kd_table"]
    legend = next(iter(fig.legends))
    handles = dict(zip((t.get_text() for t in legend.get_texts()), legend.legend_handles))
    assert list(handles) == ["median over seeds", "mean over seeds", f"{table.rows[0]} (mean)"]
    (ax,) = titled_axes(fig)
    assert ax.get_title() == "Average accuracy"
    assert ax.get_ylabel() == "mean test accuracy of the last 5 epochs (%)"
    assert [t.get_text() for t in ax.get_xticklabels()] == [r.split(": ")[-1] for r in table.rows[1:]]
    for name, method_line in (("median over seeds", statistics.median), ("mean over seeds", statistics.mean)):
        look = handles[name]
        drawn = [line for line in ax.get_lines() if to_hex(line.get_color()) == to_hex(look.get_color())
                 and line.get_linestyle() == look.get_linestyle() and len(line.get_xdata()) == 2]
        assert len(drawn) == len(table.rows) - 1, name  # one per box, drawn as the legend says
        for line, row in zip(drawn, table.rows[1:]):
            values = [100 * statistics.mean(accuracy("kd", e, seed, 0) for e in range(EPOCHS - 4, EPOCHS + 1))
                      for seed in (0, 1, 2)]
            assert line.get_ydata()[0] == pytest.approx(method_line(values), abs=1e-9), (name, row)


def test_other_figures_carry_units(study):
    figures = study["figures"]
    colourbar = figures["best_alpha_rdml_table"].figure.axes[-1]
    assert colourbar.get_ylabel() == "lead over DML (points)"
    top, bottom = figures["alpha_difference_kd_table"].figure.axes
    assert top.get_ylabel() == "test accuracy (%)" and bottom.get_ylabel() == "difference to α = 1 (points)"
    assert legend_labels(figures["alpha_difference_kd_table"].figure) == ["vanilla mlp", "α=0.5", "α=1"]
    (fraction,) = figures["fraction_semi_table"].figure.axes
    assert fraction.get_xlabel() == "labelled training images (%)" and fraction.get_ylabel().endswith("(%)")
    assert legend_labels(figures["fraction_semi_table"].figure) == [*study["tables"]["semi_table"].rows, "± 1 sd over seeds"]
    assert all(ax.get_ylabel() == "D_α(P‖Q) (nats)" for ax in figures["renyi"].figure.axes)


@pytest.mark.slow  # draws every figure
def test_epoch_axes_have_whole_ticks(study):
    epoch_axes = [ax for d in study["figures"].values() for ax in d.figure.axes if ax.get_xlabel() == "epoch"]
    assert len(epoch_axes) >= 10
    for ax in epoch_axes:
        ax.figure.canvas.draw()
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert len(ticks) >= 3 and all(float(t).is_integer() for t in ticks), ticks


def hue_class(colour: str) -> str | None:
    hue, lightness, saturation = colorsys.rgb_to_hls(*to_rgb(colour))
    if saturation < 0.4 or not 0.15 < lightness < 0.85:
        return None
    degrees = 360 * hue
    return "red" if degrees < 15 or degrees > 345 else "green" if 75 <= degrees <= 150 else None


def simulated_lab(colour: str, matrix: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of an sRGB colour as a dichromat sees it (Machado et al. 2009 on linear RGB)."""
    c = np.array(to_rgb(colour))
    linear = np.clip(matrix @ np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4), 0, 1)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    f = np.cbrt(xyz / [0.95047, 1.0, 1.08883]).clip(min=0.2069)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_colours_are_okabe_ito_and_stay_apart_without_red_green_vision(study):
    assert hue_class("tab:red") == "red" and hue_class("tab:green") == "green"  # the check sees matplotlib's defaults
    for name, drawn in study["figures"].items():
        if name.startswith("best_alpha"):  # a heat map, no lines: a perceptually uniform, colour-blind-safe map
            assert [image.get_cmap().name for image in drawn.figure.axes[0].get_images()] == ["viridis"]
            continue
        lines = [line for ax in drawn.figure.axes for line in ax.get_lines() if line.get_visible()]
        lines += [h for legend in drawn.figure.legends for h in legend.legend_handles if isinstance(h, Line2D)]
        colours = {to_hex(line.get_color()) for line in lines}
        assert colours and colours <= OKABE_ITO, f"{name}: {colours - OKABE_ITO}"
        classes = {hue_class(c) for c in colours}
        assert not {"red", "green"} <= classes, f"{name}: red and green together"
        for matrix in COLOUR_BLIND.values():
            for a, b in itertools.combinations(sorted(colours), 2):
                assert np.linalg.norm(simulated_lab(a, matrix) - simulated_lab(b, matrix)) > 15, (name, a, b)


def test_one_learning_rate_line_per_distinct_schedule(study):
    """The teacher's schedule is DML's (both cosine here): drawn once, labelled with both methods."""
    drawn = study["figures"]["lr"]
    (ax,) = drawn.figure.axes
    schedules: dict[tuple, dict[str, set]] = {}  # lr sequence → method → its configurations
    for run in plan_study(study["params"], "t"):
        sequence = tuple(learning_rate(run.method, e) for e in range(1, EPOCHS + 1))
        schedules.setdefault(sequence, {}).setdefault(run.method, set()).add(re.sub(r"-s\d+$", "", run.id))
    lines = ax.get_lines()
    assert len(lines) == len(schedules) == 3  # independent; kd; dml with the teacher
    for line in lines:
        match = [s for s in schedules if np.allclose(line.get_ydata(), s, rtol=0, atol=1e-15)]
        assert len(match) == 1 and list(line.get_xdata()) == list(range(1, EPOCHS + 1))
        methods = schedules[match[0]]
        count = sum(map(len, methods.values()))
        assert f"{count} configurations (synthetic: " in line.get_label(), line.get_label()
        assert all(method in line.get_label() for method in methods), (line.get_label(), methods)
    assert legend_labels(drawn.figure) == [line.get_label() for line in lines]
    assert len(set(legend_labels(drawn.figure))) == len(lines)
    total = sum(len(c) for methods in schedules.values() for c in methods.values())
    assert drawn.data.configuration.nunique() == total  # every configuration's rows stay in the data file


def test_each_figure_is_a_pdf_beside_a_png_at_200_dpi(study, tmp_path):
    from PIL import Image

    for drawn in [study["figures"]["curves_rdml_table"], study["figures"]["box_kd_table"], study["figures"]["lr"]]:
        width, height = drawn.figure.get_size_inches()
        written = save_figure(drawn, tmp_path)
        assert [p.name for p in written] == [f"fig_{drawn.name}.{s}" for s in ("png", "pdf", "csv")]
        with Image.open(written[0]) as png:
            assert png.size == (round(width * 200), round(height * 200))
            assert all(round(d) >= 200 for d in png.info["dpi"])
        pdf = written[1].read_bytes()
        assert pdf.startswith(b"%PDF") and b"/Subtype /Image" not in pdf  # vector: no raster inside
        assert b"CreationDate" not in pdf  # the same records give the same bytes
    assert not list(tmp_path.glob("*.tmp*"))
