"""Measure pdviz's reliability: run the hardening suites and count handled / not handled cases by area.

    .venv/bin/python benchmarks/reliability_check.py            # writes benchmarks/reliability.json

A case is *handled* when its test passes; *not handled* when it is a strict xfail (the case fails today
and the test records the fix proposed); an XPASS or a plain failure is reported as such (a fixed case
whose xfail should be dropped, or a regression). Areas: the id prefix of a bad-input row (datasets-...,
flows-...), "cli", "widgets"; the fault's target for divergence tests; one area per property test file.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITES = ("tests/test_bad_inputs.py", "tests/test_divergence.py", "tests/test_properties.py")


class Collector:
    def __init__(self) -> None:
        self.results: dict[str, str] = {}
        self.reasons: dict[str, str] = {}

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            if hasattr(report, "wasxfail"):
                outcome = "xpassed" if report.outcome == "passed" else "xfailed"
                self.reasons[report.nodeid] = report.wasxfail
            else:
                outcome = report.outcome
            self.results[report.nodeid] = outcome


def area(nodeid: str) -> tuple[str, str]:
    """(suite, area) of a test id."""
    path, _, name = nodeid.partition("::")
    param = name[name.index("[") + 1 : -1] if "[" in name else ""
    if path.endswith("test_bad_inputs.py"):
        if name.startswith("test_cli"):
            return "bad_inputs", "cli"
        if name.startswith("test_widget"):
            return "bad_inputs", "widgets"
        if not param:
            return "bad_inputs", "meta"
        return "bad_inputs", param.split("-")[0]
    if path.endswith("test_divergence.py"):
        for key in ("ula", "mala", "exploding_step", "particles_pushed"):
            if key in name:
                return "divergence", "samplers.run"
        if "flow_step" in name:
            return "divergence", "flows.flow_step"
        if "track" in name:
            return "divergence", "flows.track"
        return "divergence", "training.Trainer"
    return "properties", name


def main() -> int:
    collector = Collector()
    start = time.perf_counter()
    code = pytest.main(
        ["-q", "-p", "no:cacheprovider", *[str(ROOT / s) for s in SUITES]], plugins=[collector]
    )
    seconds = time.perf_counter() - start
    table: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for nodeid, outcome in collector.results.items():
        suite, where = area(nodeid)
        if where == "meta":
            continue
        table[suite][where][outcome] += 1
    summary = {}
    for suite, areas in table.items():
        totals: dict[str, int] = defaultdict(int)
        for counts in areas.values():
            for k, v in counts.items():
                totals[k] += v
        summary[suite] = {
            "cases": sum(totals.values()),
            "handled": totals["passed"],
            "not_handled": totals["xfailed"],
            "fixed_since_marked": totals["xpassed"],
            "failed": totals["failed"],
            "by_area": {a: dict(c) for a, c in sorted(areas.items())},
        }
    out = {
        "command": "cd /work/main && .venv/bin/python benchmarks/reliability_check.py",
        "pytest_exit_code": int(code),
        "seconds": round(seconds, 1),
        "python": platform.python_version(),
        "suites": summary,
        "not_handled": {
            k: v for k, v in sorted(collector.reasons.items()) if collector.results[k] == "xfailed"
        },
    }
    path = ROOT / "benchmarks" / "reliability.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    for suite, s in summary.items():
        print(
            f"{suite}: {s['cases']} cases, {s['handled']} handled, {s['not_handled']} not handled, "
            f"{s['fixed_since_marked']} xpassed, {s['failed']} failed"
        )
    print(f"wrote {path}")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
