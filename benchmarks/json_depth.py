"""``python -m benchmarks.json_depth``: what the API's JSON depth check costs on the largest bodies Django accepts
(``DATA_UPLOAD_MAX_MEMORY_SIZE``, 2.5 MiB), beside ``json.loads`` of the same body. A report, not a test.

Bodies with 32 brackets or fewer are never scanned; these are the worst cases an attacker can send instead.
"""

from __future__ import annotations

import json
import os
import timeit

import django


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    django.setup()
    from django_emailotp.api.views.base import _nesting_depth

    size = 2_621_440
    bodies = {
        "flat []": "[" + ",".join(["[]"] * ((size - 2) // 3)) + "]",
        "depth-32 blocks": "[" + ",".join(["[" * 31 + "]" * 31] * (size // 63)) + "]",
        "short strings": "[" * 33 + ",".join(['"a"'] * ((size - 70) // 4)) + "]" * 33,
        'unclosed \\" run': "[" * 40 + '"' + '\\"' * ((size - 41) // 2),
    }
    print(f"{'body':18} {'chars':>8} {'depth':>5} {'scan ms':>8} {'json.loads ms':>14}")
    for name, body in bodies.items():
        scan = min(timeit.repeat(lambda body=body: _nesting_depth(body), number=1, repeat=5))
        try:
            parse = f"{min(timeit.repeat(lambda body=body: json.loads(body), number=1, repeat=5)) * 1000:14.1f}"
        except (RecursionError, ValueError) as exc:
            parse = f"{type(exc).__name__:>14}"
        print(f"{name:18} {len(body):>8} {_nesting_depth(body):>5} {scan * 1000:8.1f} {parse}")


if __name__ == "__main__":
    main()
