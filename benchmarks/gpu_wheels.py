"""The wheels the lent GPU machine needs, fetched here and checked to be complete before the clock runs.

The GPU machine starts bare (Python 3.12 with PyTorch and a known list of packages, no network): everything
else benchbench imports must travel as wheels and be installed with `--no-deps`, so a missing dependency is
only found there, under the clock. This script makes that impossible to get wrong:

    python benchmarks/gpu_wheels.py download .whl     # here: pip download (cp312 manylinux), sdists built
    python benchmarks/gpu_wheels.py check [.whl]      # the dependency closure is covered; exit 1 if not

`check` resolves every requirement (markers evaluated for CPython 3.12 on Linux, extras left out) of
benchbench itself and of every listed package against the listed packages plus the machine's own
(`DEVICE_HAS`, from the device's KINDS.md). With a wheel folder it reads each wheel's own METADATA (and
insists on exactly one wheel per listed package, at the pinned version); without one it reads the
metadata of the same versions installed here.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIST = HERE / "gpu_wheels.txt"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
#: What the GPU image holds already (device KINDS.md, "Python packages already there", 2026-11-17).
DEVICE_HAS = {
    "absl-py", "accelerate", "aiofiles", "aiohappyeyeballs", "aiohttp", "aiosignal", "annotated-doc", "anyio",
    "attrs", "botorch", "build", "certifi", "charset-normalizer", "chex", "click", "cloudpickle", "cmake", "colorama",
    "contourpy", "coverage", "cuda-bindings", "cuda-core", "cuda-pathfinder", "cuda-toolkit", "cupy-cuda13x",
    "cycler", "cython", "diffrax", "e3nn", "einops", "equinox", "etils", "execnet", "filelock", "flatbuffers", "flax",
    "fonttools", "formulaic", "frozenlist", "fsspec", "gpytorch", "grpcio", "h11", "h5py", "hf-xet", "httpcore",
    "httpx", "huggingface-hub", "humanize", "hypothesis", "idna", "imageio", "iniconfig", "interface-meta", "jax",
    "jax-cuda13-pjrt", "jax-cuda13-plugin", "jaxlib", "jaxtyping", "jinja2", "joblib", "kiwisolver", "lazy-loader",
    "lightning", "lightning-utilities", "linear-operator", "lineax", "llvmlite", "lxml", "markdown", "markdown-it-py",
    "markupsafe", "matplotlib", "mdurl", "meson", "ml-dtypes", "mpi4py", "mpmath", "msgpack", "multidict",
    "multipledispatch", "mypy-extensions", "nanobind", "narwhals", "networkx", "ninja", "numba", "numba-cuda",
    "numpy", "numpyro", "nvidia-cublas", "nvidia-cuda-cupti", "nvidia-cuda-nvrtc", "nvidia-cuda-runtime",
    "nvidia-cudnn-cu13", "nvidia-cufft", "nvidia-cufile", "nvidia-curand", "nvidia-cusolver", "nvidia-cusparse",
    "nvidia-cusparselt-cu13", "nvidia-ml-py", "nvidia-nccl-cu13", "nvidia-nvjitlink", "nvidia-nvshmem-cu13",
    "nvidia-nvtx", "onnx", "onnx-ir", "onnxruntime", "onnxscript", "opencv-python-headless", "optax", "opt-einsum",
    "opt-einsum-fx", "optimistix", "orbax-checkpoint", "packaging", "pandas", "pathspec", "patsy", "peft", "pillow",
    "pip", "pluggy", "portalocker", "prometheus-client", "propcache", "protobuf", "psutil", "pyarrow", "pybind11",
    "py-cpuinfo", "pygments", "pyparsing", "pyproject-hooks", "pyre-extensions", "pytest", "pytest-benchmark",
    "pytest-cov", "pytest-mock", "pytest-timeout", "pytest-xdist", "python-dateutil", "pytorch-lightning", "pyyaml",
    "regex", "requests", "rich", "sacrebleu", "safetensors", "scikit-build-core", "scikit-image", "scikit-learn",
    "scipy", "seaborn", "sentencepiece", "sentence-transformers", "setuptools", "shellingham", "simplejson", "six",
    "sortedcontainers", "statsmodels", "sympy", "tabulate", "tensorboard", "tensorboard-data-server", "tensorstore",
    "threadpoolctl", "tifffile", "tiktoken", "timm", "tokenizers", "toolz", "torch", "torchaudio", "torchdiffeq",
    "torch-geometric", "torchmetrics", "torchvision", "tqdm", "transformers", "treescope", "triton", "typer",
    "typing-extensions", "typing-inspect", "urllib3", "uvloop", "wadler-lindig", "werkzeug", "wheel", "wrapt",
    "xarray", "xxhash", "yarl", "zipp"
}
MARKER_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(path: Path = LIST) -> dict[str, str]:
    """name -> version from the list (comments and blank lines skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        if not version:
            raise SystemExit(f"{path}: {line!r} is not pinned (NAME==VERSION)")
        out[norm(name)] = version.strip()
    return out


def requirement_names(reqs: list[str]) -> set[str]:
    """The distributions a list of Requires-Dist needs on CPython 3.12 / Linux, extras left out."""
    from packaging.requirements import Requirement

    out = set()
    for raw in reqs:
        r = Requirement(raw)
        if r.marker is not None and not r.marker.evaluate(MARKER_ENV):
            continue
        out.add(norm(r.name))
    return out


def wheel_metadata(folder: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, Requires-Dist) for each wheel in the folder."""
    out: dict[str, tuple[str, list[str]]] = {}
    for whl in sorted(folder.glob("*.whl")):
        with zipfile.ZipFile(whl) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            msg = Parser().parsestr(z.read(meta).decode())
        name = norm(msg["Name"])
        if name in out:
            raise SystemExit(f"{folder}: two wheels of {name} ({out[name][0]}, {msg['Version']}): keep one, "
                             "two stop the whole --no-deps install")
        out[name] = (msg["Version"], msg.get_all("Requires-Dist") or [])
    return out


def own_requirements() -> list[str]:
    """benchbench's own run-time dependencies, from pyproject.toml."""
    import tomllib

    doc = tomllib.loads((HERE.parent / "pyproject.toml").read_text())
    return list(doc["project"]["dependencies"])


def check(folder: Path | None) -> list[str]:
    """Problems (empty: the closure is covered)."""
    want = pinned()
    problems: list[str] = []
    if folder is not None and folder.is_dir() and any(folder.glob("*.whl")):
        found = wheel_metadata(folder)
        for name, version in want.items():
            if name not in found:
                problems.append(f"no wheel of {name}=={version} in {folder}")
            elif found[name][0] != version:
                problems.append(f"{name}: wheel is {found[name][0]}, the list pins {version}")
        meta = {n: reqs for n, (_, reqs) in found.items()}
        source = f"the wheels in {folder}"
    else:
        meta = {}
        for name, version in want.items():
            try:
                have = metadata.version(name)
            except metadata.PackageNotFoundError:
                problems.append(f"{name} is not installed here to read its requirements; run `download` first")
                continue
            if have != version:
                problems.append(f"{name}: installed here is {have}, the list pins {version}")
            meta[name] = metadata.requires(name) or []
        source = "the same versions installed here"
    covered = set(want) | DEVICE_HAS | {"benchbench"}
    for owner, reqs in [("benchbench", own_requirements()), *meta.items()]:
        for need in sorted(requirement_names(reqs) - covered):
            problems.append(f"{owner} needs {need}: neither in {LIST.name} nor on the GPU machine")
    print(f"checked {len(want)} listed packages against {source}; " + ("complete" if not problems else
                                                                        f"{len(problems)} problem(s)"))
    return problems


def download(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for name, version in pinned().items():
        spec = f"{name}=={version}"
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", "-d", str(folder), spec]
        for plat in PLATFORMS:
            cmd[5:5] = ["--platform", plat]
        if subprocess.run(cmd, capture_output=True, text=True, check=False).returncode == 0:
            continue
        with tempfile.TemporaryDirectory() as tmp:  # an sdist-only package: build its (pure-Python) wheel here
            built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp, spec],
                                   capture_output=True, text=True, check=False)
            wheels = list(Path(tmp).glob("*.whl"))
            if built.returncode != 0 or not wheels or not all(w.name.endswith("-none-any.whl") for w in wheels):
                print(f"could not get a wheel of {spec}: {built.stderr.strip()[-500:]}", file=sys.stderr)
                return 1
            for w in wheels:
                w.replace(folder / w.name)
    problems = check(folder)
    for p in problems:
        print("  " + p, file=sys.stderr)
    size = sum(f.stat().st_size for f in folder.glob("*.whl")) / 2**20
    print(f"{len(list(folder.glob('*.whl')))} wheels, {size:.1f} MiB in {folder} (carry it: `carry: [\"{folder}\"]`)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="fetch the listed wheels (cp312 manylinux) into a folder")
    d.add_argument("folder", type=Path)
    c = sub.add_parser("check", help="the dependency closure is covered by the list and the machine")
    c.add_argument("folder", type=Path, nargs="?")
    args = ap.parse_args(argv)
    if args.cmd == "download":
        return download(args.folder)
    problems = check(args.folder)
    for p in problems:
        print("  " + p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
