"""Runs one benchmark side in a fresh process and prints its metrics as one JSON line.

Two memory figures: ``peak_mb`` is the process's peak resident set (what
``ru_maxrss`` reports), which also counts pages of files the process
memory-maps (Polars maps the CSV files it scans: clean page cache the kernel
can drop); ``peak_anon_mb`` is the peak of anonymous memory alone (RssAnon,
sampled every 50 ms), the memory the process really allocates.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import threading
from pathlib import Path


class AnonymousPeak:
    """Samples RssAnon from /proc/self/status in a thread (Linux)."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with open("/proc/self/status") as fh:
                    for line in fh:
                        if line.startswith("RssAnon:"):
                            self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except OSError:
                return
            self._stop.wait(0.05)

    def __enter__(self) -> AnonymousPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    target, params, scratch = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    module, name = target.split(":")
    function = getattr(importlib.import_module(module), name)
    with AnonymousPeak() as anonymous:
        metrics = function(params, scratch)
    # ru_maxrss is in KiB on Linux.
    metrics["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics["peak_anon_mb"] = round(anonymous.peak_kb / 1024, 1)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
