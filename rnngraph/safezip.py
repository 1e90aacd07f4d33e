"""Reading a zip of `.npy` arrays with every size known before anything is inflated.

Both saved graphs (`rg.load`, io/) and checkpoints (`rg.train.Saver`, train/) are zips of
`.npy` members beside one JSON member; this leaf module is the reader both use, so that
everything read from a file of unknown origin goes through the same checks.

`open_archive(path, limits, layout)` reads the zip's central directory only, and refuses
(with `InvalidFileError` naming the member) before decompressing a byte:

- a member name that appears twice, an encrypted member, a compression method other than
  stored or deflated, a name that the `layout` (the kind of file) does not allow;
- a member whose decompressed size exceeds its cap (`LoadLimits.max_member_bytes` unless the
  layout sets one), or, for a deflated member larger than `ratio_floor_bytes`, `max_ratio`
  times its compressed size (a "zip bomb": arrays are stored, not compressed, and a JSON
  member compresses far less);
- members that together decompress to more than `LoadLimits.total_bytes(file size)`.

Then it reads each `.npy` member's header (NumPy's own header reader, no pickle: object
dtypes are refused) and checks that the shape and dtype it declares account for exactly the
member's size from the directory, so an 80-byte entry cannot announce a 4 TiB array. Arrays
are read only when asked for (`Archive.array`), straight into a buffer of the declared size;
the zip layer itself never reads past a member's declared size and checks its CRC.
"""
from __future__ import annotations

import io
import math
import os
import re
import zipfile
from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidFileError

_ARRAY_KINDS = "biufc"
_MiB = 1 << 20
_GiB = 1 << 30
_NPY_HEAD = 65536 + 16    # magic, version and header length, and the header NumPy allows


@dataclass(frozen=True)
class LoadLimits:
    """Bounds on what loading a file may cost; pass `rg.load(path, limits=LoadLimits(...))`
    (also `rg.io.read`, `rg.io.restore` and `rg.train.Saver.restore`).

    The defaults are generous: any file rnngraph writes for a model that fits in memory loads
    with them. Every bound is checked from the zip directory and the `.npy` headers before
    anything is decompressed, so refusing a file costs (almost) nothing.

      max_member_bytes: the largest decompressed size of one member (default 64 GiB).
      max_graph_bytes: the largest decompressed graph.json (default 256 MiB; a graph of
        300,000 nodes takes 42 MiB).
      max_ratio: a deflated member larger than `ratio_floor_bytes` may inflate to at most this
        many times its compressed size (default 100; rnngraph stores arrays uncompressed and
        deflates only graph.json, which compresses about 16 times when most repetitive).
      ratio_floor_bytes: members up to this decompressed size are not held to `max_ratio`
        (default 1 MiB).
      max_total_bytes: all members together, decompressed; None (the default) allows
        `max(max_ratio * file size, 256 MiB)`, a generous multiple of what the file declares
        for its arrays, which are stored at their full size.
      max_members: how many members the archive may have (default 1,000,000).
      max_nodes: how many nodes the graph may have, loop bodies included (default 2,000,000;
        graphs only).
      max_depth: how deeply loops, and attribute values, may nest (default 64; graphs only).
    """
    max_member_bytes: int = 64 * _GiB
    max_graph_bytes: int = 256 * _MiB
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 1 * _MiB
    max_total_bytes: int | None = None
    max_members: int = 1_000_000
    max_nodes: int = 2_000_000
    max_depth: int = 64

    def __post_init__(self):
        for name in ("max_member_bytes", "max_graph_bytes", "ratio_floor_bytes", "max_members",
                     "max_nodes", "max_depth"):
            _positive(name, getattr(self, name))
        if self.max_total_bytes is not None:
            _positive("max_total_bytes", self.max_total_bytes)
        if isinstance(self.max_ratio, bool) or not isinstance(self.max_ratio, (int, float)) \
                or not self.max_ratio >= 1:
            raise ValueError(f"LoadLimits: max_ratio must be a number >= 1, got "
                             f"{self.max_ratio!r}")

    def total_bytes(self, file_size: int) -> int:
        if self.max_total_bytes is not None:
            return self.max_total_bytes
        return max(int(self.max_ratio * file_size), 256 * _MiB)


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"LoadLimits: {name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class Layout:
    """Which members one kind of file may hold.

      required: the member every such file has (its JSON document).
      missing: the message when `required` is absent.
      names: a pattern every member name must match whole.
      unknown: the message, after the member's name, for a name that does not match.
      caps: {member name: its largest decompressed size in bytes, or the name of the
        LoadLimits field that gives it}; other members are held to `max_member_bytes`.
    """
    required: str
    missing: str
    names: re.Pattern
    unknown: str
    caps: dict = field(default_factory=dict)

    def cap(self, name: str, limits: LoadLimits) -> int:
        cap = self.caps.get(name, "max_member_bytes")
        return getattr(limits, cap) if isinstance(cap, str) else cap


def size_text(n: int) -> str:
    """A byte count as people read it (`4.0 TiB`)."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", _GiB), ("MiB", _MiB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


class MemberError(InvalidFileError):
    """Internal: a problem with one member (the reader adds the path)."""

    def __init__(self, member: str, msg: str):
        super().__init__(f"member {member!r}: {msg}")
        self.member = member


@dataclass
class ArrayHeader:
    """What a checked `.npy` member declares."""
    info: zipfile.ZipInfo
    shape: tuple
    dtype: np.dtype
    fortran: bool
    offset: int          # bytes of magic + header before the data


class Archive:
    """An opened, checked container: `has(name)`, `read_member(name)`, `array(key)`, and
    `headers` ({member name without `.npy`: ArrayHeader}), all checked when it was opened."""

    def __init__(self, zf: zipfile.ZipFile, infos: dict, limits: LoadLimits):
        self.zf, self.infos, self.limits = zf, infos, limits
        self.headers: dict[str, ArrayHeader] = {}
        for name, info in infos.items():
            if name.endswith(".npy"):
                self.headers[name[:-4]] = self._header(info)

    def close(self):
        self.zf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def has(self, name: str) -> bool:
        return name in self.infos

    def read_member(self, name: str) -> bytes:
        info = self.infos[name]
        try:
            with self.zf.open(info) as fh:
                data = fh.read(info.file_size + 1)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001  BadZipFile, zlib.error, EOFError, OSError...
            raise MemberError(name, f"damaged or truncated archive: {why(exc)}") from None
        if len(data) != info.file_size:
            raise MemberError(name, f"damaged or truncated archive: holds {len(data)} bytes, the "
                                    f"directory says {info.file_size}")
        return data

    def _header(self, info: zipfile.ZipInfo) -> ArrayHeader:
        name = info.filename
        try:
            with self.zf.open(info) as fh:
                head = io.BytesIO(fh.read(min(info.file_size, _NPY_HEAD)))
            version = np.lib.format.read_magic(head)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001  ValueError, SyntaxError, zlib.error, ...
            raise MemberError(name, f"not a valid .npy header ({why(exc)})") from None
        if dtype.hasobject:
            raise MemberError(name, "it holds pickled data (an object array), which rnngraph "
                                    "never loads")
        if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype:
            raise MemberError(name, f"unsupported array dtype {dtype} (only bool, integer, "
                                    "float and complex arrays are loaded)")
        declared = math.prod(shape) * dtype.itemsize   # Python ints: no overflow
        offset = head.tell()
        if offset + declared != info.file_size:
            raise MemberError(name, f"its header declares {dtype}{list(shape)} "
                                    f"({size_text(declared)}) but the member holds "
                                    f"{size_text(info.file_size - offset)} of data")
        return ArrayHeader(info, tuple(shape), dtype, bool(fortran), offset)

    def array(self, key: str) -> np.ndarray:
        """The array stored as `key + '.npy'`, read into a buffer of its declared size."""
        h = self.headers[key]
        name = h.info.filename
        arr = np.empty(h.shape, h.dtype, order="F" if h.fortran else "C")
        buf = memoryview(arr.reshape(-1, order="A")).cast("B") if arr.size else memoryview(b"")
        try:
            with self.zf.open(h.info) as fh:
                skipped = fh.read(h.offset)
                got = 0
                while got < len(buf):
                    n = fh.readinto(buf[got:])
                    if not n:
                        break
                    got += n
                extra = fh.read(1)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001  BadZipFile, zlib.error, EOFError, OSError...
            raise MemberError(name, f"damaged or truncated archive: {why(exc)}") from None
        if len(skipped) != h.offset or got != len(buf) or extra:
            raise MemberError(name, "damaged or truncated archive: the data is shorter or "
                                    "longer than its header declares")
        return arr


def why(exc: BaseException) -> str:
    """`TypeName: message` of an exception, for the message that replaces it."""
    msg = str(exc)
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def open_archive(path: str, limits: LoadLimits, layout: Layout) -> Archive:
    """Open `path` and check its directory and `.npy` headers against `limits` and `layout`
    (see the module docstring). Raises InvalidFileError (MemberError when one member is at
    fault); the caller adds the path to the message."""
    file_size = os.path.getsize(path)
    try:
        zf = zipfile.ZipFile(path)
    except Exception as exc:  # noqa: BLE001  BadZipFile, struct.error, OSError from a bad offset...
        raise InvalidFileError(f"damaged or truncated archive: {why(exc)}") from None
    try:
        infos = _check_directory(zf.infolist(), file_size, limits, layout)
        return Archive(zf, infos, limits)
    except BaseException:
        zf.close()
        raise


def _check_directory(infos: list, file_size: int, limits: LoadLimits, layout: Layout) -> dict:
    if len(infos) > limits.max_members:
        raise InvalidFileError(f"the archive has {len(infos)} members, more than max_members="
                               f"{limits.max_members}")
    out: dict[str, zipfile.ZipInfo] = {}
    total = 0
    total_cap = limits.total_bytes(file_size)
    for info in infos:
        name = info.filename
        if name in out:
            raise MemberError(name, "appears twice in the archive (a file rnngraph wrote has "
                                    "each member once)")
        out[name] = info
    if layout.required not in out:
        raise InvalidFileError(layout.missing)
    for name, info in out.items():
        if not layout.names.fullmatch(name):
            raise MemberError(name, layout.unknown)
        if info.flag_bits & 0x1:
            raise MemberError(name, "is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise MemberError(name, f"uses compression method {info.compress_type}; rnngraph "
                                    "reads stored or deflated members")
        size = info.file_size
        cap = layout.cap(name, limits)
        if size > cap:
            raise MemberError(name, f"decompresses to {size_text(size)}, more than the limit of "
                                    f"{size_text(cap)} (LoadLimits)")
        if info.compress_size > file_size:
            raise MemberError(name, "damaged archive: the directory gives it more compressed "
                                    "bytes than the file has")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != size:
            raise MemberError(name, "damaged archive: a stored member's sizes differ")
        if size > limits.ratio_floor_bytes and size > limits.max_ratio * max(info.compress_size, 1):
            raise MemberError(name, f"{size_text(info.compress_size)} would decompress to "
                                    f"{size_text(size)}, more than max_ratio={limits.max_ratio:g} "
                                    f"times (LoadLimits); refused before decompressing")
        total += size
        if total > total_cap:
            raise MemberError(name, f"the members decompress to more than {size_text(total_cap)} "
                                    f"in all (LoadLimits.max_total_bytes)")
    return out
