"""Classification metrics on a Loghub-layout corpus with a label column."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from mlctl.logs.classify_eval import evaluate_classification


def _corpus(root: Path) -> Path:
    rnd = random.Random(1)
    (root / "Sys").mkdir(parents=True)
    (root / "Plain").mkdir()
    (root / "formats.json").write_text(json.dumps({"Sys": "<Label> <Level> <Content>", "Plain": "<Level> <Content>"}))
    lines, rows = [], []
    for i in range(1, 201):
        alert = rnd.random() < 0.2
        label = "KERNPANIC" if alert else "-"
        content = f"kernel panic on node {i}" if alert else f"job {i} finished in {rnd.randrange(99)} ms"
        level = "FATAL" if alert else "INFO"
        lines.append(f"{label} {level} {content}")
        rows.append(
            {
                "LineId": i,
                "Label": label,
                "Level": level,
                "Content": content,
                "EventId": "E1" if alert else "E2",
                "EventTemplate": "kernel panic on node <*>" if alert else "job <*> finished in <*> ms",
            }
        )
    (root / "Sys" / "Sys_2k.log").write_text("\n".join(lines) + "\n")
    with (root / "Sys" / "Sys_2k.log_structured_corrected.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "Plain" / "Plain_2k.log").write_text("INFO hello\n")
    (root / "Plain" / "Plain_2k.log_structured_corrected.csv").write_text(
        "LineId,Level,Content,EventId,EventTemplate\n1,INFO,hello,E1,hello\n"
    )
    return root


def test_only_labelled_systems_are_scored(tmp_path: Path) -> None:
    (row,) = evaluate_classification(_corpus(tmp_path))
    assert row["system"] == "Sys" and row["lines"] == 200 and 20 < row["alerts"] < 60
    assert row["weak_recall"] == 1.0 and row["weak_precision"] == 1.0  # FATAL + "panic" vs INFO lines
    assert row["trained_f1"] == 1.0  # two folds on separable templates
