"""What a worker process sets up for itself before it works."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, sys
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
if sys.argv[1] == "steady":
    from workers.runtime import steady_malloc
    steady_malloc()
before = libc.mallinfo2().hblks
held = [bytearray(256 * 1024) for _ in range(8)]  # the size uvloop reads TLS data into
print(libc.mallinfo2().hblks - before)
"""


def _mmapped_blocks(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


def test_steady_malloc_keeps_read_sized_buffers_off_mmap():
    try:
        before = _mmapped_blocks("default")
    except subprocess.CalledProcessError as exc:
        if "mallinfo2" in exc.stderr or "libc.so.6" in exc.stderr:
            pytest.skip("not glibc 2.33 or newer: steady_malloc sets nothing there")
        raise
    assert before == 8  # glibc's default: each 256 KiB buffer is its own mmap
    assert _mmapped_blocks("steady") == 0
