#!/usr/bin/env python3
"""Regenerate test/golden/processor_golden.json (the golden-output regression test).

Run after an intended change of the model, the checkpoint, the fusion or the runtime,
check the diff it prints, and commit the new file:

    .venv/bin/python scripts/make_golden.py                  # shipped checkpoint, CPU
    .venv/bin/python scripts/make_golden.py --check          # only compare, exit 1 on differences
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "test" / "golden" / "processor_golden.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="", help="checkpoint (default: the shipped one)")
    ap.add_argument("--out", type=Path, default=GOLDEN, help="golden file")
    ap.add_argument("--check", action="store_true", help="compare with the existing file instead of writing")
    args = ap.parse_args(argv)

    from ros2_amodal_seg.runtime.golden import compare_golden, golden_outputs

    got = golden_outputs(args.checkpoint or None)
    if args.out.is_file():
        errs = compare_golden(json.loads(args.out.read_text()), got)
        print(f"{len(errs)} difference(s) from {args.out}" + (":" if errs else ""))
        for e in errs:
            print("  " + e)
        if args.check:
            return 1 if errs else 0
    elif args.check:
        print(f"{args.out} does not exist")
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(got, indent=1) + "\n")
    n = sum(len(f["instances"]) for f in got["frames"].values())
    print(f"wrote {args.out} ({len(got['frames'])} frames, {n} instances)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
