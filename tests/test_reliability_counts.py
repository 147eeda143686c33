"""The reliability figures of docs/reliability.md are the suite's own: each test case marked `bad_input`,
`fault` or `tamper` (pyproject.toml) counts once, so the page cannot fall behind the tests."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARKERS = ("bad_input", "fault", "tamper")
STATED = {  # how the page's first paragraph states each count
    "bad_input": r"(\d+) bad inputs refused before any work",
    "fault": r"(\d+) faults survived with nothing lost",
    "tamper": r"(\d+) tamperings or damaged files detected",
}

# Loaded with -p into one collecting pytest: the whole suite is collected once, not once per marker.
PLUGIN = textwrap.dedent('''
    import json, os

    def pytest_collection_finish(session):
        counts = {name: sum(1 for item in session.items if item.get_closest_marker(name))
                  for name in json.loads(os.environ["RDML_COUNT_MARKERS"])}
        with open(os.environ["RDML_COUNTS"], "w") as out:
            json.dump(counts, out)
''')


def collected_counts(tmp_path: Path) -> dict:
    """The collected test cases per marker (a parametrized test once per case), from `pytest --collect-only`."""
    (tmp_path / "rdml_marker_counts.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
           "RDML_COUNT_MARKERS": json.dumps(MARKERS), "RDML_COUNTS": str(tmp_path / "counts.json")}
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "rdml_marker_counts",
                           "-p", "no:cacheprovider", "tests"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((tmp_path / "counts.json").read_text())


def stated_counts(page: str) -> dict:
    """The three numbers of the page's first paragraph (the first one after the title and the links line)."""
    paragraph = next(p for p in re.split(r"\n\s*\n", page) if p.strip() and not p.lstrip().startswith(("#", "[")))
    stated = {}
    for name, pattern in STATED.items():
        found = re.findall(pattern, " ".join(paragraph.split()))
        assert len(found) == 1, f"the first paragraph of docs/reliability.md states {pattern!r} {len(found)} times"
        stated[name] = int(found[0])
    return stated


def test_stated_counts_are_read_from_the_first_paragraph():
    page = ("# R\n\n[a](b) · [c](d)\n\nWhat: 3 bad inputs refused\nbefore any work (x), 2 faults survived with nothing "
            "lost (y), and 1 tamperings or damaged\nfiles detected (z).\n\n- 9 faults survived with nothing lost\n")
    assert stated_counts(page) == {"bad_input": 3, "fault": 2, "tamper": 1}
    with pytest.raises(AssertionError, match="tamperings"):
        stated_counts(page.replace("1 tamperings", "one tamperings"))


def session_counts(session) -> dict | None:
    """The marked cases of this pytest session when it collected the whole suite unfiltered (what `make test` runs):
    the same count `collected_counts` takes in a subprocess, without collecting everything a second time."""
    options = session.config.option
    files = {Path(str(item.fspath)).name for item in session.items}
    if options.markexpr or options.keyword or files != {p.name for p in (REPO / "tests").glob("test_*.py")}:
        return None
    return {name: sum(1 for item in session.items if item.get_closest_marker(name)) for name in MARKERS}


@pytest.mark.slow  # alone, collects the whole suite in a subprocess, ~10 s
def test_the_reliability_figures_are_the_marked_test_cases(tmp_path, request):
    counted = session_counts(request.session) or collected_counts(tmp_path)
    assert all(counted[name] > 0 for name in MARKERS), counted
    stated = stated_counts((REPO / "docs/reliability.md").read_text())
    assert stated == counted, f"docs/reliability.md states {stated}; the suite's marked cases are {counted}"
