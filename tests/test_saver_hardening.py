"""Hostile checkpoints (issue 28, part 2): `rg.train.Saver.restore` reads `.rgckpt` files with
the same checked zip reader as `rg.load` (rnngraph.safezip), so every size is known before
anything is inflated. Each hostile file is refused with InvalidFileError naming the checkpoint
and the member, and leaves every variable bit-identical.

Hostile files are written here by hand with zipfile and NumPy's own .npy header writer.
"""
from __future__ import annotations

import io
import json
import warnings
import zipfile

import numpy as np
import pytest

import rnngraph as rg
from rnngraph.errors import InvalidFileError
from rnngraph.io import LoadLimits
from rnngraph.train.saver import read_checkpoint

MiB = 1 << 20


# --- helpers -------------------------------------------------------------------------------------
def _model(shapes=(("layer/w", [2, 3], rg.float32), ("layer/b", [3], rg.float32))):
    g = rg.Graph()
    with g.as_default():
        vs = [rg.get_variable(name, shape, dtype) for name, shape, dtype in shapes]
        saver = rg.train.Saver()
    return g, vs, saver


def _snapshot(sess, vs):
    return [(v.node.name, sess.read_variable(v).dtype, sess.read_variable(v).tobytes())
            for v in vs]


def _saved(tmp_path, shapes=None):
    """A checkpoint of a model with seed-1 values, and a session of the same model whose
    values (seed 2) all differ from the file's."""
    g, vs, saver = _model() if shapes is None else _model(shapes)
    src = rg.Session(g, seed=1)
    prefix = saver.save(src, str(tmp_path / "m"))
    dst = rg.Session(g, seed=2)
    for v in vs:
        assert not np.array_equal(src.read_variable(v), dst.read_variable(v))
    return prefix, saver, src, dst, vs


def _members(prefix):
    with zipfile.ZipFile(prefix + ".rgckpt") as zf:
        return [(i.filename, zf.read(i), i.compress_type) for i in zf.infolist()]


def _write(prefix, members):
    """Write (name, bytes, compression) members as given: duplicates and all."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # zipfile: "Duplicate name"
        with zipfile.ZipFile(prefix + ".rgckpt", "w") as zf:
            for name, data, how in members:
                zf.writestr(zipfile.ZipInfo(name), data, compress_type=how)


def _npy_header(shape, descr="<f4"):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": tuple(shape)})
    return buf.getvalue()


def _refused(saver, sess, vs, prefix, *fragments, limits=None):
    """restore must raise InvalidFileError naming the checkpoint and every fragment, and
    change no variable (bit for bit)."""
    before = _snapshot(sess, vs)
    with pytest.raises(InvalidFileError) as err:
        saver.restore(sess, prefix, limits=limits)
    msg = str(err.value)
    assert prefix + ".rgckpt" in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)
    assert _snapshot(sess, vs) == before
    return msg


# --- the findings --------------------------------------------------------------------------------
def test_a_header_declaring_4_tib_is_refused_before_allocating(tmp_path, monkeypatch):
    # Before: np.lib.format.read_array allocated what the header said -> MemoryError.
    prefix, saver, _, dst, vs = _saved(tmp_path)
    members = [(n, d, c) for n, d, c in _members(prefix)]
    members = [(n, _npy_header([1 << 40]) + b"\0" * 24 if n == "v0.npy" else d, c)
               for n, d, c in members]
    _write(prefix, members)
    allocated = []
    real_empty = np.empty
    monkeypatch.setattr(np, "empty", lambda *a, **k: allocated.append(a) or real_empty(*a, **k))
    _refused(saver, dst, vs, prefix, "member 'v0.npy'", "4.0 TiB", "holds 24 bytes")
    assert allocated == []                      # refused from the header, nothing allocated
    with pytest.raises(InvalidFileError, match="4.0 TiB"):
        read_checkpoint(prefix)


def test_a_zip_bomb_member_is_refused_before_inflating(tmp_path, monkeypatch):
    # A 4 MiB array of zeros, deflated to a few KiB (ratio ~1000 > max_ratio=100).
    prefix, saver, src, dst, vs = _saved(tmp_path, (("big", [1024, 1024], rg.float32),))
    (big,) = vs
    src.load_variable(big, np.zeros((1024, 1024), np.float32))
    saver.save(src, prefix)
    members = [(n, d, zipfile.ZIP_DEFLATED if n == "v0.npy" else c)
               for n, d, c in _members(prefix)]
    _write(prefix, members)
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(
        getattr(name, "filename", name)) or real_open(self, name, *a, **k))
    _refused(saver, dst, vs, prefix, "member 'v0.npy'", "max_ratio=100")
    assert "v0.npy" not in opened               # not a byte of it decompressed
    monkeypatch.setattr(zipfile.ZipFile, "open", real_open)
    # The limit is what refused it: a caller who trusts the file may raise it.
    saver.restore(dst, prefix, limits=LoadLimits(max_ratio=1e6))
    np.testing.assert_array_equal(dst.read_variable(big), np.zeros((1024, 1024), np.float32))


def test_a_meta_json_bomb_and_the_member_cap_are_refused(tmp_path):
    prefix, saver, _, dst, vs = _saved(tmp_path)
    members = _members(prefix)
    meta = json.loads(dict((n, d) for n, d, _ in members)["meta.json"])
    padded = json.dumps(meta).encode()[:-1] + b" " * (8 * MiB) + b"}"   # still valid JSON
    _write(prefix, [(n, padded if n == "meta.json" else d,
                     zipfile.ZIP_DEFLATED if n == "meta.json" else c) for n, d, c in members])
    _refused(saver, dst, vs, prefix, "member 'meta.json'", "max_ratio")
    _write(prefix, members)                     # the good file, under a small member cap
    _refused(saver, dst, vs, prefix, "member 'v0.npy'", "more than the limit of 16 bytes",
             limits=LoadLimits(max_member_bytes=16))


@pytest.mark.parametrize("dup", ["v0.npy", "meta.json"])
def test_duplicate_members_are_refused(tmp_path, dup):
    # zipfile would read the last copy; a scanner checking the first would see other bytes.
    prefix, saver, _, dst, vs = _saved(tmp_path)
    members = _members(prefix)
    (extra,) = [m for m in members if m[0] == dup]
    _write(prefix, members + [extra])
    _refused(saver, dst, vs, prefix, f"member {dup!r}", "appears twice")


@pytest.mark.parametrize("name", ["evil.py", "../v0.npy", "v0.npy.bak", "v01.npy", "V1.npy",
                                  "dir/v1.npy"])
def test_an_unknown_member_name_is_refused(tmp_path, name):
    prefix, saver, _, dst, vs = _saved(tmp_path)
    _write(prefix, _members(prefix) + [(name, b"print('hi')", zipfile.ZIP_STORED)])
    _refused(saver, dst, vs, prefix, f"member {name!r}", "is not a member an rnngraph "
             "checkpoint holds")


def test_an_array_meta_json_does_not_list_is_refused(tmp_path):
    prefix, saver, _, dst, vs = _saved(tmp_path)
    members = _members(prefix)
    v0 = dict((n, d) for n, d, _ in members)["v0.npy"]
    _write(prefix, members + [("v7.npy", v0, zipfile.ZIP_STORED)])
    _refused(saver, dst, vs, prefix, "member 'v7.npy'", "not listed in meta.json")


def test_meta_json_naming_a_missing_or_shared_member_is_refused(tmp_path):
    prefix, saver, _, dst, vs = _saved(tmp_path)
    members = _members(prefix)
    meta = json.loads(dict((n, d) for n, d, _ in members)["meta.json"])

    def with_meta(change):
        m = json.loads(json.dumps(meta))
        change(m)
        return [(n, json.dumps(m).encode() if n == "meta.json" else d, c) for n, d, c in members]

    _write(prefix, [m for m in members if m[0] != "v1.npy"])
    _refused(saver, dst, vs, prefix, "member 'v1.npy'", "missing")
    _write(prefix, with_meta(lambda m: m["variables"][1].update(member="v0")))
    _refused(saver, dst, vs, prefix, "member 'meta.json'", "two variables are stored in")
    _write(prefix, with_meta(lambda m: m["variables"][1].update(name=m["variables"][0]["name"])))
    _refused(saver, dst, vs, prefix, "member 'meta.json'", "listed twice")
    _write(prefix, [(n, b"[" * 100000 if n == "meta.json" else d, c) for n, d, c in members])
    _refused(saver, dst, vs, prefix, "member 'meta.json'", "not JSON")


def test_an_encrypted_member_is_refused(tmp_path):
    prefix, saver, _, dst, vs = _saved(tmp_path)
    raw = bytearray((tmp_path / "m.rgckpt").read_bytes())
    central = raw.index(b"PK\x01\x02")                 # the first central directory entry
    raw[central + 8] |= 0x1                            # its "encrypted" flag bit
    (tmp_path / "m.rgckpt").write_bytes(bytes(raw))
    _refused(saver, dst, vs, prefix, "member 'meta.json'", "is encrypted")


@pytest.mark.parametrize("keep", [0, 22, 100, 0.5, -1, -22])
def test_a_truncated_file_is_refused(tmp_path, keep):
    prefix, saver, _, dst, vs = _saved(tmp_path)
    raw = (tmp_path / "m.rgckpt").read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)
    (tmp_path / "m.rgckpt").write_bytes(raw[:n])
    _refused(saver, dst, vs, prefix, "not a checkpoint")


def test_damaged_array_data_is_refused_by_its_crc(tmp_path):
    prefix, saver, src, dst, vs = _saved(tmp_path)
    raw = bytearray((tmp_path / "m.rgckpt").read_bytes())
    data = src.read_variable(vs[1]).tobytes()          # layer/b, stored as v1.npy
    at = raw.index(data)
    raw[at + 5] ^= 0x40
    (tmp_path / "m.rgckpt").write_bytes(bytes(raw))
    _refused(saver, dst, vs, prefix, "member 'v1.npy'", "damaged")


def test_an_array_of_the_wrong_shape_or_dtype_for_meta_json_is_refused(tmp_path):
    # The header and meta.json disagree (same byte count, so only the comparison catches it).
    prefix, saver, _, dst, vs = _saved(tmp_path)
    members = _members(prefix)
    v0 = dict((n, d) for n, d, _ in members)["v0.npy"]
    data = v0[len(_npy_header([2, 3])):]
    for header, shown in ((_npy_header([3, 2]), "float32[3, 2]"),
                          (_npy_header([2, 3], "<i4"), "int32[2, 3]"),
                          (_npy_header([2, 3], ">f4"), ">f4[2, 3]")):
        _write(prefix, [(n, header + data if n == "v0.npy" else d, c) for n, d, c in members])
        _refused(saver, dst, vs, prefix, "member 'v0.npy'", f"is {shown}",
                 "meta.json says float32[2, 3]")


def test_a_checkpoint_that_does_not_fit_the_variables_changes_none_of_them(tmp_path):
    # A well-formed checkpoint of another model: a model error, not a file error, raised as
    # before (ValueError for the shape, TypeError for the dtype), checked before any data read.
    prefix, *_ = _saved(tmp_path)
    for shapes, exc, fragment in (
            ((("layer/w", [2, 3], rg.float32), ("layer/b", [4], rg.float32)), ValueError,
             r"'layer/b' has shape \[4\], the checkpoint holds \[3\]"),
            ((("layer/w", [2, 3], rg.float32), ("layer/b", [3], rg.float64)), TypeError,
             r"'layer/b' is float64, the checkpoint holds float32")):
        g, vs, saver = _model(shapes)
        sess = rg.Session(g, seed=3)
        before = _snapshot(sess, vs)
        with pytest.raises(exc, match=fragment) as err:
            saver.restore(sess, prefix)
        assert not isinstance(err.value, InvalidFileError)
        assert "member 'v1.npy'" in str(err.value)
        assert _snapshot(sess, vs) == before


def test_every_flipped_byte_is_refused_or_restores_the_saved_values(tmp_path):
    # Flip each byte of a small checkpoint in turn: restore either gives exactly the saved
    # values (the byte was in a field nothing reads, like a timestamp) or raises
    # InvalidFileError and changes nothing. Never another exception, never other values.
    prefix, saver, src, dst, vs = _saved(tmp_path)
    saved = _snapshot(src, vs)
    before = _snapshot(dst, vs)
    good = (tmp_path / "m.rgckpt").read_bytes()
    outcomes = {"refused": 0, "restored": 0}
    for i in range(len(good)):
        raw = bytearray(good)
        raw[i] ^= 0x21
        (tmp_path / "m.rgckpt").write_bytes(bytes(raw))
        try:
            saver.restore(dst, prefix)
        except InvalidFileError:
            assert _snapshot(dst, vs) == before, i
            outcomes["refused"] += 1
        else:
            assert _snapshot(dst, vs) == saved, i
            outcomes["restored"] += 1
            for v, (_, dtype, data) in zip(vs, before):
                dst.load_variable(v, np.frombuffer(data, dtype).reshape(v.shape))
    assert outcomes["refused"] > len(good) // 2, outcomes


def test_limits_must_be_load_limits_and_the_state_file_must_be_text(tmp_path):
    prefix, saver, _, dst, vs = _saved(tmp_path)
    with pytest.raises(TypeError, match="limits must be an rg.io.LoadLimits, got dict"):
        saver.restore(dst, prefix, limits={"max_ratio": 5})
    assert rg.io.LoadLimits is LoadLimits
    (tmp_path / "checkpoint").write_bytes(b'model_checkpoint_path: "\xff\xfe"\n')
    with pytest.raises(InvalidFileError, match="not UTF-8"):
        rg.train.get_checkpoint_state(str(tmp_path))
    with pytest.raises(InvalidFileError, match="not UTF-8"):
        rg.train.latest_checkpoint(str(tmp_path))
