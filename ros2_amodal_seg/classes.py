"""Fixed category ids of the synthetic world (shared/spec/world.md).

Two class lists exist:

* :data:`SHAPES_CLASSES`: the five geometric primitives of world version 1 (presets
  ``shapes-tabletop`` and ``shapes-street``);
* :data:`WORLD_CLASSES`: the 13 real object categories of world version 2 (presets
  ``tabletop`` and ``street``), ids 1..13 fixed by world.md.

A dataset's ``categories`` list says which list it uses, and a checkpoint stores its own.
:data:`CLASSES` is the list of the shipped model (version 2), the fallback where neither says.
"""
from __future__ import annotations

#: world version 1: category id -> name. Id 0 is background and never an instance.
SHAPES_CLASSES: dict[int, str] = {1: "box", 2: "cylinder", 3: "sphere", 4: "cone", 5: "torus"}

#: world version 2 (world.md "Classes"): category id -> name.
WORLD_CLASSES: dict[int, str] = {
    1: "person", 2: "car", 3: "large_vehicle", 4: "two_wheeler", 5: "traffic_cone", 6: "barrier",
    7: "bottle", 8: "cup", 9: "bowl", 10: "box", 11: "food", 12: "tool", 13: "other"}

#: the class list of the shipped model (world version 2).
CLASSES: dict[int, str] = WORLD_CLASSES
CLASS_NAMES: tuple[str, ...] = tuple(CLASSES[i] for i in sorted(CLASSES))
NUM_CLASSES: int = len(CLASSES)

#: named class lists, by the name a preset or dataset gives.
CLASS_LISTS: dict[str, dict[int, str]] = {"shapes": SHAPES_CLASSES, "world": WORLD_CLASSES}


def classes_for_preset(preset: str | None) -> dict[int, str]:
    """The class list of a world preset: :data:`SHAPES_CLASSES` for ``shapes-*`` (and None),
    :data:`WORLD_CLASSES` for the realistic presets ``tabletop`` and ``street``."""
    if preset is None or str(preset).startswith("shapes-"):
        return SHAPES_CLASSES
    return WORLD_CLASSES


def class_list_of(categories: dict[int, str]) -> str | None:
    """The name (``"shapes"`` / ``"world"``) of a known class list equal to ``categories``, else None."""
    cats = {int(k): str(v) for k, v in categories.items()}
    for name, table in CLASS_LISTS.items():
        if cats == table:
            return name
    return None


def coco_categories(classes: dict[int, str] | None = None) -> list[dict]:
    """The ``categories`` list of a dataset JSON (formats.md) for ``classes`` (default :data:`CLASSES`)."""
    table = CLASSES if classes is None else classes
    return [{"id": i, "name": n, "supercategory": "object"} for i, n in sorted(table.items())]


def class_name(class_id: int, classes: dict[int, str] | None = None) -> str:
    """Name of a category id in ``classes`` (default :data:`CLASSES`), ``"unknown_<id>"`` outside it."""
    table = CLASSES if classes is None else classes
    return table.get(int(class_id), f"unknown_{int(class_id)}")
