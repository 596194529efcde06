"""The evaluators' result: per-frame scores per clip, and the table built from them (rows, CSV, JSON, text)."""
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple


@dataclass
class ClipScores:
    """Per-frame scores of one clip and their means (NaN frames, e.g. fgr with no foreground, are skipped)."""

    dataset: str
    clip: str
    per_frame: Dict[str, List[float]] = field(default_factory=dict)

    def means(self) -> Dict[str, float]:
        return {name: _nanmean(values) for name, values in self.per_frame.items()}

    def frame_count(self) -> int:
        return len(next(iter(self.per_frame.values())))


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


@dataclass
class EvaluationResult:
    """Scores of every clip plus the means per dataset and over all clips (means of clip means)."""

    metrics: Tuple[str, ...]
    clips: List[ClipScores]

    def rows(self) -> List[Dict[str, object]]:
        """Table rows: one per clip, then a ``<dataset>, (mean)`` row per dataset and an ``(all), (mean)`` row."""
        groups = {d: [c for c in self.clips if c.dataset == d] for d in dict.fromkeys(c.dataset for c in self.clips)}
        groups["(all)"] = self.clips
        rows: List[Dict[str, object]] = [
            {"dataset": c.dataset, "clip": c.clip, "frames": c.frame_count(), **c.means()} for c in self.clips
        ]
        for name, group in groups.items():
            means = [c.means() for c in group]
            row: Dict[str, object] = {"dataset": name, "clip": "(mean)", "frames": sum(c.frame_count() for c in group)}
            row.update({m: _nanmean([x[m] for x in means]) for m in self.metrics})
            rows.append(row)
        return rows


def _json_number(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def write_tables(result: EvaluationResult, output_prefix: str) -> Tuple[Path, Path]:
    """Write ``<prefix>.csv`` (the table) and ``<prefix>.json`` (the table plus per-frame scores)."""
    csv_path, json_path = Path(output_prefix + ".csv"), Path(output_prefix + ".json")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["dataset", "clip", "frames", *result.metrics]
    lines = [",".join(columns)]
    for row in result.rows():
        lines.append(",".join(_format_cell(row[c]) for c in columns))
    csv_path.write_text("\n".join(lines) + "\n")
    payload = {
        "metrics": list(result.metrics),
        "table": [{k: _json_number(v) for k, v in row.items()} for row in result.rows()],
        "per_frame": [
            {"dataset": c.dataset, "clip": c.clip, **{k: [_json_number(v) for v in vs] for k, vs in c.per_frame.items()}}
            for c in result.clips
        ],
    }
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    return csv_path, json_path


def _format_cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_table(result: EvaluationResult) -> str:
    """The table as aligned text (what the command line prints)."""
    columns = ["dataset", "clip", "frames", *result.metrics]
    cells = [columns] + [[_format_cell(row[c]) for c in columns] for row in result.rows()]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in cells)
