"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number, one big-endian ``uint32`` per dimension,
then the array itself in C order, big-endian. The magic number is two zero
bytes, a byte naming the element type and a byte giving the number of
dimensions; e.g. ``0x00000803`` is a 3-d array of ``uint8`` (images) and
``0x00000801`` a 1-d array of ``uint8`` (labels). Files may be gzip-compressed
(a name ending in ``.gz``), as they are distributed.

See LeCun, Cortes and Burges, *The MNIST database of handwritten digits*
(the section "File formats for the MNIST database").
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

__all__ = ["IDXError", "idx_magic", "read_idx", "write_idx"]

# Element type code (third byte of the magic number) -> big-endian numpy dtype.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES: dict[np.dtype, int] = {d.newbyteorder("="): c for c, d in _DTYPES.items()}


class IDXError(ValueError):
    """An IDX file is malformed: bad magic number, truncated, or not the expected array."""


def idx_magic(dtype: np.dtype | type, ndim: int) -> int:
    """The magic number of an IDX file holding a ``ndim``-d array of ``dtype``.

    Args:
      dtype: one of uint8, int8, int16, int32, float32, float64.
      ndim: number of dimensions, 1 to 255.

    Returns:
      The magic number as an int.

    Example:
      >>> import numpy as np
      >>> from sparsejax.data.idx import idx_magic
      >>> hex(idx_magic(np.uint8, 3))
      '0x803'
    """
    dtype = np.dtype(dtype).newbyteorder("=")
    if dtype not in _CODES:
        raise IDXError(f"IDX has no element type for dtype {dtype}; use one of "
                       f"{sorted(str(d) for d in _CODES)}")
    if not 1 <= ndim <= 255:
        raise IDXError(f"IDX arrays have 1 to 255 dimensions, got ndim={ndim}")
    return (_CODES[dtype] << 8) | ndim


def _open(path: str | os.PathLike[str], mode: str):
    return gzip.open(path, mode) if os.fspath(path).endswith(".gz") else open(path, mode)


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """Reads an IDX file (gzip-compressed when its name ends in ``.gz``) into a numpy array.

    Args:
      path: the file.
      expected_magic: if given, the magic number the file must have (e.g.
        ``0x803`` for MNIST images, ``0x801`` for labels).

    Returns:
      The array, in native byte order, with the dtype and shape the header says.

    Raises:
      FileNotFoundError: if ``path`` does not exist.
      IDXError: if the magic number is invalid or not ``expected_magic``, or the
        file is shorter or longer than its header says (or not valid gzip).

    Example:
      >>> import numpy as np, tempfile, os
      >>> from sparsejax.data.idx import read_idx, write_idx
      >>> path = os.path.join(tempfile.mkdtemp(), 'x-idx2-ubyte.gz')
      >>> write_idx(path, np.arange(6, dtype=np.uint8).reshape(2, 3))
      >>> read_idx(path, expected_magic=0x802)
      array([[0, 1, 2],
             [3, 4, 5]], dtype=uint8)
    """
    try:
        with _open(path, "rb") as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError, OSError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise IDXError(f"{path}: cannot read as {'gzip' if os.fspath(path).endswith('.gz') else 'IDX'}: {e}") from e
    if len(raw) < 4:
        raise IDXError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    (magic,) = struct.unpack(">I", raw[:4])
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if magic >> 16 != 0 or code not in _DTYPES or ndim == 0:
        raise IDXError(
            f"{path}: not an IDX file (magic number {magic:#010x}; IDX magic numbers are "
            "0x0000TTDD with type byte TT in {08,09,0B,0C,0D,0E} and DD >= 1 dimensions)"
        )
    if expected_magic is not None and magic != expected_magic:
        raise IDXError(
            f"{path}: magic number {magic:#010x} ({_DTYPES[code].newbyteorder('=')}, {ndim}-d), "
            f"expected {expected_magic:#010x}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(f"{path}: truncated header ({len(raw)} bytes, {ndim}-d needs {header})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _DTYPES[code]
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != want:
        raise IDXError(
            f"{path}: header says shape {shape} of {dtype.newbyteorder('=')} ({want} bytes of data), "
            f"but the file has {got} bytes of data ({'truncated' if got < want else 'trailing bytes'})"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Writes ``array`` as an IDX file (gzip-compressed when the name ends in ``.gz``).

    Args:
      path: the file to create.
      array: a 1-d to 255-d array of uint8, int8, int16, int32, float32 or float64.

    Example:
      >>> import numpy as np, tempfile, os
      >>> from sparsejax.data.idx import read_idx, write_idx
      >>> path = os.path.join(tempfile.mkdtemp(), 'labels-idx1-ubyte')
      >>> write_idx(path, np.array([3, 1, 4], dtype=np.uint8))
      >>> read_idx(path).tolist()
      [3, 1, 4]
    """
    array = np.asarray(array)
    magic = idx_magic(array.dtype, array.ndim)
    big_endian = array.astype(array.dtype.newbyteorder(">"), copy=False)
    with _open(path, "wb") as f:
        f.write(struct.pack(f">I{array.ndim}I", magic, *array.shape))
        f.write(np.ascontiguousarray(big_endian).tobytes())
