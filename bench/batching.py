"""Does optimizing several frames as one batch raise a GPU's throughput? (#6's batching question)

    python bench/batching.py [--size 512x288] [--batches 1,2,4,8] [--precision bf16]

Times vstyle's real objective (VGG19 forward to conv5_1, content + style + TV loss, backward to
the pixels), recorded as a CUDA graph the way the frame loop runs it, for B images at once, and
prints ms per evaluation, ms per image, achieved TFLOP/s from the counted VGG FLOPs and the gain
in images/s over B = 1. The first row is a large bf16 matrix product: the card's practical peak,
measured the same way. GPU only.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import vstyle  # noqa: E402
from vstyle.optimize import CapturedStep, FrameInputs, Stylizer  # noqa: E402
from vstyle.options import Options  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from speed import vgg_flops  # noqa: E402


def timed(fn, repeats: int = 30) -> float:
    """Median seconds of fn() over `repeats` runs, timed with CUDA events after a warm-up."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return float(np.median(times))


def matmul_peak() -> float:
    """TFLOP/s of an 8192^3 bf16 matrix product on random data."""
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    return 2 * 8192 ** 3 / timed(lambda: a @ b, 10) / 1e12


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="512x288", help="W x H of each frame")
    p.add_argument("--batches", default="1,2,4,8")
    p.add_argument("--precision", default="bf16")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/batching.py needs a CUDA GPU")
    warnings.simplefilter("ignore", vstyle.VStyleWarning)
    w, h = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    style = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    stylizer = Stylizer([style], Options(weights="random", device="cuda",
                                         precision=args.precision))
    flops = vgg_flops((w, h))
    peak = matmul_peak()
    print(f"# batching: {torch.cuda.get_device_name()}, {w}x{h}, {args.precision}, one objective "
          f"evaluation (forward + losses + backward), CUDA graph; bf16 matmul peak {peak:.0f} "
          "TFLOP/s")
    print("| images per batch | ms per evaluation | ms per image | TFLOP/s | % of matmul peak | "
          "images/s vs 1 |")
    print("|---|---|---|---|---|---|")
    single = None
    for b in (int(v) for v in args.batches.split(",")):
        content = torch.rand(b, 3, h, w, device="cuda")
        if stylizer.reference is None:
            stylizer.calibrate(content[:1], content[:1])
        inputs = FrameInputs(stylizer.content_targets(content), [], None)
        x = (content + 0.05 * torch.randn_like(content)).clamp(0, 1)
        step = CapturedStep(stylizer.loss_and_grad, x, inputs)
        seconds = timed(lambda: step(x))
        per_image = seconds / b
        single = single or per_image
        tflops = flops * b / seconds / 1e12
        print(f"| {b} | {seconds * 1e3:.2f} | {per_image * 1e3:.2f} | {tflops:.0f} | "
              f"{tflops / peak:.0%} | {single / per_image:.2f}x |")
        step = None  # free its graph before the next size
        torch.cuda.empty_cache()
    if stylizer.tf32:  # the Gram matmuls in TF32 or in full fp32, one image, alternating
        content = torch.rand(1, 3, h, w, device="cuda")
        inputs = FrameInputs(stylizer.content_targets(content), [], None)
        steps = {}
        for tf32 in (True, False):
            stylizer.tf32 = tf32  # read while the graph is recorded
            steps[tf32] = CapturedStep(stylizer.loss_and_grad, content, inputs)
        times = {tf32: [] for tf32 in steps}
        for _ in range(3):
            for tf32, step in steps.items():
                times[tf32].append(timed(lambda: step(content)))
        on, off = (float(np.median(times[t])) * 1e3 for t in (True, False))
        print(f"\nTF32 Grams, 1 image: {on:.2f} ms an evaluation; fp32 Grams {off:.2f} ms "
              f"({off / on:.2f}x)")


if __name__ == "__main__":
    main()
