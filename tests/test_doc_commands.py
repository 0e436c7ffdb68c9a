"""Every command in README.md and docs/*.md runs, read from the documents themselves, under RNNLAB_BUDGET=tiny.

The cases are the documents' distinct commands (tests/doc_commands.py: what counts as a command, the
markers that skip one); tests/doc_runner.py runs them, a scratch root per document, documents two at a time;
a documented error line, last line or summary line is compared with what the command printed.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from doc_commands import ROOT, Case, cases, extract
from doc_runner import COSTS_SHOWN, DOC_COST, costliest_commands, run_documents

pytestmark = [pytest.mark.docs, pytest.mark.slow, pytest.mark.timeout(3600)]
CASES = cases()


@pytest.fixture(scope="module")
def mnist1d_cache(tmp_path_factory) -> Path:
    """MNIST-1D generated once, copied into each document's root (each would generate it: seconds each)."""
    from rnnlab.data import mnist1d_arrays

    path = tmp_path_factory.mktemp("data")
    mnist1d_arrays(path)
    return path


@pytest.fixture(scope="module")
def results(request, tmp_path_factory, mnist1d_cache):
    """Every selected case's result; only the documents that hold a selected case are run."""
    selected = {
        item.callspec.params["case"].id
        for item in request.session.items
        if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), Case)
    }
    groups: dict[str, list[Case]] = defaultdict(list)
    for case in CASES:
        if case.skip is None and case.id in selected:
            groups[case.doc].append(case)
    return run_documents(groups, tmp_path_factory.mktemp("docs"), mnist1d_cache)


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, marks=pytest.mark.skip(reason=case.skip) if case.skip else (), id=case.id) for case in CASES],
)
def test_documented_command(case: Case, results, record_property) -> None:
    result = results[case.id]
    record_property(DOC_COST, (round(result.cpu, 1), round(result.seconds, 1), case.locations[0], case.text))
    failure = result.failure(case)
    ran = "\n  ".join(result.ran)
    assert failure is None, f"{case.text}  ({', '.join(case.locations)})\nran:\n  {ran}\n{failure}"


def test_commands_are_found() -> None:
    """The extraction sees the documents' commands: the README's headline command and a console example."""
    texts = {case.text: case for case in CASES}
    assert "python src/train.py experiment=mnist1d_best_lstm seed=0" in texts
    assert texts["python src/train.py model.readout=attention"].expected[0].startswith("error:")
    assert len(CASES) > 100


BROKEN = """
Appended by the test:

```
python src/train.py model=nope                 # a command that fails
$ python src/train.py model.readout=attention
error: model.readout='attention' is not allowed; allowed: flatten, last
```
"""


def test_a_broken_or_changed_command_is_caught(tmp_path) -> None:
    """A failing command appended to a copy of a document fails, and so does a documented error line that no
    longer matches what the command prints (the runner and the comparison can fail)."""
    doc = tmp_path / "usage.md"
    doc.write_text((ROOT / "docs" / "usage.md").read_text(encoding="utf-8") + BROKEN, encoding="utf-8")
    commands, _ = extract(doc)
    broken, changed = commands[-2:]
    assert broken.text == "python src/train.py model=nope" and changed.expected
    appended = [Case(doc.name, c.text, [c.where], c.expected) for c in (broken, changed)]
    results = run_documents({doc.name: appended}, tmp_path / "scratch", None, workers=1)
    assert "exit 1" in results[appended[0].id].failure(appended[0])
    assert results[appended[0].id].cpu > 0  # what the command cost, for the suite's summary (tests/conftest.py)
    assert "documented:" in results[appended[1].id].failure(appended[1])
    right = Case(doc.name, changed.text, ["x"], [changed.expected[0] + ", mean"])
    assert results[appended[1].id].failure(right) is None


def test_the_summary_lists_the_costliest_document_commands_first() -> None:
    """The end-of-run list (tests/conftest.py) reads the cost each case's test records, costliest first."""
    from types import SimpleNamespace

    def report(cpu: float, where: str, when: str = "call") -> SimpleNamespace:
        return SimpleNamespace(when=when, user_properties=[(DOC_COST, [cpu, cpu / 2, where, f"make {where}"])])

    reports = [report(float(n), f"a.md:{n}") for n in range(COSTS_SHOWN + 5)] + [report(99.0, "b.md:1", "setup")]
    lines = costliest_commands(reports)
    assert lines[0] == "costliest document commands (190 s of CPU time in all)"
    assert len(lines) == 1 + COSTS_SHOWN and "a.md:19  make a.md:19" in lines[1] and "a.md:5 " in lines[-1]
    assert costliest_commands([SimpleNamespace(when="call", user_properties=[])]) == []
