#!/usr/bin/env bash
# Build the WeldSim HPC compute image from Apptainer.def (on a workstation with Apptainer).
#
#   bash containers/build.sh                    -> ./weldsim-hpc_<version>.sif
#   bash containers/build.sh -o /data/img.sif   -> that file
#   bash containers/build.sh --fakeroot         build without root (needs subuid/subgid)
#   bash containers/build.sh --force            overwrite an existing image
#   bash containers/build.sh -- ARG...          pass ARG... on to `apptainer build`
#
# Uses `apptainer`, else `singularity`, from PATH; set APPTAINER=/path/to/binary to choose.
# The version is pyproject.toml's; the build refuses to run when Apptainer.def's
# `Version` label says otherwise. Arguments are passed as words, never evaluated.
set -euo pipefail

here="${BASH_SOURCE[0]}"
case "$here" in */*) here="${here%/*}" ;; *) here=. ;; esac
repo="$(cd "$here/.." && pwd)"
output=""
force=0
build_opts=()
extra=()

die() { printf 'containers/build.sh: %s\n' "$1" >&2; exit "${2:-1}"; }
usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ "$#" -gt 0 ]; do
  case "$1" in
    -o|--output)
      [ "$#" -ge 2 ] && [ -n "$2" ] || die "$1 needs a file name" 2
      output="$2"; shift 2 ;;
    --output=*) output="${1#--output=}"; [ -n "$output" ] || die "--output needs a file name" 2; shift ;;
    --fakeroot) build_opts+=(--fakeroot); shift ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown option '$1' (valid: -o/--output FILE, --fakeroot, --force, -- ARG...)" 2 ;;
  esac
done

# --- the version: pyproject.toml's [project] version, and Apptainer.def's label -------
project_version() {
  local line section="" re='^version[[:space:]]*=[[:space:]]*"([^"]+)"'
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in \[*) section="$line"; continue ;; esac
    if [ "$section" = "[project]" ] && [[ "$line" =~ $re ]]; then
      printf '%s\n' "${BASH_REMATCH[1]}"; return 0
    fi
  done <"$repo/pyproject.toml"
  return 1
}

label_version() {
  local line section="" re='^[[:space:]]+Version[[:space:]]+([^[:space:]]+)[[:space:]]*$'
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in %*) section="${line%%[[:space:]]*}"; continue ;; esac
    if [ "$section" = "%labels" ] && [[ "$line" =~ $re ]]; then
      printf '%s\n' "${BASH_REMATCH[1]}"; return 0
    fi
  done <"$repo/Apptainer.def"
  return 1
}

version="$(project_version)" || die "no version in $repo/pyproject.toml ([project] version = \"...\")"
label="$(label_version)" || die "Apptainer.def has no 'Version' line in %labels"
[ "$label" = "$version" ] || die "Apptainer.def's Version label is $label but pyproject.toml's version is $version; update the %labels section"

# --- the builder -------------------------------------------------------------------------
if [ -n "${APPTAINER:-}" ]; then
  builder="$APPTAINER"
  command -v -- "$builder" >/dev/null 2>&1 || die "APPTAINER=$builder is not an executable" 127
elif command -v apptainer >/dev/null 2>&1; then
  builder=apptainer
elif command -v singularity >/dev/null 2>&1; then
  builder=singularity
else
  die "neither apptainer nor singularity is on PATH. Install Apptainer (https://apptainer.org/docs/admin/main/installation.html) on a workstation, build there, and copy the .sif to the cluster" 127
fi

# --- the output: relative names are relative to where build.sh was called ----------------
[ -n "$output" ] || output="weldsim-hpc_${version}.sif"
case "$output" in /*) ;; *) output="$PWD/$output" ;; esac
case "$output" in *.sif) ;; *) die "the output must end in .sif (got $output)" 2 ;; esac
outdir="${output%/*}"
[ -d "${outdir:-/}" ] || die "the output directory ${outdir:-/} does not exist" 2
if [ -e "$output" ]; then
  [ "$force" -eq 1 ] || die "$output exists; pass --force to overwrite it" 2
  build_opts+=(--force)
fi

# %files sources in Apptainer.def are relative: build in the repository root.
cd "$repo"
cmd=("$builder" build "${build_opts[@]}" "${extra[@]}" "$output" Apptainer.def)
printf '[build] version %s in %s:' "$version" "$repo"
printf ' %q' "${cmd[@]}"
printf '\n'
"${cmd[@]}"
printf '[build] wrote %s\n' "$output"
