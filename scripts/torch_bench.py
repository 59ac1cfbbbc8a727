"""PyTorch CUDA on the workloads of wgrad's bench (examples/bench.rs), for the side-by-side
of scripts/gpu-bench.sh: the same shapes, the same models, Adam at 1e-3, medians of timed
repeats after warm-up, each synchronised. Writes the records as wgrad's bench does."""

import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def timed(fn, warm=3, reps=7):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, min(times) * 1e3


def record(name, median, low, flop=None, nbytes=None, steps=False):
    r = {"name": name, "backend": "torch-cuda", "adapter": torch.cuda.get_device_name(0),
         "median_ms": round(median, 4), "min_ms": round(low, 4), "gflops": None, "gbps": None,
         "steps_per_s": None, "cold_ms": None, "peak_rss_mb": None}
    if flop:
        r["gflops"] = round(flop / (median * 1e-3) / 1e9, 4)
    if nbytes:
        r["gbps"] = round(nbytes / (median * 1e-3) / 1e9, 4)
    if steps:
        r["steps_per_s"] = round(1e3 / median, 4)
    print(f"{name:16s} {median:10.3f} ms  {low:10.3f} ms  "
          f"{r['gflops'] or r['gbps'] or r['steps_per_s'] or ''}")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    args = ap.parse_args()
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    g = torch.Generator(device=dev).manual_seed(0)
    rnd = lambda *s: torch.rand(*s, device=dev, generator=g) * 2 - 1
    out = []
    for n in [256, 512, 1024, 2048, 4096]:
        a, b = rnd(n, n), rnd(n, n)
        out.append(record(f"matmul_{n}", *timed(lambda: a @ b), flop=2 * n ** 3))
    for name, x, w, pad in [("conv2d_a", (64, 1, 28, 28), (32, 1, 3, 3), 0),
                            ("conv2d_b", (16, 64, 56, 56), (64, 64, 3, 3), 1)]:
        xs, ws = rnd(*x), rnd(*w)
        hw = (x[2] + 2 * pad - w[2] + 1) * (x[3] + 2 * pad - w[3] + 1)
        flop = 2 * x[0] * w[0] * hw * w[1] * w[2] * w[3]
        out.append(record(name, *timed(lambda: F.conv2d(xs, ws, padding=pad)), flop=flop))
    p = rnd(64, 32, 26, 26)
    out.append(record("maxpool", *timed(lambda: F.max_pool2d(p, 2))))
    for name, shape, dims in [("sum_all_1e6", (1 << 20,), (0,)), ("sum_rows", (1024, 1024), (1,)),
                              ("sum_cols", (1024, 1024), (0,)),
                              ("sum_nchw_bias", (128, 32, 26, 26), (0, 2, 3))]:
        t = rnd(*shape)
        out.append(record(name, *timed(lambda: t.sum(dim=dims)), nbytes=4 * t.numel()))

    def training(name, model, shape):
        model = model.to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = rnd(*shape)
        y = torch.randint(0, 10, (shape[0],), device=dev, generator=g)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            loss.item()
        return record(name, *timed(step, warm=5, reps=20), steps=True)

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    out.append(training("mlp_step", mlp, (128, 784)))
    cnn = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(64 * 3 * 3, 64), nn.ReLU(), nn.Linear(64, 10))
    out.append(training("cnn_step", cnn, (64, 1, 28, 28)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
