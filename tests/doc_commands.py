"""The commands of README.md and docs/*.md, read from the documents themselves (tests/test_doc_commands.py).

A command is a line of a fenced block whose info string is empty, ``bash``, ``sh``, ``shell`` or ``console``
that starts with ``python``, ``.venv/bin/``, ``make``, ``rnnlab``, ``time``, ``pip``, ``tensorboard``, environment
assignments before one of those, or ``$ `` (a console example: the lines after it, up to the next ``$``, are
what it prints). Inline code spans in prose that start the same way (with an argument) are commands too.
A trailing ``# (GPU)``, ``# (cluster)`` or ``# (not run: <reason>)`` comment, or ``<!-- not run: <reason> -->``
on the line before a block or a paragraph, marks what this test cannot run; it is skipped with that reason.

Stdlib only: the test collects its cases from this module without importing torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND_BLOCKS = {"", "bash", "sh", "shell", "console"}
_ENV = r"(?:[A-Z_][A-Z0-9_]*=\S*\s+)*"
PREFIX = re.compile(_ENV + r"(?:python3?\s|\.venv/bin/\S+|make(?:\s|$)|rnnlab\s|time\s|pip\s|tensorboard\s)")
MARKERS = {
    "(GPU)": "needs a CUDA GPU (make gpu-check runs the GPU paths)",
    "(cluster)": "needs a cluster: SLURM, or GPU machines sharing a remote PostgreSQL",
}
NOT_RUN = re.compile(r"\(not run: ([^)]*)\)")
HTML_MARK = re.compile(r"<!--\s*(\((?:GPU|cluster|not run:[^)]*)\))\s*-->")
SUMMARY = re.compile(r"^\[rnnlab\] \S+ params=")


@dataclass
class DocCommand:
    """One command as a document gives it: where, the text, what it is documented to print, why it is skipped."""

    doc: str
    line: int
    text: str
    expected: list[str] = field(default_factory=list)
    skip: str | None = None
    inline: bool = False

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def documents(root: Path = ROOT) -> list[Path]:
    """README.md and docs/*.md, the documents whose commands are run."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def split_comment(line: str) -> tuple[str, str]:
    """``line`` without its trailing ``# comment`` (outside quotes), and the comment."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            escaped = quote == '"' and index > 0 and line[index - 1] == "\\"
            quote = None if char == quote and not escaped else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index + 1 :].strip()
    return line.rstrip(), ""


def marker(comment: str) -> str | None:
    """The skip reason a comment carries, None when it carries none."""
    for mark, reason in MARKERS.items():
        if mark in comment:
            return reason
    found = NOT_RUN.search(comment)
    return found.group(1).strip() if found else None


def split_commands(text: str) -> list[str]:
    """A line holding several commands separated by runs of spaces (``rnnlab runs show 3f2a   rnnlab runs ...``)."""
    parts = re.split(r"\s{3,}(?=" + PREFIX.pattern + ")", text)
    return [part.strip() for part in parts if part.strip()]


def is_command(text: str) -> bool:
    """Starts as a command does and has an argument (a bare ``python`` or ``tensorboard`` names a program)."""
    return bool(PREFIX.match(text + " ")) and len(text.split()) >= 2


def _block_commands(doc: str, lines: list[tuple[int, str]], skip: str | None) -> list[DocCommand]:
    commands: list[DocCommand] = []
    console: DocCommand | None = None
    index = 0
    while index < len(lines):
        number, line = lines[index]
        index += 1
        while line.rstrip().endswith("\\") and index < len(lines):  # a continued command
            line = line.rstrip()[:-1].rstrip() + " " + lines[index][1].strip()
            index += 1
        stripped = line.strip()
        if stripped.startswith("$ "):
            text, comment = split_comment(stripped[2:])
            console = DocCommand(doc, number, text, skip=skip or marker(comment))
            commands.append(console)
            continue
        if console is not None:  # a console example's output
            if stripped:
                console.expected.append(stripped)
            continue
        text, comment = split_comment(stripped)
        if not text or line[:1].isspace() or not PREFIX.match(text + " "):
            continue
        commands.extend(DocCommand(doc, number, part, skip=skip or marker(comment)) for part in split_commands(text))
    return commands


def _inline_commands(doc: str, paragraph: list[tuple[int, str]], skip: str | None) -> list[DocCommand]:
    text = "\n".join(line for _, line in paragraph)
    starts = [0]
    for _, line in paragraph:
        starts.append(starts[-1] + len(line) + 1)
    commands = []
    for found in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        span = " ".join(found.group(1).split())
        if is_command(span):
            row = max(i for i, start in enumerate(starts[:-1]) if start <= found.start())
            commands.append(DocCommand(doc, paragraph[row][0], span, skip=skip, inline=True))
    return commands


def extract(path: Path, name: str | None = None) -> tuple[list[DocCommand], list[tuple[int, str, int]]]:
    """The commands of one document in order, and its summary-line examples as (line, text, index of the
    command before it)."""
    name = name or (path.name if path.parent.name != "docs" else f"docs/{path.name}")
    commands: list[DocCommand] = []
    summaries: list[tuple[int, str, int]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    skip: str | None = None
    paragraph: list[tuple[int, str]] = []
    index = 0

    def end_paragraph() -> None:
        nonlocal skip, paragraph
        if paragraph:
            commands.extend(_inline_commands(name, paragraph, skip))
            paragraph, skip = [], None

    while index < len(lines):
        number, line = index + 1, lines[index]
        index += 1
        fence = re.match(r"^\s*```\s*(\S*)", line)
        if fence:
            end_paragraph()
            body: list[tuple[int, str]] = []
            while index < len(lines) and not re.match(r"^\s*```", lines[index]):
                body.append((index + 1, lines[index]))
                index += 1
            index += 1
            if fence.group(1) in COMMAND_BLOCKS:
                commands.extend(_block_commands(name, body, skip))
                for row, text in body:
                    if SUMMARY.match(text.strip()) and commands:
                        summaries.append((row, text.strip(), len(commands) - 1))
            skip = None
            continue
        html = HTML_MARK.search(line)
        if html:
            end_paragraph()
            skip = marker(html.group(1))
            continue
        if line.strip():
            paragraph.append((number, line))
        else:
            end_paragraph()
    end_paragraph()
    return commands, summaries


@dataclass
class Case:
    """A distinct command, run once in the scratch root of the first document that gives it."""

    doc: str
    text: str
    locations: list[str]
    expected: list[str] = field(default_factory=list)
    summary: str | None = None  # a documented summary line (``[rnnlab] <name> params=...``) it prints
    skip: str | None = None

    @property
    def id(self) -> str:
        return self.locations[0]


def _words(text: str) -> list[str]:
    """The command's words without ``...`` and ``[optional]`` parts (what a mention leaves out)."""
    text = re.sub(r"\s\[[^\]]*\]", "", text)
    return [word for word in text.split() if word != "..."]


def cases(paths: list[Path] | None = None) -> list[Case]:
    """Every distinct command of ``paths`` (default: README.md and docs/*.md) in document order.

    An inline span that is the start of a longer command (``rnnlab runs rerun`` beside ``rnnlab runs rerun
    3f2a``) is a mention of it, not a command of its own. A marker on any occurrence skips the command.
    """
    extracted = [extract(path) for path in (paths or documents())]
    everything = [command for commands, _ in extracted for command in commands]
    found: dict[str, Case] = {}
    for commands, summaries in extracted:
        for command in commands:
            words = _words(command.text)
            if command.inline and any(
                _words(other.text)[: len(words)] == words and len(_words(other.text)) > len(words)
                for other in everything
            ):
                continue
            key = re.sub(r"^time\s+", "", " ".join(words) if command.inline else command.text)  # time X = X
            case = found.setdefault(key, Case(command.doc, key, []))
            where = command.where
            while any(where in other.locations for other in found.values()):  # two commands on one line
                where += "+"
            case.locations.append(where)
            case.expected = case.expected or command.expected
            case.skip = case.skip or command.skip
        for _, text, index in summaries:
            command = commands[index]
            key = re.sub(r"^time\s+", "", " ".join(_words(command.text)) if command.inline else command.text)
            if key in found and ("src/train.py" in key or key.startswith("make train")):  # else a copy
                found[key].summary = text
    return list(found.values())


def normalised(line: str, root: str = "") -> str:
    """``line`` with the scratch root, numbers and run names made neutral (they differ from run to run)."""
    if root:  # paths under the scratch root read as relative ones (the documents give logs/...)
        line = line.replace(root.rstrip("/") + "/", "")
    line = line.replace("/tmp/docsroot/", "").replace(f"{ROOT}/", "")  # src/train.py is run by its full path
    line = re.sub(r"\b(vanilla|gru|lstm)-(builtin|custom)-h\d+\b", "NAME", line)
    return re.sub(r"\d[\d,]*(\.\d+)?(e[-+]?\d+)?", "N", line)


def same_line(documented: str, printed: str, root: str = "") -> bool:
    """Whether ``printed`` is the documented line, paths and numbers normalised; ``...`` stands for anything."""
    pattern = ".*?".join(re.escape(part) for part in normalised(documented).split("..."))
    return re.fullmatch(pattern, normalised(printed.strip(), root)) is not None


def judge(case: Case, rc: int, stdout: str, stderr: str, root: str = "") -> str | None:
    """Why the command's result contradicts its document, None when it does not."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if case.expected and case.expected[0].startswith("error:"):
        if rc != 1 or len(lines) != 1:
            return f"documented to fail with one error line; exit {rc}, stderr:\n" + "\n".join(lines[-20:])
        if not same_line(case.expected[0], lines[0], root):
            return f"documented: {case.expected[0]}\nprinted:    {lines[0]}"
        return None
    if rc != 0:
        return f"exit {rc}; the end of its output:\n" + "\n".join((stdout + "\n" + stderr).splitlines()[-25:])
    printed = [line for line in stdout.splitlines() if line.strip()]
    if case.expected and not (printed and same_line(case.expected[-1], printed[-1], root)):
        return f"documented last line: {case.expected[-1]}\nprinted: {printed[-1:] or '(nothing)'}"
    if case.summary:
        summaries = [line for line in printed if SUMMARY.match(line.strip())]
        if not summaries or not same_line(case.summary, summaries[-1], root):
            return f"documented summary: {case.summary}\nprinted: {summaries[-1:] or '(none)'}"
    return None
