"""What the largest images the photo path accepts cost: time and memory to turn each into a model
input (fashion_tune/images.py), each measured in a fresh process so that its peak memory is its own.

The cases: a highly compressible PNG just under the pixel limit (images.MAX_PIXELS: a tiny upload
that decodes to 40 megapixels), a JPEG of the same size (decoded at a reduced scale), and a PNG
just over the limit (refused before its pixels are decoded); beside them an ordinary 300x300 JPEG,
whose process's peak (the imports' own) is what the others add to.

    python benchmarks/hostile_images.py [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEASURE = """
import resource, sys, time
sys.path.insert(0, {root!r})
from fashion_tune import images
raw = open({path!r}, "rb").read()
began = time.perf_counter()
try:
    images.to_model_input_from_bytes(raw, "hostile")
    outcome = "decoded"
except images.ImageError as e:
    outcome = "refused: " + str(e)
seconds = time.perf_counter() - began
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(repr({{"outcome": outcome, "seconds": seconds, "peak_mib": peak / 1024}}))
"""


def hostile(pixels: int, format: str) -> bytes:
    """A white square image of about `pixels` pixels with one dark rectangle: a garment-like object
    that compresses to almost nothing."""
    from PIL import Image, ImageDraw

    side = math.isqrt(pixels)
    image = Image.new("RGB", (side, side), "white")
    ImageDraw.Draw(image).rectangle([side // 4, side // 4, 3 * side // 4, 3 * side // 4], fill=(30, 60, 90))
    out = io.BytesIO()
    image.save(out, format=format, **({"optimize": True} if format == "PNG" else {"quality": 90}))
    return out.getvalue()


def measure() -> dict[str, dict]:
    from fashion_tune.images import MAX_PIXELS

    cases = {"300x300 JPEG (reference)": (300 * 300, "JPEG"),
             "PNG just under the limit": (MAX_PIXELS - 100_000, "PNG"),
             "JPEG just under the limit": (MAX_PIXELS - 100_000, "JPEG"),
             "PNG just over the limit": (MAX_PIXELS + 100_000, "PNG")}
    found = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (pixels, format) in cases.items():
            path = Path(folder) / f"hostile.{format.lower()}"
            # made in a process of its own: a process's peak memory counts its parent's at the fork
            subprocess.run([sys.executable, __file__, "--make", str(path), str(pixels), format], check=True)
            done = subprocess.run([sys.executable, "-c", MEASURE.format(root=str(ROOT), path=str(path))],
                                  capture_output=True, text=True, check=True)
            found[name] = {"file_bytes": path.stat().st_size, "pixels": math.isqrt(pixels) ** 2,
                           **eval(done.stdout.strip().splitlines()[-1])}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--make", nargs=3, metavar=("PATH", "PIXELS", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        path, pixels, format = args.make
        Path(path).write_bytes(hostile(int(pixels), format))
        return
    found = measure()
    if args.json:
        print(json.dumps(found))
        return
    for name, row in found.items():
        print(f"{name:28s} {row['file_bytes'] / 1e3:8.0f} kB  {row['pixels'] / 1e6:5.1f} Mpx  "
              f"{row['seconds']:6.2f} s  peak RSS {row['peak_mib']:5.0f} MiB  {row['outcome'][:50]}")


if __name__ == "__main__":
    main()
