#!/usr/bin/env bash
# Installs everything IRIS needs, idempotently: Debian packages, then a project-local Python
# virtual environment holding the pinned torch wheel (its LibTorch is what we link against) and
# the reference packages the tests compare with. Only Debian's archive and PyPI are used.
#
#   scripts/install-deps.sh [--torch venv|system] [--no-python-refs] [--quiet]
#
# --torch system installs Debian's libtorch-dev (1.13, CPU only) with OpenBLAS instead of the
# virtual environment: a build with no Python at all.
# A second run does nothing unless a requirements file changed (a stamp in the venv records
# them). pip keeps its download cache in the user's cache directory, so even a fresh clone
# installs the wheels without downloading them again.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${IRIS_VENV:-$root/.venv}
want_system_torch=0
want_refs=1
quiet=0
while [ $# -gt 0 ]; do
  case "$1" in
    --torch)
      case "${2:-}" in
        venv) want_system_torch=0 ;;
        system) want_system_torch=1 ;;
        *) echo "install-deps.sh: --torch expects venv or system, got '${2:-}'" >&2; exit 2 ;;
      esac
      shift ;;
    --no-python-refs) want_refs=0 ;;
    --quiet) quiet=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { [ "$quiet" = 1 ] || echo "[install-deps] $*"; }
sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

# --- Debian packages -----------------------------------------------------------------------
debs=(
  build-essential cmake ninja-build ccache pkg-config git python3 python3-venv python3-dev
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libopencv-videoio-dev
  libnifti2-dev zlib1g-dev
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libsqlite3-dev
  libgloo-dev
  libplplot-dev plplot-driver-cairo
  libgtest-dev libgmock-dev libbenchmark-dev
  mricron-data
)
if [ "$want_system_torch" = 1 ]; then debs+=(libtorch-dev libopenblas0-pthread); fi

missing=()
for p in "${debs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages: all present"
fi

# --- Python virtual environment (LibTorch + reference packages) ----------------------------
if [ "$want_system_torch" = 1 ]; then
  log "using Debian's LibTorch; no virtual environment needed"
  exit 0
fi
stamp_src=$(cat "$root/scripts/requirements-torch.txt")
if [ "$want_refs" = 1 ]; then stamp_src+=$(cat "$root/scripts/requirements-dev.txt"); fi
stamp=$(printf '%s' "$stamp_src" | sha256sum | cut -c1-16)
if [ -f "$venv/.iris-stamp" ] && grep -qx "$stamp" "$venv/.iris-stamp"; then
  log "virtual environment $venv: up to date"
  exit 0
fi

python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  log "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
pip_quiet=(-q)
log "installing torch (this is the LibTorch we build against)"
"${pip[@]}" install "${pip_quiet[@]}" -r "$root/scripts/requirements-torch.txt"
if [ "$want_refs" = 1 ]; then
  log "installing reference packages for tests"
  "${pip[@]}" install "${pip_quiet[@]}" -r "$root/scripts/requirements-torch.txt" \
    -r "$root/scripts/requirements-dev.txt" setuptools wheel
  # The official SAM2 ships as a source distribution whose build imports torch; build it
  # against the venv's torch and skip its optional CUDA extension.
  SAM2_BUILD_CUDA=0 SAM2_BUILD_ALLOW_ERRORS=1 "${pip[@]}" install "${pip_quiet[@]}" \
    --no-build-isolation --no-deps sam2==1.1.0
fi
echo "$stamp" > "$venv/.iris-stamp"
log "done"
