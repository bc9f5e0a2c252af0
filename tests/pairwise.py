"""A covering array over the template's options: every pair of option values appears in at
least one variant. The Go toolchain tests render, build, lint and test every row.

Options are listed once, in OPTIONS; a new option (or value) joins the array by being added
there. A value that only applies under another (the router, only with REST) is written as
an `applies` rule, and pairs it cannot form are not required. Greedy construction, one row
at a time, each row chosen among candidates to cover the most uncovered pairs (the AETG
idea), from a fixed seed, so the array is the same on every run.
"""

from __future__ import annotations

import random
import sys
from itertools import combinations
from typing import Any, Callable

# Below the Go thresholds: the team must say why Go anyway.
NOT_JUSTIFIED = {"peak_rps": 800, "p99_ms": 200,
                 "go_justification": "The team ships only Go services and shares this codebase's libraries."}

# option -> {value label: answers it sets}
OPTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "transport": {"rest": {"transport": "rest"}, "grpc": {"transport": "grpc"}, "rest+grpc": {"transport": "rest+grpc"}},
    "router": {"chi": {"router": "chi"}, "gin": {"router": "gin"}},
    "data_layer": {"sqlc": {"data_layer": "sqlc"}, "gorm": {"data_layer": "gorm"}, "sqlx": {"data_layer": "sqlx"}},
    "databases": {
        "all": {"databases": ["postgresql", "mysql", "mariadb", "sqlite"]},
        "postgresql": {"databases": ["postgresql", "sqlite"]},
        "mysql": {"databases": ["mysql", "sqlite"]},
        "mariadb": {"databases": ["mariadb", "sqlite"]},
        "sqlite": {"databases": ["sqlite"]},
    },
    "exposure": {"external": {"exposure": "external"}, "internal": {"exposure": "internal"}, "both": {"exposure": "both"}},
    "schema_churn": {"low": {"schema_churn": "low"}, "medium": {"schema_churn": "medium"}, "high": {"schema_churn": "high"}},
    "go": {"justified": {}, "not-justified": NOT_JUSTIFIED},
    # A regular and an irregular plural (category -> categories).
    "resource": {"item": {"resource": "item"}, "category": {"resource": "category"}},
    # A plain module path and one with a major-version suffix.
    "module": {"plain": {}, "v2": {"module_path": "example.com/platform/orders/v2"}},
    # Events (issue 14): none, or the transactional outbox, relay and consumer on each broker.
    "events": {"none": {"events": "none"}, "nats": {"events": "nats"}, "redis": {"events": "redis"}},
}

Row = dict[str, str]

# option -> predicate on the row's other values: the option only applies when it holds.
APPLIES: dict[str, Callable[[Row], bool]] = {
    "router": lambda row: row.get("transport", "rest") in ("rest", "rest+grpc"),
}


def _applies(option: str, row: Row) -> bool:
    rule = APPLIES.get(option)
    return rule is None or rule(row)


def required_pairs(options: dict[str, dict[str, Any]] = OPTIONS) -> set[tuple[tuple[str, str], tuple[str, str]]]:
    """Every pair of values of two options that some valid row can hold."""
    pairs = set()
    for a, b in combinations(options, 2):
        for va in options[a]:
            for vb in options[b]:
                row = {a: va, b: vb}
                if _applies(a, row) and _applies(b, row):
                    pairs.add(((a, va), (b, vb)))
    return pairs


def pairs_of(row: Row) -> set[tuple[tuple[str, str], tuple[str, str]]]:
    keys = [o for o in OPTIONS if o in row and _applies(o, row)]
    return {((a, row[a]), (b, row[b])) for a, b in combinations(keys, 2)}


# The seed of the row search. Any seed gives a covering array; this one gave the fewest rows
# (18) of seeds 0-119 for today's options among those with an events row over all four
# engines on GORM and on sqlx (tests/test_events.py runs the store contract there). After changing OPTIONS, `python -m tests.pairwise`
# searches again and prints the best seed.
SEED = 102
CANDIDATES = 60  # rows grown per step, from as many uncovered pairs


def _complete(start: Row, uncovered: set, options: dict[str, dict[str, Any]], rng: random.Random) -> Row:
    """Fill the options a row lacks, widest option first, each with a value covering the
    most uncovered pairs against the row so far."""
    row = dict(start)
    missing = [o for o in options if o not in row]
    rng.shuffle(missing)
    missing.sort(key=lambda o: -len(options[o]))
    for option in missing:
        values = list(options[option])
        rng.shuffle(values)
        row[option] = max(values, key=lambda v: len(pairs_of({**row, option: v}) & uncovered))
    return row


def covering_rows(options: dict[str, dict[str, Any]] = OPTIONS, seed: int = SEED) -> list[Row]:
    """Rows (option -> value label) covering every required pair. Each step grows candidate
    rows from uncovered pairs and keeps the one covering the most (the AETG idea); the
    seeded generator makes the array the same on every run."""
    rng = random.Random(seed)
    uncovered = required_pairs(options)
    rows: list[Row] = []
    while uncovered:
        starts = sorted(uncovered)
        rng.shuffle(starts)
        candidates = (_complete({a: va, b: vb}, uncovered, options, rng) for (a, va), (b, vb) in starts[:CANDIDATES])
        row = max(candidates, key=lambda r: len(pairs_of(r) & uncovered))
        uncovered -= pairs_of(row)
        rows.append(row)
    return rows


def answers(row: Row) -> dict[str, Any]:
    """The Copier answers of a row (options that do not apply are left to their defaults)."""
    data: dict[str, Any] = {}
    for option, value in row.items():
        if _applies(option, row):
            data.update(OPTIONS[option][value])
    return data


def label(row: Row) -> str:
    """A short, stable name for a row, used as its test id."""
    parts = [row["transport"]]
    if _applies("router", row):
        parts.append(row["router"])
    parts += [row["data_layer"], "db-" + row["databases"], row["exposure"], "churn-" + row["schema_churn"],
              row["go"], row["resource"], row["module"], "ev-" + row["events"]]
    return "_".join(parts)


ROWS = covering_rows()
VARIANTS: dict[str, dict[str, Any]] = {f"pw{i:02d}-{label(row)}": answers(row) for i, row in enumerate(ROWS)}


def main(argv: list[str]) -> int:
    """Search seeds for the smallest array (after OPTIONS change) and print the best."""
    tries = int(argv[0]) if argv else 200
    best = min(range(tries), key=lambda seed: (len(covering_rows(seed=seed)), seed))
    print(f"seed {best}: {len(covering_rows(seed=best))} rows (SEED = {SEED}: {len(ROWS)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
