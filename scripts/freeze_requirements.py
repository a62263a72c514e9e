"""Write requirements.txt: every distribution pip installed into this venv, pinned.

`pip freeze` also lists the ``*.egg-info`` folders that the ROS 2 wheels carry
inside them (``std_msgs``, ``rosidl_parser``...), which are not on PyPI; only real
``.dist-info`` installs are kept. Run with the venv's python.
"""
from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

SKIP = {"ros2_amodal_seg", "pip", "setuptools", "wheel"}


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "requirements.txt"
    pins = {}
    for d in md.distributions():
        path = Path(getattr(d, "_path", ""))
        name = d.metadata["Name"]
        if not path.name.endswith(".dist-info") or (path / "direct_url.json").exists():
            continue  # egg-info shipped inside another wheel, or an editable/local install
        if name.lower().replace("_", "-") in SKIP:
            continue
        version = d.version.split("+")[0] if name == "torch" else d.version  # the local CPU build
        pins[name.lower()] = f"{name}=={version}"
    lines = ["# Every Python dependency, pinned: the one place versions live.",
             "# Regenerate after installing something new: .venv/bin/python scripts/freeze_requirements.py"]
    out.write_text("\n".join(lines + [pins[k] for k in sorted(pins)]) + "\n")
    print(f"wrote {len(pins)} pins to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
