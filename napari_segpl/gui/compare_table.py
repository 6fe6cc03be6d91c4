"""The Compare panel's short table: its columns, its rows from the engine's summary and the
widget that shows them, apart from the panel so the panel keeps to the form and the runs."""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from ..engine.compare import CompareResult

#: the table's columns: (header, tooltip)
COLUMNS = (
    ("method", "one row per method; several seeds: their mean"),
    ("Dice", "mean Dice over the classes on the held-out slices"),
    (
        "HD95",
        "95th-percentile Hausdorff distance (MONAI), mean over the classes: in mm for an "
        "image on a file's recorded grid, in voxels for any other layer (its napari scale "
        "is not read as mm)",
    ),
    ("ECE", "expected calibration error on the held-out slices (15 bins)"),
    ("× sup.", "median seconds per step over supervised training's in this compare"),
)


def results_table() -> QTableWidget:
    """The empty, hidden table: read only, no scroll bars (its height follows its rows), a
    tooltip on each header."""
    table = QTableWidget(0, len(COLUMNS))
    table.setEditTriggers(QAbstractItemView.NoEditTriggers)
    table.setSelectionMode(QAbstractItemView.NoSelection)
    table.verticalHeader().setVisible(False)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    table.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeToContents)
    header.setSectionResizeMode(0, QHeaderView.Stretch)
    table.setHorizontalHeaderLabels([text for text, _ in COLUMNS])
    for i, (_, tip) in enumerate(COLUMNS):
        table.horizontalHeaderItem(i).setToolTip(tip)
    table.setVisible(False)
    return table


def show_rows(table: QTableWidget, result: CompareResult | None) -> int:
    """One row per method with a finished run (hidden with none), HD95 hidden when no run has
    it; returns the number of rows."""
    rows = short_rows(result) if result is not None else []
    table.setRowCount(len(rows))
    for r, values in enumerate(rows):
        for c, text in enumerate(values):
            item = QTableWidgetItem(text)
            item.setTextAlignment(
                int(Qt.AlignVCenter | (Qt.AlignLeft if c == 0 else Qt.AlignRight))
            )
            table.setItem(r, c, item)
    table.setColumnHidden(2, result is None or not any(r.hd95 for r in result.runs))
    # the unit on a second line, so the header does not take the method names' width
    unit = {"mm": "\nmm", "voxels": "\nvoxels"}.get(result.hd95_unit, "") if result else ""
    table.horizontalHeaderItem(2).setText(f"HD95{unit}")
    table.setVisible(bool(rows))
    return len(rows)


def fit_height(table: QTableWidget, rows: int) -> None:
    """The table's height fixed to its header and ``rows`` rows (no scroll bar, no gap)."""
    height = table.horizontalHeader().height() + 2 * table.frameWidth()
    table.setFixedHeight(height + sum(table.rowHeight(i) for i in range(rows)))


def short_rows(result: CompareResult) -> list[list[str]]:
    """The panel's short table from the engine's summary (mean over seeds and classes)."""
    return [
        [r["method"], number_text(finite_mean(r["dice"])),
         number_text(finite_mean(r["hd95"]), 1), number_text(r["ece"], 3),
         number_text(r["cost_ratio"], 2)]
        for r in result.summary()
    ]  # fmt: skip


def finite_mean(values: list[float | None] | None) -> float | None:
    """The mean of the finite values (None when there is none: a class absent everywhere)."""
    finite = [v for v in values or () if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def number_text(value: float | None, digits: int = 3) -> str:
    """A table cell: ``digits`` decimals, "n/a" for a number that is missing or not finite."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"
