"""Real photos from registry packages for the demo (`make demo-real`) and the README's annotated example.

    python examples/real_photos.py OUT                      # writes the photos and a gallery folder into OUT
    python examples/real_photos.py OUT --annotate FILE.png  # also draws dlib's pipeline on the astronaut

Photos: scikit-image's astronaut (public domain, NASA) and camera, and the images in insightface's wheel (t1.jpg, a
group of six; Tom_Hanks_54745.png, a 112x112 face), fetched with `pip download insightface==2.1 --no-deps`
(facezoo.sdk.samples).
OUT/gallery/<name>/<image> is a folder for `facezoo gallery enroll`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def write_photos(out: Path) -> None:
    from facezoo.sdk.samples import insightface_photos, skimage_photos

    out.mkdir(parents=True, exist_ok=True)
    photos = {**skimage_photos(), **insightface_photos()}
    astronaut = Image.fromarray(photos["astronaut"])
    astronaut.save(out / "astronaut.png")
    astronaut.transpose(Image.FLIP_LEFT_RIGHT).rotate(10, resample=Image.BILINEAR).save(out / "astronaut_2.png")
    Image.fromarray(photos["camera"]).save(out / "camera.png")
    Image.fromarray(photos["t1.jpg"]).save(out / "t1.jpg", quality=95)
    hanks = Image.fromarray(photos["Tom_Hanks_54745.png"])
    hanks.save(out / "hanks.png")
    hanks.resize((224, 224), Image.BILINEAR).transpose(Image.FLIP_LEFT_RIGHT).save(out / "hanks_2.png")
    for person, image in (("astronaut", "astronaut.png"), ("hanks", "hanks.png"), ("camera_man", "camera.png")):
        (out / "gallery" / person).mkdir(parents=True, exist_ok=True)
        Image.open(out / image).save(out / "gallery" / person / image)


def annotate(photo: Path, png: Path) -> None:
    """The astronaut's head: dlib_mmod's box, dlib_sp68's 68 points (yellow), the 5 points they give (red) and the
    150x150 dlib chip dlib_resnet embeds, side by side."""
    from PIL import ImageDraw

    from facezoo.sdk.landmarker import create_landmarker
    from facezoo.sdk.pipeline import FaceAnalyzer

    img = np.ascontiguousarray(np.array(Image.open(photo).convert("RGB"))[20:250, 110:390])  # the head
    fa = FaceAnalyzer("dlib_mmod", "dlib_resnet", device="cpu")
    faces = fa.analyze(img)
    sp68 = create_landmarker("dlib_sp68")
    canvas = Image.fromarray(img)
    draw = ImageDraw.Draw(canvas)
    for f in faces:
        draw.rectangle([float(v) for v in f.bbox], outline=(0, 255, 0), width=2)
        label = f"dlib_mmod {f.det_score:.2f}"
        box = draw.textbbox((float(f.bbox[0]), float(f.bbox[1]) - 12), label)
        draw.rectangle(box, fill=(0, 255, 0))
        draw.text((float(f.bbox[0]), float(f.bbox[1]) - 12), label, fill=(0, 0, 0))
        for x, y in sp68(img, f.bbox):
            draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=(255, 255, 0))
        for x, y in f.kps:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], outline=(255, 0, 0), width=2)
    chips = [Image.fromarray(f.crop) for f in faces]
    out = Image.new("RGB", (canvas.width + 160, max(canvas.height, 160 * len(chips))), (255, 255, 255))
    ImageDraw.Draw(out).text((canvas.width + 5, 160), "dlib chip 150x150", fill=(0, 0, 0))
    out.paste(canvas, (0, 0))
    for i, chip in enumerate(chips):
        out.paste(chip, (canvas.width + 5, 5 + 160 * i))
    png.parent.mkdir(parents=True, exist_ok=True)
    out.save(png, optimize=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--annotate", type=Path, default=None, metavar="PNG")
    args = p.parse_args()
    write_photos(args.out)
    if args.annotate is not None:
        annotate(args.out / "astronaut.png", args.annotate)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
