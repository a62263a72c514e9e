"""Load amodal datasets of several layouts into one in-memory form (no ROS imports).

``load_dataset(path)`` auto-detects:

* the project's own format (``annotations.json`` written by ``amodal-seg generate``),
* detectron-style amodal COCO JSON (UOAIS-Sim, D2SA, COCOA-cls conversions):
  ``segmentation`` (amodal; polygons, compressed or uncompressed RLE),
  ``visible_mask`` (+ optional ``invisible_mask`` / ``occluded_mask``),
  ``occlude_rate`` or ``occluded_rate``,
* the COCOA "regions" layout: a folder of ``N.json`` + ``N.jpg`` (one image each), a
  single such JSON, or a combined JSON whose ``annotations`` entries carry ``regions``.

Every loader returns :class:`~ros2_amodal_seg.data.types.AmodalDataset`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ros2_amodal_seg import masks as mask_utils
from ros2_amodal_seg.data.types import AmodalAnnotation, AmodalDataset, AmodalSample
from ros2_amodal_seg.errors import DatasetError, MaskEncodingError

IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from exc


class LazyMask:
    """A mask kept encoded and decoded on every use: ``np.asarray(m)`` is its ``[H, W]`` bool array
    (``np.stack`` and other numpy functions accept it directly).

    Args:
        seg: its COCO segmentation (RLE dict or polygons). height, width: image size [px].
        where: context for error messages.
    """

    __slots__ = ("seg", "shape", "where")

    def __init__(self, seg, height: int, width: int, where: str = "") -> None:
        self.seg, self.shape, self.where = seg, (int(height), int(width)), where

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        m = decode_segmentation(self.seg, *self.shape, where=self.where)
        return m if dtype is None else m.astype(dtype)


def decode_segmentation(seg, height: int, width: int, *, where: str = "") -> np.ndarray:
    """Decode a COCO segmentation (polygon list, compressed or uncompressed RLE).

    Args:
        seg: ``[[x0, y0, x1, y1, ...], ...]`` polygons (or one flat polygon), or an RLE dict.
        height, width: image size [px]; an RLE of another size is an error.
        where: context for error messages.

    Returns:
        ``[H, W]`` bool.

    Raises:
        DatasetError: malformed polygons or RLE (wrong size, bad counts).
    """
    from pycocotools import mask as coco_mask

    try:
        if isinstance(seg, dict):
            return mask_utils.decode(seg, expected_size=(height, width))
        if isinstance(seg, (list, tuple)):
            if len(seg) == 0:
                return np.zeros((height, width), dtype=bool)
            polys = [seg] if isinstance(seg[0], (int, float)) else seg
            clean = []
            for poly in polys:
                if not isinstance(poly, (list, tuple)) or len(poly) % 2 or \
                        not all(isinstance(v, (int, float)) for v in poly):
                    raise DatasetError(f"{where}: a polygon must be a flat list of x, y numbers")
                if len(poly) >= 6:
                    clean.append([float(v) for v in poly])
            if not clean:
                return np.zeros((height, width), dtype=bool)
            rles = coco_mask.frPyObjects(clean, height, width)
            return coco_mask.decode(coco_mask.merge(rles)).astype(bool)
    except MaskEncodingError as exc:
        raise DatasetError(f"{where}: {exc}") from exc
    raise DatasetError(f"{where}: segmentation must be polygons or an RLE dict, got {type(seg).__name__}")


def _matrix(values, shape, where: str) -> np.ndarray | None:
    if values is None:
        return None
    try:
        return np.asarray(values, dtype=np.float64).reshape(shape)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{where}: expected {int(np.prod(shape))} numbers, got {values!r:.80}") from exc


def _require(d: dict, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(d, dict):
        raise DatasetError(f"{where}: expected an object, got {type(d).__name__}")
    missing = [k for k in keys if k not in d]
    if missing:
        raise DatasetError(f"{where}: missing required key(s) {missing}")


# ------------------------------------------------------------------------------- COCO / detectron

def _decode_pair(a: dict, h: int, w: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """An annotation's ``[H, W]`` bool amodal and visible masks (visible from ``visible_mask``, or amodal
    minus ``invisible_mask`` / ``occluded_mask``, or the amodal mask when neither is given)."""
    amodal = decode_segmentation(a["segmentation"], h, w, where=f"{where} segmentation")
    if a.get("visible_mask") is not None:
        return amodal, decode_segmentation(a["visible_mask"], h, w, where=f"{where} visible_mask")
    hidden_key = "invisible_mask" if a.get("invisible_mask") is not None else \
        ("occluded_mask" if a.get("occluded_mask") is not None else None)
    if hidden_key:
        return amodal, amodal & ~decode_segmentation(a[hidden_key], h, w, where=f"{where} {hidden_key}")
    return amodal, amodal.copy()


def load_coco_amodal(json_path: str | Path, image_root: str | Path | None = None, *,
                     lazy_masks: bool = False) -> AmodalDataset:
    """Read a COCO-style amodal JSON (the project's format or detectron-style UOAIS/D2SA).

    Args:
        json_path: the annotation file.
        image_root: folder that ``file_name`` / ``lidar_file_name`` are relative to
            (default: the JSON's folder).
        lazy_masks: keep masks encoded and decode them on each use (:class:`LazyMask`), for
            datasets too large to hold decoded (8000 frames at 640x480 are some 45 GB decoded);
            annotations without a visible mask or an occlusion rate are decoded at once.

    Raises:
        DatasetError: unreadable file, missing keys, masks of the wrong size, unknown ids.
    """
    json_path = Path(json_path)
    root = Path(image_root) if image_root is not None else json_path.parent
    doc = _read_json(json_path)
    _require(doc, ("images", "annotations"), str(json_path))
    cats = {}
    for c in doc.get("categories", []):
        _require(c, ("id", "name"), f"{json_path}: category")
        cats[int(c["id"])] = str(c["name"])
    samples: dict[int, AmodalSample] = {}
    for k, im in enumerate(doc["images"]):
        where = f"{json_path}: images[{k}]"
        _require(im, ("id", "file_name", "width", "height"), where)
        cam = im.get("camera") or {}
        K = _matrix(cam.get("K", im.get("K")), (3, 3), f"{where} camera.K")
        D = _matrix(cam.get("D", im.get("D")), (-1,), f"{where} camera.D")
        lid = im.get("lidar_file_name")
        s = AmodalSample(
            image_id=int(im["id"]), file_name=root / im["file_name"], width=int(im["width"]),
            height=int(im["height"]), K=K, D=D,
            T_camera_lidar=_matrix(im.get("T_camera_lidar"), (4, 4), f"{where} T_camera_lidar"),
            T_base_camera=_matrix(im.get("T_base_camera"), (4, 4), f"{where} T_base_camera"),
            lidar_file=(root / lid) if lid else None, preset=im.get("preset"), split=im.get("split"))
        if s.image_id in samples:
            raise DatasetError(f"{where}: duplicate image id {s.image_id}")
        samples[s.image_id] = s
    for k, a in enumerate(doc["annotations"]):
        where = f"{json_path}: annotations[{k}]"
        _require(a, ("id", "image_id", "category_id", "segmentation"), where)
        where = f"{json_path}: annotation {a['id']}"
        s = samples.get(int(a["image_id"]))
        if s is None:
            raise DatasetError(f"{where}: image_id {a['image_id']} is not in 'images'")
        h, w = s.height, s.width
        rate = a.get("occlude_rate", a.get("occluded_rate"))
        if lazy_masks and a.get("visible_mask") is not None and rate is not None:
            amodal = LazyMask(a["segmentation"], h, w, f"{where} segmentation")
            visible = LazyMask(a["visible_mask"], h, w, f"{where} visible_mask")
        else:
            amodal, visible = _decode_pair(a, h, w, where)
        if rate is None:
            n = int(amodal.sum())
            rate = 1.0 - float((visible & amodal).sum()) / n if n else 0.0
        fp = a.get("footprint")
        cid = int(a["category_id"])
        s.annotations.append(AmodalAnnotation(
            id=int(a["id"]), category_id=cid, category_name=cats.get(cid, f"unknown_{cid}"),
            amodal=amodal, visible=visible, occlude_rate=float(rate),
            occluded_by=[int(j) for j in a.get("occluded_by", [])], order=int(a.get("order", -1)),
            footprint=_matrix(fp, (-1, 2), f"{where} footprint") if fp is not None else None,
            asset=str(a["asset"]) if a.get("asset") is not None else None))
    return AmodalDataset(categories=cats, samples=list(samples.values()), source=json_path)


# ------------------------------------------------------------------------------- COCOA regions

def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def _find_image(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTS:
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    return None


def _cocoa_sample(entry: dict, image_path: Path, image_id: int, name_to_id: dict[str, int],
                  next_ann_id: list[int], where: str, size: tuple[int, int] | None = None) -> AmodalSample:
    _require(entry, ("regions",), where)
    regions = entry["regions"]
    if not isinstance(regions, list):
        raise DatasetError(f"{where}: 'regions' must be a list")
    if size is None:
        size = None
        for r in regions:                                  # prefer a size stored in an RLE
            for key in ("visible_mask", "invisible_mask"):
                if isinstance(r, dict) and isinstance(r.get(key), dict) and "size" in r[key]:
                    size = (int(r[key]["size"][0]), int(r[key]["size"][1]))
                    break
            if size:
                break
        if size is None:
            size = _image_size(image_path)
    h, w = size
    anns = []
    for k, r in enumerate(regions):
        rw = f"{where} regions[{k}]"
        _require(r, ("segmentation", "name"), rw)
        amodal = decode_segmentation(r["segmentation"], h, w, where=f"{rw} segmentation")
        if r.get("visible_mask") is not None:
            visible = decode_segmentation(r["visible_mask"], h, w, where=f"{rw} visible_mask")
        elif r.get("invisible_mask") is not None:
            visible = amodal & ~decode_segmentation(r["invisible_mask"], h, w, where=f"{rw} invisible_mask")
        else:
            visible = amodal.copy()                         # not occluded: visible = amodal
        if r.get("invisible_mask") is not None:
            hidden = decode_segmentation(r["invisible_mask"], h, w, where=f"{rw} invisible_mask")
        else:
            hidden = amodal & ~visible
        name = str(r["name"]).strip()
        anns.append((AmodalAnnotation(
            id=next_ann_id[0], category_id=name_to_id[name], category_name=name, amodal=amodal,
            visible=visible, occlude_rate=float(r.get("occlude_rate", 0.0)),
            order=int(r.get("order", -1))), hidden))
        next_ann_id[0] += 1
    # occluded_by from the depth order: j occludes i when j is in front (smaller order)
    # and covers part of i's hidden region.
    for a, hidden in anns:
        if not hidden.any():
            continue
        for b, _ in anns:
            if b is a:
                continue
            in_front = b.order >= 0 and a.order >= 0 and b.order < a.order
            if in_front and (hidden & b.amodal).any():
                a.occluded_by.append(b.id)
    return AmodalSample(image_id=image_id, file_name=image_path, width=w, height=h,
                        annotations=[a for a, _ in anns])


def _cocoa_names(entries: list[dict]) -> dict[str, int]:
    names = sorted({str(r.get("name", "")).strip() for e in entries for r in e.get("regions", [])
                    if isinstance(r, dict)})
    return {n: i + 1 for i, n in enumerate(names)}


def load_cocoa_regions(path: str | Path) -> AmodalDataset:
    """Read the COCOA "regions" layout.

    ``path`` is a folder of ``N.json`` + ``N.jpg`` pairs, one such JSON, or a combined
    COCOA JSON (``images`` + ``annotations`` entries with ``regions``). Category ids are
    assigned to the (stripped) region names in sorted order, starting at 1.
    ``occluded_by`` is derived from ``order`` and the invisible masks.

    Raises:
        DatasetError: missing files or keys, malformed masks.
    """
    path = Path(path)
    items: list[tuple[dict, Path, int, tuple[int, int] | None, str]] = []
    if path.is_dir():
        files = sorted(path.glob("*.json"), key=lambda p: (len(p.stem), p.stem))
        if not files:
            raise DatasetError(f"{path}: no *.json files found")
        for jf in files:
            entry = _read_json(jf)
            img = _find_image(path, jf.stem)
            if img is None:
                raise DatasetError(f"{jf}: no image {jf.stem}.jpg/.png beside it")
            iid = int(jf.stem) if jf.stem.isdigit() else len(items) + 1
            items.append((entry, img, iid, None, str(jf)))
    else:
        doc = _read_json(path)
        if isinstance(doc, dict) and "regions" in doc:
            img = _find_image(path.parent, path.stem)
            if img is None:
                raise DatasetError(f"{path}: no image {path.stem}.jpg/.png beside it")
            items.append((doc, img, int(doc.get("image_id", 1)), None, str(path)))
        elif isinstance(doc, dict) and "annotations" in doc:
            images = {int(im["id"]): im for im in doc.get("images", []) if isinstance(im, dict) and "id" in im}
            for k, e in enumerate(doc["annotations"]):
                where = f"{path}: annotations[{k}]"
                _require(e, ("image_id", "regions"), where)
                im = images.get(int(e["image_id"]))
                if im is None:
                    raise DatasetError(f"{where}: image_id {e['image_id']} is not in 'images'")
                _require(im, ("file_name",), f"{path}: image {e['image_id']}")
                size = (int(im["height"]), int(im["width"])) if "height" in im and "width" in im else None
                items.append((e, path.parent / im["file_name"], int(e["image_id"]), size, where))
        else:
            raise DatasetError(f"{path}: not a COCOA regions file (no 'regions' or 'annotations')")
    name_to_id = _cocoa_names([it[0] for it in items])
    next_id = [1]
    samples = [_cocoa_sample(e, img, iid, name_to_id, next_id, where, size) for e, img, iid, size, where in items]
    return AmodalDataset(categories={i: n for n, i in name_to_id.items()}, samples=samples, source=path)


# ------------------------------------------------------------------------------- auto-detection

def detect_format(path: str | Path) -> str:
    """``"coco"`` (project / detectron-style JSON) or ``"cocoa"`` (regions layout).

    Raises:
        DatasetError: the path does not exist or holds neither layout.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"dataset path {path} does not exist")
    if path.is_dir():
        if (path / "annotations.json").exists():
            return "coco"
        jsons = sorted(path.glob("*.json"))
        if not jsons:
            raise DatasetError(f"{path}: no annotations.json and no COCOA *.json files")
        doc = _read_json(jsons[0])
        if isinstance(doc, dict) and "regions" in doc:
            return "cocoa"
        if isinstance(doc, dict) and "images" in doc and len(jsons) == 1:
            return "coco"
        raise DatasetError(f"{path}: cannot tell the dataset layout from {jsons[0].name}")
    doc = _read_json(path)
    if not isinstance(doc, dict):
        raise DatasetError(f"{path}: top level must be a JSON object")
    if "regions" in doc:
        return "cocoa"
    anns = doc.get("annotations")
    if isinstance(anns, list) and anns and isinstance(anns[0], dict) and "regions" in anns[0]:
        return "cocoa"
    if "images" in doc or "annotations" in doc:
        return "coco"                                      # missing keys are reported by the loader
    raise DatasetError(f"{path}: neither COCO-style ('images' + 'annotations') nor COCOA ('regions')")


def load_dataset(path: str | Path, *, lazy_masks: bool = False) -> AmodalDataset:
    """Load a dataset folder or annotation file of any supported layout (auto-detected).

    Args:
        path: a folder with ``annotations.json`` (project format), a COCO-style JSON
            (project / UOAIS-Sim / D2SA), a COCOA folder of ``N.json`` + ``N.jpg``, or a
            COCOA JSON.
        lazy_masks: see :func:`load_coco_amodal` (COCOA is always decoded).

    Raises:
        DatasetError: missing path, unknown layout, malformed content.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "cocoa":
        return load_cocoa_regions(path)
    if path.is_dir():
        j = path / "annotations.json"
        if not j.exists():
            j = sorted(path.glob("*.json"))[0]
        return load_coco_amodal(j, lazy_masks=lazy_masks)
    return load_coco_amodal(path, lazy_masks=lazy_masks)


def write_dataset(out_dir, frames, **kwargs):
    """Re-export of :func:`ros2_amodal_seg.data.writer.write_dataset` (frames -> project format)."""
    from ros2_amodal_seg.data.writer import write_dataset as _w

    return _w(out_dir, frames, **kwargs)
