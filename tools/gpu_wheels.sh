#!/usr/bin/env bash
# Download, here, the wheels that `make gpu-check` needs on a lent GPU machine and that its image lacks
# (its python3 3.12 has jax[cuda], flax, optax, chex, torch, pandas, seaborn, pyyaml): gymnax and gymnasium
# (DeepSea agent), ale-py (Atari agent), gguf. Gemma 3's weights package is too large to carry (64 MiB limit
# of what travels), so the Gemma part of the check is skipped there. Usage: bash tools/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT -d .whl \
    gymnax gymnasium farama-notifications ale-py gguf
ls -la .whl
