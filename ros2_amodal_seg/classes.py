"""Fixed category ids of the synthetic world (shared/spec/world.md)."""
from __future__ import annotations

#: category id -> name. Id 0 is background and never an instance.
CLASSES: dict[int, str] = {1: "box", 2: "cylinder", 3: "sphere", 4: "cone", 5: "torus"}
CLASS_NAMES: tuple[str, ...] = tuple(CLASSES[i] for i in sorted(CLASSES))
NUM_CLASSES: int = len(CLASSES)


def coco_categories() -> list[dict]:
    """The ``categories`` list of a dataset JSON (formats.md)."""
    return [{"id": i, "name": n, "supercategory": "object"} for i, n in sorted(CLASSES.items())]


def class_name(class_id: int) -> str:
    """Name of a category id, ``"unknown_<id>"`` for ids outside the table."""
    return CLASSES.get(int(class_id), f"unknown_{int(class_id)}")
