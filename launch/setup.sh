#!/usr/bin/env bash
# Installs every Debian package Nexus needs to build, test and run. Idempotent: re-running it is
# cheap (it skips apt entirely when everything is already installed).
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  openmpi-bin libopenmpi-dev
  libhdf5-openmpi-dev hdf5-tools
  libboost-program-options-dev
  libopenblas-openmp-dev
  libgtest-dev
  nlohmann-json3-dev
  python3 python3-matplotlib python3-numpy
  slurmctld slurmd slurm-client munge
)

# With the CUDA toolkit, pip fetches the cudnn-frontend headers (below).
has_cuda_toolkit=false
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  has_cuda_toolkit=true
  packages+=(python3-pip)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: all dependencies present"

# cuDNN's fused attention (model.attention_impl = cudnn) is written against the cudnn-frontend
# C++ headers, which no Debian package ships: with the CUDA toolkit present (nvcc where CMake looks
# for it), fetch them once from the pinned PyPI wheel into third_party/ (git-ignored), where
# CMake's NEXUS_CUDNN_FRONTEND_DIR points by default. Without the toolkit nothing is fetched and
# the build leaves the cuDNN path off.
cudnn_frontend_version=1.32.0
cudnn_frontend_dir="$(cd "$(dirname "$0")/.." && pwd)/third_party/cudnn_frontend"
if $has_cuda_toolkit; then
  stamp="$cudnn_frontend_dir/VERSION"
  if [ -f "$cudnn_frontend_dir/include/cudnn_frontend.h" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$cudnn_frontend_version" ]; then
    echo "setup: cudnn-frontend $cudnn_frontend_version headers present"
  else
    echo "setup: fetching the cudnn-frontend $cudnn_frontend_version headers into $cudnn_frontend_dir"
    download="$(mktemp -d)"
    trap 'rm -rf "$download"' EXIT
    # Any platform's wheel carries the same headers: ask for one explicitly so that the host's
    # Python version and architecture do not matter.
    if python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux_2_28_x86_64 -d "$download" "nvidia-cudnn-frontend==$cudnn_frontend_version"; then
      rm -rf "$cudnn_frontend_dir"
      mkdir -p "$cudnn_frontend_dir"
      python3 - "$download"/nvidia_cudnn_frontend-*.whl "$cudnn_frontend_dir" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    z.extractall(dest, [n for n in z.namelist() if n.startswith("include/")])
PY
      echo "$cudnn_frontend_version" >"$stamp"
    else
      # Not fatal: everything else builds; the configure log then says the cuDNN path is off.
      echo "setup: WARNING: could not download nvidia-cudnn-frontend==$cudnn_frontend_version (offline?): the cuDNN attention path stays off"
    fi
  fi
fi
