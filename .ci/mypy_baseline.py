"""Type checking in CI with a baseline that only shrinks.

Runs mypy with the settings in pyproject.toml (strict on the pure stages:
spec, query, compiler, numerics; standard elsewhere), counts the errors per
module and compares with .ci/mypy-baseline.json:

- a module with more errors than its baseline (or errors and no baseline) fails;
- a module with fewer errors passes and is reported: run
  ``python3 .ci/mypy_baseline.py --update`` to lower its baseline in the same commit.

The strict stages have no baseline: any error there fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / ".ci" / "mypy-baseline.json"
STRICT = ("nnspec/spec/", "nnspec/query/", "nnspec/compiler/", "nnspec/numerics/")
LINE = re.compile(r"^(?P<file>[^:\s]+\.py):\d+(?::\d+)?: error: ")


def count() -> tuple[Counter, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--hide-error-context", "nnspec"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    errors: Counter = Counter()
    for line in proc.stdout.splitlines():
        m = LINE.match(line)
        if m:
            errors[m.group("file")] += 1
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not errors):
        sys.exit(f"mypy did not run:\n{proc.stdout}{proc.stderr}")
    return errors, proc.stdout


def main(argv: list[str]) -> int:
    errors, output = count()
    if "--update" in argv:
        bad = {f: n for f, n in errors.items() if f.startswith(STRICT)}
        if bad:
            print(output)
            print(f"strict stages must have no errors: {bad}")
            return 1
        BASELINE.write_text(json.dumps(dict(sorted(errors.items())), indent=2) + "\n")
        print(f"baseline written: {sum(errors.values())} errors in {len(errors)} modules")
        return 0
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    worse = {f: (n, baseline.get(f, 0)) for f, n in errors.items() if n > baseline.get(f, 0) or f.startswith(STRICT)}
    better = {f: (errors.get(f, 0), n) for f, n in baseline.items() if errors.get(f, 0) < n}
    if worse:
        print(output)
        for f, (n, was) in sorted(worse.items()):
            print(f"{f}: {n} mypy errors, baseline {was}")
        return 1
    for f, (n, was) in sorted(better.items()):
        print(f"{f}: {n} mypy errors, baseline {was}: lower it with python3 .ci/mypy_baseline.py --update")
    print(f"mypy: {sum(errors.values())} errors, none above the baseline ({sum(baseline.values())})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
