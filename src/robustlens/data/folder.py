"""Images in class sub-folders (``root/<class>/<image>``), the layout of torchvision's ``ImageFolder``.

Images are decoded with Pillow (a dependency of matplotlib, so always present) and scaled to ``[0, 1]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, CorruptFileError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def load_folder_arrays(root: Path, image_size: tuple[int, int] | None = None,
                       channels: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images ``(N, C, H, W)`` uint8, labels and class names (sorted sub-folder names) from ``root``.

    Args:
        root: folder with one sub-folder per class.
        image_size: ``(H, W)`` to resize every image to; required when the images differ in size.
        channels: 1 (grayscale) or 3 (RGB); by default 1 when every image is grayscale, else 3.
    """
    from PIL import Image, UnidentifiedImageError

    if not root.is_dir():
        raise ConfigError(f"folder: {root} is not a directory; pass root= pointing at a folder of class sub-folders")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ConfigError(f"folder: {root} has no class sub-folders; expected root/<class>/<image>.png")
    files: list[tuple[Path, int]] = []
    for k, c in enumerate(classes):
        files += [(f, k) for f in sorted((root / c).rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ConfigError(f"folder: no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    images: list[Image.Image] = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                im.load()
                images.append(im.copy())
        except (UnidentifiedImageError, OSError) as e:
            raise CorruptFileError(f"folder: cannot decode {f} ({e}); remove or replace the file") from e
    if channels is None:
        channels = 1 if all(im.mode in ("L", "1", "I;16", "I", "F") for im in images) else 3
    if channels not in (1, 3):
        raise ConfigError(f"folder: channels must be 1 or 3, got {channels}")
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for image in images:
        conv = image.convert(mode)
        if image_size is not None:
            conv = conv.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
        arrays.append(np.asarray(conv, dtype=np.uint8).reshape(conv.size[1], conv.size[0], channels))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ConfigError(f"folder: images under {root} differ in size ({sorted(shapes)[:3]}...); pass "
                          "image_size=(H, W) to resize them")
    x = np.stack(arrays).transpose(0, 3, 1, 2)
    y = np.array([k for _, k in files], dtype=np.int64)
    return x, y, classes
