"""The reproduction scorecard, `results/scorecard.md` and `.html`: per paper and per built study, where
the papers' printed numbers fall against our 95 % interval (each table's `<table>.paper.csv`, written by
rdml.report.paper), the verdicts on the comparisons the papers draw (`claims.csv`, rdml.report.claims)
and the compute measured (`compute.csv`, rdml.report.compute), each line linking to its table files.

One source of truth: the scorecard reads what `rdml tables` last wrote for each study
(results/<study>/tables/), never recomputes it, so it counts exactly what the study's own files say and
covers every study built so far, whichever they are. `rdml tables` rewrites it after each study's tables
are in place (rdml.report.write), and `python -m rdml.report.scorecard` rewrites it alone."""

from __future__ import annotations

import csv
import fcntl
import html
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rdml import paths
from rdml.io import _UMASK
from rdml.keys import ConfigError
from rdml.study.reported import load_reported

__all__ = ["SCORECARD", "StudyCard", "read_study", "built_studies", "scorecard_texts", "write_scorecard",
           "paper_outcome", "NO_PAPER"]

SCORECARD = f"{paths.RESULTS}/scorecard"  # + .md and .html, beside the studies' folders
NO_PAPER = "no paper numbers"
UNMATCHED = "not in reported/ now (rebuild the study's tables)"

# A paper cell's check (rdml.report.paper.paper_check) → the scorecard's column. A bound and a paper's
# interval read "undecided" alike; the printed value (rdml.study.reported.Reported.printed) tells them apart.
CHECKS = {
    "inside": "inside", "**outside**": "outside",
    "meets bound": "bound met", "below bound": "bound missed", "above bound": "bound missed",
    "inside interval": "interval inside", "below interval": "interval below", "above interval": "interval above",
    "figure only": "not judged", "no interval (n < 2)": "not judged",
}
OUTCOMES = ["inside", "outside", "bound met", "bound missed", "bound undecided", "interval inside", "interval below",
            "interval above", "interval undecided", "not judged"]
VERDICTS = ["supported", "not significant", "contradicted", "too few seeds"]


def paper_outcome(check: str, printed: str) -> str:
    """The scorecard's column of one paper cell: its check, with "undecided" told apart by the printed
    value (a bound prints "> 89" or "< 89", an interval "87–89"). An unknown check is a ConfigError."""
    if check == "undecided":
        if printed.startswith((">", "<")):
            return "bound undecided"
        if "–" in printed:
            return "interval undecided"
    if check in CHECKS and check != "undecided":
        return CHECKS[check]
    raise ConfigError(f"a paper comparison says check={check!r} (paper value {printed!r}); the scorecard knows "
                      f"{', '.join(sorted(CHECKS))} and undecided (for a bound or an interval): rewrite the tables")


@dataclass
class StudyCard:
    """One built study as its written files say: per paper the outcomes of its printed cells, and the
    tables they are in; its claims' verdicts; its measured GPU- and CPU-hours (None: no compute file)."""
    study: str
    papers: dict[str, Counter] = field(default_factory=dict)
    paper_tables: dict[str, list[str]] = field(default_factory=dict)
    verdicts: Counter = field(default_factory=Counter)
    has_claims: bool = False
    hours: dict[str, float] | None = None


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_study(folder: Path, study: str, reported: list) -> StudyCard:
    """The scorecard line(s) of one study from its tables folder; `reported`: rdml.study.reported cells,
    which name the paper of each printed cell (matched on table, row, column, printed value and source)."""
    card = StudyCard(study)
    papers = {(r.table, r.row, r.column, r.printed, r.source): r.paper for r in reported if r.study == study}
    for path in sorted(folder.glob("*.paper.csv")):
        table = path.name.removesuffix(".paper.csv")
        for row in _rows(path):
            paper = papers.get((table, row["row"], row["column"], row["paper"], row["source"]), UNMATCHED)
            card.papers.setdefault(paper, Counter())[paper_outcome(row["check"], row["paper"])] += 1
            if table not in card.paper_tables.setdefault(paper, []):
                card.paper_tables[paper].append(table)
    if (folder / "claims.csv").is_file():
        card.has_claims = True
        card.verdicts.update(row["verdict"] for row in _rows(folder / "claims.csv"))
    if (folder / "compute.csv").is_file():
        card.hours = {"GPU": 0.0, "CPU": 0.0}
        for row in _rows(folder / "compute.csv"):
            card.hours[row["device"]] = card.hours.get(row["device"], 0.0) + float(row["training hours"])
    return card


def built_studies(root: Path) -> list[str]:
    """Every study whose tables `rdml tables` has written: results/<study>/tables/ with its compute file."""
    results = Path(root) / paths.RESULTS
    return sorted(p.parent.parent.name for p in results.glob("*/tables/compute.csv"))


def _cards(root: Path) -> list[StudyCard]:
    reported = load_reported(root)
    cards = []
    for study in built_studies(root):
        try:
            cards.append(read_study(Path(root) / paths.tables_dir(study), study, reported))
        except FileNotFoundError:  # its tables are being replaced: their command rewrites the scorecard next
            continue
    return cards


def _compute(hours: dict[str, float] | None) -> str:
    if hours is None:
        return "not measured"
    return f"{hours.get('GPU', 0.0):.2f} GPU-h, {hours.get('CPU', 0.0):.2f} CPU-h"


def _claims(card: StudyCard) -> str:
    if not card.has_claims:
        return "no claims"
    text = " / ".join(str(card.verdicts.get(v, 0)) for v in VERDICTS[:3])
    return text + (f" ({card.verdicts['too few seeds']} too few seeds)" if card.verdicts.get("too few seeds") else "")


def _cells(counts: Counter | None) -> list[str]:
    if counts is None:
        return ["—"] * 6
    n = lambda *keys: " / ".join(str(counts.get(k, 0)) for k in keys)
    return [str(sum(counts.values())), n("inside"), n("outside"), n("bound met", "bound missed", "bound undecided"),
            n("interval inside", "interval below", "interval above", "interval undecided"), n("not judged")]


HEAD = ["paper", "study", "printed cells", "inside our 95 % CI", "outside", "bounds met / missed / undecided",
        "intervals inside / below / above / undecided", "not judged", "claims supported / not significant / contradicted",
        "compute measured", "files"]


def _lines(cards: list[StudyCard]) -> list[tuple[list[str], list[tuple[str, str]]]]:
    """Each line's cells and its links (text, path relative to results/ without the suffix), per paper
    (alphabetical), then the studies without paper numbers."""
    lines = []
    papers = sorted({p for c in cards for p in c.papers})
    for paper in papers:
        for card in (c for c in cards if paper in c.papers):
            links = [(f"{t} vs paper", f"{card.study}/tables/{t}.paper") for t in card.paper_tables[paper]]
            lines.append(([paper, card.study, *_cells(card.papers[paper]), _claims(card), _compute(card.hours)],
                          links + _study_links(card)))
    for card in (c for c in cards if not c.papers):
        lines.append(([NO_PAPER, card.study, *_cells(None), _claims(card), _compute(card.hours)], _study_links(card)))
    return lines


def _study_links(card: StudyCard) -> list[tuple[str, str]]:
    return ([("claims", f"{card.study}/tables/claims")] if card.has_claims else []) + \
        [("compute", f"{card.study}/tables/compute")]


def _totals(cards: list[StudyCard]) -> str:
    outcomes = sum((counter for c in cards for counter in c.papers.values()), Counter())
    verdicts = sum((c.verdicts for c in cards), Counter())
    gpu = sum((c.hours or {}).get("GPU", 0.0) for c in cards)
    cpu = sum((c.hours or {}).get("CPU", 0.0) for c in cards)
    judged = sum(outcomes.values()) - outcomes.get("not judged", 0)
    built = f"{len(cards)} {'study' if len(cards) == 1 else 'studies'} built"
    return (f"{built}; {sum(outcomes.values())} printed cells compared ({judged} judged): "
            f"{outcomes.get('inside', 0)} inside our 95 % interval, {outcomes.get('outside', 0)} outside; bounds "
            f"{outcomes.get('bound met', 0)} met, {outcomes.get('bound missed', 0)} missed, "
            f"{outcomes.get('bound undecided', 0)} undecided; the papers' intervals {outcomes.get('interval inside', 0)} "
            f"inside, {outcomes.get('interval below', 0) + outcomes.get('interval above', 0)} below or above, "
            f"{outcomes.get('interval undecided', 0)} undecided. Claims: {verdicts.get('supported', 0)} supported, "
            f"{verdicts.get('not significant', 0)} not significant, {verdicts.get('contradicted', 0)} contradicted. "
            f"Compute measured: {gpu:.2f} GPU-hours, {cpu:.2f} CPU-hours of training.")


INTRO = ("Per paper and per built study (results/<study>/tables/, as `rdml tables` last wrote them): where the "
         "papers' printed numbers fall against the 95 % t-interval of our mean over seeds (`<table>.paper.md`: a "
         "value inside or outside it; a bound met, missed or undecided; the paper's interval holding ours, ours "
         "below or above it, or undecided; not judged: a figure only, or fewer than 2 seeds), the verdicts on the "
         "comparisons the papers draw (`claims.md`, paired t-tests with Holm's adjustment) and the compute measured "
         "(`compute.md`, the recorded seconds of every epoch).")


def scorecard_texts(cards: list[StudyCard]) -> tuple[str, str]:
    """The scorecard as Markdown and as a standalone HTML page, the links relative to results/."""
    from rdml.report.render import HTML_STYLE  # pandas, which the pipeline's planning need not import

    lines = _lines(cards)
    if not cards:
        summary = "No study's tables are written yet: `snakemake all_tables` (or `rdml tables STUDY`) writes them."
    else:
        summary = _totals(cards)
    md_rows = ["| " + " | ".join(cells + [", ".join(f"[{text}]({path}.md)" for text, path in links)]) + " |"
               for cells, links in lines]
    markdown = "\n".join(["# Reproduction scorecard", "", INTRO, "", summary, "",
                          "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD), *md_rows]) + "\n"
    cell = lambda v: f'<td class="num">{html.escape(v)}</td>' if v[:1].isdigit() else f"<td>{html.escape(v)}</td>"
    body = "\n".join(
        "<tr>" + "".join(cell(v) for v in cells)
        + "<td>" + ", ".join(f'<a href="{html.escape(path)}.html">{html.escape(text)}</a>' for text, path in links)
        + "</td></tr>" for cells, links in lines)
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Reproduction scorecard</title>\n'
            f"<style>\n{HTML_STYLE}</style>\n</head>\n<body>\n<h1>Reproduction scorecard</h1>\n"
            f"<p>{html.escape(INTRO)}</p>\n<p>{html.escape(summary)}</p>\n<table class=\"rdml\">\n<thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in HEAD) + f"</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n"
            "</body>\n</html>\n")
    return markdown, page


def write_scorecard(root: str | Path = ".") -> list[Path]:
    """Rewrite results/scorecard.md and .html from every built study's tables; returns the two paths.

    Writers take turns (a lock file beside them), and each file is replaced whole (a temporary file
    renamed): a reader sees the old scorecard or the new one, never half of one. Each `rdml tables`
    rewrites it after its own tables are in place, so the last writer has seen every study written."""
    root = Path(root)
    targets = [root / f"{SCORECARD}.md", root / f"{SCORECARD}.html"]
    home = targets[0].parent
    for target in targets:
        if target.is_dir():
            raise ConfigError(f"{target} is a directory, where the scorecard belongs; move it away "
                              "(the scorecard was left as it was)")
    try:
        home.mkdir(parents=True, exist_ok=True)
        lock = open(home / ".scorecard.lock", "a")
    except OSError as exc:
        raise ConfigError(f"cannot write the scorecard in {home} ({exc.strerror})") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        texts = scorecard_texts(_cards(root))
        temporary = []
        try:
            for target, text in zip(targets, texts):  # both written in full before either is replaced
                fd, name = tempfile.mkstemp(dir=home, prefix=f".{target.name}.", suffix=".tmp")
                temporary.append(Path(name))
                with os.fdopen(fd, "wb") as handle:
                    handle.write(text.encode())
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(name, 0o666 & ~_UMASK)  # mkstemp makes 0600, as rdml.io
            for name, target in zip(temporary, targets):
                os.replace(name, target)
        except OSError as exc:
            raise ConfigError(f"cannot write the scorecard {targets[0]} ({exc.strerror}); the old one was "
                              "left as it was") from None
        finally:
            for name in temporary:
                name.unlink(missing_ok=True)
    return targets


def main(argv: list[str] | None = None) -> int:
    """`python -m rdml.report.scorecard [ROOT]`: rewrite the scorecard of the project at ROOT (default .)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        for path in write_scorecard(args[0] if args else "."):
            print(path)
    except ConfigError as exc:
        print(f"rdml: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
