"""What 'mnv3compile tune' shows: the live table of tasks while it measures, and the report at the
end (per task before/after, totals) as a rich table, JSON and a PNG bar chart."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _gain(before: float | None, after: float | None) -> str:
    return "-" if not before or not after else f"{before / after:.2f}x"


def tasks_table(report: dict, title: str, top: int | None = None) -> Table:
    """Tasks by their share of the untuned total: candidates measured, default and best latency."""
    rows = sorted(report["tasks"], key=lambda r: -(r["default_us"] or 0) * r["kernels"])
    table = Table(title=title)
    for column, justify in (("task (kernels)", "left"), ("measured", "right"), ("failed", "right"),
                            ("default us", "right"), ("best us", "right"), ("gain", "right"), ("best template", "left")):
        table.add_column(column, justify=justify)
    for row in rows[:top]:
        table.add_row(f"{row['task'][:44]} ({row['kernels']})", f"{row['measured']}/{row['candidates']}",
                      str(row["failed"]), _us(row["default_us"]), _us(row["best_us"]),
                      _gain(row["default_us"], row["best_us"]), row["best_template"] or "-")
    before, after = report["total_default_us"], report["total_tuned_us"]
    table.caption = (f"tuned kernels in all: {_us(before)} us with default tiles -> {_us(after)} us "
                     f"({_gain(before, after)}); {report['trials_this_run']} candidates measured in this run")
    return table


def plot(report: dict, path: Path, title: str, top: int = 25) -> None:
    """Default vs best latency of the heaviest tasks (times their kernel count), as a PNG."""
    from PIL import Image, ImageDraw

    rows = sorted((r for r in report["tasks"] if r["default_us"]), key=lambda r: -r["default_us"] * r["kernels"])[:top]
    width, bar_x, row_h = 1100, 430, 30
    image = Image.new("RGB", (width, 45 + row_h * len(rows)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), f"{title}: {_us(report['total_default_us'])} -> {_us(report['total_tuned_us'])} us "
                        "(grey: default tiles, blue: tuned)", fill="black")
    longest = max((r["default_us"] * r["kernels"] for r in rows), default=1.0)
    for i, row in enumerate(rows):
        y = 38 + i * row_h
        draw.text((10, y + 8), f"{row['task'][:44]} x{row['kernels']}", fill="black")
        for offset, value, color in ((0, row["default_us"], (170, 170, 170)),
                                     (13, row["best_us"] or row["default_us"], (70, 110, 180))):
            length = int((width - bar_x - 130) * value * row["kernels"] / longest)
            draw.rectangle([bar_x, y + offset + 2, bar_x + length, y + offset + 12], fill=color)
        draw.text((bar_x + 6 + int((width - bar_x - 130) * row["default_us"] * row["kernels"] / longest), y + 8),
                  f"{_gain(row['default_us'], row['best_us'])}", fill="black")
    image.save(path)
