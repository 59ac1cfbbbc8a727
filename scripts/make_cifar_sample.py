"""Writes a small stand-in for CIFAR-10 in its binary format, to try `cifar_cnn` and its
reader without the real data: 32 x 32 colour images of ten classes, each class a shape
(disc, square, bar, ring, cross) in one of two colour families, drawn at random places and
sizes over a noisy background of random colour.

    python3 scripts/make_cifar_sample.py DIR [--train N] [--test N]

writes DIR/data_batch_1.bin ... data_batch_5.bin (N/5 images each) and DIR/test_batch.bin.
"""

import argparse
import os
import random

SIZE = 32


def image(label, rng):
    shape, warm = label % 5, label >= 5
    bg = [rng.randint(0, 255) for _ in range(3)]
    if warm:
        fg = [rng.randint(180, 255), rng.randint(60, 140), rng.randint(0, 60)]
    else:
        fg = [rng.randint(0, 60), rng.randint(90, 170), rng.randint(180, 255)]
    cy, cx = rng.randint(10, 21), rng.randint(10, 21)
    r = rng.randint(5, 9)
    planes = [[0] * (SIZE * SIZE) for _ in range(3)]
    for y in range(SIZE):
        for x in range(SIZE):
            dy, dx = y - cy, x - cx
            inside = [
                dy * dy + dx * dx <= r * r,
                abs(dy) <= r and abs(dx) <= r,
                abs(dy) <= r // 3 and abs(dx) <= r + 3,
                (r - 2) ** 2 <= dy * dy + dx * dx <= r * r,
                (abs(dy) <= 1 and abs(dx) <= r) or (abs(dx) <= 1 and abs(dy) <= r),
            ][shape]
            for c in range(3):
                v = fg[c] if inside else bg[c]
                planes[c][y * SIZE + x] = max(0, min(255, v + rng.randint(-20, 20)))
    return bytes([label]) + bytes(planes[0] + planes[1] + planes[2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=500)
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    rng = random.Random(10)
    per = args.train // 5
    for b in range(1, 6):
        with open(os.path.join(args.dir, f"data_batch_{b}.bin"), "wb") as f:
            for i in range(per):
                f.write(image(rng.randrange(10), rng))
    with open(os.path.join(args.dir, "test_batch.bin"), "wb") as f:
        for i in range(args.test):
            f.write(image(rng.randrange(10), rng))
    print(f"wrote {per * 5} training and {args.test} test images to {args.dir}")


if __name__ == "__main__":
    main()
