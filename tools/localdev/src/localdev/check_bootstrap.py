#!/usr/bin/env python3
"""The built functions are what provided.al2023 on arm64 runs.

    python -m localdev.check_bootstrap FILE...

Checks that each FILE (a `sam build` bootstrap) is a 64-bit little-endian
aarch64 ELF executable that needs no glibc newer than provided.al2023's 2.34;
one line per file, then `N passed, M failed`. Exits 1 when any failed or no
FILE was given. Run by `make template-build` after the arm64 `sam build`.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from pathlib import Path

EM_AARCH64 = 183
AL2023_GLIBC = (2, 34)


def max_glibc(path: str) -> tuple[int, int]:
    """The newest GLIBC_x.y symbol version the binary names (its version needs)."""
    data = Path(path).read_bytes()
    found = [(int(a), int(b)) for a, b in re.findall(rb"GLIBC_(\d+)\.(\d+)", data)]
    return max(found, default=(0, 0))


def check_elf_aarch64(paths: list[str]) -> int:
    passed = failed = 0
    for p in paths:
        try:
            with open(p, "rb") as f:
                head = f.read(64)
            problems = []
            if head[:4] != b"\x7fELF":
                problems.append("not an ELF file")
            else:
                if head[4] != 2:
                    problems.append("not 64-bit")
                if head[5] != 1:
                    problems.append("not little-endian")
                e_type, e_machine = struct.unpack_from("<HH", head, 16)
                if e_machine != EM_AARCH64:
                    problems.append(f"machine {e_machine}, not aarch64 ({EM_AARCH64})")
                if e_type not in (2, 3):  # ET_EXEC, or ET_DYN for a PIE
                    problems.append(f"ELF type {e_type} is not an executable")
            if not os.access(p, os.X_OK):
                problems.append("not executable (mode)")
            glibc = max_glibc(p)
            if glibc > AL2023_GLIBC:
                problems.append(f"needs GLIBC_{glibc[0]}.{glibc[1]}, provided.al2023 has {AL2023_GLIBC[0]}.{AL2023_GLIBC[1]}")
        except OSError as e:
            problems = [str(e)]
        if problems:
            failed += 1
            print(f"FAIL  {p}: {', '.join(problems)}")
        else:
            passed += 1
            g = max_glibc(p)
            print(f"ok    {p}: aarch64 ELF executable, needs GLIBC {g[0]}.{g[1]} ({os.path.getsize(p)} bytes)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not paths else 0


def main(argv: list[str]) -> int:
    if any(a.startswith("-") for a in argv):
        print(__doc__)
        return 2
    return check_elf_aarch64(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
