"""The frame loop: decode -> warm start -> optimize -> save -> encode, resumable."""

from __future__ import annotations

import difflib
import json
import math
import os
import queue
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from itertools import chain
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from . import media, metrics
from .colors import keep_chroma, match_colors
from .errors import VStyleError, again, are, listed, opt, options_named_as_flags, plural, warn
from .flow import FlowEstimator, Warp, beside_optimizer
from .optimize import FrameStats, Stylizer, TemporalTarget, resize_tensor, to_image, to_tensor
from .options import Options
from .vgg import load_features, resolve_device
from .workdir import VERSION, WorkDir, file_hash, fingerprint, write_atomic


@dataclass
class Event:
    """Progress leaves the library as events, to `on_event`; the caller decides how to show them.

    kind           when                                  fields set
    "notice"       news for the user (resuming, ...)     message
    "start"        the frame loop begins                 n_frames; frame: frames already done
                                                         (reused from an interrupted run)
    "frame_start"  a frame begins                        frame (1-based), n_frames
    "step"         an optimizer iteration ends           frame, n_frames, iteration,
                                                         max_iterations, loss
    "frame"        a frame is finished (its PNG is       frame, n_frames, stats
                   being written beside the next one)
    "encode"       all frames done, writing the output   n_frames, message (the output's path)

    A progress bar counts "frame" events (a frame that repeats the one before is copied, with
    no "step" events). The first frame runs up to first_iterations at each of `scales` sizes,
    and its "step" events count across them.
    """
    kind: str
    frame: int = 0
    n_frames: int = 0
    iteration: int = 0
    max_iterations: int = 0
    loss: float = float("nan")
    message: str = ""
    stats: FrameStats | None = None  # iterations, seconds, loss and its unweighted parts


OnEvent = Callable[[Event], None]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run: the finished frames are kept in the work folder, and
    the same call resumes from them. A KeyboardInterrupt, so that `except Exception` in a
    caller's loop over clips does not swallow it."""


@dataclass
class RunResult:
    """What `stylize` did.

    frames: one dict per frame, from the work folder's records: frame (1-based), iterations,
    seconds, loss, parts (the unweighted losses: content, style, tv, temporal, and
    fresh_style, the newly seen pixels' own style term), repeat (True where the frame was
    copied from the one before), new_shot (True where a cut started a new shot, painted
    afresh; found by the flow warm start) and, with a flow warm start, warping_error and
    input_warping_error (from the frame before to this one; after a flash, from the frame
    before the flash). A frame an earlier run finished keeps the record it wrote then.
    consistency: the clip's masked warping error (Lai et al. 2018) -- warping_error,
    input_warping_error, ratio, pairs (not those across a cut) -- or None where it was not
    measured (no flow warm start and no report, or a single frame; with a report, one frame
    gives pairs 0 and None figures).
    """
    output: Path
    n_frames: int
    reused: int  # frames taken from an earlier, interrupted run
    seconds: float
    frames: list[dict] = field(default_factory=list)
    consistency: dict | None = None


def resolve_options(options: Options | None, values: dict, own: Sequence[str] = (),
                    clip: bool = True) -> Options:
    """The run's options: `options` with the keyword values on top, checked. `own`: the
    function's other keywords, which a misspelt one may have meant (on_evnt: on_event);
    clip: see Options.validate."""
    for name in values:
        close = difflib.get_close_matches(name, [*Options.__dataclass_fields__, *own], 1)
        if name not in Options.__dataclass_fields__ and close and close[0] in own:
            raise TypeError(f"unknown option {name!r}: did you mean {close[0]!r}?")
    if options is not None and not isinstance(options, Options):
        raise TypeError(f"options must be a vstyle.Options, not {type(options).__name__} (or "
                        "pass them as keywords: size=256, iterations=50)")
    return (options or Options()).replace(**values).validate(clip)


def check_arguments(**arguments) -> None:
    """stylize's own arguments, by type (Options checks the options): a VStyleError naming
    the one, not a TypeError from deep inside (restart='no' would have restarted)."""
    for name, value in arguments.items():
        if value is None:
            continue
        if name in ("output", "report", "work_dir") and not isinstance(value, (str, os.PathLike)):
            raise VStyleError(f"{name}={value!r}: pass a path (a str or a pathlib.Path)")
        if name in ("keep_work", "restart") and not isinstance(value, (bool, np.bool_)):
            raise VStyleError(f"{name}={value!r}: pass True or False")
        if name == "on_event" and not callable(value):
            raise VStyleError(f"on_event={value!r}: pass a function, called with each "
                              "vstyle.Event")
        if name == "frame_range" and not (
                isinstance(value, (tuple, list)) and len(value) == 2 and
                all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
                and 0 <= value[0] < value[1]):
            raise VStyleError(f"frame_range={value!r}: pass (start, end), frames counted from "
                              "0, end not included")


def style_list(styles) -> list:
    """One style or several: a list or tuple of them, or a single path, array or image."""
    styles = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    if not styles:
        raise VStyleError("no style image given: pass at least one painting")
    return styles


def style_paths_of(styles) -> list[Path]:
    """stylize's style images: paths (it names outputs and resumes by them)."""
    for style in (styles := style_list(styles)):
        if not isinstance(style, (str, os.PathLike)):
            raise VStyleError(f"a style of type {type(style).__name__}: stylize takes image "
                              "paths (stylize_image also takes arrays)")
        if Path(style).is_dir():
            each = f", or paint with each: vstyle batch INPUT {style} -o OUTDIR" if \
                options_named_as_flags() else f", or paint with each: vstyle.batch.run_batch(" \
                f"[input], {str(style)!r}, outdir)"
            raise VStyleError(f"style image {style} is a folder: pass one of its paintings{each}")
    return [Path(s) for s in styles]


STYLIZE_KEYWORDS = ("on_event", "report", "work_dir", "keep_work", "restart", "frame_range")


def stylize(input: str | Path | media.Source, styles: str | Path | Sequence[str | Path],
            output: str | Path | None = None, options: Options | None = None, *,
            on_event: OnEvent | None = None, report: str | Path | None = None,
            work_dir: str | Path | None = None, keep_work: bool = False,
            restart: bool = False, frame_range: tuple[int, int] | None = None,
            **option_values) -> RunResult:
    """Stylize a video, GIF, WebP, image folder or still image into `output`, and return a
    RunResult (frames, time, consistency figures).

    input: the path of the clip, folder or image. styles: one image path or several (blended,
    see style_blend). output: .gif, .mp4, .webp, a folder (PNG frames) or .png/.jpg for a
    still; None writes <input>-<style> beside the input, in the input's kind.
    options: an `Options`, and/or its fields as keywords (`size=256, iterations=50`, ...);
    help(vstyle.Options) and the README's option table say what each does.
    on_event: called with each `Event` (progress; see help(vstyle.Event)); nothing is printed.
    report: also write the per-frame stats and the consistency figures to this JSON file.
    work_dir: where finished frames are kept while running (default: a hidden folder beside
    the output); an interrupted run resumes from it when called again the same way, unless
    restart=True. keep_work keeps it after success.
    frame_range (start, end): only those frames, as a clip of their own (a batch's chunk;
    counted from 0, end not included, where events count frames from 1).

    Raises VStyleError (one line: the problem and the fix) for bad input, and Interrupted (a
    KeyboardInterrupt) on Ctrl-C, with the finished frames kept.
    """
    options = resolve_options(options, option_values, STYLIZE_KEYWORDS)
    check_arguments(output=output, on_event=on_event, report=report, work_dir=work_dir,
                    keep_work=keep_work, restart=restart, frame_range=frame_range)
    emit = on_event or (lambda event: None)
    style_paths = style_paths_of(styles)
    if not isinstance(input, (str, os.PathLike, media.Source)):
        raise VStyleError(f"an input of type {type(input).__name__}: stylize takes the path of "
                          "a video, GIF, folder or image (stylize_image takes arrays)")
    device = resolve_device(options.device)  # a missing GPU is known before anything is decoded

    def notice(message: str) -> None:  # news while the input is probed
        emit(Event("notice", message=message))

    source = (input if isinstance(input, media.Source)
              else media.open_source(input, options.max_frames, options.fps, options.start,
                                     options.end, notice))
    if frame_range is not None:
        source = source.window(*frame_range)
    style_images = [media.load_image(p) for p in style_paths]
    output = Path(output) if output is not None else media.default_output(source, style_paths)
    if report is not None:
        check_report(Path(report), output, source, style_paths)
    if work_dir is not None:
        check_work_dir(Path(work_dir), output, report)
    size = media.frame_size(source.size, options.size)
    kind = media.check_output(output, source, style_paths, written_size(size, options))

    work = WorkDir(Path(work_dir) if work_dir else default_work_dir(output),
                   manifest(source, style_paths, options, size), restart)
    with closing(work):  # holds the folder's lock to the end
        reused = min(work.done, source.n_frames)
        if work.notice:
            emit(Event("notice", message=work.notice))
        elif reused:
            emit(Event("notice", message=f"resuming: {reused} of {source.n_frames} frames reused "
                                         f"from {work.path}"))
        if device.type == "cpu" and options.device == "auto" and reused < source.n_frames \
                and max(size) >= SLOW_ON_CPU:
            faster = (max(size) / 256) ** 2  # the work grows with the pixels
            emit(Event("notice", message="no CUDA GPU found: running on the CPU, many times "
                                         f"slower than on a GPU; {opt('size', 256)} would run "
                                         "about "
                                         f"{faster:.0f}x faster"))
        start = time.perf_counter()
        try:
            # the network is loaded before the bar is drawn: a failed download stays one line
            # (and when only the encoding is left, no network is needed)
            features = load_features(options.weights, options.seed) \
                if work.done < source.n_frames else None
            emit(Event("start", n_frames=source.n_frames, frame=reused))
            if features is not None:
                for what in moot_here(kind, source, options):  # once the run is sure to go on
                    warn(f"ignored: {what}")
                run_frames(source, style_images, options, size, work, emit, device, features)
                features = None  # the network's memory is free for the encoding
            emit(Event("encode", n_frames=source.n_frames, message=str(output)))
            frames = compare_frames(source, style_images, size, work) if options.compare else \
                (lambda: work.frames(source.n_frames))
            try:
                media.write_output(frames, output, kind, source.timing,
                                   audio_from=audio_for(source, kind),
                                   audio_seek=source.sound_from, crf=options.crf,
                                   gif_dither=options.gif_dither)
            except VStyleError as error:  # disk full...: the painting is done, say it is safe
                n, them = source.n_frames, "it" if source.n_frames == 1 else "them"
                raise VStyleError(f"{error}; the {plural(n, 'painted frame')} {are(n)} kept in "
                                  f"{work.path}: {again('to encode ' + them)}") from None
        except KeyboardInterrupt:
            kept = (f"{work.done} of {plural(source.n_frames, 'frame')} "
                    f"{are(work.done)} kept in {work.path}; "
                    f"{again('to resume')}") if work.done else "nothing was written"
            raise Interrupted(f"interrupted: {kept}") from None
        except torch.cuda.OutOfMemoryError:
            raise VStyleError(f"out of GPU memory at {opt('size', options.size)}: try a smaller "
                              f"{opt('size')} or {opt('device', 'cpu')}") from None
        except (MemoryError, RuntimeError) as error:  # torch's CPU allocator raises RuntimeError
            if not isinstance(error, MemoryError) and "can't allocate memory" not in str(error):
                raise
            sizes = opt("size", options.size) + (f" and {opt('style_size', options.style_size)}"
                                                 if options.style_size else "")
            raise VStyleError(f"out of memory at {sizes}: try a smaller size") from None
        finally:
            if work.done == 0:  # failed before the first frame (device, weights...): leave nothing
                work.remove()

        result = RunResult(output, source.n_frames, reused, time.perf_counter() - start,
                           work.stats(source.n_frames))
        result.consistency = measured_consistency(result.frames)
        if report is not None:
            if result.consistency is None:  # no flow during the run: measure it now
                result.consistency = metrics.consistency(
                    source.frames(size), work.frames(source.n_frames), options.flow)
            write_report(Path(report), result, options, source.path, style_paths)
        if work.done > source.n_frames:  # an earlier, longer run's frames: hours of work
            more = plural(work.done - source.n_frames, "more finished frame")
            emit(Event("notice", message=f"kept {more} in {work.path} for a longer run"))
        elif not keep_work:
            work.remove()
        return result


def moot_here(kind: str, source: media.Source, options: Options) -> list[str]:
    """Options that this output or this input makes moot (Options.validate names those that
    another option makes moot)."""
    moot = []
    if options.changed("crf") and kind != "mp4":
        moot.append(f"{opt('crf', options.crf)} (an MP4's quality)")
    if options.changed("gif_dither") and kind != "gif":
        moot.append(f"{opt('gif_dither', options.gif_dither)} (a GIF's dithering)")
    if source.n_frames == 1 and (unused := options.changed("iterations", "warm_start", "flow",
                                                            "loop", "fps")):
        sets = f": {opt('first_iterations')} sets its iterations" * ("iterations" in unused)
        moot.append(f"{listed([opt(name, getattr(options, name)) for name in unused])} (one "
                    f"frame is painted once, from scratch{sets})")
    return moot


def written_size(size: tuple[int, int], options: Options) -> tuple[int, int]:
    """The output's frame size: the frames', three panels wide with --compare."""
    return (3 * size[0], size[1]) if options.compare else size


def check_report(path: Path, output: Path, source: media.Source,
                 style_paths: list[Path]) -> None:
    """A report that cannot be written, or that would overwrite the input, a style image or
    the output, is found before the run, not after it."""
    media.check_not_overwriting(path, opt("report"), source, style_paths)
    if path.resolve() == output.resolve():
        raise VStyleError(f"{opt('report', path)} is the output itself: give the report a name of "
                          "its own, e.g. report.json")
    if media.output_kind(output) == "folder" and \
            path.resolve().is_relative_to(output.resolve()):  # the folder is replaced whole
        raise VStyleError(f"{opt('report', path)} is inside the output folder {output}, which "
                          "holds the frames alone: write it beside, e.g. "
                          f"{output.parent / 'report.json'}")
    if path.is_dir():
        raise VStyleError(f"{opt('report', path)} is a folder: give a file name, e.g. "
                          f"{path / 'report.json'}")
    media.check_writable(path, f"folder for {opt('report')}")


def check_work_dir(work_dir: Path, output: Path, report: str | Path | None) -> None:
    """The work folder is deleted at the end: it must not hold the output or the report; and
    a folder output holds frames only."""
    for path, name in ((output, "output"), (report, "report")):
        if path is not None and Path(path).resolve().is_relative_to(work_dir.resolve()):
            raise VStyleError(f"{opt('work_dir', work_dir)} would hold the {name} {path}, and "
                              "the work folder is deleted when the run is done: put it elsewhere")
    if media.output_kind(output) == "folder" and \
            work_dir.resolve().is_relative_to(output.resolve()):
        raise VStyleError(f"{opt('work_dir', work_dir)} is inside the output folder {output}, "
                          "which holds only the frames: put it elsewhere")


def audio_for(source: media.Source, kind: str) -> Path | None:
    """The source whose audio goes into an MP4 (--fps resamples a clip: it keeps its length)."""
    return source.path if source.has_audio and kind == "mp4" else None


def measured_consistency(frames: list[dict]) -> dict | None:
    """The clip's warping error from the per-frame figures measured during the run (with the
    run's own warps, which are the metric's), or None where a frame lacks them. A pair across
    a cut measures no steadiness (and would swamp the clip's figure): left out."""
    pairs = frames[1:]
    if not pairs or any("warping_error" not in f for f in pairs):
        return None
    pairs = [f for f in pairs if not f.get("new_shot")]
    return metrics.summarize([f["warping_error"] for f in pairs],
                             [f["input_warping_error"] for f in pairs])


WORK_SUFFIX = ".vstyle-work"
SLOW_ON_CPU = 384  # px, long side: from here a CPU is told how to go faster


def default_work_dir(output: Path) -> Path:
    return output.parent / f".{output.name}{WORK_SUFFIX}"


def manifest(source: media.Source, style_paths: list[Path], options: Options,
             size: tuple[int, int]) -> dict:
    """Everything that changes the stylized frames: a run resumes only if all of it matches."""
    return json.loads(json.dumps({
        "version": VERSION, "input": str(source.path.resolve()),
        "input_fingerprint": fingerprint(source.path, source.files), "start": source.start,
        # --loop ties the last frames to frame 1: another length changes them
        "frames": source.n_frames if options.loop else None,
        # --fps picks a clip's frames (a folder's or a still's it only times)
        "fps": options.fps if source.kind in ("video", "animation") else None,
        "styles": [file_hash(p) for p in style_paths], "frame_size": list(size),
        "options": options.result_key()}))


def run_frames(source: media.Source, style_images: list[np.ndarray], options: Options,
               size: tuple[int, int], work: WorkDir, emit: OnEvent,
               device: torch.device, features: nn.Sequential) -> None:
    """Stylize every frame not yet in the work folder, each warm-started from the one before.
    features: VGG19's layers, loaded (vgg.load_features)."""
    n = source.n_frames
    with beside_optimizer(device.type), \
            closing(prefetch(prepare(source.frames(size), n, options, work.done))) as frames:
        stylize_frames(frames, n, style_images, options, size, work, emit, features)


def stylize_frames(frames: Iterator[Prepared], n: int, style_images: list[np.ndarray],
                   options: Options, size: tuple[int, int], work: WorkDir, emit: OnEvent,
                   features: nn.Sequential) -> None:
    """The loop over the prepared frames: optimize each, save it, keep what later ones need.

    Frame t is measured and written (PNG) in a thread while frame t+1 is optimized; one save
    at a time, so a failed save stops the run at the next frame, and Ctrl-C lets the frame
    being written finish."""
    first = next(frames)
    styles = [fit_style(s, options, size, first.content) for s in style_images]
    stylizer = Stylizer(styles, options, features=features)
    gaps = temporal_gaps(options)
    keep = look_back(options)
    recent: dict[int, np.ndarray] = {}  # frame index -> result, for the last `keep` frames
    first_result = None
    last = FrameStats()  # of frame t-1, whose numbers a copied frame repeats
    saver, saving = ThreadPoolExecutor(max_workers=1), None
    try:
        for t, frame in enumerate(chain([first], frames)):
            if t == 0:
                start = to_tensor(frame.content, stylizer.device)
                stylizer.calibrate(start, stylizer.initial(start))
            if t < work.done:  # finished in an earlier run: reuse, keep what later frames need
                if t >= work.done - keep:
                    recent[t] = work.load(t)
                if t == 0 and options.loop:
                    first_result = recent[0] if 0 in recent else work.load(0)
                if t == work.done - 1:
                    last = finished_stats(work, t)
                continue
            emit(Event("frame_start", frame=t + 1, n_frames=n))
            if frame.repeat:
                # the same picture gets the same painting: a held frame, or --fps above the
                # clip's rate; painted again it would differ a little, and cost a frame's time
                image, stats = recent[t - 1], replace(last, iterations=0, seconds=0.0)
            else:
                earlier = {1: recent[t - frame.back]} if frame.back > 1 else \
                    {j: recent[t - j] for j in gaps if t - j in recent}
                result, stats = stylize_one(t, n, frame, stylizer, earlier, first_result,
                                            options, size, emit)
                image = to_image(result)
                if options.preserve_colors:
                    image = keep_chroma(image, frame.content)
            if saving is not None:
                saving.result()
            last = stats
            record = {**asdict(stats), "repeat": frame.repeat, "new_shot": frame.new_shot}
            saving = saver.submit(save_frame, work, t, image, record, frame,
                                  recent.get(t - frame.back))
            emit(Event("frame", frame=t + 1, n_frames=n, stats=stats))
            recent[t] = image
            recent.pop(t - keep, None)
            if t == 0:
                first_result = image
        if saving is not None:
            saving.result()
    finally:
        saver.shutdown(wait=True)


def finished_stats(work: WorkDir, t: int) -> FrameStats:
    """What the optimizer did for frame t, finished in an earlier run, as its record says."""
    records = work.stats(t + 1)
    record = records[-1] if records and records[-1]["frame"] == t + 1 else {}
    return FrameStats(**{k: record[k] for k in ("iterations", "seconds", "loss", "parts")
                         if k in record})


def stylize_one(t: int, n: int, frame: Prepared, stylizer: Stylizer,
                earlier: dict[int, np.ndarray], first_result: np.ndarray | None,
                options: Options, size: tuple[int, int], emit: OnEvent
                ) -> tuple[torch.Tensor, FrameStats]:
    """Frame t: from scratch (t = 0), or warm-started from `earlier` results (keyed by how
    many frames back)."""
    device = stylizer.device
    content = to_tensor(frame.content, device)

    on_step = step_events(emit, t + 1, n)
    if t == 0 or frame.new_shot:  # nothing to carry: the first frame's budget and scales
        return first_frame(stylizer, content, options, size, on_step)
    init, temporal = warm_start(frame.content, earlier, frame.warps, options, device)
    if frame.loop_warp is not None:
        temporal.append(loop_target(t, n, frame.loop_warp, first_result, options, device))
    return stylizer.stylize(content, init, options.iterations, temporal, on_step,
                            fresh_mask(frame.warps, device))


def save_frame(work: WorkDir, t: int, image: np.ndarray, record: dict, frame: Prepared,
               previous: np.ndarray | None) -> None:
    """Write frame t to the work folder with its stats, and (with a flow warm start) the
    output's and the input's warping error t-1 -> t, which come almost free with the warp
    (none between a copied frame and the one it repeats; after a flash, from the frame
    before it: `previous` is that frame's result)."""
    if frame.input_error is not None:
        record["warping_error"] = 0.0 if frame.repeat else \
            metrics.pair_error(frame.warps[1], previous, image)
        record["input_warping_error"] = frame.input_error
    work.save(t, image, record)


def step_events(emit: OnEvent, frame: int, n_frames: int) -> Callable[[int, int, float], None]:
    """The optimizer's progress (iteration, of how many, loss) as "step" events."""
    return lambda i, max_i, loss: emit(Event("step", frame=frame, n_frames=n_frames, iteration=i,
                                             max_iterations=max_i, loss=loss))


def first_frame(stylizer: Stylizer, content: torch.Tensor, options: Options,
                size: tuple[int, int], on_step) -> tuple[torch.Tensor, FrameStats]:
    """Frame 1, optionally coarse to fine: each scale x2, the last at the full size, so that
    large frames get large-scale style structure (crowsonkb's style-transfer does the same)."""
    sizes = [media.fit_size(size, max(32, max(size) >> k)) for k in range(options.scales - 1, 0, -1)]
    x = stylizer.initial(content)
    total = FrameStats()
    for k, s in enumerate(sizes + [size]):
        if (x.shape[-1], x.shape[-2]) != s:
            x = resize_tensor(x, s)
        c = content if s == size else resize_tensor(content, s)
        # progress counts on across the scales, out of what is left of all of them
        done, more = total.iterations, (len(sizes) - k) * options.first_iterations
        step = on_step and (lambda i, n, loss, d=done, m=more: on_step(d + i, d + n + m, loss))
        x, stats = stylizer.stylize(c, x, options.first_iterations, on_step=step)
        total.iterations += stats.iterations
        total.seconds += stats.seconds
        total.loss, total.parts = stats.loss, stats.parts
    return x, total


def warm_start(content_img: np.ndarray, earlier: dict[int, np.ndarray], warps: dict[int, Warp],
               options: Options, device) -> tuple[torch.Tensor, list[TemporalTarget]]:
    """Frame t's starting point and temporal targets, from frame t-1's result.

    none: its own content. previous: the previous result as it is. flow: the previous result
    moved along the optical flow; where the warp cannot fill in (disocclusions, borders) the
    content frame does (and `fresh_mask` gives those pixels a style term of their own). The
    temporal term holds only the reliable pixels (not motion boundaries either). `earlier` and
    `warps` are keyed by how many frames back (1: t-1).

    Long-term targets (--temporal-frames 1,2,4; Ruder et al.): each pixel is held by the
    nearest earlier result that the flow says it can be traced to, so a region hidden for a
    frame or two comes back as it was painted instead of being painted anew.
    """
    if options.warm_start == "none":
        return to_tensor(content_img, device), []
    warp = warps.get(1)
    if options.warm_start == "previous" or warp is None:
        return to_tensor(earlier[1], device), []
    warped = warp.carry(earlier[1])
    mask = warp.filled[..., None]
    init = (mask * warped + (1 - mask) * content_img).round().astype(np.uint8)
    temporal = []
    if options.temporal_weight > 0:
        held = np.zeros_like(warp.reliable)  # pixels a nearer frame already holds
        for j in sorted(set(warps) & set(earlier)):
            target = warped if j == 1 else warps[j].carry(earlier[j])
            mask_j = warps[j].reliable * (1 - held)
            held = np.maximum(held, warps[j].reliable)
            temporal.append(TemporalTarget(to_tensor(target, device), mask_tensor(mask_j, device),
                                           options.temporal_weight))
    return to_tensor(init, device), temporal


def fresh_mask(warps: dict[int, Warp], device) -> torch.Tensor | None:
    """The pixels frame t-1 did not show (uncovered, or entering at the border), which start
    from bare content and get a style term of their own (see Stylizer.perceptual)."""
    if 1 not in warps:  # no flow warm start, or the first frame
        return None
    new = 1 - warps[1].filled
    return mask_tensor(new, device) if new.any() else None


def mask_tensor(mask: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(mask, np.float32)).to(device)[None, None]


def look_back(options: Options) -> int:
    """How many frames back a frame may need (their inputs, their results): the temporal
    loss's, and with the flow warm start the frame before a flash (see past_flash)."""
    return max(temporal_gaps(options) + [FLASH + 1] * (options.warm_start == "flow"))


def temporal_gaps(options: Options) -> list[int]:
    """How many frames back the temporal loss looks (always 1: the warm start's frame)."""
    if options.warm_start != "flow" or options.temporal_weight == 0:
        return [1]
    return sorted(set(options.temporal_frames) | {1})


# Loop closing: the last few frames are also pulled towards frame 1's result, moved along the
# flow from frame 1 into them, with a weight that grows towards the end, so the clip's last
# frame leads into its first like any other pair. Its own weight when --temporal-weight is 0.
LOOP_WEIGHT = 100.0


def loop_frames(n: int) -> int:
    return max(1, min(4, n // 4))


def loop_target(t: int, n: int, warp: Warp, first_result: np.ndarray, options: Options,
                device) -> TemporalTarget:
    """Frame 1's result moved along `warp` (frame 1 -> t), with a weight rising to the end."""
    k = loop_frames(n)
    ramp = (t - (n - k) + 1) / k  # 1/k ... 1 on the last frame
    weight = (options.temporal_weight or LOOP_WEIGHT) * ramp
    return TemporalTarget(to_tensor(warp.carry(first_result), device),
                          mask_tensor(warp.reliable, device), weight)


@dataclass
class Prepared:
    """An input frame and what the prefetch thread worked out for it, ahead of the optimizer."""
    content: np.ndarray
    warps: dict[int, Warp] = field(default_factory=dict)  # from frame t-j, keyed by j (after
    # a flash, 1 is the warp from the frame before it, `back` frames back)
    input_error: float | None = None  # the input's own warping error t-1 -> t (the floor)
    loop_warp: Warp | None = None  # frame 1 -> t, on the last frames of a --loop run
    repeat: bool = False  # the same pixels as frame t-1 (and no loop target): its painting too
    new_shot: bool = False  # most of it unseen in frame t-1 (a cut): painted afresh, like frame 1
    back: int = 1  # how many frames back the painting is carried from: over 1 after a flash
    # (lightning, a camera's), where frame t is unseen in t-1 but seen in the frame before it


def prepare(frames: Iterable[np.ndarray], n: int, options: Options, done: int = 0
            ) -> Iterator[Prepared]:
    """Each frame with the warps from the frames the temporal loss looks back to (computed
    once per pair, only when the warm start uses them, and not for the `done` frames an
    earlier run finished), and with --loop the warp from frame 1 into the last frames."""
    estimator = FlowEstimator(options.flow)
    flow = options.warm_start == "flow"
    gaps = temporal_gaps(options)
    history: deque[np.ndarray] = deque(maxlen=look_back(options))  # newest last
    first = None
    for t, frame in enumerate(frames):
        item = Prepared(frame)
        if t >= done and options.loop and t > 0 and t >= n - loop_frames(n):
            warp = estimator.warp(first, frame, carry=True)
            # in another shot than frame 1's, there is no seam to close
            item.loop_warp = warp if warp.unseen <= NEW_SHOT else None
        item.repeat = bool(history) and item.loop_warp is None and \
            np.array_equal(frame, history[-1])
        if t >= done and flow and item.repeat:
            item.input_error = 0.0  # no motion: no flow to compute
        elif t >= done and flow:
            item.warps = {j: estimator.warp(history[-j], frame, carry=True) for j in gaps
                          if j <= len(history)}
            if 1 in item.warps:
                item.new_shot = item.warps[1].unseen > NEW_SHOT
                if item.new_shot and (past := past_flash(estimator, history, frame)):
                    item.new_shot, item.back = False, past[0]
                    item.warps = {1: past[1]}  # no long-term targets across the flash
                item.input_error = metrics.pair_error(item.warps[1], history[-item.back], frame)
        yield item
        history.append(frame)
        if t == 0:
            first = frame


# Over this share of a frame unseen in the one before, it is a new shot: within a shot the
# real clips reach 0.48, cuts between them 0.72 and more (bench/cuts.py, 96-512 px; the README's
# *Hard cuts and flashes* has the limits). A cut it misses stays a warm frame.
NEW_SHOT = 0.7


# A flash (lightning, a camera's flash) lasts a frame or two: the frame after it is unseen in
# the flash, but seen in the frame before, whose painting it carries on from. Painted afresh
# twice instead, the painting would jump at the flash and back.
FLASH = 2


def past_flash(estimator: FlowEstimator, history: deque[np.ndarray], frame: np.ndarray
               ) -> tuple[int, Warp] | None:
    """For a frame unseen in the one before: the warp from the last frame before a flash of up
    to FLASH frames that shows it, with how many frames back that is; None for a new shot."""
    for j in range(2, min(FLASH + 1, len(history)) + 1):
        warp = estimator.warp(history[-j], frame, carry=True)
        if warp.unseen <= NEW_SHOT:
            return j, warp
    return None


def prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Run a generator in a background thread, `depth` items ahead: decoding and optical flow
    (OpenCV and ffmpeg release the GIL) overlap with the optimizer. Closing it stops and joins
    the thread, so no native code is still running when the program exits."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def worker():
        try:
            for item in items:
                if not put(("item", item)):
                    break
            else:
                put(("end", None))
        except BaseException as e:  # re-raised in the consumer
            put(("error", e))
        finally:
            getattr(items, "close", lambda: None)()  # stop the decoder (ffmpeg) now

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            tag, value = q.get()
            if tag == "item":
                yield value
            elif tag == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        thread.join(timeout=10)


def fit_style(style: np.ndarray, options: Options, frame_size: tuple[int, int],
              first_content: np.ndarray) -> np.ndarray:
    """The style image at its processing size; colour-matched to the clip when keeping colours.

    --preserve-colors matches the style's colours to frame 1 once per run (so every frame sees
    the same target, nothing flickers) and later keeps each frame's own chroma.
    """
    long_side = max(16, options.style_size or round(max(frame_size) * options.style_scale))
    h, w = style.shape[:2]
    # a small size keeps the painting's shape with its short side at VGG19's 16 px; only a
    # painting too narrow for that (over 4x the size asked) is stretched
    if (needed := media.min_long_side((w, h))) <= 4 * long_side:
        long_side = max(long_side, needed)
    size = media.fit_size((w, h), long_side)
    if size[0] * size[1] > 16 * w * h:  # over 4x each way: its strokes are a blur
        warn(f"a style image of {w}x{h} px is enlarged to {size[0]}x{size[1]} for "
             "this run: its texture will be blurred; use a larger painting or a "
             f"smaller {opt('style_size')}")
    elif min(w, h) * long_side / max(w, h) < 11:  # its short side raised to 16: over 1.45x
        warn(f"a style image of {w}x{h} px is stretched to {size[0]}x{size[1]} (VGG19 "
             f"needs 16 px a side): use a less narrow painting or a larger {opt('style_size')}")
    style = media.resize(style, size)
    return match_colors(style, first_content) if options.preserve_colors else style


def compare_frames(source: media.Source, styles: list[np.ndarray], size: tuple[int, int],
                   work: WorkDir) -> Callable[[], Iterator[np.ndarray]]:
    """content | style | result, side by side, each panel at the frame size (several styles
    share theirs, one above the other)."""
    w, h = size
    style_panel = np.full((h, w, 3), 255, np.uint8)
    cell = h // len(styles)
    for k, style in enumerate(styles):
        scale = min(w / style.shape[1], cell / style.shape[0])
        fitted = media.resize(style, (max(1, round(style.shape[1] * scale)),
                                      max(1, round(style.shape[0] * scale))))
        y, x = k * cell + (cell - fitted.shape[0]) // 2, (w - fitted.shape[1]) // 2
        style_panel[y:y + fitted.shape[0], x:x + fitted.shape[1]] = fitted

    def frames():
        for content, result in zip(source.frames(size), work.frames(source.n_frames)):
            yield np.concatenate([content, style_panel, result], axis=1)
    return frames


def write_report(path: Path, result: RunResult, options: Options, input: Path,
                 style_paths: list[Path]) -> None:
    report = {"input": str(input), "styles": [str(p) for p in style_paths],
              "output": str(result.output), "frames": result.n_frames,
              "seconds": round(result.seconds, 3), "reused_frames": result.reused,
              "seconds_per_frame": round(result.seconds / max(1, result.n_frames - result.reused), 4),
              "consistency": result.consistency, "options": asdict(options),  # all of them
              "per_frame": result.frames}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(_json_safe(report), indent=1, default=str).encode())


def _json_safe(value):
    """NaN and infinities as null: strict JSON readers refuse Python's bare NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# Options that only the frames after the first, or a clip's timing and encoding, use.
VIDEO_ONLY = ("iterations", "warm_start", "flow", "temporal_weight", "temporal_frames", "loop",
              "max_frames", "fps", "start", "end", "crf", "gif_dither", "compare")


def stylize_image(content, styles, options: Options | None = None, *,
                  on_event: OnEvent | None = None, **option_values) -> np.ndarray:
    """One image, stylized: RGB uint8 (H, W, 3) out, at options.size (long side).

    content and styles (one or a list): numpy arrays -- RGB uint8, or greys, RGBA (on white),
    floats in [0, 1], 16-bit levels --, Pillow images or image paths. Options as for
    `stylize`; first_iterations sets the iterations, and those only a clip uses (iterations,
    warm_start, flow, temporal_weight, temporal_frames, loop, max_frames, fps, start, end,
    crf, gif_dither, compare) are warned of. on_event gets "start", "frame_start", "step" and
    "frame" events (see help(vstyle.Event)).
    Raises VStyleError for bad input, and Interrupted (a KeyboardInterrupt) on Ctrl-C or where
    on_event raises KeyboardInterrupt.
    """
    options = resolve_options(options, option_values, ("on_event",), clip=False)
    check_arguments(on_event=on_event)
    if moot := options.changed(*VIDEO_ONLY):
        warn(f"ignored by stylize_image: {', '.join(moot)} (one image is painted once, from "
             "scratch: first_iterations sets its iterations)")
    emit = on_event or (lambda event: None)
    content = media.load_image(content, "content image") \
        if isinstance(content, (str, os.PathLike)) else media.as_rgb(content, "content")
    styles = [media.load_image(s) if isinstance(s, (str, os.PathLike))
              else media.as_rgb(s, "style") for s in style_list(styles)]
    size = media.frame_size((content.shape[1], content.shape[0]), options.size)
    content = media.resize(content, size)
    stylizer = Stylizer([fit_style(s, options, size, content) for s in styles], options)
    x = to_tensor(content, stylizer.device)
    stylizer.calibrate(x, stylizer.initial(x))
    try:
        emit(Event("start", n_frames=1))
        emit(Event("frame_start", frame=1, n_frames=1))
        result, stats = first_frame(stylizer, x, options, size, step_events(emit, 1, 1))
        emit(Event("frame", frame=1, n_frames=1, stats=stats))
    except KeyboardInterrupt:  # as stylize's: an `except Exception` loop does not swallow it
        raise Interrupted("interrupted: nothing was written") from None
    image = to_image(result)
    return keep_chroma(image, content) if options.preserve_colors else image
