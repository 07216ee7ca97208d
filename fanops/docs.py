"""``python -m fanops.docs``: the settings tables of the README, made from the one source of truth."""

from __future__ import annotations

from fanops.config import SETTINGS
from fanops.rules_settings import RULES


def process_table() -> str:
    rows = ["| environment variable | default | what it does |", "|---|---|---|"]
    for s in SETTINGS:
        default = s.default if s.name != "data_dir" else "`./data`"
        rows.append(f"| `{s.env}` | {default or '(none)'} | {s.help} |")
    return "\n".join(rows)


def rules_table() -> str:
    rows = ["| rule setting | default | range | what it does |", "|---|---|---|---|"]
    for r in RULES:
        rows.append(f"| `{r.name}` | {r.default:g} {r.unit} | {r.lo:g}-{r.hi:g} | {r.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(process_table())
    print()
    print(rules_table())
