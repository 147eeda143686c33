"""A table as Markdown, LaTeX, CSV and HTML: one grid of cell texts (bold best, lead marks, derived
differences, the option a Choice kept), written four ways. LaTeX and HTML go through pandas' Styler
(`DataFrame.style`), so both come from one DataFrame of the grid; every plain text bound for LaTeX
goes through `latex_text`, which maps what it cannot map to an error, never to a paper that does not compile."""

from __future__ import annotations

import csv as csv_module
import io
import re
import unicodedata

import pandas as pd

from rdml.report.render import html_table
from rdml.report.stats import LEVEL, Paired
from rdml.report.table import Table

__all__ = ["grid", "frame", "lead_mark", "markdown", "latex", "latex_text", "latex_markup", "csv", "html", "FORMATS"]

# LaTeX's special characters in text (The LaTeX Companion, 2nd ed., §7.1; the `\text...` names are the
# LaTeX kernel's, no package needed); < > | print as ¡ ¿ — in the default OT1 font encoding, so they too.
LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    "\n": " ", "\r": " ", "\t": " ",  # a blank line would end \caption's paragraph: an error
}
# Non-ASCII characters a table can hold: ("math", body) is set in math mode, ("sup", body) as a
# superscript (neighbours join: ⁿˢ → $^{ns}$, α² → $\alpha^{2}$), ("text", latex) as it stands.
_GREEK = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho "
          "sigma tau upsilon phi chi psi omega").split()  # U+03B1–U+03C1, then U+03C3–U+03C9 (ς between)
_GREEK_MATH = {"epsilon": r"\varepsilon", "omicron": "o", "phi": r"\varphi"}  # the shapes of ε ο φ
LATEX_CHARACTERS: dict[str, tuple[str, str]] = {
    **{chr(0x3B1 + i): ("math", _GREEK_MATH.get(n, "\\" + n)) for i, n in enumerate(_GREEK[:17])},  # α…ρ
    "ς": ("math", r"\varsigma"),
    **{chr(0x3C3 + i): ("math", _GREEK_MATH.get(n, "\\" + n)) for i, n in enumerate(_GREEK[17:])},  # σ…ω
    "ϵ": ("math", r"\epsilon"), "ϑ": ("math", r"\vartheta"), "ϕ": ("math", r"\phi"), "µ": ("math", r"\mu"),
    "Γ": ("math", r"\Gamma"), "Δ": ("math", r"\Delta"), "Θ": ("math", r"\Theta"), "Λ": ("math", r"\Lambda"),
    "Ξ": ("math", r"\Xi"), "Π": ("math", r"\Pi"), "Σ": ("math", r"\Sigma"), "Υ": ("math", r"\Upsilon"),
    "Φ": ("math", r"\Phi"), "Ψ": ("math", r"\Psi"), "Ω": ("math", r"\Omega"),
    "−": ("math", "-"), "±": ("math", r"\pm"), "∓": ("math", r"\mp"), "×": ("math", r"\times"),
    "÷": ("math", r"\div"), "·": ("math", r"\cdot"), "≠": ("math", r"\neq"), "≤": ("math", r"\leq"),
    "≥": ("math", r"\geq"), "≈": ("math", r"\approx"), "∼": ("math", r"\sim"), "≡": ("math", r"\equiv"),
    "∝": ("math", r"\propto"), "→": ("math", r"\rightarrow"), "←": ("math", r"\leftarrow"),
    "↑": ("math", r"\uparrow"), "↓": ("math", r"\downarrow"), "⇒": ("math", r"\Rightarrow"),
    "∈": ("math", r"\in"), "∞": ("math", r"\infty"), "√": ("math", r"\surd"), "∑": ("math", r"\sum"),
    "‖": ("math", r"\|"), "½": ("math", r"\frac{1}{2}"), "¼": ("math", r"\frac{1}{4}"),
    "¾": ("math", r"\frac{3}{4}"),
    "¹": ("sup", "1"), "²": ("sup", "2"), "³": ("sup", "3"), "ⁿ": ("sup", "n"), "ˢ": ("sup", "s"),
    "′": ("sup", r"\prime"), "″": ("sup", r"\prime\prime"), "°": ("sup", r"\circ"),
    "–": ("text", "--"), "—": ("text", "---"), "…": ("text", r"\ldots{}"), "“": ("text", "``"),
    "”": ("text", "''"), "‘": ("text", "`"), "’": ("text", "'"),
    "§": ("text", r"\S{}"), "¶": ("text", r"\P{}"),
    "ß": ("text", r"\ss{}"), "æ": ("text", r"\ae{}"), "Æ": ("text", r"\AE{}"), "ø": ("text", r"\o{}"),
    "Ø": ("text", r"\O{}"), "å": ("text", r"\aa{}"), "Å": ("text", r"\AA{}"), "ł": ("text", r"\l{}"),
    "Ł": ("text", r"\L{}"), "ı": ("text", r"\i{}"),
    "\u00a0": ("text", "~"), "\u2009": ("text", r"\,"), "\u202f": ("text", r"\,"),
}
# Accented Latin letters by their canonical decomposition (é = e + U+0301): the LaTeX kernel's text
# accents that the default OT1 encoding has (not the ogonek, T1 only).
_ACCENTS = {"\u0300": "`", "\u0301": "'", "\u0302": "^", "\u0303": "~", "\u0304": "=", "\u0306": "u",
            "\u0307": ".", "\u0308": '"', "\u030a": "r", "\u030b": "H", "\u030c": "v", "\u0327": "c"}


def _latex_piece(char: str, text: str) -> tuple[str, str]:
    """One non-ASCII character as LaTeX: its (mode, body); an accented letter through its decomposition;
    anything else is an error naming it and where it stood."""
    if char in LATEX_CHARACTERS:
        return LATEX_CHARACTERS[char]
    base, *marks = unicodedata.normalize("NFD", char)
    if marks and base.isascii() and base.isalpha() and all(m in _ACCENTS for m in marks):
        body = {"i": r"\i", "j": r"\j"}.get(base, base)  # dotless under an accent
        for mark in marks:
            body = f"\\{_ACCENTS[mark]}{{{body}}}"
        return "text", body
    if char in _ACCENTS:  # a combining mark on its own (x̄ written as x + U+0304)
        raise ValueError(f"LaTeX: the combining mark U+{ord(char):04X} ({unicodedata.name(char, '?')}) in "
                         f"{text!r} needs its letter composed; write the character whole or add it to "
                         "rdml.report.formats.LATEX_CHARACTERS")
    raise ValueError(f"LaTeX: no mapping for {char!r} (U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}) in "
                     f"{text!r}; add it to rdml.report.formats.LATEX_CHARACTERS")


def _to_latex(text: str, specials: bool) -> str:
    """`text` as pure-ASCII LaTeX: its non-ASCII characters mapped (adjacent math joined into one $…$,
    adjacent superscripts into one ^{…}); with `specials`, LaTeX's special characters escaped too."""
    pieces: list[tuple[str, str]] = []  # (mode, body), mode: text, math or sup
    for char in text:
        if char.isascii():
            piece = ("text", LATEX_SPECIALS.get(char, char) if specials else char)
        else:
            piece = _latex_piece(char, text)
        if pieces and piece[0] != "text" and pieces[-1][0] == piece[0]:
            before = pieces[-1][1]  # a space keeps \cdot and o (ο) from reading as \cdoto
            pieces[-1] = (piece[0], before + (" " if re.search(r"\\[A-Za-z]+$", before) and piece[1][:1].isalpha() else "") + piece[1])
        else:
            pieces.append(piece)
    out, math = [], []
    for mode, body in pieces:
        if mode == "text":
            if math:
                out.append("$" + "".join(math) + "$")
                math = []
            out.append(body)
        else:
            math.append(body if mode == "math" else f"^{{{body}}}")
    if math:
        out.append("$" + "".join(math) + "$")
    return "".join(out)


def latex_text(text: str) -> str:
    """Plain text (a label, a caption, a column's name, a kept option) as LaTeX that compiles with no
    package: the specials \\ & % $ # _ { } ~ ^ < > | escaped, each non-ASCII character mapped (Greek and
    relations in math mode, ˢ ⁿˢ as $^{s}$ $^{ns}$, dashes, quotes, accented letters); a character with
    no mapping is a ValueError naming it and the text."""
    return _to_latex(str(text), specials=True)


def latex_markup(text: str) -> str:
    """Text that is LaTeX already (what `Cell.text(latex=True)` writes: \\textbf{…}, $\\pm$) but may still
    hold Unicode (the — of a cell with no value): its non-ASCII characters mapped, its markup kept."""
    return _to_latex(text, specials=False)


def lead_mark(lead: Paired | None, latex: bool, sign: int = 1) -> str:
    """ˢ: the bold lead is significant (in the metric's direction, `sign`); ⁿˢ: it is not; nothing where
    it cannot be tested."""
    if lead is None or lead.p is None:
        return ""
    significant = lead.p < 1 - LEVEL and sign * lead.mean > 0
    if latex:
        return "$^{s}$" if significant else "$^{ns}$"
    return "ˢ" if significant else "ⁿˢ"


def grid(table: Table, latex: bool = False) -> list[list[str]]:
    """Each row's name and cell texts: derived differences, a Choice's kept option, mean ± sd (n) with the
    column's best in bold and its lead mark.

    The row's name (first) is plain text either way. With `latex`, every cell is LaTeX: a measured cell
    is `Cell.text(latex=True)` through `latex_markup`, a difference and a kept option (plain text) go
    through `latex_text`; so nothing in a cell is escaped twice, and nothing is left unescaped."""
    best = {col: table.best_row(col) for col in table.bold_columns}
    marks = {col: lead_mark(table.lead(col), latex, table.metric.sign) for col in table.bold_columns}
    plain = latex_text if latex else str
    markup = latex_markup if latex else str
    out = []
    for row in table.rows:
        line = [row]
        for col in table.columns:
            if (row, col) in table.derived:
                line.append(plain(f"{table.derived[(row, col)]:+.{table.digits}f}"))
            elif (row, col) in table.notes:
                line.append(plain(table.notes[(row, col)]))
            else:
                cell = table.cells.get((row, col))
                bold = best.get(col) == row
                text = cell.text(bold=bold, latex=latex, scale=table.scale, digits=table.digits) if cell else ""
                text = text.replace(" (n=", f"{marks[col]} (n=", 1) if bold and cell.mean is not None else text
                line.append(markup(text))
        out.append(line)
    return out


def frame(table: Table, latex: bool = False) -> pd.DataFrame:
    """The grid as a DataFrame: the table's rows as its index, the table's columns as its columns."""
    lines = grid(table, latex=latex)
    return pd.DataFrame([line[1:] for line in lines], index=pd.Index([line[0] for line in lines]),
                        columns=pd.Index(table.columns), dtype=object)


def markdown(table: Table) -> str:
    head = ["", *table.columns]
    lines = [f"**{table.caption}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(line) + " |" for line in grid(table)]
    return "\n".join(lines) + "\n"


def html(table: Table) -> str:
    """A standalone, styled HTML page of the table (what `snakemake --report` shows; rdml.report.render)."""
    return html_table(table.caption, ["", *table.columns], grid(table), name=table.name)


def latex(table: Table) -> str:
    """A `table` float for a paper: booktabs rules (\\usepackage{booktabs}), centred, captioned and
    labelled tab:<name>; labels and caption through `latex_text`, cells as `grid(latex=True)` writes them."""
    styler = frame(table, latex=True).style
    styler.format_index(latex_text, axis=0).format_index(latex_text, axis=1)
    return styler.to_latex(column_format="l" + "c" * len(table.columns), hrules=True, environment="table",
                           position_float="centering", caption=latex_text(table.caption), label=f"tab:{table.name}")


def csv(table: Table) -> str:
    """One line per cell: mean and sd as fractions (not × scale), n and diverged runs; a derived cell's
    difference and a Choice's kept option in the mean column."""
    buffer = io.StringIO()
    writer = csv_module.writer(buffer)
    writer.writerow(["row", "column", "mean", "std", "n", "diverged"])
    for row in table.rows:
        for col in table.columns:
            if (row, col) in table.derived:
                writer.writerow([row, col, table.derived[(row, col)] / table.scale, "", "", ""])
            elif (row, col) in table.notes:
                writer.writerow([row, col, table.notes[(row, col)], "", "", ""])
            elif (cell := table.cells.get((row, col))) and cell.runs:
                writer.writerow([row, col, cell.mean, cell.std, len(cell.values), cell.diverged])
    return buffer.getvalue()


FORMATS = {"md": markdown, "tex": latex, "csv": csv, "html": html}  # file suffix → writer, in the order written
