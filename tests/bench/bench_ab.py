"""Paired comparison of a benchmark on two versions of the code. Run with
`make bench-ab BASE=<git revision>` (BENCH=bench_flow.py, RUNS=2 by default).

This machine's speed drifts by up to 1.7 times within an hour, so figures of two separate runs
say little about a change. This runs the benchmark on BASE (a git worktree under .data/ab/)
and on the working tree in turns, A B B A A B ..., so that drift falls on both alike, and
prints every figure of each run side by side with the mean of each side.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parents[2]
# A number on its own ("p99" is a word); "2,000" is one number.
NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?")
# A figure is named by its line's label and the words around it up to the nearest
# punctuation ("gateway 2.3," is "gateway #"): processes are listed in another order each run.
SEGMENT = re.compile(r"[;()=:]|,\s")


def worktree(revision: str) -> Path:
    """A checkout of `revision` that uses this tree's virtualenv and tools."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{revision}^{{commit}}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    tree = ROOT / ".data" / "ab" / commit[:12]
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, check=True)
        for shared in (".venv", ".tools"):
            (tree / shared).symlink_to(ROOT / shared)
    return tree


def figures(output: str) -> dict[str, float]:
    """Every number the benchmark printed, named by its line and the words around it. An
    indented line belongs to the line above it ("CPU per act" follows several phases)."""
    found = {}
    heading = ""
    for line in output.splitlines():
        label = NUMBER.sub("#", line.split(":")[0]).strip()
        if line[:1].isspace():
            label = f"{heading} › {label}"
        elif line.strip():
            heading = label
        for segment in SEGMENT.split(line):
            words = " ".join(NUMBER.sub("#", segment).split())
            for index, match in enumerate(NUMBER.finditer(segment)):
                name = f"{label}: {words}" + (f" [{index + 1}]" if index else "")
                found[name] = float(match.group().replace(",", ""))
    return found


def run(tree: Path, bench: str) -> tuple[str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), str(tree / "tests" / "bench" / bench)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"{bench} failed in {tree}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    output = "\n".join(
        line for line in done.stdout.splitlines() if line.strip() and not line.startswith("GridLink bench")
    )
    return output, figures(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the git revision to compare the working tree with")
    parser.add_argument("--bench", default="bench_flow.py", help="a benchmark in tests/bench")
    parser.add_argument("--runs", type=int, default=2, help="runs of each side")
    options = parser.parse_args()
    sides = {f"A {options.base}": worktree(options.base), "B working tree": ROOT}
    order = [
        name for turn in range(options.runs) for name in (list(sides) if turn % 2 == 0 else list(sides)[::-1])
    ]
    results: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for number, name in enumerate(order, start=1):
        output, found = run(sides[name], options.bench)
        results[name].append(found)
        print(f"--- run {number} of {len(order)}: {name}\n{output}\n", flush=True)
    print(f"--- {options.bench}, mean of {options.runs} runs each (A {options.base} | B working tree)")
    a, b = results.values()
    shared = [key for key in a[0] if all(key in run_figures for run_figures in (*a, *b))]
    width = max(map(len, shared), default=0)
    for key in shared:
        print(f"{key:{width}s} {mean(r[key] for r in a):10.1f} | {mean(r[key] for r in b):10.1f}")


if __name__ == "__main__":
    main()
