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
