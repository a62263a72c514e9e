"""The asset layer of the realistic world (world.md version 2): catalogue models, classes, splits.

It reads the five Sweet Home 3D furniture libraries of the Debian package
``sweethome3d-furniture`` (``/usr/share/sweethome3d/furniture/*.sh3f``, zips with a
``PluginFurnitureCatalog.properties`` each), loads a model by catalogue id with trimesh
(OBJ + MTL + textures straight out of the zip), applies the catalogue's ``modelRotation``,
turns it into the object frame of :mod:`ros2_amodal_seg.world.textured` and scales it to its
catalogue width x depth x height as Sweet Home 3D does. Models are cached as one ``.npz`` each,
so a cached model loads in a few milliseconds. Procedural families
(:mod:`ros2_amodal_seg.world.procedural`) complete the classes that have too few models.

API (the scene generator's entry points)::

    from ros2_amodal_seg.world.assets import AssetLibrary, CatalogEntry, split_of
    lib = AssetLibrary()                          # default furniture dir + cache dir (see AssetConfig)
    lib = AssetLibrary(furniture_dir=..., cache_dir=...)
    lib.entries: dict[str, CatalogEntry]          # every catalogue model (820)
    lib.class_of(asset_id) -> int | None          # 1..13, None unless an annotated object
    lib.role_of(asset_id) -> "object" | "background" | "excluded"
    lib.models(class_id, split="train", preset=None) -> list[str]   # sorted; catalogue ids, then
                                                  # procedural ids ("procedural:traffic_cone/3")
    lib.background_models(kind, split=None, preset=None) -> list[str]   # unannotated structure
    lib.load(asset_id) -> TexturedMesh            # cached; AssetError naming the model
    lib.load_or_none(asset_id) -> TexturedMesh | None   # counted skip: lib.failures, lib.skipped
    lib.pose_hint(asset_id) -> "upright" | "lying" | "either"
    lib.presets_of(asset_id) -> tuple[str, ...]
    lib.split_of(asset_id) -> "train" | "test"
    lib.size_of(asset_id) -> [3] float64 (width, depth, height) [m]
    lib.ensure_cache(asset_ids=None) -> CacheReport     # prebuild with a tqdm bar
    lib.summary() -> per class, per split: counts (catalogue, procedural, tabletop, street)
    split_of(asset_id) -> "train" | "test"        # world.md's held-out rule, class map only
    # textures: ros2_amodal_seg.world.textures.texture_pool(split, kind=None, lib=None)
    # sampling: ros2_amodal_seg.world.textured.sample_texture (re-exported by textures)

Conventions:

* Sweet Home 3D (SH3D) reads an OBJ with ``y`` up; a model's width runs along OBJ ``x``,
  its height along ``y`` and its depth along ``z`` (its front looks at ``+z``). SH3D first
  applies ``modelRotation`` (a row-major 3x3 matrix ``R``, ``p' = R @ p``), then scales the
  model's bounding box non-uniformly to the catalogue size. Here the rotated OBJ point
  ``(x, y, z)`` becomes the object-frame point ``(x, -z, y)`` (a proper rotation), then is
  scaled so that the bounding box is exactly width x depth x height [m], centred on
  ``x = y = 0`` and resting on ``z = 0``. A car's length is thus along ``y``.
* Pose hints are relative to that catalogue pose: ``upright`` = rest the model as modelled
  (knives, phones and rulers are *modelled* lying flat, so they are ``upright``);
  ``lying`` = lay it on a side (rotate 90 degrees about its x or y axis) because it is modelled
  standing in a pose it would not keep on a table; ``either`` = both poses are natural
  (bottles, cans, boxes).
* Class map: ``asset_classes.csv`` beside this module, one reviewed row per catalogue model
  (see :func:`read_class_map` and docs/assets.md).
* Held-out split (world.md): within each class (and, for background structure, within each
  background kind), a model is a test model when
  ``int(sha1(asset_id).hexdigest()[:8], 16) % 5 == 0``; where a group then has no test model,
  its model with the smallest such value is one. Procedural variants are split by the same
  rule on their id (``"procedural:traffic_cone/3"``), together with the class's catalogue models.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import io
import logging
import os
import posixpath
import re
import shutil
import time
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ros2_amodal_seg.classes import WORLD_CLASSES as _WORLD_CLASSES
from ros2_amodal_seg.errors import AssetError, ConfigError, InvalidInputError
from ros2_amodal_seg.world.textured import Material, TexturedMesh

log = logging.getLogger(__name__)
logging.getLogger("trimesh").setLevel(logging.WARNING)  # it logs every polygon triangulation at INFO

#: bump when the cached format or the conversion changes: old caches are then rebuilt.
CACHE_VERSION = 3

#: world.md version-2 classes (fixed ids; 0 is background), re-exported from ros2_amodal_seg.classes.
WORLD_CLASSES: dict[int, str] = _WORLD_CLASSES
PRESETS: tuple[str, ...] = ("tabletop", "street")
#: classes each preset may annotate (world.md "Presets").
PRESET_CLASSES: dict[str, tuple[int, ...]] = {"tabletop": (7, 8, 9, 10, 11, 12, 13),
                                               "street": (1, 2, 3, 4, 5, 6, 13)}
#: allowed largest extent [m] of an object of each preset (world.md "object size": "about"
#: 2 to 45 cm and 0.3 to 21 m; checked with :data:`PRESET_EXTENT_TOLERANCE`).
PRESET_EXTENT_M: dict[str, tuple[float, float]] = {"tabletop": (0.02, 0.45), "street": (0.3, 21.0)}
#: relative tolerance on :data:`PRESET_EXTENT_M` (the 21.05 m Peterbilt truck is "about 21 m").
PRESET_EXTENT_TOLERANCE = 0.01


def fits_preset(largest_extent_m: float, preset: str) -> bool:
    """Whether an object of this largest extent [m] may appear in a preset (world.md sizes)."""
    lo, hi = PRESET_EXTENT_M[preset]
    return lo * (1 - PRESET_EXTENT_TOLERANCE) <= largest_extent_m <= hi * (1 + PRESET_EXTENT_TOLERANCE)
ROLES: tuple[str, ...] = ("object", "background", "excluded")
POSE_HINTS: tuple[str, ...] = ("upright", "lying", "either")
#: kinds of unannotated background structure (class-map column ``kind`` of role ``background``).
BACKGROUND_KINDS: tuple[str, ...] = (
    "tree",              # trees, palms, bamboo (street)
    "hedge",             # hedges, bushes (street)
    "building",          # huts, tents, garages, chimneys, big structures (street)
    "street_furniture",  # large outdoor things: swings, goals, umbrellas, flower boxes (street)
    "furniture",         # large indoor furniture behind the table: shelves, sofas, cabinets (tabletop)
    "plant",             # large indoor plants (tabletop background)
    "appliance",         # large appliances behind the table: ovens, fridges (tabletop)
)
SPLITS: tuple[str, ...] = ("train", "test")
LICENSE_CC0 = "CC0-1.0"
LICENSE_CC_BY = "CC-BY-3.0"

DEFAULT_FURNITURE_DIR = Path("/usr/share/sweethome3d/furniture")
#: environment variables that override the defaults of :class:`AssetConfig`.
ENV_FURNITURE_DIR = "AMODAL_SEG_FURNITURE_DIR"
ENV_CACHE_DIR = "AMODAL_SEG_ASSET_CACHE"
CLASS_MAP_PATH = Path(__file__).with_name("asset_classes.csv")
PROCEDURAL_PREFIX = "procedural:"


def default_cache_dir() -> Path:
    """``$AMODAL_SEG_ASSET_CACHE``, else ``$XDG_CACHE_HOME`` (or ``~/.cache``)
    ``/ros2_amodal_seg/assets/v<CACHE_VERSION>``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ros2_amodal_seg" / "assets" / f"v{CACHE_VERSION}"


def default_furniture_dir() -> Path:
    """``$AMODAL_SEG_FURNITURE_DIR``, else ``/usr/share/sweethome3d/furniture``."""
    return Path(os.environ.get(ENV_FURNITURE_DIR) or DEFAULT_FURNITURE_DIR)


@dataclass(frozen=True)
class AssetConfig:
    """Configuration of the asset layer.

    Attributes:
        furniture_dir: folder with the ``*.sh3f`` libraries.
        cache_dir: root of the model cache (one sub-folder per library and source stamp).
        max_texture_px: textures are downscaled (Lanczos) so that their longer side is at
            most this many pixels [px]; 512 keeps a car's paint sharp at 640 px wide and
            bounds the cache (a tabletop object rarely covers more than 200 px).
        max_triangles: meshes with more triangles are simplified (quadric decimation per
            material, borders and so UV seams kept) to about this many.
        class_map: the reviewed class-map CSV.
    """

    furniture_dir: Path = field(default_factory=default_furniture_dir)
    cache_dir: Path = field(default_factory=default_cache_dir)
    max_texture_px: int = 512
    max_triangles: int = 30000
    class_map: Path = CLASS_MAP_PATH

    def __post_init__(self) -> None:
        if self.max_texture_px < 8:
            raise ConfigError(f"max_texture_px must be >= 8, got {self.max_texture_px}")
        if self.max_triangles < 100:
            raise ConfigError(f"max_triangles must be >= 100, got {self.max_triangles}")


# ----------------------------------------------------------------------------- held-out split

def split_value(name: str) -> int:
    """world.md's split value ``int(sha1(name).hexdigest()[:8], 16)`` (UTF-8 bytes of ``name``)."""
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:8], 16)


def held_out(names: Iterable[str]) -> set[str]:
    """The test members of one group (a class, a background kind or a texture pool).

    A name is held out when ``split_value(name) % 5 == 0``; when none is, the name with the
    smallest split value is (world.md "Held-out models"). An empty group has no test member.
    """
    names = sorted(set(names))
    test = {n for n in names if split_value(n) % 5 == 0}
    if not test and names:
        test = {min(names, key=lambda n: (split_value(n), n))}
    return test


# ----------------------------------------------------------------------------- catalogue

@dataclass(frozen=True)
class CatalogEntry:
    """One model of a furniture library (values from ``PluginFurnitureCatalog.properties``).

    Attributes:
        id: catalogue id, e.g. ``"Scopia#cityBus"`` (unique over the five libraries).
        name: English display name.
        category: SH3D category (``"Kitchen"``, ``"Vehicles"``...).
        library: library display name (``"Blend Swap CC-0"``, ``"Scopia catalog"``...).
        library_file: path of the ``.sh3f`` zip.
        model: path of the OBJ inside the zip, without the leading ``/``.
        width, depth, height: catalogue size [m] (width along object x, depth along y,
            height along z).
        creator: the model's author(s) as the catalogue names them.
        license: ``"CC0-1.0"`` or ``"CC-BY-3.0"``.
        model_rotation: row-major 3x3 rotation applied to the OBJ points, or None.
        icon: path of the icon PNG inside the zip ("" if none).
        tags: catalogue tags.
        door_or_window: SH3D ``doorOrWindow`` flag.
        staircase: the model has a ``staircaseCutOutShape``.
    """

    id: str
    name: str
    category: str
    library: str
    library_file: Path
    model: str
    width: float
    depth: float
    height: float
    creator: str
    license: str
    model_rotation: tuple[float, ...] | None = None
    icon: str = ""
    tags: str = ""
    door_or_window: bool = False
    staircase: bool = False

    @property
    def size(self) -> np.ndarray:
        """``[3]`` float64 catalogue size (width, depth, height) [m]."""
        return np.array([self.width, self.depth, self.height], dtype=np.float64)

    @property
    def largest_extent(self) -> float:
        """Largest catalogue dimension [m]."""
        return float(max(self.width, self.depth, self.height))


@dataclass(frozen=True)
class LibraryInfo:
    """One ``.sh3f`` library: its header and the stamp that keys its cache."""

    file: Path
    id: str
    name: str
    license_text: str
    license: str
    size_bytes: int
    mtime_ns: int


_PROP_SPLIT = re.compile(r"((?:\\.|[^=:\s\\])*)[ \t\f]*[=:]?[ \t\f]*(.*)$", re.S)
_PROP_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2:i + 6]):
                out.append(chr(int(text[i + 2:i + 6], 16)))
                i += 6
                continue
            out.append(_PROP_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """Parse a Java ``.properties`` text (comments, ``=``/``:`` separators, ``\\`` line
    continuations, ``\\uXXXX`` escapes) into a dict. Later keys win."""
    props: dict[str, str] = {}
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip(" \t\f")
        if not pending and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:  # odd backslashes: the logical line continues
            pending += line[:-1]
            continue
        line, pending = pending + line, ""
        m = _PROP_SPLIT.match(line)
        if m and m.group(1):
            props[_unescape(m.group(1))] = _unescape(m.group(2))
    if pending:
        m = _PROP_SPLIT.match(pending)
        if m and m.group(1):
            props[_unescape(m.group(1))] = _unescape(m.group(2))
    return props


def _float(props: dict[str, str], key: str, lib: Path) -> float:
    try:
        value = float(props[key])
    except KeyError as exc:
        raise AssetError(props.get("id#" + key.split("#")[1], key), f"{lib.name}: missing {key}") from exc
    except ValueError as exc:
        raise AssetError(props.get("id#" + key.split("#")[1], key),
                         f"{lib.name}: {key}={props[key]!r} is not a number") from exc
    if not np.isfinite(value) or value < 0:
        raise AssetError(props.get("id#" + key.split("#")[1], key), f"{lib.name}: {key}={value} out of range")
    return value


def read_catalog(path: Path) -> tuple[LibraryInfo, list[CatalogEntry]]:
    """Read one ``.sh3f`` library's catalogue (without loading any model).

    Raises:
        AssetError: unreadable zip or catalogue, or a model row without id/model/size.
    """
    path = Path(path)
    try:
        st = path.stat()
        with zipfile.ZipFile(path) as zf:
            raw = zf.read("PluginFurnitureCatalog.properties")
    except (OSError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise AssetError(path.name, f"cannot read the furniture catalogue of {path}: {exc}") from exc
    props = parse_properties(raw.decode("latin-1"))
    lib_license_text = props.get("license", "")
    lic = LICENSE_CC0 if ("public domain" in lib_license_text.lower() or "cc-0" in props.get("name", "").lower()
                          or "cc0" in lib_license_text.lower()) else LICENSE_CC_BY
    info = LibraryInfo(file=path, id=props.get("id", path.stem), name=props.get("name", path.stem),
                       license_text=lib_license_text, license=lic, size_bytes=st.st_size,
                       mtime_ns=st.st_mtime_ns)
    numbers = sorted(int(k[3:]) for k in props if re.fullmatch(r"id#\d+", k))
    entries = []
    for n in numbers:
        aid = props[f"id#{n}"]
        model = props.get(f"model#{n}", "").lstrip("/")
        if not model:
            raise AssetError(aid, f"{path.name}: catalogue row {n} has no model")
        rot = None
        if f"modelRotation#{n}" in props:
            try:
                rot = tuple(float(x) for x in props[f"modelRotation#{n}"].split())
            except ValueError as exc:
                raise AssetError(aid, f"{path.name}: bad modelRotation {props[f'modelRotation#{n}']!r}") from exc
            if len(rot) != 9:
                raise AssetError(aid, f"{path.name}: modelRotation needs 9 numbers, got {len(rot)}")
        entries.append(CatalogEntry(
            id=aid, name=props.get(f"name#{n}", aid), category=props.get(f"category#{n}", ""),
            library=info.name, library_file=path, model=model,
            width=_float(props, f"width#{n}", path) / 100.0, depth=_float(props, f"depth#{n}", path) / 100.0,
            height=_float(props, f"height#{n}", path) / 100.0, creator=props.get(f"creator#{n}", ""),
            license=lic, model_rotation=rot, icon=props.get(f"icon#{n}", "").lstrip("/"),
            tags=props.get(f"tags#{n}", ""),
            door_or_window=props.get(f"doorOrWindow#{n}", "false").strip().lower() == "true",
            staircase=f"staircaseCutOutShape#{n}" in props))
    return info, entries


def read_catalogs(furniture_dir: Path) -> tuple[dict[str, LibraryInfo], dict[str, CatalogEntry]]:
    """Read every ``*.sh3f`` of a folder: (library file stem -> info, asset id -> entry).

    Raises:
        AssetError: no library in the folder, an unreadable library, or a duplicate id.
    """
    furniture_dir = Path(furniture_dir)
    files = sorted(furniture_dir.glob("*.sh3f"))
    if not files:
        raise AssetError(str(furniture_dir), "no *.sh3f furniture library found; install the Debian package "
                                             "sweethome3d-furniture (scripts/setup_env.sh does)")
    libs, entries = {}, {}
    for f in files:
        info, rows = read_catalog(f)
        libs[f.stem] = info
        for e in rows:
            if e.id in entries:
                raise AssetError(e.id, f"duplicate catalogue id in {f.name} and {entries[e.id].library_file.name}")
            entries[e.id] = e
    return libs, entries


# ----------------------------------------------------------------------------- class map

@dataclass(frozen=True)
class ClassMapRow:
    """One reviewed row of ``asset_classes.csv``.

    Attributes:
        asset_id: catalogue id.
        name: catalogue name (for the reader; not used).
        role: ``object`` (annotated with ``class_id``), ``background`` (unannotated structure
            of kind ``kind``) or ``excluded``.
        class_id: 1..13 for objects, None otherwise.
        presets: presets the model may appear in (objects and background).
        pose: pose hint of an object (see the module docstring); ``upright`` otherwise.
        kind: background kind (one of :data:`BACKGROUND_KINDS`) or "".
        note: review note (why excluded, what the model shows).
    """

    asset_id: str
    name: str
    role: str
    class_id: int | None
    presets: tuple[str, ...]
    pose: str
    kind: str
    note: str


CLASS_MAP_COLUMNS = ("asset_id", "name", "role", "class_id", "presets", "pose", "kind", "note")


def read_class_map(path: Path = CLASS_MAP_PATH) -> dict[str, ClassMapRow]:
    """Read and validate the class map (CSV with :data:`CLASS_MAP_COLUMNS`; ``presets`` is
    ``;``-separated).

    Raises:
        AssetError: unreadable file, unknown role/class/preset/pose/kind, duplicate id, an
            object without a class or preset.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AssetError(str(path), f"cannot read the class map: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != CLASS_MAP_COLUMNS:
        raise AssetError(str(path), f"class map columns must be {CLASS_MAP_COLUMNS}, got {reader.fieldnames}")
    rows: dict[str, ClassMapRow] = {}
    for line, r in enumerate(reader, start=2):
        aid = r["asset_id"]
        where = f"{path.name}:{line}"
        if aid in rows:
            raise AssetError(aid, f"{where}: duplicate class-map row")
        role = r["role"]
        if role not in ROLES:
            raise AssetError(aid, f"{where}: role {role!r} not in {ROLES}")
        cid = int(r["class_id"]) if r["class_id"].strip() else None
        presets = tuple(p for p in r["presets"].split(";") if p)
        if any(p not in PRESETS for p in presets):
            raise AssetError(aid, f"{where}: presets {presets} not within {PRESETS}")
        pose = r["pose"] or "upright"
        if pose not in POSE_HINTS:
            raise AssetError(aid, f"{where}: pose {pose!r} not in {POSE_HINTS}")
        kind = r["kind"]
        if role == "object":
            if cid not in WORLD_CLASSES:
                raise AssetError(aid, f"{where}: object needs a class id 1..13, got {r['class_id']!r}")
            if not presets or any(cid not in PRESET_CLASSES[p] for p in presets):
                raise AssetError(aid, f"{where}: class {cid} cannot appear in presets {presets}")
        else:
            if cid is not None:
                raise AssetError(aid, f"{where}: a {role} row has no class id")
            if role == "background" and (kind not in BACKGROUND_KINDS or not presets):
                raise AssetError(aid, f"{where}: background needs a kind in {BACKGROUND_KINDS} and a preset")
        rows[aid] = ClassMapRow(aid, r["name"], role, cid, presets, pose, kind, r["note"])
    return rows


@functools.lru_cache(maxsize=4)
def _class_map_cached(path: str) -> dict[str, ClassMapRow]:
    return read_class_map(Path(path))


def _procedural():
    from ros2_amodal_seg.world import procedural  # local: procedural imports this module
    return procedural


@dataclass(frozen=True)
class _Splits:
    """Test members per class (objects) and per background kind."""

    test: frozenset[str]
    known: frozenset[str]


def compute_splits(class_map: dict[str, ClassMapRow], procedural_ids: dict[str, int]) -> _Splits:
    """The held-out rule applied per class (catalogue objects + procedural variants of that
    class) and per background kind.

    Args:
        class_map: reviewed rows (see :func:`read_class_map`).
        procedural_ids: procedural asset id -> class id.
    """
    groups: dict[str, list[str]] = {}
    for row in class_map.values():
        if row.role == "object":
            groups.setdefault(f"class:{row.class_id}", []).append(row.asset_id)
        elif row.role == "background":
            groups.setdefault(f"background:{row.kind}", []).append(row.asset_id)
    for pid, cid in procedural_ids.items():
        groups.setdefault(f"class:{cid}", []).append(pid)
    test: set[str] = set()
    for names in groups.values():
        test |= held_out(names)
    known = {n for names in groups.values() for n in names}
    return _Splits(frozenset(test), frozenset(known))


@functools.lru_cache(maxsize=4)
def _default_splits(path: str) -> _Splits:
    return compute_splits(_class_map_cached(path), _procedural().procedural_classes())


def split_of(asset_id: str, class_map: Path = CLASS_MAP_PATH) -> str:
    """``"train"`` or ``"test"`` for an annotated object or background model (world.md's rule,
    per class / background kind, with the fallback), from the class map alone (no library needed).

    Raises:
        AssetError: the id is excluded or unknown.
    """
    splits = _default_splits(str(class_map))
    if asset_id not in splits.known:
        raise AssetError(asset_id, "not an object or background model of the class map (excluded or unknown), "
                                   "so it has no split")
    return "test" if asset_id in splits.test else "train"


# ----------------------------------------------------------------------------- model loading

class _ZipResolver:
    """trimesh resolver over one folder of an open zip; records missing and requested files."""

    def __init__(self, zf: zipfile.ZipFile, folder: str, names: dict[str, str]):
        self.zf, self.folder, self.names = zf, folder, names
        self.missing: list[str] = []
        self.read: list[str] = []

    def _path(self, name: str) -> str:
        name = name.strip().strip('"').replace("\\", "/")
        return posixpath.normpath(posixpath.join(self.folder, name)).lstrip("/")

    def get(self, name: str) -> bytes:
        path = self._path(name)
        real = path if path in self.names.values() else self.names.get(path.lower())
        if real is None:
            self.missing.append(path)
            raise KeyError(f"{path} is not in the zip")  # trimesh logs and goes on; we check .missing
        self.read.append(real)
        return self.zf.read(real)

    def get_base(self) -> str:  # trimesh resolver protocol (used in debug messages only)
        return self.folder

    def namespaced(self, namespace: str) -> "_ZipResolver":
        sub = _ZipResolver(self.zf, posixpath.join(self.folder, namespace), self.names)
        sub.missing, sub.read = self.missing, self.read
        return sub

    def keys(self):
        prefix = self.folder.rstrip("/") + "/"
        return [n[len(prefix):] for n in self.names.values() if n.startswith(prefix)]

    def write(self, name: str, data) -> None:
        raise NotImplementedError("read-only zip resolver")

    def __getitem__(self, key: str) -> bytes:
        return self.get(key)

    def __contains__(self, key: str) -> bool:
        path = self._path(key)
        return path in self.names.values() or path.lower() in self.names


_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tga", ".tif", ".tiff")


def _image_to_rgb(img, max_px: int) -> np.ndarray:
    """PIL image -> ``[h, w, 3]`` uint8 RGB with the longer side <= max_px (Lanczos).

    Transparent pixels (alpha) are composited over the image's mean opaque colour, so that
    cut-out leaves or labels keep a plausible colour where the renderer draws them opaque."""
    from PIL import Image

    img.load()
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255.0
        opaque = alpha[..., 0] > 0.5
        mean = rgba[..., :3][opaque].mean(axis=0) if opaque.any() else rgba[..., :3].reshape(-1, 3).mean(axis=0)
        rgb = rgba[..., :3] * alpha + mean * (1 - alpha)
        img = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    if max(w, h) > max_px:
        s = max_px / max(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8).copy()


def _color01(c, default) -> np.ndarray:
    if c is None:
        return np.asarray(default, dtype=np.float32)
    a = np.asarray(c, dtype=np.float64).ravel()
    if a.size == 1:
        a = np.repeat(a, 3)
    a = a[:3]
    if a.max(initial=0) > 1.0:  # trimesh stores uint8 RGBA
        a = a / 255.0
    return np.clip(a, 0, 1).astype(np.float32)


def _simplify_group(v: np.ndarray, f: np.ndarray, uv: np.ndarray | None, target: int):
    """Quadric decimation of one material group (fast_simplification, borders preserved so UV
    seams stay); UVs move with the nearest original vertex.

    Args:
        v: ``[V, 3]`` float64 points; f: ``[F, 3]`` int faces; uv: ``[V, 2]`` per-vertex UVs or None.
        target: wanted face count.
    Returns: (v, f, uv) simplified.
    """
    import fast_simplification
    from scipy.spatial import cKDTree

    if target >= len(f) or len(f) < 64:
        return v, f, uv
    target = max(int(target), 16)
    v2, f2 = fast_simplification.simplify(v.astype(np.float64), f.astype(np.int32), target_count=target,
                                          preserve_border=True)
    if len(f2) > 1.25 * target:
        # many small open pieces (leaf cards, UV islands) are all border: collapse borders too
        v2, f2 = fast_simplification.simplify(v.astype(np.float64), f.astype(np.int32), target_count=target)
    if len(f2) == 0:
        return v, f, uv
    if len(f2) > 1.25 * target:
        # still over: foliage of many separate leaf cards; drop whole cards (a fixed random subset)
        return _thin_components(v, f, uv, target)
    uv2 = None
    if uv is not None:
        _, idx = cKDTree(v).query(v2)
        uv2 = uv[idx]
    return np.asarray(v2), np.asarray(f2, dtype=np.int64), uv2


def _thin_components(v: np.ndarray, f: np.ndarray, uv: np.ndarray | None, target: int):
    """Keep a deterministic random subset of the connected pieces of a mesh (leaf cards) so that
    about ``target`` faces remain; vertices are not moved. Shapes as in :func:`_simplify_group`."""
    import trimesh

    labels = trimesh.graph.connected_component_labels(trimesh.graph.face_adjacency(f), node_count=len(f))
    n = int(labels.max()) + 1
    order = np.random.default_rng(0).permutation(n)
    sizes = np.bincount(labels, minlength=n)
    keep_n = int(np.searchsorted(np.cumsum(sizes[order]), target)) + 1
    keep = np.zeros(n, bool)
    keep[order[:keep_n]] = True
    f2 = f[keep[labels]]
    used, inverse = np.unique(f2, return_inverse=True)
    return v[used], inverse.reshape(-1, 3).astype(np.int64), (None if uv is None else uv[used])


def _entry_transform(entry: CatalogEntry) -> np.ndarray:
    """``[3, 3]`` matrix taking an OBJ point to the (unscaled) object frame: modelRotation,
    then (x, y, z) -> (x, -z, y)."""
    axes = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    if entry.model_rotation is None:
        return axes
    return axes @ np.asarray(entry.model_rotation, dtype=np.float64).reshape(3, 3)


def load_catalog_model(entry: CatalogEntry, zf: zipfile.ZipFile | None = None, *,
                       max_texture_px: int = 512, max_triangles: int = 30000) -> TexturedMesh:
    """Load one catalogue model from its zip into the object frame, scaled to its catalogue size.

    Args:
        entry: the catalogue row.
        zf: the open library zip (opened from ``entry.library_file`` when None).
        max_texture_px: longer side of the stored textures [px] (downscaled above).
        max_triangles: decimate meshes with more triangles to about this many.

    Returns:
        The model as a :class:`TexturedMesh` (asset = catalogue id).

    Raises:
        AssetError: naming the model, when the OBJ, its MTL or a texture is missing, corrupt
            or unreadable, or the mesh has no triangle.
    """
    import trimesh
    from PIL import Image, UnidentifiedImageError

    own = zf is None
    try:
        if own:
            zf = zipfile.ZipFile(entry.library_file)
        names = {n.lower(): n for n in zf.namelist()}
        if entry.model not in names.values() and entry.model.lower() not in names:
            raise AssetError(entry.id, f"model file {entry.model} is not in {entry.library_file.name}")
        obj_name = entry.model if entry.model in names.values() else names[entry.model.lower()]
        resolver = _ZipResolver(zf, posixpath.dirname(obj_name), names)
        try:
            obj_bytes = zf.read(obj_name)
            scene = trimesh.load(io.BytesIO(obj_bytes), file_type="obj", resolver=resolver, force="scene",
                                 group_material=True, process=False)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise AssetError(entry.id, f"corrupt data in {entry.library_file.name}:{obj_name}: {exc}") from exc
        except (ValueError, IndexError, KeyError, TypeError, AttributeError, OSError,
                UnicodeDecodeError) as exc:
            raise AssetError(entry.id, f"trimesh cannot read {obj_name}: {type(exc).__name__}: {exc}") from exc
        if resolver.missing:
            raise AssetError(entry.id, f"{entry.library_file.name}: {obj_name} refers to missing file(s) "
                                       f"{sorted(set(resolver.missing))}")
        meshes = [m for m in scene.dump(concatenate=False) if isinstance(m, trimesh.Trimesh) and len(m.faces)]
        if not meshes:
            raise AssetError(entry.id, f"{obj_name} has no triangle")
        bad = []
        for p in sorted({p for p in resolver.read if p.lower().endswith(_IMAGE_EXT)}):
            try:  # trimesh skips an undecodable texture silently; a bad asset must not pass
                with Image.open(io.BytesIO(zf.read(p))) as im:
                    im.load()
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, zipfile.BadZipFile,
                    zlib.error, EOFError) as exc:
                bad.append(f"{p} ({type(exc).__name__}: {exc})")
        if bad:
            raise AssetError(entry.id, f"texture(s) in {entry.library_file.name} cannot be decoded: {bad}")

        total = sum(len(m.faces) for m in meshes)
        materials: list[Material] = []
        textures: list[np.ndarray] = []
        tex_index: dict[str, int] = {}
        vs, fs, uvs, mids = [], [], [], []
        offset = 0
        for m in meshes:
            mat = getattr(m.visual, "material", None)
            if mat is not None and not isinstance(mat, trimesh.visual.material.SimpleMaterial):
                mat = mat.to_simple()
            uv = getattr(m.visual, "uv", None)
            uv = None if uv is None or len(uv) != len(m.vertices) else np.asarray(uv, dtype=np.float64)
            tex = -1
            image = getattr(mat, "image", None)
            if image is not None and uv is not None:
                key = image.info.get("file_path") or f"{getattr(mat, 'name', '')}#{len(textures)}"
                if key not in tex_index:
                    try:
                        textures.append(_image_to_rgb(image, max_texture_px))
                    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
                        raise AssetError(entry.id, f"texture {key} cannot be decoded: {exc}") from exc
                    tex_index[key] = len(textures) - 1
                tex = tex_index[key]
            kw = getattr(mat, "kwargs", {}) or {}
            opacity = 1.0
            if "d" in kw:
                try:
                    opacity = float(np.ravel(kw["d"])[0])
                except (ValueError, IndexError):
                    opacity = 1.0
            gloss = getattr(mat, "glossiness", None)
            materials.append(Material(
                name=str(getattr(mat, "name", None) or f"material_{len(materials)}"),
                diffuse=_color01(getattr(mat, "diffuse", None), (0.6, 0.6, 0.6)),
                specular=_color01(getattr(mat, "specular", None), (0.0, 0.0, 0.0)),
                shininess=float(np.ravel(gloss)[0]) if gloss is not None else 10.0,
                texture=tex, opacity=float(np.clip(opacity, 0, 1))))
            v = np.asarray(m.vertices, dtype=np.float64)
            f = np.asarray(m.faces, dtype=np.int64)
            if total > max_triangles:
                v, f, uv = _simplify_group(v, f, uv, int(round(max_triangles * len(f) / total)))
            vs.append(v)
            fs.append(f + offset)
            uvs.append(uv[f] if (uv is not None and tex >= 0) else np.zeros((len(f), 3, 2)))
            mids.append(np.full(len(f), len(materials) - 1))
            offset += len(v)
    finally:
        if own and zf is not None:
            zf.close()

    verts = np.concatenate(vs) @ _entry_transform(entry).T
    tris = np.concatenate(fs)
    used = np.unique(tris)
    lo, hi = verts[used].min(axis=0), verts[used].max(axis=0)
    ext = hi - lo
    size = entry.size
    scale = np.where(ext > 1e-12, size / np.where(ext > 1e-12, ext, 1.0), 1.0)
    centre = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    verts = (verts - centre) * scale
    if not np.all(np.isfinite(verts)):
        raise AssetError(entry.id, "non-finite vertices after scaling")
    return TexturedMesh(asset=entry.id, vertices=verts.astype(np.float32), triangles=tris.astype(np.int32),
                        uvs=np.concatenate(uvs).astype(np.float32), material_ids=np.concatenate(mids).astype(np.int32),
                        materials=materials, textures=textures)


# ----------------------------------------------------------------------------- cache files

def save_mesh_npz(mesh: TexturedMesh, path: Path) -> None:
    """Write a mesh to ``path`` (a zlib-compressed ``.npz``, about 3x smaller than raw and
    still read in ~3 ms; written to a temporary file and renamed, so readers never see half
    a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "asset": np.array(mesh.asset), "vertices": mesh.vertices, "triangles": mesh.triangles,
        "uvs": mesh.uvs, "material_ids": mesh.material_ids,
        "mat_names": np.array([m.name for m in mesh.materials]),
        "mat_diffuse": np.array([m.diffuse for m in mesh.materials], np.float32).reshape(-1, 3),
        "mat_specular": np.array([m.specular for m in mesh.materials], np.float32).reshape(-1, 3),
        "mat_shininess": np.array([m.shininess for m in mesh.materials], np.float32),
        "mat_texture": np.array([m.texture for m in mesh.materials], np.int32),
        "mat_opacity": np.array([m.opacity for m in mesh.materials], np.float32),
        "num_textures": np.array(len(mesh.textures)),
    }
    for i, t in enumerate(mesh.textures):
        arrays[f"texture_{i}"] = t
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    os.replace(tmp, path)


def load_mesh_npz(path: Path) -> TexturedMesh:
    """Read a mesh written by :func:`save_mesh_npz`.

    Raises:
        AssetError: unreadable or malformed file.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            n_tex = int(z["num_textures"])
            mats = [Material(name=str(n), diffuse=d, specular=s, shininess=float(sh), texture=int(t), opacity=float(o))
                    for n, d, s, sh, t, o in zip(z["mat_names"], z["mat_diffuse"], z["mat_specular"],
                                                 z["mat_shininess"], z["mat_texture"], z["mat_opacity"])]
            return TexturedMesh(asset=str(z["asset"]), vertices=z["vertices"], triangles=z["triangles"],
                                uvs=z["uvs"], material_ids=z["material_ids"], materials=mats,
                                textures=[z[f"texture_{i}"] for i in range(n_tex)])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise AssetError(Path(path).stem, f"cached mesh {path} is unreadable: {exc}") from exc


@dataclass
class CacheReport:
    """What :meth:`AssetLibrary.ensure_cache` did."""

    built: int = 0
    cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    bytes_on_disk: int = 0


def _safe_name(asset_id: str) -> str:
    local = asset_id.split("#", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", local)[:80] + "-" + hashlib.sha1(asset_id.encode()).hexdigest()[:8]


# ----------------------------------------------------------------------------- the library

class AssetLibrary:
    """Catalogue models + procedural families + the reviewed class map + the model cache.

    Args:
        furniture_dir: folder of the ``*.sh3f`` libraries (default :func:`default_furniture_dir`).
        cache_dir: cache root (default :func:`default_cache_dir`).
        config: full configuration (``furniture_dir``/``cache_dir`` override its fields).

    Raises:
        AssetError: no library, an unreadable catalogue, or a class map that names an unknown id.
    """

    def __init__(self, furniture_dir: Path | str | None = None, cache_dir: Path | str | None = None,
                 config: AssetConfig | None = None):
        cfg = config or AssetConfig()
        if furniture_dir is not None or cache_dir is not None:
            cfg = AssetConfig(furniture_dir=Path(furniture_dir) if furniture_dir is not None else cfg.furniture_dir,
                              cache_dir=Path(cache_dir) if cache_dir is not None else cfg.cache_dir,
                              max_texture_px=cfg.max_texture_px, max_triangles=cfg.max_triangles,
                              class_map=cfg.class_map)
        self.config = cfg
        self.libraries, self.entries = read_catalogs(cfg.furniture_dir)
        self.class_map = dict(_class_map_cached(str(cfg.class_map)))
        self._procedural = _procedural().procedural_classes()
        self._splits = compute_splits({k: v for k, v in self.class_map.items() if k in self.entries},
                                      self._procedural)
        #: asset id -> error message of every model that failed to load (this process).
        self.failures: dict[str, str] = {}
        #: how many times :meth:`load_or_none` skipped a failed model.
        self.skipped: Counter[str] = Counter()
        self._zips: dict[Path, zipfile.ZipFile] = {}
        self._zip_pid = os.getpid()

    # -- queries ---------------------------------------------------------------------------
    def _known(self, asset_id: str) -> None:
        if asset_id not in self.entries and asset_id not in self._procedural:
            raise AssetError(asset_id, "unknown asset id (not in any furniture library nor a procedural family)")

    def role_of(self, asset_id: str) -> str:
        """``object``, ``background`` or ``excluded`` (procedural variants are objects; catalogue
        models missing from the class map are excluded)."""
        self._known(asset_id)
        if asset_id in self._procedural:
            return "object"
        row = self.class_map.get(asset_id)
        return row.role if row else "excluded"

    def class_of(self, asset_id: str) -> int | None:
        """Class id 1..13 of an annotated object, None for background and excluded models."""
        self._known(asset_id)
        if asset_id in self._procedural:
            return self._procedural[asset_id]
        row = self.class_map.get(asset_id)
        return row.class_id if row and row.role == "object" else None

    def presets_of(self, asset_id: str) -> tuple[str, ...]:
        """Presets an object or background model may appear in (empty when excluded)."""
        self._known(asset_id)
        if asset_id in self._procedural:
            return _procedural().family_of(asset_id).presets
        row = self.class_map.get(asset_id)
        return row.presets if row and row.role != "excluded" else ()

    def pose_hint(self, asset_id: str) -> str:
        """``upright``, ``lying`` or ``either`` relative to the catalogue pose (module docstring)."""
        self._known(asset_id)
        if asset_id in self._procedural:
            return _procedural().family_of(asset_id).pose
        row = self.class_map.get(asset_id)
        return row.pose if row else "upright"

    def split_of(self, asset_id: str) -> str:
        """``train`` or ``test`` (world.md's held-out rule; see :func:`split_of`).

        Raises:
            AssetError: excluded or unknown model.
        """
        self._known(asset_id)
        if asset_id not in self._splits.known:
            raise AssetError(asset_id, "excluded model: it has no split")
        return "test" if asset_id in self._splits.test else "train"

    def size_of(self, asset_id: str) -> np.ndarray:
        """``[3]`` float64 nominal size (width, depth, height) [m]: the catalogue size, or the
        procedural variant's bounding box."""
        self._known(asset_id)
        if asset_id in self.entries:
            return self.entries[asset_id].size
        return _procedural().generate(asset_id).extents

    def models(self, class_id: int, split: str = "train", preset: str | None = None) -> list[str]:
        """Sorted ids (catalogue then ``procedural:...``) of the objects of a class in a split,
        optionally only those allowed in a preset (whose size fits the preset's range).

        Raises:
            InvalidInputError: unknown class, split or preset.
        """
        if class_id not in WORLD_CLASSES:
            raise InvalidInputError(f"class id must be 1..13, got {class_id}")
        if split not in SPLITS:
            raise InvalidInputError(f"split must be one of {SPLITS}, got {split!r}")
        if preset is not None and preset not in PRESETS:
            raise InvalidInputError(f"preset must be one of {PRESETS}, got {preset!r}")
        out = []
        for aid in sorted(self.entries):
            row = self.class_map.get(aid)
            if row is None or row.role != "object" or row.class_id != class_id:
                continue
            if preset is not None and preset not in row.presets:
                continue
            if self.split_of(aid) == split:
                out.append(aid)
        proc = [pid for pid, cid in self._procedural.items() if cid == class_id
                and (preset is None or preset in _procedural().family_of(pid).presets)
                and self.split_of(pid) == split]
        return out + sorted(proc, key=_procedural().sort_key)

    def background_models(self, kind: str, split: str | None = None, preset: str | None = None) -> list[str]:
        """Sorted catalogue ids of unannotated background structure of a kind
        (:data:`BACKGROUND_KINDS`), optionally of one split and preset.

        Raises:
            InvalidInputError: unknown kind, split or preset.
        """
        if kind not in BACKGROUND_KINDS:
            raise InvalidInputError(f"background kind must be one of {BACKGROUND_KINDS}, got {kind!r}")
        if split is not None and split not in SPLITS:
            raise InvalidInputError(f"split must be one of {SPLITS}, got {split!r}")
        if preset is not None and preset not in PRESETS:
            raise InvalidInputError(f"preset must be one of {PRESETS}, got {preset!r}")
        return [aid for aid in sorted(self.entries)
                if (row := self.class_map.get(aid)) is not None and row.role == "background" and row.kind == kind
                and (preset is None or preset in row.presets)
                and (split is None or self.split_of(aid) == split)]

    def used_ids(self) -> list[str]:
        """Every catalogue model the world uses (objects and background), sorted."""
        return sorted(a for a in self.entries if (r := self.class_map.get(a)) is not None and r.role != "excluded")

    # -- loading ---------------------------------------------------------------------------
    def _library_stem(self, entry: CatalogEntry) -> str:
        return entry.library_file.stem

    def cache_folder(self, library_stem: str) -> Path:
        """Cache folder of one library, keyed by the cache version, the zip's size and mtime and
        the conversion settings (a change gives a new folder; :meth:`ensure_cache` prunes old ones)."""
        info = self.libraries[library_stem]
        stamp = (f"{CACHE_VERSION}:{info.size_bytes}:{info.mtime_ns}:"
                 f"{self.config.max_texture_px}:{self.config.max_triangles}")
        return Path(self.config.cache_dir) / f"{library_stem}-{hashlib.sha1(stamp.encode()).hexdigest()[:12]}"

    def cache_path(self, asset_id: str) -> Path:
        """Path of a catalogue model's cached ``.npz`` (whether or not it exists yet)."""
        entry = self.entries[asset_id]
        return self.cache_folder(self._library_stem(entry)) / f"{_safe_name(asset_id)}.npz"

    def _zip(self, path: Path) -> zipfile.ZipFile:
        """The open zip of a library, reopened in a forked worker (a file offset shared across
        processes would garble concurrent reads)."""
        if self._zip_pid != os.getpid():
            self._zips, self._zip_pid = {}, os.getpid()
        if path not in self._zips:
            try:
                self._zips[path] = zipfile.ZipFile(path)
            except (OSError, zipfile.BadZipFile) as exc:
                raise AssetError(path.name, f"cannot open furniture library {path}: {exc}") from exc
        return self._zips[path]

    def close(self) -> None:
        """Close the open library zips (they reopen on demand)."""
        for zf in self._zips.values():
            zf.close()
        self._zips.clear()

    def load(self, asset_id: str) -> TexturedMesh:
        """The model in its object frame (see :mod:`ros2_amodal_seg.world.textured`).

        Catalogue models come from the cache, built on a miss (a failure is cached too, as a
        ``.error.txt``, so a bad model costs nothing on later runs); procedural variants are
        generated (deterministic, a few ms).

        Raises:
            AssetError: unknown id, or a missing/corrupt model, MTL or texture (naming the model).
        """
        self._known(asset_id)
        if asset_id in self._procedural:
            return _procedural().generate(asset_id)
        path = self.cache_path(asset_id)
        err = path.with_suffix(".error.txt")
        if path.exists():
            return load_mesh_npz(path)
        if err.exists():
            raise AssetError(asset_id, err.read_text(encoding="utf-8"))
        entry = self.entries[asset_id]
        try:
            mesh = load_catalog_model(entry, self._zip(entry.library_file),
                                      max_texture_px=self.config.max_texture_px,
                                      max_triangles=self.config.max_triangles)
        except AssetError as exc:
            path.parent.mkdir(parents=True, exist_ok=True)
            err.write_text(exc.detail, encoding="utf-8")
            raise
        save_mesh_npz(mesh, path)
        return mesh

    def load_or_none(self, asset_id: str) -> TexturedMesh | None:
        """:meth:`load`, or None for a model that cannot be loaded: the failure is recorded in
        :attr:`failures`, counted in :attr:`skipped` and logged once as a warning."""
        try:
            return self.load(asset_id)
        except AssetError as exc:
            if asset_id not in self.failures:
                log.warning("skipping %s (%d model(s) skipped so far)", exc, len(self.failures) + 1)
            self.failures[asset_id] = str(exc)
            self.skipped[asset_id] += 1
            return None

    def ensure_cache(self, asset_ids: Iterable[str] | None = None, progress: bool = True,
                     prune: bool = True) -> CacheReport:
        """Build the cache of the given catalogue models (default: every model the world uses),
        with a tqdm progress bar; already cached models are skipped in milliseconds.

        Args:
            asset_ids: catalogue ids (procedural ids are ignored: they need no cache).
            progress: show the progress bar.
            prune: delete cache folders of this cache root that belong to an older version or
                to an older state of a library.

        Returns:
            A :class:`CacheReport` (failures are recorded, not raised).
        """
        from tqdm import tqdm

        t0 = time.perf_counter()
        ids = [a for a in (self.used_ids() if asset_ids is None else asset_ids) if a not in self._procedural]
        for a in ids:
            self._known(a)
        if prune:
            self.prune_cache()
        report = CacheReport()
        todo = [a for a in ids if not self.cache_path(a).exists() and not self.cache_path(a).with_suffix(
            ".error.txt").exists()]
        report.cached = len(ids) - len(todo)
        for aid in tqdm(todo, desc="asset cache", unit="model", disable=not progress or not todo):
            try:
                self.load(aid)
                report.built += 1
            except AssetError as exc:
                report.failed[aid] = str(exc)
        for aid in ids:
            err = self.cache_path(aid).with_suffix(".error.txt")
            if err.exists():
                report.failed[aid] = err.read_text(encoding="utf-8")
        report.seconds = time.perf_counter() - t0
        report.bytes_on_disk = sum(p.stat().st_size for stem in self.libraries
                                   for p in self.cache_folder(stem).glob("*.npz"))
        return report

    def prune_cache(self) -> list[Path]:
        """Remove cache folders of these libraries whose stamp is stale; returns them."""
        root = Path(self.config.cache_dir)
        if not root.is_dir():
            return []
        current = {self.cache_folder(stem).name for stem in self.libraries}
        removed = []
        for d in root.iterdir():
            if d.is_dir() and d.name not in current and d.name.rsplit("-", 1)[0] in self.libraries:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(d)
        return removed

    def summary(self) -> dict[int, dict[str, dict[str, int]]]:
        """Per class: per split, counts ``{"catalogue": n, "procedural": n, "tabletop": n, "street": n}``."""
        out = {}
        for cid in WORLD_CLASSES:
            out[cid] = {}
            for split in SPLITS:
                ids = self.models(cid, split)
                out[cid][split] = {
                    "catalogue": sum(not i.startswith(PROCEDURAL_PREFIX) for i in ids),
                    "procedural": sum(i.startswith(PROCEDURAL_PREFIX) for i in ids),
                    **{p: len(self.models(cid, split, p)) for p in PRESETS}}
        return out

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except (OSError, AttributeError):
            pass


def write_credits(lib: AssetLibrary, path: Path, texture_names: Iterable[str] = ()) -> str:
    """Generate the credits file (Markdown) from the catalogue and the class map; returns the text.

    Lists the CC-BY libraries with their licence lines, every creator of a CC-BY model the world
    renders (objects and background) with the models, the CC0 library, and the scikit-image
    data used as textures.
    """
    used = lib.used_ids()
    by_lib: dict[str, dict[str, list[CatalogEntry]]] = {}
    cc0 = []
    for aid in used:
        e = lib.entries[aid]
        if e.license == LICENSE_CC0:
            cc0.append(e)
            continue
        by_lib.setdefault(e.library, {}).setdefault(e.creator or "unknown", []).append(e)
    lines = ["# Credits", "",
             "<!-- generated by `amodal-seg assets --credits CREDITS.md`; do not edit by hand -->", "",
             "The synthetic world (shared/spec/world.md, version 2) renders 3-D models of the Sweet Home 3D "
             "furniture libraries, as shipped by the Debian package `sweethome3d-furniture` "
             "(https://www.sweethome3d.com). The models are used as they are (converted to meshes, "
             "scaled to their catalogue size, textures downscaled); rendered images of them are in "
             "every generated dataset.", "",
             f"{len(used)} catalogue models are used ({sum(len(v) for d in by_lib.values() for v in d.values())} "
             f"CC-BY, {len(cc0)} CC0).", ""]
    lines += ["## CC-BY 3.0 libraries and creators", ""]
    for stem, info in sorted(lib.libraries.items()):
        if info.license != LICENSE_CC_BY or info.name not in by_lib:
            continue
        lines += [f"### {info.name} (`{info.file.name}`)", "", f"Licence: {info.license_text} "
                  "(https://creativecommons.org/licenses/by/3.0/).", ""]
        for creator, es in sorted(by_lib[info.name].items(), key=lambda kv: kv[0].lower()):
            models = ", ".join(f"{e.name} (`{e.id}`)" for e in sorted(es, key=lambda e: e.id))
            lines.append(f"- **{creator}**: {models}")
        lines.append("")
    for stem, info in sorted(lib.libraries.items()):
        if info.license == LICENSE_CC0:
            creators = sorted({e.creator for e in cc0 if e.library == info.name}, key=str.lower)
            lines += ["## CC0 library", "",
                      f"### {info.name} (`{info.file.name}`)", "",
                      f"Licence: {info.license_text or 'public domain'} (CC0 1.0). No attribution is required; "
                      f"we thank its creators all the same: {', '.join(creators)}.", ""]
    names = sorted(texture_names)
    if names:
        lines += ["## scikit-image data (textures and background photographs)", "",
                  "Images shipped in the `scikit-image` wheel (`skimage/data`, scikit-image is BSD-3-Clause), "
                  "used as ground, wall, table and background textures. Origin and licence of each, as the "
                  "`skimage.data` documentation states them:", ""]
        lines += [f"- {n}" for n in names]
        lines.append("")
    lines += ["## Procedural assets", "",
              "Traffic cones, delineators, barriers, bicycles, box trucks, packages and the procedural "
              "textures are generated by this package (`ros2_amodal_seg/world/procedural.py`, "
              "`ros2_amodal_seg/world/textures.py`) and are under its licence.", ""]
    text = "\n".join(lines)
    Path(path).write_text(text, encoding="utf-8")
    return text
