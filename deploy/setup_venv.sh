#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment with the CI-tested pins.
#
# docs/design.md §5: torch and torchvision are pinned in the same pip command as everything else, or
# timm drags in the newest torch with GBs of CUDA wheels. On a machine without an NVIDIA GPU we try
# the CPU build (torch==2.13.0+cpu) first and fall back to the plain pin only when no CPU wheel
# source is configured. Re-running is cheap: a stamp of the inputs skips a complete install.
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0

stamp_inputs() { cat pyproject.toml constraints.txt deploy/setup_venv.sh | sha256sum | cut -d' ' -f1; }
want=$(stamp_inputs)
if [ -f "$VENV/.dssl-setup" ] && [ "$(cat "$VENV/.dssl-setup")" = "$want" ]; then
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    torch_spec="torch==$TORCH_VERSION"
    echo "setup: NVIDIA GPU found -> $torch_spec (CUDA build)"
elif "${pip[@]}" install -q "torch==$TORCH_VERSION+cpu" "torchvision==$TORCHVISION_VERSION" >/dev/null 2>&1; then
    torch_spec="torch==$TORCH_VERSION+cpu"
    echo "setup: no GPU -> $torch_spec (CPU build)"
else
    torch_spec="torch==$TORCH_VERSION"
    echo "setup: no GPU and no CPU wheel source configured -> $torch_spec (CUDA build, runs on CPU)"
fi

"${pip[@]}" install -q "$torch_spec" "torchvision==$TORCHVISION_VERSION" -c constraints.txt -e ".[test]" 2>&1 \
    | grep -v "^WARNING: Location" || true
"${pip[@]}" check
"$VENV/bin/python" -c "import peer, timm, hivemind, grpc; print('setup: ok, torch', __import__('torch').__version__)"
# the one-pass mixing kernel (gossip/fused_mix.c), built now rather than by the first gossip round
"$VENV/bin/python" -c "from gossip import fused_mix; print('setup: mixing kernel', \
    'compiled' if fused_mix.kernel() else 'unavailable (no C compiler): torch ops')"
echo "$want" > "$VENV/.dssl-setup"
