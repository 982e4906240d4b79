"""Compile binder/requirements.in (the top level) into binder/requirements.txt (the whole tree pinned).

pip's own resolver does the work: ``pip install --dry-run --ignore-installed --report`` of the top level
(no download of the packages beyond their metadata, nothing installed), run by ``make binder-lock``; this
script writes the report out as pins. Run it on Binder's platform (Linux x86-64, binder/runtime.txt's Python).
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
HEADER = """# Binder (repo2docker) environment for the pdviz notebooks: CPU only, the whole dependency tree pinned
# (a compiled lock of binder/requirements.in: remake it with `make binder-lock`, never by hand).
# repo2docker runs `pip install -r binder/requirements.txt` from the repository root, so "." at the end
# installs pdviz itself. torch: the CPU wheel from PyTorch's own index (the pin without `+cpu` matches it).
"""


def main() -> None:
    top = (HERE / "requirements.in").read_text().splitlines()
    index = [line for line in top if line.startswith("--")]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        reqs = Path(tmp) / "top.txt"
        reqs.write_text("\n".join(str(HERE.parent) if s.strip() == "." else s for s in top) + "\n")
        pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        subprocess.run([*pip, "--report", str(report), "-r", str(reqs)], check=True)
        chosen = [i["metadata"] for i in json.loads(report.read_text())["install"]]
    pins = sorted(
        (f"{m['name']}=={m['version'].split('+')[0]}" for m in chosen if m["name"].lower() != "pdviz"),
        key=str.lower,
    )
    (HERE / "requirements.txt").write_text(HEADER + "\n".join([*index, *pins, "."]) + "\n")
    print(f"binder/requirements.txt: {len(pins)} pins")


if __name__ == "__main__":
    main()
