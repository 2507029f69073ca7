"""Runs one benchmark side in a fresh process and prints its metrics as one JSON line."""

from __future__ import annotations

import importlib
import json
import resource
import sys
from pathlib import Path


def main() -> None:
    target, params, scratch = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    module, name = target.split(":")
    metrics = getattr(importlib.import_module(module), name)(params, scratch)
    # ru_maxrss is in KiB on Linux: the peak resident memory of this process.
    metrics["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
