"""``plait serve`` fixes glibc's mmap threshold: a large block freed must not move later large blocks onto the
heap (where they fragment it). Checked in fresh interpreters by glibc's own chunk flag (IS_MMAPPED, bit 1 of the
size word before the block)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "fixed":
    from api.cli import return_large_blocks_to_the_os
    assert return_large_blocks_to_the_os()

def mapped(size):
    p = libc.malloc(size)
    flag = bool(ctypes.c_size_t.from_address(p - ctypes.sizeof(ctypes.c_size_t)).value & 2)
    libc.free(p)
    return flag

first = mapped(1 << 20)
print(first, mapped(1 << 20))
"""


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, env=env)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_large_blocks_stay_mapped_after_one_is_freed() -> None:
    assert _python(PROBE, "default") == "True False"  # glibc's dynamic threshold: the 2nd 1 MiB block is on the heap
    assert _python(PROBE, "fixed") == "True True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_an_operators_malloc_setting_is_left_alone() -> None:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "4194304"}
    assert _python("from api.cli import return_large_blocks_to_the_os as f; print(f())", env=env) == "False"


TRIM_PROBE = """
import ctypes, sys, time
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
from api.cli import trim_the_heap_periodically  # imported first: its imports must not count in the difference

def rss_kib():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))

# 64 MiB in 4 KiB blocks, written so the pages are resident; one block allocated after them pins the heap's top,
# so freeing the rest leaves a hole that glibc does not give back by itself.
blocks = [libc.malloc(4096) for _ in range(16384)]
for p in blocks:
    ctypes.memset(p, 1, 4096)
pin = libc.malloc(4096)
before = rss_kib()
for p in blocks:
    libc.free(p)
if sys.argv[1] == "trimmed":
    assert trim_the_heap_periodically(0.05) is not None
time.sleep(0.5)
print((before - rss_kib()) // 1024)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_heap_pages_go_back_to_the_os_within_the_trim_interval() -> None:
    assert int(_python(TRIM_PROBE, "default")) < 16  # glibc alone keeps the hole resident
    assert int(_python(TRIM_PROBE, "trimmed")) > 48  # MiB given back of the 64 freed


def test_no_trim_thread_when_switched_off() -> None:
    from api.cli import trim_the_heap_periodically

    assert trim_the_heap_periodically(0) is None
