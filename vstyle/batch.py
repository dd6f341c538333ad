"""Many inputs, and long videos in chunks: locally (processes, one per GPU) or on a Ray cluster.

Warm starts are sequential, so work is split by input or by chunk, never by frame. A chunk starts
`OVERLAP` frames early, so the first frame it keeps is warm-started like any other, and over those
frames the previous chunk's results fade into its own (chunks start from different points and
settle on different brush strokes: a hard cut measured ~30x the warping error inside a chunk).
Every job writes through `video.stylize`, so each one resumes from its own work folder when the
batch is run again.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import warnings
from contextlib import closing
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from . import media
from .errors import (VStyleError, VStyleWarning, name_options_as_flags, opt,
                     options_named_as_flags, plural, warn)
from .options import Options
from .video import (WORK_SUFFIX, audio_for, default_work_dir, manifest, moot_here,
                    resolve_options, stylize, written_size)
from .workdir import file_hash, fingerprint, read_frame, remove_idle, write_atomic

OVERLAP = 8  # frames a chunk starts early (and fades in over)
LEDGER = ".vstyle-batch.json"  # in OUTDIR: each output's recipe, to tell a rerun what changed


@dataclass
class Job:
    input: Path
    output: Path  # the input's output, or a chunk's PNG folder
    styles: list[Path] = field(default_factory=list)  # its look: one style, or those blended
    frame_range: tuple[int, int] | None = None  # a chunk: the frames it stylizes
    keep_from: int = 0  # a chunk: its first frame to keep (after the overlap)
    # The input as planning probed it (counting a video's frames decodes them): probed once.
    source: media.Source | None = field(default=None, repr=False)
    # What its run's work folder will hold (see video.manifest), to tell its frames from those
    # of an earlier run with other options, which it will clear: set by plan
    manifest: dict | None = field(default=None, repr=False)

    @property
    def chunk_done(self) -> bool:
        """A chunk whose frames are all written (by this run or an earlier one)."""
        return bool(self.frame_range) and finished(self.output)

    @property
    def n_frames(self) -> int:
        """The frames it paints (a chunk's include its overlap)."""
        if self.frame_range:
            return self.frame_range[1] - self.frame_range[0]
        return self.source.n_frames if self.source else 0


@dataclass
class Outcome:
    input: Path
    output: Path
    status: str  # "done" | "skipped" | "failed"
    styles: list[Path] = field(default_factory=list)  # the look it is painted in
    frames: int = 0
    error: str = ""
    jobs: list[Job] = field(default_factory=list)  # the input as one job, or its chunks
    recipe: str = ""  # what makes its output (see `recipe`)

    @property
    def chunked(self) -> bool:
        return bool(self.jobs) and self.jobs[0].frame_range is not None


def expand_inputs(items: Iterable[str | Path], known: Iterable[Path] = ()) -> list[Path]:
    """Files as they are; a folder of clips -> its clips; a folder of images -> itself;
    a .txt file -> the inputs it lists, one a line (relative to the list's folder).
    `known`: paths that are no inputs (the styles, OUTDIR), never warned of as left out."""
    found: list[Path] = []
    of_clips = []  # folders read as their clips
    for item in map(Path, items):
        if item.suffix.lower() == ".txt" and item.is_file():
            lines = [l.strip() for l in item.read_text().splitlines()]
            found += expand_inputs((item.parent / l for l in lines if l and not l.startswith("#")),
                                   known)
        elif item.is_dir():  # its clips; else its images are the frames of one input
            clips = media.folder_clips(item)
            found += clips or [item]
            if clips:
                of_clips.append((item, clips))
        else:
            found.append(item)
    for folder, clips in of_clips:
        warn_left_out(folder, clips, [*found, *known])
    return found


# a style folder with more images than this is more likely a folder of frames given last
MOST_PAINTINGS = 100


def style_folder(folder: Path, outdir: Path) -> list[Path]:
    """A folder given as the style: its paintings (still images, natural order), each a look
    of its own."""
    if folder.resolve() == outdir.resolve():  # the next run would paint with the outputs
        where = "-o" if options_named_as_flags() else "outdir"
        raise VStyleError(f"the outputs would land among the paintings in {folder}: give "
                          f"{where} another folder")
    images = media.folder_images(folder)
    paintings = [p for p in images if media.input_kind(p) == "image"]
    moving = sorted({*media.folder_clips(folder), *images} - {*paintings}, key=media.natural_key)
    if not paintings or len(paintings) > MOST_PAINTINGS:
        what = (f"holds {len(paintings)} images, more than {MOST_PAINTINGS} paintings (frames?)"
                if paintings else f"holds no still image, only {media.some_names(moving)}"
                if moving else "holds no still image")
        raise VStyleError(f"style folder {folder} {what}: the last path is the style, one "
                          "painting or a folder of paintings")
    if moving:
        warn(f"style folder {folder}: left out {media.some_names(moving)} (a painting is one "
             "picture, not a clip)")
    return paintings


def warn_left_out(folder: Path, clips: list[Path], used: list[Path]) -> None:
    """A folder of clips gives its clips alone: say which images and folders beside them
    are not stylized (unless used otherwise: passed by name, a style, OUTDIR)."""
    used = [p.resolve() for p in used]
    left = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p not in clips
                  and (p.is_dir() or media.input_kind(p) == "image")
                  and not any(u == p.resolve() or p.resolve() in u.parents for u in used))
    if left:
        frames = any(p.is_file() for p in left)  # the folder's own frames, perhaps
        warn(f"folder {folder}: stylizing its {plural(len(clips), 'clip')}; left "
             f"out: {media.some_names(left)} (pass a folder or an image by its own "
             f"name{'; to stylize the frames here, move the clips out' * frames})")


def output_for(input: Path, styles: list[Path], outdir: Path) -> Path:
    """<input>-<style> in outdir, in the input's kind (judged by name: nothing is decoded)."""
    return media.output_name(input, media.input_kind(input) or "video", styles, outdir)


def chunk_jobs(input: Path, output: Path, n_frames: int, chunk: int,
               source: media.Source | None = None, key: str = "",
               styles: list[Path] | None = None) -> list[Job]:
    """Chunks of `chunk` frames; each but the first starts OVERLAP frames early (at most one
    chunk early: the frames it overlaps must all come from the chunk before). A chunk's folder
    is named by its frames and `key` (what else shapes its result), so a finished chunk is
    reused only by the same plan."""
    jobs = []
    for start in range(0, n_frames, chunk):
        first, end = max(0, start - min(OVERLAP, chunk)), min(start + chunk, n_frames)
        folder = output.parent / f"{chunk_prefix(output)}{first}-{end}-{key}"
        jobs.append(Job(input, folder, styles or [], (first, end), start - first, source))
    return jobs


def chunk_prefix(output: Path) -> str:
    """Hidden, and no dot that would read as an extension (a chunk is written as a folder); the
    hash tells apart names that differ only there (clip.v2.mp4, clip_v2.mp4)."""
    digest = hashlib.sha1(output.name.encode()).hexdigest()[:6]
    return f".{output.name.replace('.', '_')}-{digest}-chunk-"


def chunk_key(source: media.Source, styles: list[Path], options: Options) -> str:
    """A short hash of what a run's manifest holds: the input, the styles and the options that
    change the frames."""
    what = manifest(source, styles, options, media.fit_size(source.size, options.size))
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]


def drop_stale_chunks(output: Path, jobs: list[Job]) -> None:
    """Remove chunks (and their work folders) of an earlier plan for this output: other chunk
    sizes, options or inputs."""
    current, prefix = {job.output.name for job in jobs}, chunk_prefix(output)
    if not output.parent.is_dir():
        return  # a new OUTDIR: made once the plan holds
    names = {p.name for p in output.parent.iterdir()}
    # finished chunks, and unfinished ones by their work folders (".<chunk>.vstyle-work")
    chunks = {n for n in names if n.startswith(prefix)} | \
        {n[1:-len(WORK_SUFFIX)] for n in names if n.startswith("." + prefix)
         and n.endswith(WORK_SUFFIX)}
    for name in chunks - current:
        chunk = output.parent / name
        if remove_idle(default_work_dir(chunk)):  # not one another batch is running
            shutil.rmtree(chunk, ignore_errors=True)


def run_job(job: Job, options: Options) -> tuple[str, int, str]:
    """Stylize one input or chunk; a user error becomes a result, not an exception."""
    if job.chunk_done:
        return "done", len(media.written_frames(job.output)), ""  # from an earlier run
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "ignored: ", VStyleWarning)  # the batch said them
            result = stylize(job.source or job.input, job.styles, job.output, options,
                             frame_range=job.frame_range)
        return "done", result.n_frames, ""
    except Exception as e:  # a bug or a library's error too: still only this input fails
        # (Ctrl-C, as Interrupted, is no Exception: it stops the whole batch)
        return "failed", 0, failure(e)


def painted(job: Job) -> int | None:
    """How many of a job's frames are finished (for a progress bar; a batch's jobs run in
    other processes or on other machines, and share only files): a chunk's folder, or the
    frames in its work folder; None where it has none (not started, or just finished)."""
    if job.chunk_done:  # now, or by an earlier run
        return job.n_frames
    folder = default_work_dir(job.output)
    try:
        if job.manifest is not None and \
                json.loads((folder / "manifest.json").read_text()) != job.manifest:
            return 0  # an earlier run's frames, which this one clears
        return len(media.written_frames(folder))
    except (OSError, ValueError):
        return None


def failure(error: Exception) -> str:
    """A failed input's line: a user error as it reads, anything else marked unexpected."""
    if isinstance(error, VStyleError):
        return str(error)
    return f"unexpected {type(error).__name__}: {error} (please report it)"


def join_chunks(output: Path, chunks: list[Job], options: Options) -> int:
    """Encode the kept frames of every chunk, in order, into output (with the source's audio)."""
    source = chunks[0].source  # planning probed it
    size = written_size(media.fit_size(source.size, options.size), options)
    kind = media.check_output(output, source, frame_size=size)
    for job in chunks:  # all there: another batch may have removed one meanwhile
        have = len(media.written_frames(job.output)) if job.output.is_dir() else 0
        if have != job.frame_range[1] - job.frame_range[0]:
            raise VStyleError(f"chunk {job.output} holds {have} of "
                              f"{job.frame_range[1] - job.frame_range[0]} frames: run the same "
                              "command again")
    frames = lambda: joined_frames(chunks)  # noqa: E731 - write_output may read them twice
    media.write_output(frames, output, kind, source.timing,
                       audio_from=audio_for(source, kind), audio_seek=source.sound_from,
                       crf=options.crf, gif_dither=options.gif_dither)
    for job in chunks:
        shutil.rmtree(job.output, ignore_errors=True)
    return source.n_frames


def joined_frames(chunks: list[Job]) -> Iterable[np.ndarray]:
    """Every chunk's frames in order; over each overlap, the previous chunk's frames fade into
    the next chunk's (both were stylized from the same input frames), so a join is spread
    over OVERLAP small steps instead of one jump."""
    held: list[Path] = []  # the previous chunk's last frames, which the next chunk overlaps
    for i, job in enumerate(chunks):
        files = media.written_frames(job.output)
        for k, (old, new) in enumerate(zip(held, files[:job.keep_from])):
            w = (k + 1) / (job.keep_from + 1)
            mixed = (1 - w) * read_frame(old) + w * read_frame(new)
            yield mixed.round().astype(np.uint8)
        kept = files[job.keep_from:]
        next_overlap = chunks[i + 1].keep_from if i + 1 < len(chunks) else 0
        cut = len(kept) - next_overlap
        yield from (read_frame(f) for f in kept[:cut])
        held = kept[cut:]


def plan(inputs: list[Path], looks: list[list[Path]], outdir: Path, options: Options,
         chunk_frames: int | None, on_notice: Callable[[str], None] | None = None
         ) -> tuple[list[Outcome], list[Job]]:
    """What to do: every input in every look (one style, or those blended), skipping finished
    outputs, splitting long videos, refusing unreadable inputs early.

    Outputs of this batch found among the inputs (OUTDIR inside an input folder) are left out,
    and two inputs that would write the same output (a/clip.mp4, b/clip.mp4) both fail."""
    unique: dict[Path, Path] = {}  # an input named twice is one input
    for input in inputs:
        unique.setdefault(input.resolve(), input)
    planned = []  # (input, its real path, its look, its output, the output's real path)
    for real_input, input in unique.items():
        for look in looks:
            output = output_for(input, look, outdir)
            planned.append((input, real_input, look, output, output.resolve()))
    ours = {real for *_, real in planned}
    writers: dict[Path, list[str]] = {}  # real output path -> what would write it

    def named(input: Path, look: list[Path]) -> str:
        return str(input) if len(looks) == 1 else f"{input} with {'+'.join(map(str, look))}"

    for input, real_input, look, _, real in planned:
        if real_input not in ours:
            writers.setdefault(real, []).append(named(input, look))
    outcomes, jobs = [], []
    ledger = read_ledger(outdir)
    # a missing style: every job fails on it with its own message
    hashes = {p: file_hash(p) if p.is_file() else "" for look in looks for p in look}
    sources: dict[Path, media.Source | VStyleError] = {}  # opened once for all its looks
    for input, real_input, look, output, real in planned:
        outcome = Outcome(input, output, "pending", look)
        if input.exists():
            outcome.recipe = recipe(input, output, [hashes[p] for p in look], options)
        outcomes.append(outcome)
        if real_input in ours:
            outcome.status, outcome.error = "skipped", "an output of this batch"
            continue
        same = writers[real]
        if len(same) > 1:
            others = ", ".join(w for w in same if w != named(input, look))
            outcome.status, outcome.error = "failed", (
                f"{named(input, look)} and {others} would both write {output}: rename one, or "
                "run them into separate folders")
            continue
        # made with these options, or unknown to the ledger (by hand: left alone), or its
        # input is gone
        if finished(output) and (not outcome.recipe or
                                 ledger.get(output.name, outcome.recipe) == outcome.recipe):
            outcome.status = "skipped"
            if output.name not in ledger:
                outcome.error = "exists, not made by vstyle batch: left alone"
                warn(f"{output} exists and no vstyle batch made it: left alone; delete "
                     f"it to stylize {input}")
            continue
        if real_input not in sources:
            sources[real_input] = probe(input, options, on_notice)
        source = error = sources[real_input]
        if isinstance(source, media.Source):
            try:  # found now, not when the chunks are joined
                error = None
                media.check_output(output, source, look, written_size(
                    media.frame_size(source.size, options.size), options))
            except VStyleError as e:
                error = e
        if error:
            outcome.status, outcome.error = "failed", str(error)
            continue
        if chunk_frames and source.kind in ("video", "animation") and \
                source.n_frames > chunk_frames:
            outcome.jobs = chunk_jobs(input, output, source.n_frames, chunk_frames, source,
                                      chunk_key(source, look, options), look)
            drop_stale_chunks(output, outcome.jobs)
        else:
            outcome.jobs = [Job(input, output, look, source=source)]
        for job in outcome.jobs if all(p.is_file() for p in look) else ():
            part = source.window(*job.frame_range) if job.frame_range else source
            job.manifest = manifest(part, look, options,
                                    media.frame_size(part.size, options.size))
        jobs += outcome.jobs
    return outcomes, jobs


def probe(input: Path, options: Options, on_notice: Callable[[str], None] | None = None
          ) -> media.Source | VStyleError:
    """The input opened (for a video that decodes it, to count its frames), or why it cannot be."""
    try:
        return media.open_source(input, options.max_frames, options.fps, options.start,
                                 options.end, on_notice)
    except VStyleError as e:
        return e


def recipe(input: Path, output: Path, style_hashes: list[str], options: Options) -> str:
    """A hash of what makes an output, found without decoding anything: the input (its files'
    names, sizes and times), the styles' bytes, and the options that change the frames or, for
    its kind of file, their encoding."""
    kind = media.output_kind(output)
    what = {"input": str(input.resolve()), "styles": style_hashes,
            "files": fingerprint(input, media.folder_images(input) if input.is_dir() else None),
            "frames": [options.result_key(), options.max_frames, options.end, options.fps,
                       options.compare],
            "encoding": {"mp4": options.crf, "gif": options.gif_dither}.get(kind)}
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def read_ledger(outdir: Path) -> dict[str, str]:
    try:
        ledger = json.loads((outdir / LEDGER).read_text())
    except (OSError, ValueError):
        return {}
    return ledger if isinstance(ledger, dict) else {}


def record(outcome: Outcome) -> None:
    """Add an output's recipe to its folder's ledger as soon as it is written, so that a batch
    stopped later still knows it (read again: another batch there may have added its own)."""
    if outcome.recipe:
        ledger = {**read_ledger(outcome.output.parent), outcome.output.name: outcome.recipe}
        write_atomic(outcome.output.parent / LEDGER,
                     json.dumps(ledger, indent=1, sort_keys=True).encode())


def finished(output: Path) -> bool:
    """Written by an earlier run: the output exists and no work folder waits beside it."""
    return output.exists() and not default_work_dir(output).exists()


OnDone = Callable[[Job, str, int, str], None]


def moot_everywhere(outcomes: list[Outcome], options: Options) -> list[str]:
    """Options that every output or input makes moot (--crf for GIFs alone), said once for
    the batch; where some need them (a clip's --iterations, a photo beside it) nothing is."""
    moot = [moot_here(media.output_kind(o.output), o.jobs[0].source, options) for o in outcomes
            if o.jobs and o.jobs[0].source is not None]
    return [what for what in moot[0] if all(what in m for m in moot[1:])] if moot else []


def run_batch(inputs: Sequence[str | Path], styles: str | Path | Sequence,
              outdir: str | Path, options: Options | None = None, *,
              workers: int | None = None, ray_address: str | None = None, use_ray: bool = False,
              chunk_frames: int | None = None,
              on_plan: Callable[[list[Job]], None] | None = None,
              on_done: OnDone | None = None,
              on_notice: Callable[[str], None] | None = None, **option_values) -> list[Outcome]:
    """Stylize every input into outdir; one failure never stops the others, and the same call
    again skips finished outputs and resumes the others. Returns an Outcome per output.

    inputs: files, folders (of clips: each clip; of images: one input) and .txt lists of
    them. `styles`: the look, one style image or those style_blend blends; or a list of
    looks, or a folder of paintings, each input painted in each (outdir/<input>-<style>
    apiece). Options as for `stylize` (an Options and/or keywords). `workers`: jobs at once
    (default: one per GPU locally, as many as the Ray cluster takes). on_plan(jobs) gets the
    jobs before they start, on_done(job, status, frames, error) each one's result as it ends
    (an input that fails while planning is only in the returned list), on_notice(message)
    news while planning (a long video counted)."""
    options = resolve_options(options, option_values)
    outdir = Path(outdir)
    for name, value in (("workers", workers), ("chunk_frames", chunk_frames)):
        if value is not None and value < 1:
            raise VStyleError(f"{opt(name)} must be at least 1 (got {value})")
    if chunk_frames and (options.loop or options.preserve_colors):
        raise VStyleError(f"{opt('loop', True)} and {opt('preserve_colors', True)} need each "
                          "clip in one piece (the last frames lead into frame 1; colours are "
                          f"matched to frame 1): leave out {opt('chunk_frames')}")
    if chunk_frames and chunk_frames < 4 * OVERLAP:
        warn(f"{opt('chunk_frames', chunk_frames)}: each chunk after the first also paints "
             f"the {min(OVERLAP, chunk_frames)} frames before it, to blend the join, so "
             f"chunks this short redo {min(OVERLAP, chunk_frames) / chunk_frames:.0%} "
             "more frames; a few hundred is usual")
    media.check_writable(outdir / LEDGER, "folder for the outputs")
    if isinstance(styles, (str, os.PathLike)):
        styles = [styles]
    looks = [[Path(p) for p in look] for look in (
        [styles] if all(isinstance(p, (str, os.PathLike)) for p in styles) else styles)]
    inputs = expand_inputs(inputs, known=[*(p for look in looks for p in look), outdir])
    if len(looks) == 1 and len(looks[0]) == 1 and looks[0][0].is_dir():
        looks = [[p] for p in style_folder(looks[0][0], outdir)]
    outcomes, jobs = plan(inputs, looks, outdir, options, chunk_frames, on_notice)
    for what in moot_everywhere(outcomes, options):
        warn(f"ignored: {what}")
    outdir.mkdir(parents=True, exist_ok=True)  # once the plan holds
    if on_plan:
        on_plan(jobs)
    runner = _run_ray if use_ray else _run_local
    results: dict[int, tuple[str, int, str]] = {}
    owner = {id(job): outcome for outcome in outcomes for job in outcome.jobs}
    # closing: Ctrl-C while the runner waits at a yield must still stop its workers
    with closing(runner(jobs, options, workers, ray_address)) as finished_jobs:
        for index, result in finished_jobs:
            results[index] = result
            outcome = owner[id(jobs[index])]
            if result[0] == "done" and not outcome.chunked:
                record(outcome)
            if on_done:
                on_done(jobs[index], *result)
    by_job = {id(job): results[i] for i, job in enumerate(jobs)}
    for outcome in outcomes:
        if outcome.status != "pending":
            continue
        parts = [by_job[id(j)] for j in outcome.jobs]
        failed = [error for status, _, error in parts if status == "failed"]
        if failed:
            outcome.status, outcome.error = "failed", failed[0]
        elif outcome.chunked:
            try:
                outcome.frames = join_chunks(outcome.output, outcome.jobs, options)
                outcome.status = "done"
                record(outcome)
            except Exception as e:
                outcome.status, outcome.error = "failed", failure(e)
        else:
            outcome.status, outcome.frames = "done", parts[0][1]
    return outcomes


def _run_local(jobs: list[Job], options, workers: int | None, _address):
    workers = workers or default_workers()
    if workers <= 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            yield i, run_job(job, options)
        return
    # Each worker keeps one GPU for all its jobs (cards dealt in turn), so a job never lands on
    # a card another worker is still using while one sits idle.
    gpus = _gpu_count() if options.device in ("auto", "cuda") else 0
    cards = multiprocessing.Queue() if gpus else None
    for k in range(workers if gpus else 0):
        cards.put(k % gpus)
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init,
                               initargs=(cards, options_named_as_flags()))
    try:
        futures = {pool.submit(_worker_job, job, options): i
                   for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            yield futures[future], future.result()
    except BaseException as e:  # Ctrl-C, kill, or a worker that died
        stop_pool(pool)
        if isinstance(e, BrokenProcessPool):
            raise VStyleError("a batch worker process died (out of memory?): run the same "
                              f"command again with fewer {opt('workers')}; finished inputs are "
                              "skipped"
                              ) from None
        raise
    pool.shutdown()


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Start nothing more and stop the workers: each stops its job as Ctrl-C would (finished
    frames kept) and exits, since jobs already handed to the pool's queue cannot be cancelled
    and a live worker would take them. shutdown drops the processes and the manager thread,
    so they are taken first; the thread is joined here, before the interpreter's exit hook
    pokes its closing pipe (Python 3.11: "Bad file descriptor")."""
    workers = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        process.terminate()
    for process in workers:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    if manager is not None:
        manager.join(timeout=30)


_IN_JOB = False  # in a worker process: whether a job is running
_DEVICE: str | None = None  # in a worker process: its GPU


def _worker_init(cards, flags: bool) -> None:
    """A worker takes its GPU, ignores Ctrl-C (the parent stops it, with SIGTERM) and on
    SIGTERM stops its job the way Ctrl-C stops a single run, or exits at once when idle."""
    global _DEVICE
    name_options_as_flags(flags)  # a spawned worker starts with the library's keywords
    if cards is not None:
        _DEVICE = f"cuda:{cards.get()}"
    # A forked worker inherits the CLI's warning printer, whose console lock another thread of
    # the parent may have held at the fork: print plainly.
    warnings.showwarning = _plain_warning
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_stop)


def _plain_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _worker_stop(signum, frame) -> None:
    if _IN_JOB:
        raise KeyboardInterrupt
    os._exit(130)


def _worker_job(job: Job, options: Options) -> tuple[str, int, str]:
    global _IN_JOB
    _IN_JOB = True
    try:
        return run_job(job, options if _DEVICE is None else options.replace(device=_DEVICE))
    except KeyboardInterrupt:  # Interrupted too
        os._exit(130)  # its frames are saved; a live worker would start the next queued job
    finally:
        _IN_JOB = False


def _run_ray(jobs: list[Job], options, workers: int | None, address: str | None):
    try:
        import ray
    except ImportError:
        raise VStyleError("Ray is not installed: pip install 'vstyle[ray]'") from None
    ray.init(address=address or None, ignore_reinit_error=True, log_to_driver=False,
             include_dashboard=False, configure_logging=False)
    pending: dict = {}
    try:
        gpus, threads = ray_shape(ray.cluster_resources(), ray.nodes(), workers)
        # One task per input or chunk; Ray sets CUDA_VISIBLE_DEVICES, so the task sees cuda:0.
        task = ray.remote(num_gpus=gpus, num_cpus=threads)(_ray_job)
        waiting = list(enumerate(jobs))
        while waiting or pending:
            while waiting and len(pending) < (workers or len(jobs)):
                i, job = waiting.pop(0)
                pending[task.remote(job, options, threads, options_named_as_flags())] = i
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield pending.pop(ref), ray.get(ref)
    finally:
        for ref in pending:  # stopped early (Ctrl-C, kill): the cluster stops the rest too
            ray.cancel(ref)
        if address is None:
            ray.shutdown()


def ray_shape(resources: dict, nodes: list[dict], workers: int | None) -> tuple[int, int]:
    """What one Ray task reserves: (GPUs, CPUs). A GPU each where the cluster has them. On
    CPUs only, --workers N gives each task the most cores that still let N run at once on the
    cluster's nodes (a task runs on one node); without it, one core each and as many tasks as
    there are cores (the most frames per hour, and the most memory)."""
    if resources.get("GPU", 0) >= 1:
        return 1, 1
    if not workers:
        return 0, 1
    cores = [int(n.get("Resources", {}).get("CPU", 0)) for n in nodes if n.get("Alive", True)]
    fits = [t for t in range(1, max(cores, default=1) + 1)
            if sum(c // t for c in cores) >= workers]
    return 0, max(fits, default=1)


def _ray_job(job: Job, options: Options, threads: int, flags: bool):
    # A Ray worker process runs task after task: its torch keeps the thread count it started
    # with, so set this task's share of the cores.
    name_options_as_flags(flags)
    if options.device == "cpu" or not _gpu_count():
        import torch
        torch.set_num_threads(threads)
    return run_job(job, options)


def _gpu_count() -> int:
    import torch
    return torch.cuda.device_count()


def default_workers() -> int:
    """One per GPU, or one on the CPU (a second CPU worker only halves each one's threads)."""
    return max(1, _gpu_count())

