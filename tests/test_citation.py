"""CITATION.cff: valid Citation File Format, rdml's version as the package declares it, and each cited paper's
title and authors as its text prints them (where the paper texts are beside the repository)."""

import re
import tomllib

import pytest
import yaml

import rdml
from conftest import REPO

CITATION = yaml.safe_load((REPO / "CITATION.cff").read_text())
PAPERS = REPO.parent / "shared" / "papers"


def test_the_citation_file_has_what_the_format_requires_and_the_version_rdml_declares():
    assert CITATION["cff-version"] == "1.2.0" and CITATION["type"] == "software"
    assert all(CITATION.get(key) for key in ("message", "title", "authors"))
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert CITATION["version"] == declared == rdml.__version__
    for reference in CITATION["references"]:
        assert reference["title"] and reference["authors"] and reference["type"], reference


@pytest.mark.skipif(not PAPERS.is_dir(), reason="the paper texts (../shared/papers) are not beside this clone")
def test_each_cited_paper_is_one_of_the_papers_with_its_title_and_authors_as_printed():
    texts = [re.sub(r"\s+", " ", p.read_text()) for p in sorted(PAPERS.glob("*.md"))]
    for reference in CITATION["references"]:
        text = next((t for t in texts if reference["title"] in t), None)
        assert text is not None, reference["title"]
        for author in reference["authors"]:
            assert author["family-names"] in text and author["given-names"].split()[0] in text, (reference["title"], author)
