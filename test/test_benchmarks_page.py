"""docs/benchmarks.md is generated: it must be exactly what scripts/write_benchmarks.py renders
from the records in docs/benchmarks/*.json (no hand edits, no record left out)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_benchmarks_page_is_what_the_records_give():
    spec = importlib.util.spec_from_file_location("write_benchmarks", REPO / "scripts" / "write_benchmarks.py")
    wb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wb)
    from ros2_amodal_seg.benchmarks import load_records

    records = load_records()
    assert records, "docs/benchmarks/ has no records"
    assert (REPO / "docs" / "benchmarks.md").read_text() == wb.render(records), (
        "docs/benchmarks.md is out of date: run .venv/bin/python scripts/write_benchmarks.py")
