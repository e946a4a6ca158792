"""What 'mnv3compile tune' shows: the live table of tasks while it measures, and the report at the
end (per task before/after, totals) as a rich table, JSON and a PNG bar chart."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table


UNIT_LABEL = {"us": "us", "instructions": "k instr."}  # the report's unit, as its columns say it


def _value(value: float | None, unit: str) -> str:
    """A cost as the columns show it: microseconds, or thousands of instructions."""
    if value is None:
        return "-"
    return f"{value:.1f}" if unit == "us" else f"{value / 1e3:.1f}"


def _gain(before: float | None, after: float | None) -> str:
    return "-" if not before or not after else f"{before / after:.2f}x"


def tasks_table(report: dict, title: str, top: int | None = None) -> Table:
    """Tasks by their share of the untuned total: candidates measured, default and best cost."""
    unit = report["unit"]
    label = UNIT_LABEL[unit]
    rows = sorted(report["tasks"], key=lambda r: -(r["default"] or 0) * r["kernels"])
    table = Table(title=title)
    for column, justify in (("task (kernels)", "left"), ("measured", "right"), ("failed", "right"),
                            (f"default {label}", "right"), (f"best {label}", "right"), ("gain", "right"),
                            ("best template", "left")):
        table.add_column(column, justify=justify)
    for row in rows[:top]:
        table.add_row(f"{row['task'][:44]} ({row['kernels']})", f"{row['measured']}/{row['candidates']}",
                      str(row["failed"]), _value(row["default"], unit), _value(row["best"], unit),
                      _gain(row["default"], row["best"]), row["best_template"] or "-")
    before, after = report["total_default"], report["total_tuned"]
    table.caption = (f"tuned kernels in all: {_value(before, unit)} {label} with default tiles -> "
                     f"{_value(after, unit)} {label} ({_gain(before, after)}); {report['trials_this_run']} "
                     "candidates measured in this run")
    return table


def plot(report: dict, path: Path, title: str, top: int = 25) -> None:
    """Default vs best cost of the heaviest tasks (times their kernel count), as a PNG."""
    from PIL import Image, ImageDraw

    unit = report["unit"]
    rows = sorted((r for r in report["tasks"] if r["default"]), key=lambda r: -r["default"] * r["kernels"])[:top]
    width, bar_x, row_h = 1100, 430, 30
    image = Image.new("RGB", (width, 45 + row_h * len(rows)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), f"{title}: {_value(report['total_default'], unit)} -> {_value(report['total_tuned'], unit)} "
                        f"{UNIT_LABEL[unit]} "
                        "(grey: default tiles, blue: tuned)", fill="black")
    longest = max((r["default"] * r["kernels"] for r in rows), default=1.0)
    for i, row in enumerate(rows):
        y = 38 + i * row_h
        draw.text((10, y + 8), f"{row['task'][:44]} x{row['kernels']}", fill="black")
        for offset, value, color in ((0, row["default"], (170, 170, 170)),
                                     (13, row["best"] or row["default"], (70, 110, 180))):
            length = int((width - bar_x - 130) * value * row["kernels"] / longest)
            draw.rectangle([bar_x, y + offset + 2, bar_x + length, y + offset + 12], fill=color)
        draw.text((bar_x + 6 + int((width - bar_x - 130) * row["default"] * row["kernels"] / longest), y + 8),
                  f"{_gain(row['default'], row['best'])}", fill="black")
    image.save(path)
