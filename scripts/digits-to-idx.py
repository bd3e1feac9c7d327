#!/usr/bin/env python3
"""Writes scikit-learn's bundled handwritten digits (1,797 images of 8x8 pixels, 10 classes;
a copy of the UCI "Optical Recognition of Handwritten Digits" test set) as the four IDX files
`candle-bcd train --data-dir` reads: a small image dataset other than MNIST that runs offline.

    pip install scikit-learn && python3 scripts/digits-to-idx.py OUT_DIR

Pixels 0..16 are scaled to 0..255; a seeded shuffle puts 1,297 images in the training files and
500 in the test files.
"""
import gzip
import struct
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: magic 0x0000 0x08 (ubyte) rank, then each dimension as a big-endian u32."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "digits")
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255 / 16)), 0, 255)
    order = np.random.RandomState(0).permutation(len(images))
    train, test = order[:1297], order[1297:]
    write_idx(out / "train-images-idx3-ubyte.gz", images[train])
    write_idx(out / "train-labels-idx1-ubyte.gz", digits.target[train])
    write_idx(out / "t10k-images-idx3-ubyte.gz", images[test])
    write_idx(out / "t10k-labels-idx1-ubyte.gz", digits.target[test])
    print(f"{len(train)} training and {len(test)} test images in {out}")


if __name__ == "__main__":
    main()
