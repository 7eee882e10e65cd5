"""The lineage of a ``casi tune`` population: who continued from whose checkpoint, when, with
which mutations.

Each member appends its own rows to ``trial-<k>/lineage.csv`` (one writer per file, also when
the members run in separate Ray workers); :func:`merge` joins them into the run's
``lineage.csv``, ordered by iteration and member, and :func:`plot` draws ``lineage.png``.

Columns: ``iteration`` (when it happened), ``member``, ``event`` (``start``; ``copy``: it
continues from another member's checkpoint; ``keep``: from its own; ``elite``: the best,
unchanged), ``source`` (the member whose checkpoint it continues from), ``score`` (its
metric before), ``source_score``, ``mutations`` (``key: old -> new``, ``;``-separated, from
the source's config), then the value of every mutated key afterwards.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

CSV = "lineage.csv"
PNG = "lineage.png"
COLUMNS = ["iteration", "member", "event", "source", "score", "source_score", "mutations"]


def _member_file(folder: Path, k: int) -> Path:
    return folder / f"trial-{k}" / CSV


def append(folder: Path, k: int, row: dict[str, Any], values: dict[str, Any]) -> None:
    """Appends one event of member ``k`` with the values of its mutated keys after it."""
    path = _member_file(folder, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = not path.exists()
    cells = {**row, "member": k, **values}
    cells["mutations"] = "; ".join(row.get("mutations") or [])
    for key in ("score", "source_score"):
        value = cells.get(key)
        cells[key] = "" if value is None or math.isnan(value) else round(float(value), 4)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, [*COLUMNS, *values], lineterminator="\n")
        if fresh:
            writer.writeheader()
        writer.writerow(cells)


def has(folder: Path, k: int, iteration: int, source: int) -> bool:
    """True if member ``k`` has recorded continuing from ``source`` at ``iteration``."""
    return any(
        int(r["iteration"]) == iteration and int(r["source"]) == source and r["event"] != "start"
        for r in _read(_member_file(folder, k))
    )


def started(folder: Path, k: int) -> bool:
    """True if member ``k`` has recorded its start."""
    return any(r["event"] == "start" for r in _read(_member_file(folder, k)))


def copied_at(folder: Path, iteration: int) -> bool:
    """True if a member has recorded continuing from another's checkpoint at ``iteration``."""
    return any(
        int(r["iteration"]) == iteration and r["event"] == "copy"
        for path in folder.glob(f"trial-*/{CSV}")
        for r in _read(path)
    )


def clear(folder: Path) -> None:
    """Removes the run's and the members' lineage files (a fresh start)."""
    for path in [folder / CSV, *folder.glob(f"trial-*/{CSV}")]:
        path.unlink(missing_ok=True)


def _read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def merge(folder: Path, keys: list[str]) -> list[dict[str, str]]:
    """Every member's rows into ``folder/lineage.csv``; returns them."""
    rows = [r for path in sorted(folder.glob(f"trial-*/{CSV}")) for r in _read(path)]
    rows.sort(key=lambda r: (int(r["iteration"]), int(r["member"])))
    with open(folder / CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, [*COLUMNS, *keys], extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def plot(folder: Path, rows: list[dict[str, str]], title: str) -> Path:
    """``lineage.png``: one line per member over the iterations, an arrow from the source to
    the member at every copy, labelled with its mutations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    members = sorted({int(r["member"]) for r in rows})
    last = max([int(r["iteration"]) for r in rows] + [1])
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.8 * max(len(members), 1)))
    for k in members:
        ax.plot([0, last], [k, k], color="0.8", lw=2, zorder=1)
    for r in rows:
        it, k, j = int(r["iteration"]), int(r["member"]), int(r["source"])
        if r["event"] == "copy" and j != k:
            ax.annotate(
                "", xy=(it, k), xytext=(it, j),
                arrowprops={"arrowstyle": "->", "color": "tab:blue", "lw": 1.5},
            )  # fmt: skip
        if r["mutations"]:
            short = ", ".join(_short(m) for m in r["mutations"].split("; "))
            ax.text(it, k + 0.12, short, fontsize=7, ha="center", color="tab:red")
        if r["event"] == "elite":
            ax.plot([it], [k], marker="*", color="gold", ms=12, zorder=3)
    ax.set_yticks(members, [f"member {k}" for k in members])
    ax.set_xlabel("iteration")
    ax.set_ylim(-0.6, max(members, default=0) + 0.6)
    ax.set_title(f"{title}: lineage (arrow: copies the checkpoint of; red: mutations)")
    fig.tight_layout()
    out = folder / PNG
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _short(change: str) -> str:
    """``algorithm.lr: 0.0005 -> 0.000625`` as ``lr=0.000625``."""
    key, _, rest = change.partition(":")
    return f"{key.split('.')[-1]}={rest.split(' -> ')[-1].strip()}"
