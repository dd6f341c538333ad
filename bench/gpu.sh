#!/usr/bin/env bash
# The GPU checks of one device loan, in one call, most wanted first: the README's sample job,
# the end-to-end frame rate at 512 px, the speed table, batching, a profile, then the whole
# test suite on the GPU. One log per step under $OUT (default out/); each step's tail is printed.
# The step limits add up to 570 s, inside the device tool's 600 s a command.
#   CLIP=... STYLE=... bash bench/gpu.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 VSTYLE_WEIGHTS=random
CLIP=${CLIP:-../shared/clips/cockatoo.mp4}
STYLE=${STYLE:-../shared/styles/starry_night.jpg}

step() {  # step NAME LIMIT_S LINES command...: run it into $OUT/NAME.log, print its last lines
    local name=$1 limit=$2 lines=$3 start=$SECONDS
    shift 3
    echo "## $name: $*" >> "$OUT/$name.log"
    timeout "$limit" "$@" >> "$OUT/$name.log" 2>&1
    echo "## $name: rc $?, $((SECONDS - start)) s" | tee -a "$OUT/$name.log"
    tail -n "$lines" "$OUT/$name.log" | grep -v '^## '
}

nvidia-smi -L
python3 cli.py --version
step samples 45 3 python3 cli.py samples/clip.mp4 samples/style.jpg -o "$OUT/clip-styled.gif" \
    --size 128 --first-iterations 100 --iterations 30
step samples 45 3 python3 cli.py samples/clip.mp4 samples/style.jpg -o /tmp/clip-512.gif
step endtoend 60 4 python3 bench/endtoend.py "$CLIP" "$STYLE" --size 512 --frames 48
step endtoend 60 4 python3 bench/endtoend.py "$CLIP" "$STYLE" --size 512 --frames 48 \
    --set warm_start=previous
step speed 120 14 python3 bench/speed.py --clip "$CLIP" --style "$STYLE" --frames 8 --size 512 \
    --iterations 50
step batching 45 10 python3 bench/batching.py
step profile 45 30 python3 bench/speed.py --clip "$CLIP" --style "$STYLE" --frames 2 --size 512 \
    --profile
# pytest-xdist, where installed, spreads the suite over 8 processes sharing the GPU
python3 -c 'import xdist' 2>/dev/null && PARALLEL='-n 8' || PARALLEL=''
step tests 150 25 python3 -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-$PARALLEL}
