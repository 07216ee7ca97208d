"""The task record's layout, written twice: by position in Lua, by name in Python.

``fanops.state.TaskRec`` is a msgpack array; ``scoring/lua/apply.lua`` and ``fanops/lua/task.lua``
read and write it by 1-based position (``rec[22] = ''``).  The Lua names its positions in
comments only (``-- [1] state, [22] holder, ...``), so this test reads both scripts as text and
checks, against ``TASK_FIELDS``:
- every ``[N] name`` of a comment is that field's position, every ``[A..B] span`` that span's;
- every position the code uses on a task record is named in a comment of its file;
- a literal written to or compared with a position fits the field's type ('' a string, 0 a number);
- ``task.lua``'s refill of the fields left out when packed (its DEFAULTS and its loop) covers
  exactly the operator's fields up to the last one it writes, each with the Python default;
- ``apply.lua``'s copy of the shown fields (``rec[2 + i] = d[i]``) lands ``task_at`` and the span
  the engine sends (``[task_at, fields 4..21]``) where TaskRec has them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from fanops.state import TASK_FIELDS, TaskRec

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {"scoring/lua/apply.lua": ROOT / "scoring" / "lua" / "apply.lua",
           "fanops/lua/task.lua": ROOT / "fanops" / "lua" / "task.lua"}
# the spans the comments name in words: the fields an operator sees are TaskRec.name to
# TaskRec.product (scoring.engine._display builds them in that order)
SPANS = {"what the operator sees": ("name", "product")}
FIRST_OPERATOR_FIELD = "holder"  # fanops.state.pack_task leaves out trailing defaults from here on


@dataclass(frozen=True)
class Layout:
    """A task record layout: field name -> 1-based position, type and default (as msgpack gives them)."""

    pos: dict[str, int]
    types: dict[str, type]
    defaults: dict[str, object]

    def name_at(self, n: int) -> str:
        return next((f for f, p in self.pos.items() if p == n), f"<no field at {n}>")


def python_layout() -> Layout:
    fields = msgspec.structs.fields(TaskRec)
    types = {f.name: getattr(f.type, "__origin__", f.type) for f in fields}
    defaults = {f.name: f.default for f in fields if f.default is not msgspec.NODEFAULT}
    return Layout(dict(TASK_FIELDS), types, defaults)


def _comments(lua: str) -> str:
    return "\n".join(line.split("--", 1)[1] for line in lua.splitlines() if "--" in line)


def _documented(lua: str, lay: Layout, where: str) -> tuple[set[int], list[str]]:
    """The positions the file's comments name, and the problems of those names."""
    doc, problems = set(), []
    text = _comments(lua)
    for m in re.finditer(r"(?<![\w\]])\[(\d+)\] ([a-z_]+)", text):
        n, name = int(m[1]), m[2]
        doc.add(n)
        if name not in lay.pos:
            problems.append(f"{where}: [{n}] {name}: TaskRec has no field {name!r}")
        elif lay.pos[name] != n:
            problems.append(f"{where}: {name}: the Lua says position {n}, TaskRec has it at {lay.pos[name]}")
    for m in re.finditer(r"(?<![\w\]])\[(\d+)\.\.(\d+)\] ([a-z ]+?)(?=,|$|\n)", text):
        lo, hi, what = int(m[1]), int(m[2]), m[3].strip()
        doc.update(range(lo, hi + 1))
        problems += _span_problems(f"{where}: [{lo}..{hi}] {what}", lo, hi, SPANS.get(what), lay)
    return doc, problems


def _span_problems(label: str, lo: int, hi: int, span: tuple[str, str] | None, lay: Layout) -> list[str]:
    if span is None:
        return [f"{label}: a span this test does not know (add it to SPANS)"]
    first, last = span
    if (lay.pos[first], lay.pos[last]) != (lo, hi):
        return [f"{label}: TaskRec has {first}..{last} at {lay.pos[first]}..{lay.pos[last]}"]
    return []


def _record_vars(lua: str) -> tuple[set[str], set[str]]:
    """Names bound to a task hash's field (HGET) and names bound to such a field unpacked (the record)."""
    hget = set(re.findall(r"local (\w+) = redis\.call\('HGET'", lua))
    recs = {v for v, arg in re.findall(r"local (\w+) = cmsgpack\.unpack\((\w+)\)(?!\[)", lua) if arg in hget}
    recs |= {p for p in re.findall(r"function \w+\(([^)]*)\)", lua) for p in map(str.strip, p.split(","))
             if p in recs}
    return hget, recs


def _loop_bounds(lua: str, at: int, var: str) -> tuple[int, int] | None:
    """The literal bounds of the nearest ``for var = A, B`` before offset ``at`` (None: not literal)."""
    loops = list(re.finditer(rf"for {var} = (\S+), (\S+) do", lua[:at]))
    if not loops or not (loops[-1][1].isdigit() and loops[-1][2].isdigit()):
        return None
    return int(loops[-1][1]), int(loops[-1][2])


def _used(lua: str, lay: Layout, where: str) -> tuple[set[int], list[str]]:
    """The positions the code uses on a task record, and the problems of those uses."""
    hget, recs = _record_vars(lua)
    code = "\n".join(line.split("--", 1)[0] for line in lua.splitlines())
    used, problems = set(), []
    pattern = (rf"(?:\b(?:{'|'.join(sorted(recs))})|cmsgpack\.unpack\((?:{'|'.join(sorted(hget))})\))"
               r"\[([^\]]+)\](\s*(?:==|~=|=)\s*('[^']*'|-?\d+))?")
    for m in re.finditer(pattern, code) if recs or hget else ():
        expr, literal = m[1].strip(), m[3]
        if expr.isdigit():
            n = int(expr)
            used.add(n)
            if literal is not None:
                problems += _literal_problems(where, n, literal, lay)
        elif re.fullmatch(r"\d+ \+ i", expr):
            problems += _offset_problems(lua, where, int(expr.split()[0]), lay)
        elif re.fullmatch(r"\w+", expr) and (b := _loop_bounds(code, m.start(), expr)) is not None:
            used.update(range(b[0], b[1] + 1))
        else:
            problems.append(f"{where}: cannot check the task position {m[0]!r}: use a literal position")
    return used, problems


def _literal_problems(where: str, n: int, literal: str, lay: Layout) -> list[str]:
    name = lay.name_at(n)
    want = str if literal.startswith("'") else (int, float)
    if name not in lay.types or not issubclass(lay.types[name], want):
        have = lay.types.get(name, type(None)).__name__
        return [f"{where}: position {n} ({name}, {have} in TaskRec) is given or compared with {literal}"]
    return []


def _offset_problems(lua: str, where: str, offset: int, lay: Layout) -> list[str]:
    """``rec[offset + i] = d[i]``: d is ``[task_at, fields A..B]`` (the comment), landing at offset + 1..."""
    problems = []
    if offset + 1 != lay.pos["task_at"]:
        problems.append(f"{where}: task_at: the copy of the shown fields puts it at {offset + 1}, "
                        f"TaskRec has it at {lay.pos['task_at']}")
    m = re.search(r"\[task_at, fields (\d+)\.\.(\d+)\]", lua)
    if m is None:
        return [*problems, f"{where}: the shown fields' array ([task_at, fields A..B]) is not described"]
    lo, hi = int(m[1]), int(m[2])
    if lo != offset + 2:
        problems.append(f"{where}: the shown fields start at {offset + 2} in the copy, at {lo} in the comment")
    return problems + _span_problems(f"{where}: [task_at, fields {lo}..{hi}]", lo, hi, SPANS["what the operator sees"],
                                     lay)


def _refill_problems(lua: str, where: str, lay: Layout, top: int) -> list[str]:
    """A script that writes a record back fills in the operator's fields left out when packed, from the
    first to ``top``, the last position it writes (a hole would make cmsgpack pack a map)."""
    m = re.search(r"local DEFAULTS = \{(.*?)\}\n", lua, re.S)
    if m is None:
        return []
    operator = range(lay.pos[FIRST_OPERATOR_FIELD], top + 1)
    filled = {int(n): v for n, v in re.findall(r"\[(\d+)\] = ('[^']*'|-?\d+)", m[1])}
    problems = []
    if set(filled) != set(operator):
        problems.append(f"{where}: DEFAULTS fills {sorted(filled)}, the operator's fields it writes "
                        f"({FIRST_OPERATOR_FIELD}..{lay.name_at(top)}) are at {list(operator)}")
    for n, v in sorted(filled.items()):
        name = lay.name_at(n)
        want = v.strip("'") if v.startswith("'") else int(v)
        if lay.defaults.get(name, "<none>") != want:
            problems.append(f"{where}: {name}: DEFAULTS[{n}] is {v}, TaskRec's default is "
                            f"{lay.defaults.get(name, '<none>')!r}")
    loop = re.search(r"for i = (\d+), (\d+) do\s+if t\[i\] == nil", lua)
    if loop is None or (int(loop[1]), int(loop[2])) != (operator.start, top):
        got = f"{loop[1]}..{loop[2]}" if loop else "no loop"
        problems.append(f"{where}: the refill loop runs over {got}, the operator's fields it writes are at "
                        f"{operator.start}..{top} ({FIRST_OPERATOR_FIELD}..{lay.name_at(top)})")
    return problems


def layout_problems(lua: str, where: str, lay: Layout) -> list[str]:
    """Every disagreement between one Lua script's use of the task record and the layout ``lay``."""
    doc, problems = _documented(lua, lay, where)
    used, use_problems = _used(lua, lay, where)
    problems += use_problems
    for n in sorted(used - doc):
        problems.append(f"{where}: the code uses position {n} ({lay.name_at(n)} in TaskRec), "
                        "which no comment of the script names")
    problems += _refill_problems(lua, where, lay, max(used, default=0))
    return list(dict.fromkeys(problems))  # each problem once


@pytest.mark.parametrize("where", sorted(SCRIPTS))
def test_the_lua_task_positions_are_taskrecs(where: str) -> None:
    lua = SCRIPTS[where].read_text()
    assert re.search(r"\[\d+\]", lua), f"{where}: no task position found: has the layout moved?"
    problems = layout_problems(lua, where, python_layout())
    assert not problems, "the Lua and TaskRec disagree:\n" + "\n".join(problems)


def test_the_check_fails_when_a_python_field_moves() -> None:
    """Guards the check itself: with holder and lease_until swapped in TaskRec, both scripts disagree."""
    lay = python_layout()
    pos = dict(lay.pos)
    pos["holder"], pos["lease_until"] = pos["lease_until"], pos["holder"]
    moved = Layout(pos, lay.types, lay.defaults)
    for where, path in SCRIPTS.items():
        problems = layout_problems(path.read_text(), where, moved)
        assert any(p.startswith(f"{where}: holder:") for p in problems), problems
        assert any("lease_until" in p for p in problems), problems


def test_the_check_fails_when_the_shown_span_moves() -> None:
    """With task_at and name swapped, apply.lua's copy of the shown fields no longer fits."""
    lay = python_layout()
    pos = dict(lay.pos)
    pos["task_at"], pos["name"] = pos["name"], pos["task_at"]
    problems = layout_problems(SCRIPTS["scoring/lua/apply.lua"].read_text(), "apply", Layout(pos, lay.types,
                                                                                            lay.defaults))
    assert any(p.startswith("apply: task_at:") for p in problems), problems
    assert any("name..product" in p for p in problems), problems


def test_a_task_the_scorer_packs_without_a_record_is_the_same_bytes_as_the_record_packed() -> None:
    # the scorer packs each new task straight from its shown fields (fanops.state.pack_scored_task);
    # the queue, the operator's script (task.lua) and the splice of apply.lua read it as a TaskRec
    from fanops.state import pack_scored_task, pack_task, tier_code, unpack_task
    shown = [1_700_000_123_000, "", tier_code("first_buyer"), "", "", "", 420_000, 37.5, True, 3, 120, 2, 1, 1, 0,
             ["so pretty?", "price?"], ["sku-1", "sku-2"], ["sku-2"], "sku-2"]
    rec = TaskRec("pending", 1_700_000_200_000, *shown)
    got = pack_scored_task("pending", 1_700_000_200_000, shown)
    assert got == pack_task(rec)
    back = unpack_task(got)
    assert (back.state, back.tier, back.said, back.product, back.holder) == (
        "pending", "first_buyer", ["so pretty?", "price?"], "sku-2", rec.holder)
