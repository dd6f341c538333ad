"""Speed benchmark: vstyle against a naive Gatys loop, on the same frames, style and device.

    python bench/speed.py [--quick] [--frames 8] [--size 128] [--device auto] [--memory]

The naive baseline is written the way neural-style-like scripts are: every frame from its own
content (no warm start), fp32, the style image run through VGG19 for its Grams in every
iteration, torch.optim.LBFGS for a fixed number of iterations. It minimizes the same normalized
loss as vstyle (without that normalization torch's L-BFGS stops after one step, FACTS.md).

Each row: s/frame, iterations/s, achieved TFLOP/s (counted VGG19 FLOPs, GPU only), peak GPU
memory, the mean final loss (the same evaluator for every row), and the time vstyle needs per
frame to reach the loss the baseline reaches on that frame ("time to baseline loss": the fair
speed ratio). --memory adds peak RSS for a short and a long clip at 64 px (each in its own
process): memory must not grow with the clip's length.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import vstyle  # noqa: E402
from vstyle import losses, media, optimize  # noqa: E402
from torch import nn  # noqa: E402
from vstyle.optimize import Stylizer, to_tensor  # noqa: E402
from vstyle.options import Options  # noqa: E402
from vstyle.vgg import layer_names, vgg19_features  # noqa: E402
from vstyle.video import fit_style  # noqa: E402


def vgg_flops(size: tuple[int, int], last_layer: str = "conv5_1") -> float:
    """FLOPs of one forward + backward-to-the-pixels pass (~2x the forward's 2*MACs)."""
    w, h = size
    flops = 0.0
    layers = list(vgg19_features(init=False))[: layer_names().index(last_layer) + 1]
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            flops += 2 * layer.in_channels * layer.out_channels * 9 * w * h
        elif isinstance(layer, nn.MaxPool2d):
            w, h = w // 2, h // 2
    return 2 * flops


def naive(contents: list[np.ndarray], style: np.ndarray, o: Options, iterations: int,
          evaluator: Stylizer) -> list[dict]:
    """The plain loop: from scratch every frame, Grams recomputed every iteration."""
    net = copy.deepcopy(evaluator.net).to(memory_format=torch.contiguous_format)  # plain NCHW
    device = evaluator.device
    style_t = to_tensor(style, device)
    rows = []
    for content_img in contents:
        start = time.perf_counter()
        content = to_tensor(content_img, device)
        with torch.no_grad():
            targets = {l: f for l, f in net(content).items() if l in o.content_layers}
        x = content.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([x], max_iter=iterations, history_size=100,
                                tolerance_grad=-1, tolerance_change=-1)

        def closure():
            opt.zero_grad()
            feats, style_feats = net(x), net(style_t)  # the style's Grams, every iteration
            c = sum(losses.content_loss(feats[l], targets[l]) for l in o.content_layers)
            s = sum(losses.style_layer_loss(feats[l], losses.gram(style_feats[l]))
                    for l in o.style_layers)
            loss = (o.content_weight * c + o.style_weight * s).sum() / evaluator.reference
            loss = loss + o.tv_weight * losses.tv_loss(x).sum()
            loss.backward()
            return loss
        opt.step(closure)
        sync(device)
        rows.append(dict(seconds=time.perf_counter() - start, iterations=iterations,
                         image=(x.detach().clamp(0, 1)[0].permute(1, 2, 0) * 255).round()
                         .byte().cpu().numpy()))
    return rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(evaluator: Stylizer, image: np.ndarray, content: np.ndarray) -> float:
    """One objective for every row: normalized content + style, plus TV."""
    x, c = to_tensor(image, evaluator.device), to_tensor(content, evaluator.device)
    with torch.no_grad():
        value, _ = evaluator.perceptual(x, evaluator.content_targets(c))
        return float(value.sum() / evaluator.reference +
                     evaluator.options.tv_weight * losses.tv_loss(x).sum())


def run_vstyle(clip: Path, style_path: Path, n: int, o: Options, work: Path) -> list[dict]:
    """Run the real pipeline; per frame: seconds, iterations and the loss after each iteration."""
    frames: list[dict] = []
    clock = [time.perf_counter()]

    def on_event(e: vstyle.Event):
        if e.kind == "frame_start":
            frames.append(dict(curve=[]))
            clock[0] = time.perf_counter()
        elif e.kind == "step":
            frames[-1]["curve"].append((time.perf_counter() - clock[0], e.loss))
    vstyle.stylize(clip, style_path, work, o, max_frames=n, on_event=on_event)
    images = [media.load_image(p) for p in media.written_frames(work)]
    for f, image in zip(frames, images):
        f["image"], f["iterations"] = image, len(f["curve"])
        f["seconds"] = f["curve"][-1][0] if f["curve"] else 0.0
    return frames


def time_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    for seconds, loss in curve:
        if loss <= target:
            return seconds
    return None


def memory_row(frames: int) -> float:
    """Peak RSS (MiB) of a whole run over a generated `frames`-frame 64 px clip."""
    code = f"""
import resource, sys, tempfile, warnings
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'tests')!r})
warnings.simplefilter('ignore')
from pathlib import Path
import vstyle
from conftest import scene, write_mp4
tmp = Path(tempfile.mkdtemp())
clip = write_mp4(tmp / 'c.mp4', [scene(t % 32, 64, 48) for t in range({frames})])
vstyle.stylize(clip, {str(ROOT / 'samples' / 'style.jpg')!r}, tmp / 'o.mp4', size=48,
               iterations=1, first_iterations=2, min_iterations=0, weights='random')
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="6 frames at 64 px (about a minute on 2 cores)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iterations", type=int, default=50, help="the baseline's, per frame")
    p.add_argument("--device", default="auto")
    p.add_argument("--weights", default="random")
    p.add_argument("--memory", action="store_true", help="peak RSS, 20 vs 2000 frames at 48 px")
    p.add_argument("--clip", type=Path, default=ROOT / "samples" / "clip.mp4")
    p.add_argument("--style", type=Path, default=ROOT / "samples" / "style.jpg")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--profile", action="store_true",
                   help="only profile 10 iterations of a warm frame (torch.profiler) and print "
                        "where the time goes")
    args = p.parse_args()
    if args.quick:
        args.frames, args.size, args.iterations = 6, 64, 20
    warnings.simplefilter("ignore", vstyle.VStyleWarning)

    base = Options(size=args.size, device=args.device, weights=args.weights,
                   first_iterations=args.iterations, iterations=args.iterations)
    source = media.open_source(args.clip, args.frames)
    size = media.fit_size(source.size, args.size)
    contents = list(source.frames(size))
    style = fit_style(media.load_image(args.style), base, size, contents[0])
    evaluator = Stylizer([style], base.replace(precision="fp32"))  # judge every row in fp32
    evaluator.calibrate(to_tensor(contents[0], evaluator.device),
                        to_tensor(contents[0], evaluator.device))
    device = evaluator.device
    flops = vgg_flops(size)

    if args.profile:
        profile(Stylizer([style], base, evaluator.net), contents, device)
        return

    rows = []
    reset_peak(device)
    baseline = naive(contents, style, base, args.iterations, evaluator)
    targets = [evaluate(evaluator, f["image"], c) for f, c in zip(baseline, contents)]
    rows.append(summary("naive Gatys loop (baseline)", baseline, targets, targets, flops, device))

    variants = [
        ("vstyle defaults (flow warm start, temporal loss, --tol)", {}),
        ("  without warm start (--warm-start none)", dict(warm_start="none")),
        ("  without early stopping (--tol 0)", dict(tol=0.0)),
        ("  without flow (--warm-start previous)", dict(warm_start="previous")),
        ("  without temporal loss (--temporal-weight 0)", dict(temporal_weight=0.0)),
        ("  without bf16 (--precision fp32)", dict(precision="fp32")) if device.type == "cuda"
        else ("  with bf16 autocast (--precision bf16)", dict(precision="bf16")),
    ]
    if device.type == "cuda":
        variants.append(("  without CUDA graphs (--no-cuda-graphs)", dict(cuda_graphs=False)))
        variants.append(("  without TF32 Grams (fp32 matmuls)", dict(tf32=False)))
    with tempfile.TemporaryDirectory() as tmp:
        # cuDNN times its kernels at the first use of each shape and dtype in a process: a
        # short throwaway run pays for that here, not the first row
        run_vstyle(args.clip, args.style, 2, base, Path(tmp) / "warm-up")
        for i, (label, changes) in enumerate(variants):
            changes = dict(changes)
            optimize.TF32_GRAMS = changes.pop("tf32", True)  # a constant, not an option
            o = base.replace(**changes)
            reset_peak(device)
            frames = run_vstyle(args.clip, args.style, args.frames, o, Path(tmp) / f"v{i}")
            finals = [evaluate(evaluator, f["image"], c) for f, c in zip(frames, contents)]
            row = summary(label, frames, finals, targets, flops, device)
            rows.append(row)

    print(f"# speed: {args.frames} frames of {args.clip.name} at {size[0]}x{size[1]}, device "
          f"{device_name(device)}, weights {args.weights}, baseline {args.iterations} it/frame, "
          f"torch threads {torch.get_num_threads()}")
    print("| run | s/frame | it/frame | it/s | TFLOP/s | peak GPU MiB | final loss | "
          "time to baseline loss (s/frame) | speed-up at equal loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    base_time = rows[0]["s_per_frame"]
    for r in rows:
        reach = r["reach"]
        speedup = f"{base_time / reach:.1f}x" if reach else "-"
        partial = "" if r["reached"] in (None, r["n"]) else f" ({r['reached']}/{r['n']} frames)"
        reach_text = f"{reach:.3f}" if reach else "not reached"
        print(f"| {r['label']} | {r['s_per_frame']:.3f} | {r['its']:.1f} | {r['it_s']:.1f} | "
              f"{r['tflops']} | {r['peak']} | {r['loss']:.4f} | {reach_text}{partial} | "
              f"{speedup} |")
    if args.memory:
        short, long = memory_row(20), memory_row(200 if args.quick else 2000)
        print(f"\npeak RSS at 48 px: 20 frames {short:.0f} MiB, "
              f"{200 if args.quick else 2000} frames {long:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def profile(stylizer: Stylizer, contents: list[np.ndarray], device: torch.device) -> None:
    """The operators that take the time in 10 iterations of frame 2, warm-started from frame 1."""
    from torch.profiler import ProfilerActivity
    first, second = (to_tensor(c, device) for c in contents[:2])
    stylizer.calibrate(first, first)
    warm, _ = stylizer.stylize(first, first, 10)  # also warms up cuDNN's autotuner
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    start = time.perf_counter()
    stylizer.stylize(second, warm, 10)
    sync(device)
    wall = (time.perf_counter() - start) / 10
    with torch.profiler.profile(activities=activities) as prof:
        stylizer.stylize(second, warm, 10)
        sync(device)
    table = prof.key_averages()
    print(f"# profile: 10 iterations of a warm frame, device {device_name(device)}; "
          f"unprofiled wall time {wall * 1e3:.2f} ms an iteration")
    if device.type == "cuda":  # GPU busy time against wall time: is the GPU kept fed?
        cuda = torch.autograd.DeviceType.CUDA  # kernels, as the table's own total counts them
        busy = sum(e.self_device_time_total for e in table if e.device_type == cuda
                   and not getattr(e, "is_user_annotation", False)) / 10 / 1e3
        print(f"# GPU busy {busy:.2f} ms an iteration ({busy / (wall * 1e3):.0%} of the wall time)")
        print(table.table(sort_by="self_cuda_time_total", row_limit=15))
    print(table.table(sort_by="self_cpu_time_total", row_limit=15))


def summary(label: str, frames: list[dict], finals: list[float], targets: list[float],
            flops: float, device: torch.device) -> dict:
    seconds = sum(f["seconds"] for f in frames)
    its = sum(f["iterations"] for f in frames)
    reached = None
    if "curve" in frames[0]:
        # frame 1 has no warm start in any mode; the claim is about the frames after it
        times = [time_to_reach(f["curve"], t) for f, t in zip(frames, targets)]
        ok = [t for t in times if t is not None]
        reached = len(ok)
        reach = float(np.mean([t if t is not None else f["seconds"]
                               for t, f in zip(times, frames)])) if ok else None
    else:
        reach = seconds / len(frames)
    tflops = f"{flops * its / seconds / 1e12:.1f}" if device.type == "cuda" else "-"
    peak = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}" if device.type == "cuda" else "-"
    return dict(label=label, s_per_frame=seconds / len(frames), its=its / len(frames),
                it_s=its / seconds, tflops=tflops, peak=peak, loss=float(np.mean(finals)),
                reach=reach, reached=reached, n=len(frames))


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores)"


if __name__ == "__main__":
    main()
