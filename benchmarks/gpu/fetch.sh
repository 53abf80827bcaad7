#!/usr/bin/env bash
# Prepare what benchmarks/gpu/run.py carries to a GPU machine that has no network:
#   benchmarks/gpu/wheels/  Python 3.12 x86-64 wheels of the project's dependencies that
#                           the GPU image lacks (the versions this venv has, --no-deps);
#   benchmarks/gpu/data/fashion-mnist/  the four Fashion-MNIST IDX files, when Debian's
#                           dataset-fashion-mnist is installed here.
# Both folders are git-ignored; name them in the device call's `carry`. Prints what it fetched.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wheels="$here/wheels"
mkdir -p "$wheels" "$here/data"
# name -> pinned version: this venv's, else a known-good one
packages=(datasets pytorch-optimizer pytorch-fid tomli-w dill multiprocess xxhash)
py="${PYTHON:-python3}"
for name in "${packages[@]}"; do
    version="$("$py" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: print('')" "$name")"
    spec="$name${version:+==$version}"
    echo "fetch: $spec"
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --abi cp312 --abi abi3 --abi none \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d "$wheels" "$spec"
done
fashion=/usr/share/datasets/fashion-mnist
if [ -f "$fashion/train-images-idx3-ubyte.gz" ]; then
    mkdir -p "$here/data/fashion-mnist"
    cp "$fashion"/*-ubyte.gz "$here/data/fashion-mnist/"
    echo "data: copied $fashion -> $here/data/fashion-mnist"
else
    echo "data: $fashion not found (apt-get install dataset-fashion-mnist); the GPU run's"
    echo "      suites will then skip fashion-mnist"
fi
echo "fetched (carry benchmarks/gpu/wheels and benchmarks/gpu/data):"
ls -l "$wheels" "$here/data"/* | sed 's/^/  /'
du -sh "$wheels" "$here/data" | sed 's/^/  /'
