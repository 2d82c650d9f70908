"""The Python examples of the README and the docs, as the example runner sees
them: every fenced ``python`` block, with the mark in the HTML comment on the
line before its fence (``<!-- example: redis -->``; none means the embedded
server). Blocks that continue the page's previous block form one chain: they
run in order, in one namespace.

Marks:

- targets: ``memory`` (the default), ``redis``, ``sentinel``, ``cluster``,
  ``tls``, several at once (``<!-- example: memory redis -->``);
- ``continues``: run after the page's previous block, in its namespace, on its
  targets;
- ``not run (reason)``: shown, never run; counted by reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("memory", "redis", "sentinel", "cluster", "tls")
_FENCE = re.compile(r"^```python\s*$")
_MARK = re.compile(r"^<!--\s*example:\s*(.*?)\s*-->\s*$")
_NOT_RUN = re.compile(r"not run\s*\((.+)\)")


class BadMark(ValueError):
    """A mark the runner does not understand."""


@dataclass
class Block:
    page: str
    line: int
    code: str
    targets: tuple[str, ...] = ()
    continues: bool = False
    not_run: str | None = None

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass
class Chain:
    """A block and the blocks that continue it: one namespace, one run per target."""

    blocks: list[Block] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.blocks[0].name

    @property
    def targets(self) -> tuple[str, ...]:
        return self.blocks[0].targets


def pages() -> list[Path]:
    """README.md and every Markdown page of the docs (not their build)."""
    docs = ROOT / "docs"
    found = [path for path in sorted(docs.rglob("*.md")) if "_build" not in path.parts]
    return [ROOT / "README.md", *found]


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    page = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    found: list[Block] = []
    index = 0
    while index < len(lines):
        if not _FENCE.match(lines[index]):
            index += 1
            continue
        end = next((i for i in range(index + 1, len(lines)) if lines[i].startswith("```")),
                   None)
        if end is None:
            raise BadMark(f"{page}:{index + 1}: the python block is never closed")
        block = Block(page, index + 1, "\n".join(lines[index + 1:end]) + "\n")
        _apply_mark(block, _mark_before(lines, index))
        found.append(block)
        index = end + 1
    return found


def _mark_before(lines: list[str], fence: int) -> str | None:
    before = fence - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    match = _MARK.match(lines[before].strip()) if before >= 0 else None
    return match.group(1) if match else None


def _apply_mark(block: Block, mark: str | None) -> None:
    if mark is None:
        block.targets = ("memory",)
        return
    not_run = _NOT_RUN.fullmatch(mark)
    if not_run:
        block.not_run = not_run.group(1).strip()
        return
    if mark == "continues":
        block.continues = True
        return
    words = mark.split()
    unknown = [word for word in words if word not in TARGETS]
    if unknown or not words:
        raise BadMark(f"{block.name}: unknown example mark {mark!r}; expected targets out of "
                      f"{', '.join(TARGETS)}, 'continues' or 'not run (reason)'")
    block.targets = tuple(words)


def chains(blocks: list[Block]) -> list[Chain]:
    """The runnable blocks grouped into chains; a block that continues a block
    that is not run is an error."""
    found: list[Chain] = []
    previous: Block | None = None
    for block in blocks:
        if block.continues:
            if previous is None or previous.page != block.page or previous.not_run is not None:
                raise BadMark(f"{block.name}: 'continues' follows no block that runs")
            found[-1].blocks.append(block)
        elif block.not_run is None:
            found.append(Chain([block]))
        previous = block
    return found


def every_block() -> list[Block]:
    return [block for path in pages() for block in blocks_of(path)]
