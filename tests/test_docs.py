"""The documentation's references hold: every ``docs/method.md §N`` cited in the project names a section of
docs/method.md, no file cites the old ``method.md`` or ``../shared`` that a clone does not have, and every
module has its page in the API."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    *ROOT.glob("pdviz/*.py"),
    *ROOT.glob("tests/*.py"),
    *ROOT.glob("notebooks/*.ipynb"),
    *(p for p in ROOT.glob("benchmarks/*.*") if p.suffix in (".py", ".md", ".json", ".sh")),
    *ROOT.glob("docs/*.md"),
    ROOT / "README.md",
]


def test_method_sections_cited_exist():
    sections = set(re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "method.md").read_text(), re.M))
    cited = {}
    for path in SOURCES:
        for first, last in re.findall(r"docs/method\.md`{0,2} §(\d+)(?:-§(\d+))?", path.read_text()):
            cited.setdefault(path.name, set()).update({first, last} - {""})
    assert cited, "the project cites docs/method.md"
    missing = {name: sorted(s - sections) for name, s in cited.items() if s - sections}
    assert not missing, f"citations of sections docs/method.md does not have: {missing}"


def test_no_citation_outside_the_repository():
    this = Path(__file__).resolve()
    stale = [
        p.name
        for p in SOURCES
        if p != this and re.search(r"\.\./shared|(?<![/\w\[(])method\.md", p.read_text())
    ]
    assert not stale, f"files citing ../shared or a method.md other than docs/method.md: {stale}"


def test_api_page_lists_every_module():
    api = (ROOT / "docs" / "api.md").read_text()
    modules = {p.stem for p in ROOT.glob("pdviz/*.py") if not p.stem.startswith("__")}
    missing = sorted(m for m in modules if f"automodule:: pdviz.{m}\n" not in api)
    assert not missing, f"modules without a page in docs/api.md: {missing}"
