"""The `vstyle` command: parse options, show progress, turn errors into one line.

    vstyle INPUT STYLE [STYLE ...] -o OUTPUT [options]
"""

from __future__ import annotations

import inspect
import os
import signal
import sys


def _interrupted_while_loading(signum, frame):
    # Ctrl-C while torch loads (seconds; more from a cold disk): one word, not a traceback
    print("interrupted", file=sys.stderr)
    os._exit(130)


# Run (not imported), and Ctrl-C not ignored by whoever started us (`cmd &` in a script);
# main() puts back the handler found here.
SIGINT_HANDLER = signal.getsignal(signal.SIGINT)
if os.path.basename(sys.argv[0]) in ("vstyle", "vstyle.exe", "cli.py") and \
        SIGINT_HANDLER is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_loading)

import threading
import time
import warnings
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeElapsedColumn)
from rich.text import Text

import vstyle
from vstyle import media
from vstyle.errors import are, flag, listed, name_options_as_flags, plural, warn
from vstyle.media import OUTPUT_EXTS
from vstyle.options import Options

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})
# soft_wrap: every message stays one line however narrow the terminal (or 80 columns when
# stderr is not a terminal), so errors can be read, grepped and logged whole.
err = Console(stderr=True, highlight=False, soft_wrap=True)
D = Options()  # the defaults, shown in --help
FLAG = ""  # the metavar of an on/off option: it takes no value (typer would show <bool>)

# --help shows the options in groups: what comes out (with --help), how it looks, how long
# each frame runs, how frames hold together, where it runs, resuming, `vstyle batch`.
OutputOption = typer.Option
LookOption, OptimizerOption, VideoOption, HardwareOption, ResumeOption, BatchOption = (
    partial(typer.Option, rich_help_panel=panel) for panel in (
        "Look", "Iterations", "Video", "Hardware and model", "Resume", "vstyle batch"))


def numbers(text: Optional[str], name: str, cast=float, example: str = "0.7,0.3"
            ) -> Optional[tuple]:
    """A comma-separated option ("0.7,0.3", "1,2,4"), or None when not given."""
    if text is None:
        return None
    try:
        return tuple(cast(v) for v in text.split(","))
    except ValueError:
        kind = "whole numbers" if cast is int else "numbers"
        raise vstyle.VStyleError(f"--{name} {text!r} is not a comma-separated list of {kind}, "
                                 f"e.g. {example}") from None


def names(text: Optional[str], default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated layer names; "" is none (Options.validate says so), not the default."""
    return default if text is None else tuple(v.strip() for v in text.split(",") if v.strip())


def only_for(flags: list[str], what: str) -> vstyle.VStyleError:
    """Options given where they do not apply (a batch's to one input, or the reverse)."""
    return vstyle.VStyleError(f"{listed(flags)} {are(len(flags))} for {what}")


def show_version(value: bool) -> None:
    """--version: vstyle's, and what it runs on (bug reports want both)."""
    if value:
        import torch
        import torchvision
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        print(f"vstyle {vstyle.__version__} (torch {torch.__version__}, torchvision "
              f"{torchvision.__version__}, {plural(gpus, 'CUDA GPU')})")
        raise typer.Exit()


# One paragraph a line: the help text keeps line breaks where they are written.
HELP = ("Stylize a video, GIF, image folder or image with a painting (Gatys neural style "
        "transfer, warm-started frame to frame).\n\n"
        "vstyle batch INPUTS... STYLE -o OUTDIR stylizes many inputs the same way (its own "
        "options: vstyle batch --help).")
BATCH_HELP = ("Stylize many inputs with the same options: files, folders of clips, or .txt lists "
              "of them, each into OUTDIR under its own name (<input>-<style>). The last path is "
              "the style (or a folder of paintings: each input in each); with --style-blend "
              "W1,W2 the last two are. Run the same command again to skip finished outputs and "
              "resume the others.")


@app.command(help=HELP)
def main_command(
    input: Path = typer.Argument(..., metavar="INPUT",
        help="Video (.mp4 .mov .mkv .webm .avi .m4v .mpg .ts .mts .flv .wmv ...), animated GIF, "
             "WebP or PNG, folder of images, or one image."),
    styles: List[Path] = typer.Argument(..., metavar="STYLE", help="Style image(s): paintings."),
    output: Optional[str] = OutputOption(None, "-o", "--output", metavar="PATH",
        help="Output: .gif, .mp4, .webp (animated, full colour), a folder (PNG frames), or "
             ".png/.jpg for a still. Default: <input>-<style> beside the input."),
    size: int = LookOption(D.size, help="Long side of the processed frames, px."),
    style_size: Optional[int] = LookOption(None,
        help="Long side of the style image, px (default: --size x --style-scale)."),
    style_scale: float = LookOption(D.style_scale, help="Style image size relative to the frames."),
    iterations: int = OptimizerOption(D.iterations,
        help="Iterations per frame after the first (ceiling; to go faster raise --tol: a low "
             "ceiling leaves new ground half painted)."),
    first_iterations: int = OptimizerOption(D.first_iterations,
        help="Iterations for the first frame."),
    min_iterations: int = OptimizerOption(D.min_iterations,
        help="Iterations before a frame may stop early."),
    tol: float = OptimizerOption(D.tol,
        help="Stop a frame when the loss falls less than this fraction over 5 iterations (0: never"
             " stop early; 0.05: faster, a little less stylized)."),
    content_weight: float = LookOption(D.content_weight, help="alpha: content loss weight."),
    style_weight: float = LookOption(D.style_weight, help="beta: style loss weight."),
    tv_weight: float = LookOption(D.tv_weight, help="Total variation weight (smoothness)."),
    content_layers: Optional[str] = LookOption(None,
        help=f"VGG19 layers, comma-separated (default: {','.join(D.content_layers)})."),
    style_layers: Optional[str] = LookOption(None,
        help=f"VGG19 layers, comma-separated (default: {','.join(D.style_layers)})."),
    style_layer_weights: Optional[str] = LookOption(None,
        help="One weight per style layer, comma-separated (default: all 1)."),
    style_blend: Optional[str] = LookOption(None,
        help="One weight per style image, comma-separated, e.g. 0.7,0.3 (default: equal)."),
    pooling: str = LookOption(D.pooling, help="max | avg."),
    preserve_colors: bool = LookOption(False, "--preserve-colors", metavar=FLAG,
        help="Keep the content's colours."),
    scales: int = OptimizerOption(D.scales,
        help="First frame: optimize at this many sizes, each x2 (each up to --first-iterations)."),
    optimizer: str = OptimizerOption(D.optimizer, help="lbfgs | adam."),
    lr: Optional[float] = OptimizerOption(None,
        help="Step size (default: 1 for lbfgs, 0.02 for adam)."),
    init: str = OptimizerOption(D.init, help="First frame starts from: content | noise."),
    warm_start: str = VideoOption(D.warm_start,
        help="Frame t starts from: previous (frame t-1's result) | flow (warped along the optical "
             "flow) | none."),
    flow: str = VideoOption(D.flow, help="Optical flow: dis | farneback."),
    temporal_weight: float = VideoOption(D.temporal_weight,
        help="Temporal loss weight (with --warm-start flow; 0: off)."),
    temporal_frames: Optional[str] = VideoOption(None,
        help="Frames back the temporal loss holds, e.g. 1,2,4 (long-term; default 1)."),
    loop: bool = VideoOption(False, "--loop", metavar=FLAG,
        help="Close the loop: the last frame leads into the first."),
    device: str = HardwareOption(D.device, help="auto | cpu | cuda | cuda:N."),
    precision: str = HardwareOption(D.precision,
        help="VGG passes in: auto (bf16 on a GPU, fp32 on the CPU) | fp32 | bf16."),
    cuda_graphs: bool = HardwareOption(D.cuda_graphs, metavar=FLAG,
        help="On a GPU, replay each frame's forward and backward as one CUDA graph."),
    weights: str = HardwareOption(D.weights,
        help="imagenet | random | PATH to a VGG19 state dict (env: VSTYLE_WEIGHTS)."),
    seed: int = OptimizerOption(D.seed, help="Random seed (noise init, random weights)."),
    start: Optional[str] = OutputOption(None, metavar="TIME",
        help="Start this far into the clip: seconds (7.5) or [HH:]MM:SS (1:30)."),
    end: Optional[str] = OutputOption(None, metavar="TIME",
        help="End this far into the clip (same forms)."),
    max_frames: Optional[int] = OutputOption(None,
        help="Only the first N frames (from --start)."),
    fps: Optional[float] = OutputOption(None,
        help="Output frame rate (default: the input's; folders: 10). A clip is resampled: frames "
             "dropped or repeated, same length, sound kept."),
    crf: int = OutputOption(D.crf, help="MP4 quality: 0 (lossless, in a profile browsers and "
                                        "phones do not play) .. 51, lower is better."),
    gif_dither: str = OutputOption(D.gif_dither,
        help="GIF dithering: bayer | sierra2_4a | floyd_steinberg | none."),
    compare: bool = OutputOption(False, "--compare", metavar=FLAG,
        help="Side by side: content | style | result."),
    report: Optional[str] = OutputOption(None, metavar="PATH",
        help="Write per-frame stats and the temporal consistency figures to this JSON file."),
    work_dir: Optional[Path] = ResumeOption(None,
        help="Where finished frames are kept for resuming (default: beside the output)."),
    keep_work: bool = ResumeOption(False, "--keep-work", metavar=FLAG,
        help="Keep the work folder after success."),
    restart: bool = ResumeOption(False, "--restart", metavar=FLAG,
        help="Ignore an earlier interrupted run."),
    quiet: bool = OutputOption(False, "-q", "--quiet", metavar=FLAG,
        help="No progress bar and no closing summary (errors and warnings still print)."),
    version: bool = OutputOption(False, "--version", metavar=FLAG, callback=show_version,
                                 is_eager=True, help="Show the version and the GPUs torch sees."),
    workers: Optional[int] = BatchOption(None,
        help="batch: inputs at once (default: one per GPU, or one on the CPU; with --ray, as many "
             "as the cluster takes)."),
    ray: bool = BatchOption(False, "--ray", metavar=FLAG,
        help="batch: run on Ray (local unless --ray-address)."),
    ray_address: Optional[str] = BatchOption(None, help="batch: a Ray cluster's address."),
    chunk_frames: Optional[int] = BatchOption(None,
        help="batch: split videos longer than this into chunks stylized in parallel."),
) -> None:
    # (its help: HELP; --help prints a docstring's line breaks as they are)
    options = Options(
        size=size, style_size=style_size, style_scale=style_scale, iterations=iterations,
        first_iterations=first_iterations, min_iterations=min_iterations, tol=tol,
        content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
        temporal_weight=temporal_weight,
        temporal_frames=numbers(temporal_frames, "temporal-frames", int, "1,2,4")
        or D.temporal_frames,
        content_layers=names(content_layers, D.content_layers),
        style_layers=names(style_layers, D.style_layers),
        style_layer_weights=numbers(style_layer_weights, "style-layer-weights"),
        style_blend=numbers(style_blend, "style-blend"), pooling=pooling,
        preserve_colors=preserve_colors, scales=scales, optimizer=optimizer, lr=lr, init=init,
        warm_start=warm_start, flow=flow, loop=loop, device=device, precision=precision,
        cuda_graphs=cuda_graphs, weights=weights, seed=seed,
        start=start, end=end, max_frames=max_frames, fps=fps,
        crf=crf, gif_dither=gif_dither, compare=compare)
    # strings, not paths, up to here: a path type drops the trailing slash that says "a folder"
    if output and not BATCH and output.endswith(("/", os.sep)) and \
            media.output_kind(Path(output)) != "folder":
        raise vstyle.VStyleError(f"-o {output}: the slash names a folder, the extension a "
                                 "file: drop one of them")
    if report and report.endswith(("/", os.sep)):
        raise vstyle.VStyleError(f"--report {report} names a folder: give the file's name, e.g. "
                                 f"{Path(report) / 'report.json'}")
    output, report = (Path(output) if output else None), (Path(report) if report else None)
    typed = [name for name, value in locals().items() if name in (*SINGLE_ONLY, *BATCH_ONLY)
             and value is not None and value is not False]  # given on the command line
    if BATCH:
        if refused := [name for name in SINGLE_ONLY if name in typed]:
            raise only_for([flag(name) for name in refused], "one input; " + "; ".join(
                dict.fromkeys(SINGLE_ONLY[name] for name in refused)))
        # the last positionals are the styles: one, or one per --style-blend weight
        given, n = [input, *styles], len(options.style_blend or (1,))
        if len(given) <= n:
            raise vstyle.VStyleError(f"vstyle batch takes INPUTS... then "
                                     f"{plural(n, 'style image')} (one per --style-blend "
                                     "weight): got "
                                     f"{len(given)} paths in all")
        for path in given[-n:]:  # (a folder of paintings: run_batch reads it)
            if (media.input_kind(path) not in ("image", "animation") or media.what_clip(path)) \
                    and not (n == 1 and path.is_dir()):  # (a GIF of one frame is a picture)
                raise vstyle.VStyleError(
                    f"vstyle batch: {path} is no style image, yet the last "
                    f"{f'{n} paths are the styles' if n > 1 else 'path is the style'}"
                    f"{f' (one per --style-blend weight)' if n > 1 else ''}: put the painting"
                    f"{'s' * (n > 1)} last{' (or a folder of paintings)' * (n == 1)}")
        inputs = given[:-n]
        if n == 1 and media.input_kind(inputs[-1]) == "image" and any(
                media.input_kind(p) in ("video", "animation", "folder") for p in inputs):
            # among clips, a still right before the style: two paintings meant to be blended?
            warn(f"vstyle batch: {inputs[-1]} is painted as an input, like the clips (the last "
                 f"path alone is the style); to paint with it and {given[-1]} blended, add "
                 "--style-blend 1,1")
        run_batch(inputs, given[-n:], output, options, quiet, workers, ray, ray_address,
                  chunk_frames)
        return
    if refused := [flag(name) for name in BATCH_ONLY if name in typed]:
        raise only_for(refused, "`vstyle batch INPUTS... STYLE -o OUTDIR`")
    with ProgressView(quiet, options) as view:
        try:
            result = vstyle.stylize(input, styles, output, options, on_event=view,
                                    report=report, work_dir=work_dir, keep_work=keep_work,
                                    restart=restart)
        except vstyle.Interrupted as e:
            raise Stopped(str(e)) from None
    if not quiet:
        done = result.n_frames - result.reused
        reused = f", {result.reused} reused from the earlier run" if result.reused else ""
        frames = plural(result.n_frames, "frame")
        cuts = sum(bool(f.get("new_shot")) for f in result.frames)
        shots = f" in {cuts + 1} shots" if cuts else ""  # each cut painted afresh
        line = f"wrote {result.output}: {frames}{shots}{reused}"
        if done:  # not when every frame came from the earlier run
            line += f", {result.seconds:.1f} s ({result.seconds / done:.2f} s/frame)"
        if result.consistency and result.consistency["pairs"]:  # one frame: nothing to measure
            c = result.consistency
            ratio = "n/a" if c["ratio"] is None else f"{c['ratio']:.2f}"
            line += (f"; warping error {c['warping_error']:.5f} (input's own "
                     f"{c['input_warping_error']:.5f}, ratio {ratio})")
        err.print(escape(line))


def run_batch(inputs: list[Path], styles: list[Path], outdir: Optional[Path],
              options: Options, quiet: bool, workers: Optional[int], use_ray: bool,
              address: Optional[str], chunk_frames: Optional[int]) -> None:
    """`vstyle batch`: a bar over the whole batch, a table at the end, exit 1 if any failed."""
    from rich.table import Column, Table
    from vstyle import batch
    if outdir is None:
        raise vstyle.VStyleError("vstyle batch needs -o OUTDIR: the folder for the outputs")
    if outdir.suffix.lower() in OUTPUT_EXTS and not outdir.is_dir():
        raise vstyle.VStyleError(f"vstyle batch -o {outdir}: -o is the folder the outputs go "
                                 "in (each named after its input), not a file")
    with BatchProgress(quiet, options) as view:
        try:
            outcomes = batch.run_batch(inputs, styles, outdir, options,
                                       workers=workers, use_ray=use_ray,
                                       ray_address=address, chunk_frames=chunk_frames,
                                       on_plan=view.plan, on_done=view.done,
                                       on_notice=view.notice)
        except KeyboardInterrupt:  # vstyle.Interrupted too: the job in this process
            raise Stopped("interrupted: run the same command again to go on (finished inputs "
                          "are skipped, the others resume)") from None
    failed = [o for o in outcomes if o.status == "failed"]
    several = len({tuple(o.styles) for o in outcomes}) > 1  # a folder of paintings
    if not quiet:
        # paths wrap rather than end in an ellipsis; errors follow, a line each, unwrapped
        table = Table(Column("input", overflow="fold"),
                      *[Column("style", overflow="fold")] * several, "status", "frames",
                      Column("output", overflow="fold"))
        for o in outcomes:
            table.add_row(str(o.input), *["+".join(p.name for p in o.styles)] * several,
                          o.status, str(o.frames or "-"), "(below)" if o.error else str(o.output))
        err.print(table)
    # one line each, also with --quiet; an input that fails alike in every painting, once
    said: dict[tuple, list] = {}
    for o in failed:
        said.setdefault((o.input, o.error), []).append(o)
    for (input, error), alike in said.items():
        looks = "+".join(p.name for p in alike[0].styles)
        look = (f" with each of {len(alike)} paintings" if len(alike) > 1 else
                f" with {looks}" if several else "")
        err.print(f"[red]failed:[/red] {escape(str(input))}{escape(look)}: {escape(error)}")
    if failed:
        what = "outputs" if several else "inputs"
        raise vstyle.VStyleError(f"{len(failed)} of {len(outcomes)} {what} failed (see above); "
                                 "fix them and run the same command again: finished ones are skipped")


def warm_iterations(options: Options) -> int:
    """A guess at a warm frame's iterations, until some have finished (24-27 at the defaults:
    bench/temporal.py; frames that start afresh, --warm-start none, run to the ceiling)."""
    if options.warm_start == "none":
        return options.iterations
    return min(options.iterations, max(25, options.min_iterations))


class Eta:
    """Time left, counted in optimizer iterations. Frame 1 takes up to --first-iterations and
    the warm frames after it far fewer (about 25 at the defaults), so a rate in frames is off
    by hours while frame 1 runs and for a while after it. A new shot (after a cut) is painted
    as frame 1 is: its steps count up to more than the warm frames' ceiling."""

    def __init__(self, options: Options):
        self.guess = warm_iterations(options)
        self.ceiling = options.iterations  # a warm frame's most
        self.warm: list[int] = []  # iterations of the warm frames finished so far
        # seconds an iteration, a moving average: --scales runs frame 1's first iterations
        # smaller, and warm frames carry more loss terms
        self.step_seconds: float | None = None
        self.last_time = 0.0  # of the last iteration seen
        self.n_frames = self.frame = self.iteration = self.max_iterations = 0

    def start(self, n_frames: int) -> None:
        self.n_frames = n_frames

    def step(self, frame: int, iteration: int, max_iterations: int, now: float) -> None:
        if self.iteration and frame == self.frame:  # the time between two of a frame's iterations
            took = now - self.last_time
            self.step_seconds = took if self.step_seconds is None else \
                0.9 * self.step_seconds + 0.1 * took
        self.last_time = now
        self.frame, self.iteration, self.max_iterations = frame, iteration, max_iterations

    def fresh(self) -> bool:
        """Whether the frame now running is painted afresh: frame 1, or a new shot."""
        return self.frame == 1 or self.max_iterations > self.ceiling

    def finished(self, frame: int, iterations: int) -> None:
        if frame > 1 and not (frame == self.frame and self.fresh()):
            self.warm.append(iterations)
        self.frame, self.iteration = frame, 0

    def seconds_left(self) -> float | None:
        if self.step_seconds is None:
            return None
        warm = sum(self.warm) / len(self.warm) if self.warm else self.guess
        if self.iteration == 0:  # between frames: self.frame is finished
            now = 0.0
        elif self.fresh():
            now = self.max_iterations - self.iteration
        else:
            now = max(warm - self.iteration, 1)
        later = self.n_frames - self.frame
        return (now + later * warm) * self.step_seconds


def clock(seconds: float | None) -> Text:
    if seconds is None:
        return Text("eta -:--:--", style="cyan")
    s = int(seconds)
    return Text(f"eta {s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}", style="cyan")


class EtaColumn(ProgressColumn):
    def __init__(self, eta: Eta | BatchProgress):
        super().__init__()
        self.eta = eta

    def render(self, task) -> Text:
        return clock(None if task.finished else self.eta.seconds_left())


class ProgressView:
    """Draws the library's events as a rich progress bar (frames, iteration, loss, ETA)."""

    def __init__(self, quiet: bool, options: Options):
        self.quiet = quiet
        self.eta = Eta(options)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("frames · it {task.fields[it]} · loss {task.fields[loss]}"),
            TimeElapsedColumn(), EtaColumn(self.eta), console=err, transient=False)
        self.task = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.task is not None:
            self.progress.stop()

    def __call__(self, event: vstyle.Event) -> None:
        if event.kind == "notice":
            err.print(f"[yellow]{escape(event.message)}")
        if self.quiet:
            return
        if event.kind == "start":
            # drawn from the first frame on: an error before it stays one line, no empty bar
            self.progress.start()
            self.eta.start(event.n_frames)
            self.task = self.progress.add_task("stylizing", total=event.n_frames,
                                               completed=event.frame, it="-", loss="-")
        elif event.kind == "step" and self.task is not None:
            self.eta.step(event.frame, event.iteration, event.max_iterations, time.monotonic())
            self.progress.update(self.task, it=f"{event.iteration}/{event.max_iterations}",
                                 loss=f"{event.loss:.4g}")
        elif event.kind == "frame" and self.task is not None:
            self.eta.finished(event.frame, event.stats.iterations)
            self.progress.update(self.task, completed=event.frame)
        elif event.kind == "encode" and self.task is not None:
            self.progress.update(self.task, description="encoding", it="-", loss="-")


class BatchProgress:
    """A batch's bar, in frames. Its jobs run in worker processes or on other machines and
    share only files, so the frames they finish are counted in their work folders, once a
    second. The time left is the rate since the start in iterations, as for one clip: each
    job's frame 1 takes up to --first-iterations, its later frames far fewer."""

    def __init__(self, quiet: bool, options: Options):
        self.first, self.warm = options.first_iterations, warm_iterations(options)
        self.jobs: list = []
        self.frames: dict[int, int] = {}  # job index -> frames finished so far
        self.ended: dict[int, int] = {}  # job index -> its frames, once it has ended
        self.start_units = self.start_time = 0.0
        self.progress = Progress(
            TextColumn("[bold]batch"), BarColumn(), MofNCompleteColumn(),
            TextColumn("frames · {task.fields[jobs]} jobs"), TimeElapsedColumn(),
            EtaColumn(self), console=err, disable=quiet)
        self.task = self.progress.add_task("batch", total=None, jobs="-")
        self.lock = threading.Lock()  # polled by a thread, read by rich's refresh thread
        self.stop = threading.Event()
        self.poller = threading.Thread(target=self._poll_every_second, daemon=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.poller.ident is None:  # drawn from the plan on: an error before it stays
            return                     # one line
        self.poller.join()
        try:
            with suppress(Exception):  # a bar's count never fails the batch
                self.poll()
        finally:
            self.progress.stop()

    def plan(self, jobs: list) -> None:
        self.jobs, self.index = jobs, {id(job): i for i, job in enumerate(jobs)}
        self.poll()  # frames an earlier run finished: done, but not in this run's rate
        self.start_units, self.start_time = self.units(), time.monotonic()
        self.progress.start()
        self.poller.start()

    def notice(self, message: str) -> None:
        err.print(f"[yellow]{escape(message)}")  # as for one input

    def done(self, job, status: str, frames: int, error: str) -> None:
        index = self.index[id(job)]
        with self.lock:  # a failed job's unpainted frames leave the total
            self.ended[index] = job.n_frames if status == "done" else self.frames.get(index, 0)
        self.poll()

    def poll(self) -> None:
        from vstyle.batch import painted
        counts = {i: painted(job) for i, job in enumerate(self.jobs) if i not in self.ended}
        with self.lock:
            for i, n in counts.items():
                if n is not None:  # None: not started, or finished (its folder just removed)
                    self.frames[i] = min(n, self.jobs[i].n_frames)
            self.frames.update(self.ended)
            completed, total = sum(self.frames.values()), sum(self.totals().values())
        self.progress.update(self.task, total=total, completed=completed,
                             jobs=f"{len(self.ended)}/{len(self.jobs)}")

    def totals(self) -> dict[int, int]:
        return {i: self.ended.get(i, job.n_frames) for i, job in enumerate(self.jobs)}

    def _poll_every_second(self) -> None:
        while not self.stop.wait(1.0):
            with suppress(Exception):  # a bar's count never fails the batch
                self.poll()

    def units(self, frames: dict[int, int] | None = None) -> float:
        """Iterations that `frames` (job index -> frames finished) take, by the guess above."""
        frames = self.frames if frames is None else frames
        return sum(self.first + (n - 1) * self.warm for n in frames.values() if n)

    def seconds_left(self) -> float | None:
        with self.lock:
            now, total = self.units(), self.units(self.totals())
        if now <= self.start_units:
            return None
        return (time.monotonic() - self.start_time) / (now - self.start_units) * (total - now)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    err.print(f"[yellow]warning: {escape(str(message))}")


class Stopped(Exception):
    """A run stopped by Ctrl-C, with what was kept: vstyle.Interrupted is a KeyboardInterrupt,
    which click would turn into its own bare Abort, dropping the message."""


STOP_CODE = 130  # the exit code of a stopped run: 130 for Ctrl-C, 143 for kill (128 + signal)


def _sigterm(signum, frame):
    global STOP_CODE
    STOP_CODE = 128 + signal.SIGTERM  # what a supervisor expects of a process it terminated
    raise KeyboardInterrupt  # the same clean stop as Ctrl-C


BATCH = False  # `vstyle batch ...`: the same options, many inputs


# `vstyle batch` is the same command read the other way round: its usage line and help say so
BATCH_ARGUMENTS = {  # metavar, help
    "input": ("INPUTS...", "Videos, GIFs, folders of clips, folders of frames, images, or .txt "
                           "files listing them."),
    "output": ("OUTDIR", "The folder the outputs go in, each named <input>-<style> in its "
                         "input's kind.")}
SINGLE_ARGUMENTS = {name: (p.default.metavar, p.default.help)
                    for name, p in inspect.signature(main_command).parameters.items()
                    if name in BATCH_ARGUMENTS}


BESIDE = "vstyle batch keeps each output's work folder beside it in OUTDIR"
SINGLE_ONLY = {  # vstyle batch refuses these, and says what it does instead
    "report": "for one input's figures, run vstyle INPUT STYLE -o OUTPUT --report PATH",
    "work_dir": BESIDE, "keep_work": BESIDE,
    "restart": "to paint an output again, delete it and run the batch again"}
BATCH_ONLY = ("workers", "ray", "ray_address", "chunk_frames")  # one input refuses these


def read_as(batch: bool) -> None:
    """The command's help and usage for `vstyle batch` (True) or `vstyle` (False)."""
    app.registered_commands[0].help = BATCH_HELP if batch else HELP
    arguments = inspect.signature(main_command).parameters
    for name, (metavar, help) in (BATCH_ARGUMENTS if batch else SINGLE_ARGUMENTS).items():
        arguments[name].default.metavar, arguments[name].default.help = metavar, help
    for name in SINGLE_ONLY:
        arguments[name].default.hidden = batch
    for name in BATCH_ONLY:
        arguments[name].default.hidden = not batch


def main() -> None:
    """Console entry point: one line per error, exit codes 1 (user error), 130 (Ctrl-C), 143
    (kill)."""
    name_options_as_flags()  # the library's messages say --size 256, not size=256
    shown = warnings.showwarning
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run_command()
    finally:  # a caller in the same process (a test) gets its keywords, warnings and signals back
        name_options_as_flags(False)
        warnings.showwarning = shown
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def run_command() -> None:
    global BATCH, STOP_CODE
    STOP_CODE = 130
    BATCH = len(sys.argv) > 1 and sys.argv[1] == "batch"
    if BATCH:
        del sys.argv[1]
    read_as(BATCH)
    warnings.showwarning = _show_warning
    signal.signal(signal.SIGINT, SIGINT_HANDLER)  # Ctrl-C: KeyboardInterrupt again
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        code = app(standalone_mode=False, prog_name="vstyle batch" if BATCH else None)
    except Stopped as e:
        err.print(f"[red]{escape(str(e))}")
        sys.exit(STOP_CODE)
    except vstyle.VStyleError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        sys.exit(1)
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # click's usage errors and anything unexpected: still one line
        # Usage errors by what they do, not by class: newer typers bundle their own click.
        if callable(getattr(e, "format_message", None)) and \
                isinstance(getattr(e, "exit_code", None), int):
            # one line, as for every other error (click's own is a four-line box); no
            # "did you mean" an option this command hides
            hidden = {flag(name) for name in (SINGLE_ONLY if BATCH else BATCH_ONLY)}
            if getattr(e, "possibilities", None):
                e.possibilities = [p for p in e.possibilities if p not in hidden]
            command = "vstyle batch" if BATCH else "vstyle"
            err.print(f"[red]error:[/red] {escape(e.format_message())} (see {command} --help)")
            sys.exit(e.exit_code)
        if isinstance(e, typer.Abort):  # Ctrl-C, as older typers report it
            code = 130
        elif os.environ.get("VSTYLE_DEBUG"):
            raise
        else:
            err.print(f"[red]error:[/red] unexpected {type(e).__name__}: {escape(str(e))} (run "
                      "with VSTYLE_DEBUG=1 for the traceback, and please report it)")
            sys.exit(2)
    # Ctrl-C or kill outside the frame loop (probing the input, measuring the report): newer
    # typers turn it into a returned 130, older ones into Abort.
    if code == 130:  # outputs are renamed into place whole: none is half-written
        err.print("[red]interrupted")
        code = STOP_CODE
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
