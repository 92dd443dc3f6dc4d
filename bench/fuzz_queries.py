"""The long query-fuzz campaign (issue 12): N mutated queries rendered against
the small models of tests/test_fuzz.py, each watched from outside.

    python bench/fuzz_queries.py [N=10000] [--seed 12] [--workers 8] [--limit 20] [--show 20]

Every case runs in a forked worker; a case that takes longer than ``--limit``
seconds (a regex that backtracks in C cannot be interrupted from inside) or
kills its worker (SIGABRT) is counted as a hang or a crash, the worker is
replaced and the campaign goes on. Prints the counts per outcome and the first
bad cases.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.test_fuzz import cases, judge  # noqa: E402


def _worker(pairs, start: int, w) -> None:
    """In the child: judge pairs[start:], one JSON line per case, each announced first."""
    for i in range(start, len(pairs)):
        os.write(w, (json.dumps({"start": i}) + "\n").encode())
        what, message = judge(*pairs[i])
        os.write(w, (json.dumps({"done": i, "what": what, "message": message[:500]}) + "\n").encode())
    os._exit(0)


def _shard(pairs, limit: float, results: dict) -> None:
    """Judge every pair of one shard, replacing the worker after a hang or a crash."""
    i = 0
    while i < len(pairs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _worker(pairs, i, w)
        os.close(w)
        buf, current, since = b"", None, time.monotonic()
        while True:
            ready, _, _ = select.select([r], [], [], 1.0)
            if ready:
                chunk = os.read(r, 65536)
                if not chunk:  # the worker ended (done, or killed)
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    msg = json.loads(line)
                    if "start" in msg:
                        current, since = msg["start"], time.monotonic()
                    else:
                        results[msg["done"]] = (msg["what"], msg["message"])
                        current = None
                        i = msg["done"] + 1
            if current is not None and time.monotonic() - since > limit:
                os.kill(pid, 9)
                results[current] = ("hang", f"over {limit} s")
                i = current + 1
                break
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if current is not None and current not in results:  # killed by a signal of its own
            results[current] = ("crash", f"worker ended with status {status}")
            i = current + 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=10_000)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 1)))
    ap.add_argument("--limit", type=float, default=20.0)
    ap.add_argument("--show", type=int, default=20)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    pairs = list(cases(args.n, args.seed))
    start = time.monotonic()
    # one forked supervisor per shard, each writing its results to a file
    shards = [pairs[k :: args.workers] for k in range(args.workers)]
    pids, outs = [], []
    for k, shard in enumerate(shards):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"nnspec-fuzz-{os.getpid()}-{k}.json")
        outs.append(path)
        pid = os.fork()
        if pid == 0:
            results: dict = {}
            _shard(shard, args.limit, results)
            with open(path, "w") as f:
                json.dump({str(i): v for i, v in results.items()}, f)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    counts: Counter = Counter()
    bad = []
    for k, path in enumerate(outs):
        with open(path) as f:
            results = json.load(f)
        os.unlink(path)
        for i, (what, message) in results.items():
            counts[what] += 1
            if what not in ("ok", "error"):
                model, query = shards[k][int(i)]
                bad.append((what, model, query, message))
    took = time.monotonic() - start
    print(f"{sum(counts.values())} queries in {took:.0f} s, {args.workers} workers, seed {args.seed}")
    for what in ("ok", "error", "internal", "unlocated", "raised", "hang", "crash"):
        print(f"  {what:>9}: {counts.get(what, 0)}")
    kinds = Counter(m.split("\n")[0][-160:] if w != "raised" else m[:160] for w, _, _, m in bad)
    for text, n in kinds.most_common(args.show):
        print(f"  {n:5d} × {text}")
    for what, model, query, message in bad[: args.show]:
        print(f"--- {what} [{model}] {query[:200]!r}\n    {message[:400]}")


if __name__ == "__main__":
    main()
