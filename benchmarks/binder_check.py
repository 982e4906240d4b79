"""Do the CPU notebooks fit Binder? A fresh venv from binder/requirements.txt, one CPU, peak memory per notebook.

Usage (from the repository root)::

    .venv/bin/python benchmarks/binder_check.py                    # build /tmp/pdviz-binder-venv, run 01-08 (09 needs a GPU)
    .venv/bin/python benchmarks/binder_check.py --skip-install     # reuse the venv
    .venv/bin/python benchmarks/binder_check.py --notebooks notebooks/01_*.ipynb
    .venv/bin/python benchmarks/binder_check.py --quick --json /tmp/b.json --md /tmp/b.md   # the test runs it

``--quick`` installs and downloads nothing: it checks that the notebooks of a full run exist and runs the
measuring harness (steps 2-4, the same functions) on one tiny notebook it writes itself, a cell that holds
200 MB and spins for a second, in the venv it runs from; so it tests the measurement, not Binder's fit.

What it does:

1. builds a FRESH virtual environment in /tmp with ``pip install -r binder/requirements.txt`` only (what
   repo2docker does; pip's configured find-links supply the local torch CPU wheel when offline);
2. executes each notebook in its default (Binder) size, not ``PDVIZ_FAST``, with nbconvert from that venv,
   pinned to one CPU (``taskset -c N``, N the first core this script may use, ``OMP_NUM_THREADS=1``);
3. caps the data segment of nbconvert and the kernel at 2 GiB (``prlimit --data``: private writable memory,
   heap and anonymous mmaps, so a notebook that needs more than Binder's 2 GB fails here too; an address-space
   cap, ``--as``, is not used: torch reserves far more virtual address space than it touches), and samples,
   every 0.2 s with psutil, the resident memory (RSS) of the kernel's process tree and of the whole tree
   (nbconvert + kernel), recording the peaks;
4. writes ``benchmarks/binder.json`` (every number) and ``benchmarks/binder_table.md`` (the table, merged by hand into section 6 of RESULTS.md).

A notebook passes when it finishes without error in at most 300 CPU seconds of its kernel (wall seconds are
recorded too, but on a shared machine they measure the other jobs as well) with the kernel's peak RSS at most
2048 MB
(Binder's usual limits: 1-2 GB of memory, sessions that should start working within minutes).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = 2048.0
LIMIT_S = 300.0
CPU = min(os.sched_getaffinity(0))  # the notebooks' core: 0 unless this script was pinned elsewhere
TINY = [  # --quick's notebook: 200 MB held and about a second of CPU, which the harness must see
    "import time, numpy as np",
    "held = np.ones(25_000_000)  # 200 MB",
    "t = time.process_time()",
    "while time.process_time() - t < 1.0:",
    "    held[:1000] += 1.0",
    "assert held.nbytes == 200_000_000",
]


def tiny_notebook(path: Path) -> Path:
    """Write ``--quick``'s one-cell notebook (TINY) to ``path``."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("\n".join(TINY))])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def build_venv(venv: Path, log: Path) -> dict:
    """A fresh venv with only binder/requirements.txt; returns {ok, seconds, error}."""
    if venv.exists():
        shutil.rmtree(venv)
    t0 = time.perf_counter()
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-r", "binder/requirements.txt"],
    ]
    # Offline, binder/requirements.txt's extra index (download.pytorch.org) is unreachable and pip retries it
    # five times per package, which adds many minutes; no retries changes nothing that gets installed.
    env = {**os.environ, "PIP_RETRIES": "0"}
    with log.open("w") as f:
        for cmd in steps:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                tail = log.read_text().splitlines()[-15:]
                return {"ok": False, "seconds": time.perf_counter() - t0, "error": "\n".join(tail)}
    return {"ok": True, "seconds": time.perf_counter() - t0, "error": None}


def _sample(proc: psutil.Process) -> tuple[float, float, float]:
    """(RSS of the whole tree MB, RSS of the kernel subtree MB, CPU seconds of the kernel subtree).

    The kernel is any descendant whose command line names ipykernel. CPU seconds (user + system) are what an
    idle single-CPU machine would need; wall seconds on a shared machine are larger.
    """
    total = kernel = cpu = 0.0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0.0, 0.0
    for p in procs:
        try:
            total += p.memory_info().rss / 2**20
            if p is not proc and "ipykernel" in " ".join(p.cmdline()):
                for k in (p, *p.children(recursive=True)):
                    kernel += k.memory_info().rss / 2**20
                    t = k.cpu_times()
                    cpu += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total, kernel, cpu


def run_notebook(venv: Path, notebook: Path, out_dir: Path, timeout: float) -> dict:
    """Execute one notebook on one CPU (the first this process may use); returns seconds, peak RSS (kernel
    tree and total), status."""
    env = {k: v for k, v in os.environ.items() if k not in ("PDVIZ_FAST", "MPLBACKEND", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    cmd = [
        "prlimit", f"--data={2 * 1024**3}",
        "taskset", "-c", str(CPU),
        str(venv / "bin" / "python"), "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
        f"--ExecutePreprocessor.timeout={int(timeout)}", "--ExecutePreprocessor.kernel_name=python3",
        "--output-dir", str(out_dir), str(notebook),
    ]  # fmt: skip
    peak_total = peak_kernel = kernel_cpu = 0.0
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=notebook.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    ps = psutil.Process(proc.pid)
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        total, kernel, cpu = _sample(ps)
        peak_total, peak_kernel, kernel_cpu = (
            max(peak_total, total),
            max(peak_kernel, kernel),
            max(kernel_cpu, cpu),
        )
        if time.perf_counter() - t0 > timeout + 60:
            proc.kill()
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    reader.join(timeout=5)
    text = b"".join(output).decode(errors="replace")
    ok = proc.returncode == 0
    return {
        "notebook": notebook.name,
        "seconds": round(seconds, 1),
        "kernel_cpu_s": round(kernel_cpu, 1),
        "peak_kernel_mb": round(peak_kernel, 1),
        "peak_total_mb": round(peak_total, 1),
        "executed": ok,
        "error": None if ok else text[-2000:],
        # CPU seconds, not wall: on a shared machine wall time measures the other jobs too
        "pass": ok and kernel_cpu <= LIMIT_S and peak_kernel <= LIMIT_MB,
    }


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "pinned_cpus": [CPU],
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _environment(install: dict) -> str:
    if install.get("quick"):
        return f"none built (`--quick`: one tiny notebook in the running venv, {install['quick']})"
    if install.get("reused"):
        built = "reused from an earlier build"
    else:
        built = f"built in {install['seconds']:.0f} s" if install["ok"] else "FAILED to build"
    return f"a fresh venv from `binder/requirements.txt` only ({built})"


def markdown(result: dict) -> str:
    lines = [
        "## Binder check: the CPU notebooks on one CPU and 2 GB",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']['platform']}, Python {result['machine']['python']}, "
        f"{result['machine']['cpu_count']} cores shared with other jobs (load average "
        f"{result['machine']['load_average_at_start']} at the start), the notebooks pinned to core "
        f"{result['machine']['pinned_cpus'][0]}; {result['machine']['date']}.  ",
        f"Environment: {_environment(result['install'])}.",
        "",
        "Pass = executes without error, in at most 300 kernel CPU seconds, with the kernel's peak RSS at most 2048 MB. "
        "Wall seconds were taken on a shared machine (other jobs on the same cores), so they are upper bounds for an "
        "idle Binder CPU; kernel CPU s (user + system of the kernel) is what an idle CPU would need. RSS is sampled "
        "every 0.2 s.",
        "",
        "| notebook | wall s | kernel CPU s | peak RSS kernel (MB) | peak RSS total (MB) | < 5 min CPU | < 2 GB | result |",
        "| --- | ---: | ---: | ---: | ---: | :-: | :-: | --- |",
    ]
    for r in result["notebooks"]:
        ok_t = "yes" if r["kernel_cpu_s"] <= LIMIT_S else "no"
        ok_m = "yes" if r["peak_kernel_mb"] <= LIMIT_MB else "no"
        verdict = "pass" if r["pass"] else ("error" if not r["executed"] else "FAIL")
        lines.append(
            f"| {r['notebook']} | {r['seconds']:.0f} | {r['kernel_cpu_s']:.0f} | {r['peak_kernel_mb']:.0f} | "
            f"{r['peak_total_mb']:.0f} | "
            f"{ok_t} | {ok_m} | {verdict} |"
        )
    if not result["install"]["ok"]:
        lines += ["", "The venv did not build:", "", "```", result["install"]["error"] or "", "```"]
    errors = [r for r in result["notebooks"] if not r["executed"]]
    for r in errors:
        text = re.sub(r"\x1b\[[0-9;]*m", "", r["error"] or "")  # the traceback's terminal colours
        last = [line for line in text.strip().splitlines() if line.strip()][-1:]
        lines += ["", f"`{r['notebook']}` failed: `{' / '.join(last)}`"]
    return "\n".join(lines) + "\n"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default="/tmp/pdviz-binder-venv")
    parser.add_argument("--skip-install", action="store_true", help="reuse an existing venv")
    parser.add_argument("--notebooks", nargs="*", default=None, help="default: notebooks/0[1-9]_*.ipynb")
    parser.add_argument("--exclude", nargs="*", default=["09"], help="prefixes to skip (09 needs a GPU)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-notebook execution timeout")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "binder.json"))
    parser.add_argument("--md", default=str(ROOT / "benchmarks" / "binder_table.md"))
    parser.add_argument("--md-only", action="store_true", help="rewrite the table from the JSON; run nothing")
    parser.add_argument(
        "--quick", action="store_true", help="no install: one tiny notebook in this venv; needs --json, --md"
    )
    args = parser.parse_args()
    shipped = ROOT / "benchmarks"
    if args.quick and shipped in (Path(args.json).resolve().parent, Path(args.md).resolve().parent):
        parser.error(
            "--quick does not write over the shipped binder.json or binder_table.md; give --json, --md"
        )
    return args


def main() -> None:
    args = _arguments()
    if args.md_only:
        Path(args.md).write_text(markdown(json.loads(Path(args.json).read_text())))
        return
    venv = Path(sys.prefix) if args.quick else Path(args.venv)
    started = machine()
    names = args.notebooks or sorted(glob.glob(str(ROOT / "notebooks" / "0[1-9]_*.ipynb")))
    notebooks = [
        Path(n).resolve() for n in names if not any(Path(n).name.startswith(p) for p in args.exclude)
    ]
    listed = [n.name for n in notebooks]
    if args.quick:  # the full run's list is checked, the harness measured on one tiny notebook
        if not notebooks or not all(n.is_file() for n in notebooks):
            raise SystemExit(f"binder_check.py: the notebooks to check are missing: {names}")
        notebooks = [tiny_notebook(Path(args.json).with_suffix(".ipynb"))]
        install = {"ok": True, "seconds": 0.0, "error": None, "quick": str(venv)}
    elif args.skip_install and (venv / "bin" / "python").exists():
        install = {"ok": True, "seconds": 0.0, "error": None, "reused": True}
    else:
        install = build_venv(venv, Path("/tmp/pdviz-binder-pip.log"))
    print("install:", "ok" if install["ok"] else "FAILED", f"{install['seconds']:.0f} s", flush=True)
    results = []
    out_dir = Path(args.json).parent / "executed" if args.quick else Path("/tmp/pdviz-binder-out")
    out_dir.mkdir(exist_ok=True)
    if install["ok"]:
        for nb in notebooks:
            r = run_notebook(venv, nb, out_dir, args.timeout)
            print(
                f"{r['notebook']}: {r['seconds']:.0f} s, kernel {r['peak_kernel_mb']:.0f} MB, "
                f"{'pass' if r['pass'] else 'FAIL'}",
                flush=True,
            )
            results.append(r)
    result = {
        "command": "python benchmarks/binder_check.py " + " ".join(sys.argv[1:]),
        "machine": started,
        "install": install,
        "limits": {"seconds": LIMIT_S, "kernel_rss_mb": LIMIT_MB},
        "notebooks": results,
        **({"quick_listed": listed} if args.quick else {}),
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    Path(args.md).write_text(markdown(result))
    print(f"wrote {args.json} and {args.md}")


if __name__ == "__main__":
    main()
