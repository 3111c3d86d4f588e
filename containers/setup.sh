#!/usr/bin/env bash
# One idempotent set-up for WeldSim HPC on Debian 12 (bookworm), run as root.
#
#   bash containers/setup.sh              solver stack + Slurm packages + .venv + project (with the portal)
#   bash containers/setup.sh --dev        the same, with the test tools (pytest, pytest-mpi)
#   bash containers/setup.sh --stack-only solver stack + project into /usr/bin/python3,
#                                         no Slurm, no venv (what Apptainer.def runs)
#
# A second run with everything in place only checks and returns (well under 30 s).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode=venv
extras="portal"
for arg in "$@"; do
  case "$arg" in
    --stack-only) mode=stack; extras="" ;;
    --dev) extras="portal,dev" ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (valid: --dev, --stack-only)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*"; }

# --- Debian packages ---------------------------------------------------------------
stack_pkgs=(python3-dolfinx python3-slepc4py python3-petsc4py python3-mpi4py python3-gmsh
            python3-h5py python3-scipy python3-numpy python3-venv python3-dev python3-pip
            build-essential hdf5-tools libopenblas0-pthread openmpi-bin)
slurm_pkgs=(slurm-wlm slurmdbd slurm-wlm-mysql-plugin munge)
pkgs=("${stack_pkgs[@]}")
[ "$mode" = venv ] && pkgs+=("${slurm_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { echo "setup.sh: missing packages (${missing[*]}); run as root" >&2; exit 1; }
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  log "Debian packages present"
fi

# --- constraints: pin the compiled stack to the system versions ----------------------
# A pip-installed numpy (or scipy/h5py/mpi4py) would shadow Debian's and break dolfinx.
sys_py=/usr/bin/python3
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
"$sys_py" - >"$constraints" <<'PY'
import h5py, mpi4py, numpy, scipy
for mod in (numpy, scipy, h5py, mpi4py):
    print(f"{mod.__name__}=={mod.__version__}")
PY

# Debian registers h5py under the distribution name "h5py._debian_h5py_serial", so pip
# does not see it and would build another h5py from source. Record the system h5py
# under its real name in the target site-packages (metadata only, no files of its own).
register_system_h5py() {  # $1: python whose site-packages gets the record
  "$1" - <<'PY'
import importlib.metadata as md, pathlib, site, sysconfig
import h5py
try:
    md.version("h5py")
except md.PackageNotFoundError:
    target = pathlib.Path(sysconfig.get_paths()["purelib"])
    info = target / f"h5py-{h5py.__version__}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: h5py\nVersion: {h5py.__version__}\n")
    (info / "INSTALLER").write_text("debian\n")
    (info / "RECORD").write_text("")
PY
}

# --- the project -----------------------------------------------------------------------
spec="$here"
[ -n "$extras" ] && spec="$here[$extras]"
# Reinstall only when what pip would install changed (pyproject, extras, constraints).
fingerprint="$( (cat "$here/pyproject.toml" "$constraints"; echo "$mode $extras") | sha256sum | cut -c1-16)"

if [ "$mode" = stack ]; then
  stamp=/usr/local/share/weldsim-hpc.stamp
  if [ "$(cat "$stamp" 2>/dev/null)" != "$fingerprint" ]; then
    log "installing the project into $sys_py"
    register_system_h5py "$sys_py"
    "$sys_py" -m pip install -q --no-cache-dir --break-system-packages -c "$constraints" "$spec"
    mkdir -p "$(dirname "$stamp")" && echo "$fingerprint" >"$stamp"
  else
    log "project already installed into $sys_py"
  fi
  exit 0
fi

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv (system site packages: dolfinx, PETSc, gmsh come from Debian)"
  "$sys_py" -m venv --system-site-packages "$venv"
fi
stamp="$venv/.weldsim-installed"
if [ "$(cat "$stamp" 2>/dev/null)" != "$fingerprint" ]; then
  log "installing the project (editable) into $venv"
  register_system_h5py "$venv/bin/python"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$constraints" -e "$spec"
  echo "$fingerprint" >"$stamp"
else
  log "project already installed in $venv"
fi
"$venv/bin/python" -c "import weldsim_hpc" || { echo "setup.sh: the project does not import" >&2; exit 1; }
log "ready: $venv/bin/weldsim"
