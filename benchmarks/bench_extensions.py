"""Time the `extensions` check over numpy + scipy, cold and warm, against `ldd`.

    python benchmarks/bench_extensions.py                 # a venv with numpy and scipy in a temp dir
    python benchmarks/bench_extensions.py --python /path/to/venv/bin/python

The check runs in this interpreter, pointed at the target interpreter's
site-packages and executable (it never imports anything from there). "cold"
is an empty ELF cache in a fresh process state;
"warm" is a second session: the cache file exists and nothing changed. `ldd`
runs once per extension module, as a shell loop over the same files would.
The targets (numpy + scipy, 137 ELF files): warm <= 30 ms, cold <= 1/3 of `ldd`
(issue 13: every file on every closure is looked at again — it exists, it may be
read, its header is one the loader takes — and the loader is asked its search
subdirectories once per machine, cached beside the ELF facts).
Exits 1 when `ldd` and the check disagree about which modules are broken.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_envguard.probes import extensions, ldcache, loader
from pytest_envguard.probes.distributions import scan_distributions

PACKAGES = ("numpy", "scipy")


def make_venv(directory: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    python = directory / "bin" / "python"
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=False)
    if result.returncode:
        sys.exit(f"pip could not install {' and '.join(PACKAGES)}; pass --python")
    return python


def has_packages(python: str) -> bool:
    code = "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, sys.argv[1:])))"
    return subprocess.run([python, "-c", code, *PACKAGES], check=False).returncode == 0


def target_paths(python: Path) -> list[str]:
    code = "import json, sys; print(json.dumps(sys.path))"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return [p for p in json.loads(result.stdout) if p]


def run_check(installed, python: Path, cache_dir: Path):
    started = time.perf_counter()
    facts = [extensions.probe_extensions(name, {}, installed, cache_dir=cache_dir,
                                     executable=str(python)) for name in PACKAGES]
    return time.perf_counter() - started, facts


def clear_process_caches() -> None:
    """What a new process would not have: ld.so.cache, the loader's answer."""
    ldcache._read_ld_so_cache.cache_clear()
    loader._ask_loader.cache_clear()


def naive_walk(files: list[str]) -> float:
    """pyelftools the obvious way: ELFFile + get_section_by_name (builds every section)."""
    from elftools.elf.elffile import ELFFile

    started = time.perf_counter()
    for path in files:
        with open(path, "rb") as stream:
            elffile = ELFFile(stream)
            for name in (".dynamic", ".gnu.version_r", ".gnu.version_d"):
                elffile.get_section_by_name(name)
    return time.perf_counter() - started


def ldd(files: list[str]) -> tuple[float, set[str]]:
    """The time `ldd` takes over the files, and the files it finds a need missing for."""
    started = time.perf_counter()
    outputs = [(path, subprocess.run(["ldd", path], capture_output=True, text=True, check=False))
               for path in files]
    seconds = time.perf_counter() - started
    broken = {path for path, result in outputs if "not found" in result.stdout + result.stderr}
    return seconds, broken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", type=Path, help="an interpreter with numpy and scipy")
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="envguard-bench-") as scratch:
        python = options.python or (Path(sys.executable) if has_packages(sys.executable)
                                    else make_venv(Path(scratch) / "venv"))
        installed = scan_distributions(target_paths(python))
        missing = [name for name in PACKAGES if name not in installed.active()]
        if missing:
            sys.exit(f"{python} lacks {', '.join(missing)}")

        colds = []
        for attempt in range(options.repeat):
            cache = Path(scratch) / f"cache-{attempt}"
            clear_process_caches()
            seconds, facts = run_check(installed, python, cache)
            colds.append(seconds)
        warms = []
        for _ in range(options.repeat):
            # A second session is a new process: only the disk caches carry over.
            clear_process_caches()
            warms.append(run_check(installed, python, cache)[0])

        modules = [path for name in PACKAGES
                   for path in extensions.extension_files(installed.active()[name]) or []]
        files = sorted({path for name in PACKAGES
                        for path in _all_so(installed.active()[name])})
        problems = sum(len(f.problems) for f in facts)
        print(f"interpreter        {python}")
        print(f"modules            {len(modules)} extension modules, {len(files)} ELF files "
              f"in the wheels, {sum(f.files for f in facts)} looked at with dependencies; "
              f"{problems} problems")
        print(f"extensions cold    first {colds[0] * 1e3:7.1f} ms, median "
              f"{statistics.median(colds) * 1e3:7.1f} ms   (target <= 1/3 of ldd)")
        print(f"extensions warm    median {statistics.median(warms) * 1e3:6.1f} ms, "
              f"min {min(warms) * 1e3:6.1f} ms   (target <= 30 ms)")
        naive = naive_walk(files)
        print(f"naive pyelftools   {naive * 1e3:7.1f} ms over the {len(files)} files")
        seconds, ldd_broken = ldd(files)
        print(f"ldd                {seconds * 1e3:7.1f} ms over the {len(files)} files")
        print(f"ratio ldd / cold   {seconds / statistics.median(colds):6.1f}x   (target >= 3x)")
        print(f"ratio ldd / warm   {seconds / statistics.median(warms):6.1f}x")
        cold, warm = statistics.median(colds), statistics.median(warms)
        over = [what for what, missed in (("cold > 1/3 of ldd", cold * 3 > seconds),
                                          ("warm > 30 ms", warm > 0.030)) if missed]
        print(f"verdict            {'OVER: ' + ', '.join(over) if over else 'within both targets'}")
        ours = {problem.file for f in facts for problem in f.problems}
        ldd_modules = ldd_broken & set(modules)
        if ours != ldd_modules:
            print(f"verdicts differ: ldd {sorted(ldd_modules)}, envguard {sorted(ours)}")
            sys.exit(1)
        if over:
            sys.exit(1)


def _all_so(dist) -> list[str]:
    record = os.path.join(dist.path, "RECORD")
    with open(record, encoding="utf-8") as stream:
        names = [line.split(",", 1)[0] for line in stream]
    return [os.path.normpath(os.path.join(dist.location, name)) for name in names
            if name.endswith(".so") or ".so." in os.path.basename(name)]


if __name__ == "__main__":
    main()
