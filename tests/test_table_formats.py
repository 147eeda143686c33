"""A table's LaTeX and HTML (rdml.report.formats, rdml.report.render): LaTeX that compiles whatever its labels
hold (compiled with pdflatex where installed, else checked for the faults that stop a compile), the escaping
against a hand-written table, and the HTML page parsed back."""

import re
import shutil
import statistics
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from scipy import stats

from rdml.methods import METHODS
from rdml.metrics import METRICS
from rdml.report.cells import Cell
from rdml.report.formats import grid, html, latex, latex_markup, latex_text
from rdml.report.table import Table, describe
from rdml.study.params import load_params, metric_of
from rdml.study.plan import plan_tables

ROOT = Path(__file__).resolve().parents[1]

BEST, OTHER = "RDML α=2 (σ≠β)", "Δ_1 & #2"
ROWS = [BEST, OTHER, "KD ± 50%"]
COLUMNS = ["β ≠ 0 & acc_1 %", "Δ #σ"]
CAPTION = "Accuracy σ of Δ and β ≠ α: mean ± sd, 95% of runs_ok & #seeds."
BEST_VALUES, OTHER_VALUES = [0.90, 0.95, 0.92], [0.50, 0.52, 0.51]


def symbol_table() -> Table:
    """Two measured rows over three seeds (the first best), a difference, a kept option, a cell of a
    diverged run only; every label holding LaTeX's specials and Greek."""
    best, other, diverged = Cell(), Cell(), Cell()
    for seed, (a, b) in enumerate(zip(BEST_VALUES, OTHER_VALUES)):
        best.add_value(f"runs/best-s{seed}", seed, "student_0", a, "ok")
        other.add_value(f"runs/other-s{seed}", seed, "student_0", b, "ok")
    diverged.add_value("runs/diverged-s0", 0, "student_0", None, "diverged")
    cells = {(BEST, COLUMNS[0]): best, (OTHER, COLUMNS[0]): other, (OTHER, COLUMNS[1]): diverged}
    return Table("symbol_table", CAPTION, ROWS, COLUMNS, cells, bold_columns=[COLUMNS[0]],
                 derived={(ROWS[2], COLUMNS[0]): 41.0}, notes={(BEST, COLUMNS[1]): "lr_0.1 & β"})


def unescaped(text: str) -> list[str]:
    """The characters of LaTeX text that are not escaped by a backslash (a backslash takes the next one)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        out.append(text[i])
        i += 1
    return out


def test_latex_with_symbols_in_every_label_is_well_formed_and_compiles(tmp_path):
    table = symbol_table()
    tex = latex(table)
    assert tex.isascii(), [c for c in tex if not c.isascii()]
    depth = 0
    for char in unescaped(tex):
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0, tex
    assert depth == 0, tex
    lines = tex.splitlines()
    assert lines[:2] == [r"\begin{table}", r"\centering"] and lines[-1] == r"\end{table}"
    spec = re.fullmatch(r"\\begin\{tabular\}\{([a-z]+)\}", lines[lines.index(r"\toprule") - 1]).group(1)
    assert len(spec) == len(COLUMNS) + 1
    head = lines[lines.index(r"\toprule") + 1]
    body = lines[lines.index(r"\midrule") + 1: lines.index(r"\bottomrule")]
    assert len(body) == len(ROWS)
    for line in [head, *body]:
        assert line.endswith(r" \\") and unescaped(line).count("&") == len(COLUMNS), line
        assert unescaped(line).count("$") % 2 == 0, line
    # the labels as written by hand, the cells as Cell.text(latex=True) writes them, never escaped twice
    assert r"\caption{Accuracy $\sigma$ of $\Delta$ and $\beta$ $\neq$ $\alpha$: mean $\pm$ sd, 95\% of runs\_ok \& \#seeds.}" in lines
    assert head == r" & $\beta$ $\neq$ 0 \& acc\_1 \% & $\Delta$ \#$\sigma$ \\"
    mean, sd = 100 * statistics.fmean(BEST_VALUES), 100 * statistics.stdev(BEST_VALUES)
    significant = stats.ttest_rel(BEST_VALUES, OTHER_VALUES).pvalue < 0.05
    assert body[0] == (rf"RDML $\alpha$=2 ($\sigma\neq\beta$) & \textbf{{{mean:.2f} $\pm$ {sd:.2f}}}"
                       rf"$^{{{'s' if significant else 'ns'}}}$ (n=3) & lr\_0.1 \& $\beta$ \\")
    assert body[1].startswith(r"$\Delta$\_1 \& \#2 & ") and body[1].endswith(r" & --- (n=0, 1 diverged) \\")
    assert body[2] == r"KD $\pm$ 50\% & +41.00 &  \\"
    if shutil.which("pdflatex"):
        document = tmp_path / "table.tex"
        document.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                            f"{tex}\\end{{document}}\n")
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.parametrize("text, expected", [
    ("plain ASCII 1.5", "plain ASCII 1.5"),
    (r"a\b", r"a\textbackslash{}b"),
    ("& % $ # _ { } ~ ^", r"\& \% \$ \# \_ \{ \} \textasciitilde{} \textasciicircum{}"),
    ("a<b>c|d", r"a\textless{}b\textgreater{}c\textbar{}d"),
    ("RDML α=2", r"RDML $\alpha$=2"),
    ("αβγδ", r"$\alpha\beta\gamma\delta$"),
    ("Δσ τ ω Σ θ", r"$\Delta\sigma$ $\tau$ $\omega$ $\Sigma$ $\theta$"),
    ("x ≠ y ≤ z ≥ w ≈ v", r"x $\neq$ y $\leq$ z $\geq$ w $\approx$ v"),
    ("−0.5 ± 0.1 × 2", r"$-$0.5 $\pm$ 0.1 $\times$ 2"),
    ("a → b · c", r"a $\rightarrow$ b $\cdot$ c"),
    ("x² y³ ½", r"x$^{2}$ y$^{3}$ $\frac{1}{2}$"),
    ("f′", r"f$^{\prime}$"),
    ("92.5ˢ 91.0ⁿˢ", r"92.5$^{s}$ 91.0$^{ns}$"),
    ("α²", r"$\alpha^{2}$"),
    ("·ο", r"$\cdot o$"),
    ("2–3 — so…", r"2--3 --- so\ldots{}"),
    ("“quoted” ‘too’", "``quoted'' `too'"),
    ("Rényi, Müller, naïve, ç", r"R\'{e}nyi, M\"{u}ller, na\"{\i}ve, \c{c}"),
    ("§2 ‖x‖", r"\S{}2 $\|$x$\|$"),
    ("line\nbreak", "line break"),
])
def test_latex_text_against_a_hand_written_table(text, expected):
    assert latex_text(text) == expected


def test_latex_markup_maps_unicode_and_keeps_markup():
    assert latex_markup(r"\textbf{92.50 $\pm$ 3.54}$^{s}$ (n=2)") == r"\textbf{92.50 $\pm$ 3.54}$^{s}$ (n=2)"
    assert latex_markup("— (n=0, 1 diverged)") == "--- (n=0, 1 diverged)"


@pytest.mark.parametrize("text, char", [("ok ☃ here", "U+2603"), ("RDML 汉", "U+6C49"), ("x\u0304", "U+0304")])
def test_latex_text_refuses_a_character_it_cannot_map_naming_it_and_the_text(text, char):
    with pytest.raises(ValueError, match=re.escape(char)) as refused:
        latex_text(text)
    assert repr(text) in str(refused.value) and "LATEX_CHARACTERS" in str(refused.value)


def test_latex_of_a_table_refuses_a_label_it_cannot_map():
    table = symbol_table()
    table.rows = [*table.rows, "new ☃ row"]
    with pytest.raises(ValueError, match="'new ☃ row'"):
        latex(table)


def test_every_label_and_caption_the_studies_plan_maps_to_latex():
    """Every study of params.yaml: its tables' captions (as build_table writes them: the statistic, the methods'
    notes, the legend), rows, columns and kept options map, so no paper table fails to compile on a label."""
    params = load_params(ROOT / "params.yaml")
    texts = []
    for study in params["studies"]:
        statistic = metric_of(params, study)
        for spec in plan_tables(params, study):
            notes = [note for entry in spec.entries for note in METHODS[entry.run.config.method].caption_notes(entry.run.config)]
            legend = Table(spec.name, "", spec.rows, spec.columns, {}, spec.bold_columns, metric=METRICS[spec.metric]).legend
            texts += [spec.caption.replace("{what}", describe(statistic, spec.metric)), *notes, legend, *spec.rows,
                      *spec.columns, *(e.choice.option for e in spec.entries if e.choice)]
    assert texts
    for text in texts:
        assert latex_text(text).isascii()


class Page(HTMLParser):
    """The parts of a table page the checks read: caption, header cells, body rows (each cell's tag, class
    and text), bold texts, style sheets, and every attribute that could load something."""

    def __init__(self):
        super().__init__()
        self.stack, self.caption, self.head, self.rows, self.bold, self.styles, self.links = [], "", [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [v for k, v in attrs.items() if k in ("href", "src") and v]
        self.links += ["<link>"] * (tag in ("link", "script", "img", "iframe"))
        self.stack.append(tag)
        if tag == "tr" and "tbody" in self.stack:
            self.rows.append([])
        if tag in ("th", "td") and "tbody" in self.stack:
            self.rows[-1].append({"tag": tag, "class": (attrs.get("class") or "").split(), "text": ""})
        if tag == "th" and "thead" in self.stack:
            self.head.append("")
        if tag == "b":
            self.bold.append("")
        if tag == "style":
            self.styles.append("")

    def handle_endtag(self, tag):
        self.stack.pop()

    def handle_data(self, data):
        if "caption" in self.stack:
            self.caption += data
        if "style" in self.stack:
            self.styles[-1] += data
        if "thead" in self.stack and "th" in self.stack:
            self.head[-1] += data
        if "tbody" in self.stack and ("td" in self.stack or "th" in self.stack):
            self.rows[-1][-1]["text"] += data
        if "b" in self.stack:
            self.bold[-1] += data


def test_html_is_a_styled_standalone_page_with_caption_header_and_bold_best():
    table = symbol_table()
    page = Page()
    page.feed(html(table))
    page.close()
    assert page.caption == CAPTION
    assert page.head == ["", *COLUMNS]
    assert [len(r) for r in page.rows] == [len(COLUMNS) + 1] * len(ROWS)
    assert [r[0]["tag"] for r in page.rows] == ["th"] * len(ROWS)
    assert [r[0]["text"] for r in page.rows] == ROWS
    mean, sd = 100 * statistics.fmean(BEST_VALUES), 100 * statistics.stdev(BEST_VALUES)
    mark = "ˢ" if stats.ttest_rel(BEST_VALUES, OTHER_VALUES).pvalue < 0.05 else "ⁿˢ"
    best = page.rows[0][1]
    assert best["text"] == f"{mean:.2f} ± {sd:.2f}{mark} (n=3)" and {"best", "num"} <= set(best["class"])
    assert page.bold == [f"{mean:.2f} ± {sd:.2f}"]
    assert all("best" not in cell["class"] for row in page.rows for cell in row if cell is not best)
    assert page.rows[1][2]["text"] == "— (n=0, 1 diverged)" and page.rows[2][1]["text"] == "+41.00"
    assert page.rows[0][2]["text"] == "lr_0.1 & β" and "num" not in page.rows[0][2]["class"]
    # one embedded style sheet: zebra rows, numbers right-aligned, the count muted; nothing fetched from elsewhere
    (sheet,) = page.styles
    assert "nth-child(even)" in sheet and re.search(r"td\.num \{[^}]*text-align: right", sheet) and ".n {" in sheet
    assert page.links == [] and not re.search(r"https?:|url\(|@import", html(table))
    assert html(table) == html(symbol_table())  # the same page each time (DVC and the report compare the bytes)


def test_grid_with_latex_escapes_plain_cells_once():
    table = symbol_table()
    lines = grid(table, latex=True)
    assert [line[0] for line in lines] == ROWS  # row names stay plain: latex() escapes them as labels
    assert lines[0][2] == r"lr\_0.1 \& $\beta$" and lines[1][2] == "--- (n=0, 1 diverged)"
    assert lines[0][1].startswith(r"\textbf{") and r"\textbackslash" not in lines[0][1]
