"""NVRTC through ctypes: compile CUDA C to PTX (or a cubin) for a named architecture, no GPU.

NVIDIA's runtime compiler needs no device and no driver: the pip wheel `nvidia-cuda-nvrtc-cu12`
(in the `dev` extra) carries libnvrtc.so.12 and its builtins library. This module finds them
in that wheel's folder and loads them with ctypes when first asked (no environment variable
is read or changed), so CI checks that every generated kernel compiles. CuPy itself compiles
with its own NVRTC on a GPU machine; this module is for checking sources anywhere.

    ptx = nvrtc.compile_source(source, arch="compute_90")   # PTX text (bytes)
    cubin = nvrtc.compile_source(source, arch="sm_80")      # machine code for sm_80 (bytes)
"""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import re
import threading

from ...errors import KernelCompileError

_ARCH = re.compile(r"^(compute|sm)_[0-9]{2,3}[a-z]?$")
_lock = threading.Lock()
_lib = None


def library_dir() -> str | None:
    """The folder of the installed nvidia-cuda-nvrtc wheel's libraries, or None."""
    try:
        spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        lib = os.path.join(root, "lib")
        if glob.glob(os.path.join(lib, "libnvrtc.so*")):
            return lib
    return None


def available() -> bool:
    """True when the NVRTC wheel is installed (it is loaded on first use)."""
    return library_dir() is not None


def _load():
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        folder = library_dir()
        if folder is None:
            raise ImportError("NVRTC is not installed: pip install nvidia-cuda-nvrtc-cu12 "
                              "(part of rnngraph's dev extra)")
        # the builtins library first, by path and local to this handle (its symbols stay out
        # of the process's global namespace): libnvrtc then finds it already loaded by its
        # soname when it opens it (no search path to set)
        for path in sorted(glob.glob(os.path.join(folder, "libnvrtc-builtins.so.*"))):
            if ".alt." not in path:
                ctypes.CDLL(path)
        main = os.path.join(folder, "libnvrtc.so.12")
        if not os.path.exists(main):
            main = sorted(p for p in glob.glob(os.path.join(folder, "libnvrtc.so*"))
                          if ".alt." not in p)[0]
        lib = ctypes.CDLL(main)
        c = ctypes
        prog = c.c_void_p
        sigs = {
            "nvrtcVersion": [c.POINTER(c.c_int), c.POINTER(c.c_int)],
            "nvrtcCreateProgram": [c.POINTER(prog), c.c_char_p, c.c_char_p, c.c_int,
                                   c.POINTER(c.c_char_p), c.POINTER(c.c_char_p)],
            "nvrtcCompileProgram": [prog, c.c_int, c.POINTER(c.c_char_p)],
            "nvrtcGetProgramLogSize": [prog, c.POINTER(c.c_size_t)],
            "nvrtcGetProgramLog": [prog, c.c_char_p],
            "nvrtcGetPTXSize": [prog, c.POINTER(c.c_size_t)],
            "nvrtcGetPTX": [prog, c.c_char_p],
            "nvrtcGetCUBINSize": [prog, c.POINTER(c.c_size_t)],
            "nvrtcGetCUBIN": [prog, c.c_char_p],
            "nvrtcDestroyProgram": [c.POINTER(prog)],
        }
        for name, args in sigs.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, c.c_int
        lib.nvrtcGetErrorString.argtypes, lib.nvrtcGetErrorString.restype = [c.c_int], c.c_char_p
        _lib = lib
        return lib


def version() -> tuple[int, int]:
    """NVRTC's (major, minor) version."""
    lib = _load()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def _check(lib, code: int, what: str, log: str = "") -> None:
    if code != 0:
        msg = lib.nvrtcGetErrorString(code).decode(errors="replace")
        raise KernelCompileError(f"{what} failed: {msg}" + (f"\n{log}" if log else ""), log)


def compile_source(source: str, arch: str = "compute_90", name: str = "kernel.cu",
                   options=()) -> bytes:
    """Compile CUDA C++ `source` for `arch`: PTX for a virtual architecture (compute_90),
    a cubin for a real one (sm_80). Raises KernelCompileError with NVRTC's log on errors."""
    if not isinstance(arch, str) or not _ARCH.match(arch):
        raise ValueError(f"arch must name a CUDA architecture such as 'compute_90' or 'sm_80', "
                         f"got {arch!r}")
    lib = _load()
    c = ctypes
    prog = c.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(c.byref(prog), source.encode(), name.encode(), 0,
                                       None, None), "nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}".encode()] + [str(o).encode() for o in options]
        array = (c.c_char_p * len(opts))(*opts)
        code = lib.nvrtcCompileProgram(prog, len(opts), array)
        size = c.c_size_t()
        _check(lib, lib.nvrtcGetProgramLogSize(prog, c.byref(size)), "nvrtcGetProgramLogSize")
        buf = c.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
        log = buf.value.decode(errors="replace")
        _check(lib, code, f"compiling {name} for {arch}", log)
        get_size, get = (lib.nvrtcGetPTXSize, lib.nvrtcGetPTX) if arch.startswith("compute") \
            else (lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN)
        _check(lib, get_size(prog, c.byref(size)), "getting the output's size")
        out = c.create_string_buffer(size.value)
        _check(lib, get(prog, out), "getting the output")
        return out.raw[:size.value].rstrip(b"\0") if arch.startswith("compute") \
            else out.raw[:size.value]
    finally:
        lib.nvrtcDestroyProgram(c.byref(prog))
