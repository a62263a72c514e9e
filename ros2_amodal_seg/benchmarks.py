"""Benchmark records: each benchmark script can store its result, with the date, the commit,
the machine and the exact command, as ``docs/benchmarks/<name>.json``;
``scripts/write_benchmarks.py`` renders every record into ``docs/benchmarks.md``. That file
is therefore never edited by hand, and every figure in it says where it came from.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from ros2_amodal_seg.errors import InvalidInputError

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "docs" / "benchmarks"


def git_commit(repo: Path = REPO) -> str:
    """Short hash of HEAD, with ``+dirty`` when tracked files differ from it ("unknown" outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine() -> str:
    """The CPU model and cores, the memory and the GPU (if torch sees one), in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 ** 2:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    gpu = ""
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            gpu = ", GPU " + torch.cuda.get_device_name(0)
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores{mem}{gpu}"


def record(name: str, result: dict, argv: list[str] | None = None, *, folder: Path = RECORDS) -> Path:
    """Store ``result`` as the benchmark record ``name`` (replacing an older one).

    Args:
        name: file stem, ``[a-z0-9_-]+``.
        result: JSON-serialisable figures.
        argv: the command that produced them (default: this process's command line).
    """
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise InvalidInputError(f"benchmark record name must be [A-Za-z0-9_-]+, got {name!r}")
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(".py"):
        try:
            argv[0] = str(Path(argv[0]).resolve().relative_to(REPO))
        except ValueError:
            pass
        argv = [".venv/bin/python"] + argv
    rec = {"name": name, "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "commit": git_commit(), "machine": machine(), "command": shlex.join(argv), "result": result}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(rec, indent=2) + "\n")
    return path


def load_records(folder: Path = RECORDS) -> dict[str, dict]:
    """Every record in ``folder`` by name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def add_output_args(ap) -> None:
    """``--json FILE`` and ``--record NAME`` for a benchmark script's argparse parser."""
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--record", default=None, metavar="NAME",
                    help="store the results as docs/benchmarks/NAME.json (then run scripts/write_benchmarks.py)")


def save_outputs(res: dict, args) -> None:
    """Write ``res`` where :func:`add_output_args`' options say."""
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    if args.record:
        print(f"recorded as {record(args.record, res)}")



def checkpoint_label(checkpoint: str | None) -> str:
    """How a record names the checkpoint it measured: ``shipped`` or the file name, and its world,
    e.g. ``shipped (version-1 shapes, 5 classes)``."""
    from ros2_amodal_seg.errors import CheckpointError  # noqa: PLC0415
    from ros2_amodal_seg.model.checkpoint import read_metadata, world_preset  # noqa: PLC0415

    name = Path(checkpoint).name if checkpoint else "shipped"
    try:
        world = ("world version 2, 13 classes" if world_preset(checkpoint, "street") == "street"
                 else "version-1 shapes, 5 classes")
    except CheckpointError:
        from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT  # noqa: PLC0415
        world = f"{len(read_metadata(checkpoint or DEFAULT_CHECKPOINT)['classes'])} classes"
    return f"{name} ({world})"
