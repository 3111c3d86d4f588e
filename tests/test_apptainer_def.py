"""The container definition and its helpers, checked without Apptainer.

Apptainer cannot be installed from this machine's package sources, so Apptainer.def is
parsed with spython's Singularity-recipe parser and checked for what matters: a Debian
bookworm base, one source of truth for the stack (%post runs containers/setup.sh
--stack-only), the project copied to /opt/weldsim-hpc without .venv/.git, `weldsim` as
the runscript, and labels carrying pyproject's version. Every check is also run on
mutated copies, which it must reject. containers/build.sh and run.sh run against stand-in
`apptainer`/`singularity`/`srun` programs that record their arguments.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Callable

import pytest
from spython.main.parse.parsers import SingularityParser

from weldsim_hpc.executors.container import apptainer_prefix

ROOT = Path(__file__).resolve().parent.parent
DEF = ROOT / "Apptainer.def"
PYPROJECT = ROOT / "pyproject.toml"
PREFIX = "/opt/weldsim-hpc"
SETUP_IN_IMAGE = f"{PREFIX}/containers/setup.sh"
BOOKWORM = re.compile(r"^(docker\.io/)?(library/)?debian:(bookworm|12)([.-][a-z0-9.-]+)?$")
BASH = shutil.which("bash") or "/bin/bash"


class _SectionParser(SingularityParser):
    """spython's parser, also keeping each section's lines (it merges %test into %post)."""

    def __init__(self, filename: str):
        self.sections: dict[str, list[str]] = {}
        super().__init__(filename)

    def _get_mapping(self, section: str):
        handler = super()._get_mapping(section)
        name = section.lower()

        def record(lines, *layer):
            self.sections.setdefault(name, []).extend(lines)
            return handler(lines, *layer)

        return record


def project_metadata(pyproject: Path = PYPROJECT) -> dict:
    return tomllib.loads(pyproject.read_text(encoding="utf-8"))


def problems(definition: Path, pyproject: Path = PYPROJECT, repo: Path = ROOT) -> list[str]:
    """Everything wrong with `definition`, in words; [] when it is fit to build."""
    found: list[str] = []
    project = project_metadata(pyproject)["project"]
    text = definition.read_text(encoding="utf-8")

    header = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not header or not re.fullmatch(r"(?i)bootstrap:\s*docker", header[0]):
        found.append("the first line must be 'Bootstrap: docker'")
    try:
        parser = _SectionParser(str(definition))
    except NotImplementedError as exc:  # spython accepts only docker bootstraps
        return found + [f"spython cannot parse the definition: {exc}"]
    if list(parser.recipe) != ["spython-base"]:
        found.append(f"expected one build stage, got {list(parser.recipe)}")
    recipe = parser.recipe["spython-base"]
    sections = parser.sections

    # From: Debian bookworm
    if not BOOKWORM.match(recipe.fromHeader or ""):
        found.append(f"From must be Debian bookworm (debian:bookworm[-slim] or debian:12), got {recipe.fromHeader!r}")

    # %files: the project, under /opt/weldsim-hpc, and nothing hidden (.venv, .git)
    files = {}
    for line in sections.get("files", []):
        parts = shlex.split(line)
        if len(parts) != 2:
            found.append(f"%files line {line!r} must be 'SOURCE DESTINATION'")
            continue
        src, dst = parts
        files[src] = dst
        if src in (".", "./") or any(p.startswith(".") and p not in (".", "..") for p in Path(src).parts):
            found.append(f"%files copies {src!r}: that takes .venv/.git along (cp -L); list the project's files")
        elif not (repo / src).exists():
            found.append(f"%files source {src!r} does not exist in the repository")
        if dst != f"{PREFIX}/{src.rstrip('/')}":
            found.append(f"%files copies {src!r} to {dst!r}, expected {PREFIX}/{src.rstrip('/')}")
    finder = project_metadata(pyproject).get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    packages = {p.name for p in repo.iterdir() if p.is_dir() and (p / "__init__.py").exists()
                and any(fnmatch.fnmatch(p.name, pat) for pat in finder.get("include", ["*"]))}
    readme = project.get("readme")
    needed = {"pyproject.toml", "containers", *packages, *([readme] if isinstance(readme, str) else [])}
    for name in sorted(needed - {s.rstrip("/") for s in files}):
        found.append(f"%files does not copy {name!r}, which `pip install {PREFIX}` needs")

    # %post: the set-up script in --stack-only mode, its failure not hidden
    post = sections.get("post", [])
    calls = [shlex.split(ln) for ln in post if "setup.sh" in ln]
    if not any(c == ["bash", SETUP_IN_IMAGE, "--stack-only"] for c in calls):
        found.append(f"%post must run exactly 'bash {SETUP_IN_IMAGE} --stack-only' (got {calls or 'no call'})")
    if not any(re.fullmatch(r"set -e\w*", ln) for ln in post):
        found.append("%post must start with 'set -e…' so a failing step fails the build")

    # %environment: one thread per rank
    env = dict(e.split("=", 1) for e in recipe.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if env.get(name) != "1":
            found.append(f"%environment must export {name}=1 (got {env.get(name)!r})")

    # %runscript: weldsim with the arguments
    run = sections.get("runscript", [])
    if [shlex.split(ln) for ln in run] != [["exec", "weldsim", "$@"]]:
        found.append(f"%runscript must be exactly 'exec weldsim \"$@\"', got {run}")

    # %labels: Version = pyproject's version
    labels = dict((ln.split(None, 1) + [""])[:2] for ln in sections.get("labels", []))
    version = project["version"]
    if labels.get("Version") != version:
        found.append(f"label Version is {labels.get('Version')!r}, pyproject.toml says {version!r}")
    oci = labels.get("org.opencontainers.image.version")
    if oci is not None and oci != version:
        found.append(f"label org.opencontainers.image.version is {oci!r}, pyproject.toml says {version!r}")

    # %test runs weldsim; %help says something
    if not any(shlex.split(ln)[:1] == ["weldsim"] for ln in sections.get("test", [])):
        found.append("%test must run weldsim (e.g. 'weldsim --help')")
    if not sections.get("help"):
        found.append("%help is missing")
    return found


# ----------------------------------------------------------------------------------------
# Apptainer.def


def test_definition_parses_with_spython():
    recipe = SingularityParser(str(DEF)).recipe["spython-base"]
    assert recipe.fromHeader.startswith("debian:")
    assert recipe.cmd == 'exec weldsim "$@"'


def test_definition_is_fit_to_build():
    assert problems(DEF) == []


SH = "/bin/sh"  # Apptainer runs %post, %test and %runscript with /bin/sh (dash on Debian)


@pytest.mark.parametrize("section", ["post", "environment", "runscript", "test"])
def test_shell_sections_are_valid_sh(section):
    lines = _SectionParser(str(DEF)).sections[section]
    done = subprocess.run([SH, "-n"], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"%{section}: {done.stderr}"


def test_sh_n_does_catch_a_broken_section():
    assert subprocess.run([SH, "-n"], input="if true; then\n  echo\n", capture_output=True, text=True).returncode != 0


def test_labels_carry_the_pyproject_version():
    parser = _SectionParser(str(DEF))
    labels = dict(ln.split(None, 1) for ln in parser.sections["labels"])
    version = project_metadata()["project"]["version"]
    assert labels["Version"] == version
    assert labels["org.opencontainers.image.version"] == version


def _sub(old: str, new: str) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        assert old in text, f"the mutation's anchor {old!r} is no longer in Apptainer.def"
        return text.replace(old, new)
    return mutate


MUTATIONS = {
    "no --stack-only": (_sub("setup.sh --stack-only", "setup.sh"), "--stack-only"),
    "--dev instead": (_sub("setup.sh --stack-only", "setup.sh --dev"), "--stack-only"),
    "failure ignored": (_sub("setup.sh --stack-only", "setup.sh --stack-only || true"), "--stack-only"),
    "call commented out": (_sub("    bash /opt/weldsim-hpc/containers/setup.sh",
                                "    # bash /opt/weldsim-hpc/containers/setup.sh"), "--stack-only"),
    "stack installed by hand": (_sub("bash /opt/weldsim-hpc/containers/setup.sh --stack-only",
                                     "apt-get install -y python3-dolfinx"), "--stack-only"),
    "no set -e": (_sub("    set -eu\n    bash", "    bash"), "set -e"),
    "trixie": (_sub("From: debian:bookworm", "From: debian:trixie"), "bookworm"),
    "ubuntu": (_sub("From: debian:bookworm", "From: ubuntu:22.04"), "bookworm"),
    "library bootstrap": (_sub("Bootstrap: docker", "Bootstrap: library"), "Bootstrap"),
    "whole checkout copied": (_sub("    pyproject.toml /opt/weldsim-hpc/pyproject.toml\n",
                                   "    . /opt/weldsim-hpc\n"), ".venv"),
    "package not copied": (_sub("    weldsim_hpc /opt/weldsim-hpc/weldsim_hpc\n", ""), "'weldsim_hpc'"),
    "copied elsewhere": (_sub("containers /opt/weldsim-hpc/containers", "containers /opt/containers"),
                         "/opt/containers"),
    "runscript python": (_sub('exec weldsim "$@"', 'exec python3 "$@"'), "runscript"),
    "runscript drops arguments": (_sub('exec weldsim "$@"', "exec weldsim"), "runscript"),
    "version label stale": (_sub("    Version 0.1.0", "    Version 0.0.9"), "label Version"),
    "version label missing": (_sub("    Version 0.1.0\n", ""), "label Version"),
    "OCI version stale": (_sub("org.opencontainers.image.version 0.1.0", "org.opencontainers.image.version 0.2"),
                          "org.opencontainers.image.version"),
    "threads": (_sub("export OMP_NUM_THREADS=1", "export OMP_NUM_THREADS=8"), "OMP_NUM_THREADS"),
    "no test": (_sub("%test", "%nottest"), "%test"),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_checks_catch_a_broken_definition(tmp_path, name):
    mutate, words = MUTATIONS[name]
    broken = tmp_path / "Apptainer.def"
    broken.write_text(mutate(DEF.read_text(encoding="utf-8")), encoding="utf-8")
    found = problems(broken)
    assert found, f"mutation {name!r} went unnoticed"
    assert any(words in p for p in found), found


def test_checks_catch_a_version_bump_without_the_label(tmp_path):
    bumped = tmp_path / "pyproject.toml"
    text = PYPROJECT.read_text(encoding="utf-8")
    version = project_metadata()["project"]["version"]
    bumped.write_text(text.replace(f'version = "{version}"', 'version = "99.0.0"', 1), encoding="utf-8")
    found = problems(DEF, pyproject=bumped)
    assert any("99.0.0" in p and "label Version" in p for p in found), found


# ----------------------------------------------------------------------------------------
# containers/*.sh


def test_shell_scripts_are_syntactically_valid():
    scripts = sorted((ROOT / "containers").glob("*.sh"))
    assert {s.name for s in scripts} >= {"setup.sh", "build.sh", "run.sh"}
    for script in scripts:
        done = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{script.name}: {done.stderr}"


def test_bash_n_does_catch_a_syntax_error(tmp_path):
    broken = tmp_path / "broken.sh"
    text = (ROOT / "containers/build.sh").read_text()
    assert "esac\ndone" in text
    broken.write_text(text.replace("esac\ndone", "done", 1))
    assert subprocess.run([BASH, "-n", str(broken)], capture_output=True).returncode != 0


FAKE = """#!/bin/sh
pwd > "$FAKE_LOG.$(basename "$0").cwd"
for a in "$@"; do printf '%s\\n' "$a"; done > "$FAKE_LOG.$(basename "$0")"
"""


def _bin(tmp_path: Path, *programs: str) -> Path:
    """A PATH directory holding only stand-ins for `programs` (no real tools at all)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name in programs:
        fake = bindir / name
        fake.write_text(FAKE.replace("$(basename \"$0\")", name))
        fake.chmod(0o755)
    return bindir


def _script(script: Path, args: list[str], *, path: Path, cwd: Path, log: Path,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": str(path), "FAKE_LOG": str(log), **(extra_env or {})}
    return subprocess.run([BASH, str(script), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=60)


def _recorded(log: Path, program: str) -> tuple[list[str], str]:
    return (Path(f"{log}.{program}").read_text().splitlines(),
            Path(f"{log}.{program}.cwd").read_text().strip())


VERSION = project_metadata()["project"]["version"]
BUILD = ROOT / "containers/build.sh"
RUN = ROOT / "containers/run.sh"


def test_build_fails_clearly_without_apptainer_or_singularity(tmp_path):
    done = _script(BUILD, [], path=_bin(tmp_path), cwd=tmp_path, log=tmp_path / "log")
    assert done.returncode == 127
    assert "neither apptainer nor singularity" in done.stderr
    assert not list(tmp_path.glob("*.sif"))


def test_build_runs_apptainer_in_the_repository_and_names_the_image(tmp_path):
    log = tmp_path / "log"
    done = _script(BUILD, [], path=_bin(tmp_path, "apptainer", "singularity"), cwd=tmp_path, log=log)
    assert done.returncode == 0, done.stderr
    args, cwd = _recorded(log, "apptainer")
    assert args == ["build", str(tmp_path / f"weldsim-hpc_{VERSION}.sif"), "Apptainer.def"]
    assert Path(cwd) == ROOT  # the relative %files sources resolve there
    assert not Path(f"{log}.singularity").exists()


def test_build_falls_back_to_singularity(tmp_path):
    log = tmp_path / "log"
    done = _script(BUILD, ["--fakeroot"], path=_bin(tmp_path, "singularity"), cwd=tmp_path, log=log)
    assert done.returncode == 0, done.stderr
    args, _ = _recorded(log, "singularity")
    assert args == ["build", "--fakeroot", str(tmp_path / f"weldsim-hpc_{VERSION}.sif"), "Apptainer.def"]


def test_build_output_option_is_relative_to_the_caller(tmp_path):
    log = tmp_path / "log"
    (tmp_path / "images").mkdir()
    done = _script(BUILD, ["-o", "images/w.sif", "--", "--notest"], path=_bin(tmp_path, "apptainer"),
                   cwd=tmp_path, log=log)
    assert done.returncode == 0, done.stderr
    assert _recorded(log, "apptainer")[0] == ["build", "--notest", str(tmp_path / "images/w.sif"), "Apptainer.def"]


def test_build_refuses_to_overwrite_without_force(tmp_path):
    log = tmp_path / "log"
    bindir = _bin(tmp_path, "apptainer")
    (tmp_path / "w.sif").write_bytes(b"old")
    done = _script(BUILD, ["--output", "w.sif"], path=bindir, cwd=tmp_path, log=log)
    assert done.returncode == 2
    assert done.stderr == f"containers/build.sh: {tmp_path / 'w.sif'} exists; pass --force to overwrite it\n"
    assert not Path(f"{log}.apptainer").exists()
    done = _script(BUILD, ["--output=w.sif", "--force"], path=bindir, cwd=tmp_path, log=log)
    assert done.returncode == 0, done.stderr
    assert _recorded(log, "apptainer")[0] == ["build", "--force", str(tmp_path / "w.sif"), "Apptainer.def"]


@pytest.mark.parametrize("args, words", [
    (["-o", "w.img"], ".sif"),
    (["-o", "missing-dir/w.sif"], "does not exist"),
    (["-o"], "needs a file name"),
    (["--bogus"], "unknown option"),
])
def test_build_rejects_bad_options(tmp_path, args, words):
    log = tmp_path / "log"
    done = _script(BUILD, args, path=_bin(tmp_path, "apptainer"), cwd=tmp_path, log=log)
    assert done.returncode == 2
    assert words in done.stderr
    assert not Path(f"{log}.apptainer").exists()


def test_build_does_not_evaluate_user_text(tmp_path):
    log = tmp_path / "log"
    name = "$(touch pwned)`touch pwned2`;x.sif"
    done = _script(BUILD, ["-o", name], path=_bin(tmp_path, "apptainer"), cwd=tmp_path, log=log)
    assert done.returncode == 0, done.stderr
    assert _recorded(log, "apptainer")[0][1] == str(tmp_path / name)
    assert not (tmp_path / "pwned").exists() and not (ROOT / "pwned").exists()
    assert not (tmp_path / "pwned2").exists() and not (ROOT / "pwned2").exists()


def test_build_refuses_a_stale_version_label(tmp_path):
    repo = tmp_path / "repo"
    (repo / "containers").mkdir(parents=True)
    shutil.copy(BUILD, repo / "containers/build.sh")
    shutil.copy(PYPROJECT, repo / "pyproject.toml")
    (repo / "Apptainer.def").write_text(DEF.read_text().replace(f"    Version {VERSION}", "    Version 0.0.1"))
    log = tmp_path / "log"
    done = _script(repo / "containers/build.sh", [], path=_bin(tmp_path, "apptainer"), cwd=tmp_path, log=log)
    assert done.returncode == 1
    assert "0.0.1" in done.stderr and VERSION in done.stderr
    assert not Path(f"{log}.apptainer").exists()


@pytest.fixture()
def run_setup(tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "k3v9x0q2m7ab"
    run_dir.mkdir(parents=True)
    (run_dir / "case.json").write_text("{}")
    image = tmp_path / f"weldsim-hpc_{VERSION}.sif"
    image.write_bytes(b"SIF stand-in")
    return image, runs, run_dir


def test_run_in_an_allocation_is_srun_pmix_apptainer_exec(tmp_path, run_setup):
    image, runs, run_dir = run_setup
    log = tmp_path / "log"
    done = _script(RUN, ["-n", "4", "--bind", "/data/meshes", str(image), str(run_dir), "--resume"],
                   path=_bin(tmp_path, "srun", "apptainer"), cwd=tmp_path, log=log,
                   extra_env={"SLURM_JOB_ID": "123"})
    assert done.returncode == 0, done.stderr
    args, _ = _recorded(log, "srun")
    expected_prefix = apptainer_prefix(image, [runs, "/data/meshes"])  # the executor's own argv
    assert args == ["--mpi=pmix", "-n", "4", *expected_prefix, "python3", "-m", "weldsim_hpc.run",
                    str(run_dir), "--resume"]
    assert not Path(f"{log}.apptainer").exists()  # srun, not the script, starts apptainer


def test_run_outside_slurm_runs_apptainer_directly(tmp_path, run_setup):
    image, runs, run_dir = run_setup
    log = tmp_path / "log"
    done = _script(RUN, [image.name, f"runs/{run_dir.name}/"], path=_bin(tmp_path, "srun", "apptainer"),
                   cwd=tmp_path, log=log)
    assert done.returncode == 0, done.stderr
    args, _ = _recorded(log, "apptainer")
    assert args == ["exec", "--bind", f"{runs}:{runs}", str(image), "python3", "-m", "weldsim_hpc.run", str(run_dir)]
    assert not Path(f"{log}.srun").exists()


def test_run_dry_run_prints_the_command(tmp_path, run_setup):
    image, runs, run_dir = run_setup
    done = _script(RUN, ["--dry-run", "--mpi=pmix", str(image), str(run_dir)], path=_bin(tmp_path), cwd=tmp_path,
                   log=tmp_path / "log", extra_env={"SLURM_JOB_ID": "1"})
    assert done.returncode == 0, done.stderr
    assert shlex.split(done.stdout) == ["srun", "--mpi=pmix", "apptainer", "exec", "--bind", f"{runs}:{runs}",
                                        str(image), "python3", "-m", "weldsim_hpc.run", str(run_dir)]


@pytest.mark.parametrize("args, words", [
    (["{image}", "{run_dir}", "extra"], "expected IMAGE and RUN_DIR"),
    (["{image}"], "expected IMAGE and RUN_DIR"),
    (["{runs}/x.img", "{run_dir}"], ".sif"),
    (["{runs}/missing.sif", "{run_dir}"], "does not exist"),
    (["{image}", "{runs}"], "no case.json"),
    (["--bind", "relative/dir", "{image}", "{run_dir}"], "absolute"),
    (["--bind", "/a,b", "{image}", "{run_dir}"], "','"),
    (["-n", "0", "{image}", "{run_dir}"], "positive"),
    (["--mpi", "pmix;rm", "{image}", "{run_dir}"], "plugin name"),
    (["-n", "2", "--no-srun", "{image}", "{run_dir}"], "needs srun"),
    (["--frobnicate", "{image}", "{run_dir}"], "unknown option"),
])
def test_run_rejects_bad_arguments(tmp_path, run_setup, args, words):
    image, runs, run_dir = run_setup
    args = [a.format(image=image, runs=runs, run_dir=run_dir) for a in args]
    log = tmp_path / "log"
    done = _script(RUN, args, path=_bin(tmp_path, "srun", "apptainer"), cwd=tmp_path, log=log,
                   extra_env={"SLURM_JOB_ID": "1"})
    assert done.returncode == 2, done.stdout
    assert words in done.stderr
    assert not Path(f"{log}.srun").exists() and not Path(f"{log}.apptainer").exists()


def test_readme_shows_the_documented_job_step():
    guide = (ROOT / "containers/README.md").read_text(encoding="utf-8")
    assert "srun --mpi=pmix" in guide
    assert "python3 -m weldsim_hpc.run" in guide
    assert "--bind" in guide and "NFS" in guide and "OpenMPI 4.1" in guide

