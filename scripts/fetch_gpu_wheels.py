"""Download the wheels bench/gpu_check.sh's embed phase installs on a machine with no registry.

    python3 scripts/fetch_gpu_wheels.py              # into build/gpu-wheels (gitignored)
    python3 scripts/fetch_gpu_wheels.py -o DIR

The embed phase runs ``activerm_fast.data.embed`` (the ``hf`` extra: transformers and
tokenizers) on the device machine: Python 3.12 on x86_64 Linux, torch installed, no package
registry. This downloads, from PyPI, the CPython 3.12 manylinux x86_64 (or pure-Python) wheel of
transformers, tokenizers and every package they need there, each at the version installed
here (the versions this checkout's tests ran with), and writes ``requirements.txt`` pinning the
two. numpy and torch are left out: the check cannot run without them, so the machine has them.
gpu_check.sh installs with ``pip install --no-index --find-links DIR -r DIR/requirements.txt``,
which keeps every installed package that already satisfies the pins' requirements and takes
the others from DIR. Carry DIR with the run (about 30 MB; the device tool's limit is 64 MiB).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PINNED = ("transformers", "tokenizers")  # what the embed phase imports
PRESENT = {"numpy", "torch"}  # on the device machine by definition
# the device machine: CPython 3.12 on x86_64 Linux, as packaging's markers name it
TARGET = {
    "implementation_name": "cpython",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "python_full_version": "3.12.3",
    "python_version": "3.12",
    "sys_platform": "linux",
    "extra": "",
}
# manylinux tags pip matches exactly: every glibc from the oldest wheels' to the machine's 2.39
PLATFORMS = ["manylinux1_x86_64", "manylinux2014_x86_64"] + [
    f"manylinux_2_{minor}_x86_64" for minor in range(5, 40)
]


def closure(names: tuple[str, ...]) -> dict[str, str]:
    """{name: version installed here} of ``names`` and everything they require on the target,
    numpy and torch left out.

    Raises
    ------
    SystemExit
        If a required package is not installed here (its version is then unknown).
    """
    versions: dict[str, str] = {}
    todo = [canonicalize_name(name) for name in names]
    while todo:
        name = todo.pop()
        if name in versions or name in PRESENT:
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is needed on the device but not installed here") from None
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(TARGET):
                todo.append(canonicalize_name(requirement.name))
    return dict(sorted(versions.items()))


def download(versions: dict[str, str], folder: Path) -> None:
    """pip download of each pinned wheel for the target, without resolving again."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    pins = [f"{name}=={version}" for name, version in versions.items()]
    subprocess.run([*command, "--dest", str(folder), *pins], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("build/gpu-wheels"))
    args = parser.parse_args()
    versions = closure(PINNED)
    args.output.mkdir(parents=True, exist_ok=True)
    for stale in args.output.glob("*.whl"):  # one version of each: two stop the install
        stale.unlink()
    download(versions, args.output)
    pins = "".join(f"{name}=={versions[canonicalize_name(name)]}\n" for name in PINNED)
    (args.output / "requirements.txt").write_text(pins)
    wheels = sorted(args.output.glob("*.whl"))
    size = sum(wheel.stat().st_size for wheel in wheels)
    print(f"{len(wheels)} wheels, {size / 2**20:.1f} MiB in {args.output}:")
    for wheel in wheels:
        print(f"  {wheel.name}")


if __name__ == "__main__":
    main()
