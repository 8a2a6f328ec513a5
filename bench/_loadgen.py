"""The load generator as a process of its own: reads a JSON spec on stdin, prints the result.

Spec: ``{"port", "requests": [[method, path, body-or-null, headers]], "concurrency", "seconds"}``.
"""

from __future__ import annotations

import json
import sys

from bench._common import http_request, load


def main() -> None:
    spec = json.load(sys.stdin)
    reqs = [
        http_request(m, p, None if b is None else b.encode(), h) for m, p, b, h in spec["requests"]
    ]
    out = load(spec["port"], reqs, concurrency=spec["concurrency"], seconds=spec["seconds"])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
