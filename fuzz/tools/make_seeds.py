#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (stdlib only).

Usage: python3 fuzz/tools/make_seeds.py [ISBI_PNG]
ISBI_PNG defaults to /work/shared/data/isbi2012/membrane/train/image/0.png; a 32x32 crop
of it (8-bit gray) seeds the image readers when it exists, synthetic patterns otherwise.
"""
import json, os, struct, sys, zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")


def out(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- PNG
def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(w, h, color_type, bit_depth, rows, extra=b""):
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra
            + png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def read_png_gray8(path):
    """Decodes an 8-bit gray, non-interlaced PNG (the ISBI images)."""
    data = open(path, "rb").read()
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4]); kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]; pos += 12 + n
        if kind == b"IHDR":
            w, h, bd, ct, _, _, il = struct.unpack(">IIBBBBB", body)
            assert (bd, ct, il) == (8, 0, 0)
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat); rows = []; prev = bytearray(w)
    for y in range(h):
        f = raw[y * (w + 1)]; line = bytearray(raw[y * (w + 1) + 1:(y + 1) * (w + 1)])
        for x in range(w):
            a = line[x - 1] if x else 0; b = prev[x]; c = prev[x - 1] if x else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line)); prev = line
    return w, h, rows


# ---------------------------------------------------------------- TIFF
def tiff(pages, big=False, be=False):
    """pages: list of dicts with w, h, spp, bps, fmt(1 uint, 3 float), data(bytes per chunk list),
    tiled (tw, th) or rows_per_strip, compression (1, 8 deflate, 32773 packbits), planar."""
    e = ">" if be else "<"
    hdr = (b"MM" if be else b"II") + (struct.pack(e + "HHHQ", 43, 8, 0, 0) if big else struct.pack(e + "HI", 42, 0))
    buf = bytearray(hdr)
    first_ifd_pos = 8 if big else 4
    prev_link = first_ifd_pos
    for p in pages:
        chunk_offsets, chunk_counts = [], []
        for c in p["chunks"]:
            if p.get("compression", 1) == 8: c = zlib.compress(c)
            elif p.get("compression", 1) == 32773:
                enc = bytearray()
                for i in range(0, len(c), 128):
                    part = c[i:i + 128]; enc.append(len(part) - 1); enc += part
                c = bytes(enc)
            chunk_offsets.append(len(buf)); chunk_counts.append(len(c)); buf += c
            if len(buf) % 2: buf += b"\0"
        spp = p.get("spp", 1)
        tags = [(256, 4, [p["w"]]), (257, 4, [p["h"]]), (258, 3, [p.get("bps", 8)] * spp),
                (259, 3, [p.get("compression", 1)]), (262, 3, [2 if spp >= 3 else 1]),
                (277, 3, [spp]), (284, 3, [p.get("planar", 1)]), (339, 3, [p.get("fmt", 1)] * spp)]
        if spp in (2, 4): tags.append((338, 3, [2]))
        if "tile" in p:
            tags += [(322, 4, [p["tile"][0]]), (323, 4, [p["tile"][1]]),
                     (324, 16 if big else 4, chunk_offsets), (325, 16 if big else 4, chunk_counts)]
        else:
            tags += [(273, 16 if big else 4, chunk_offsets), (278, 4, [p.get("rps", p["h"])]),
                     (279, 16 if big else 4, chunk_counts)]
        tags.sort()
        sizes = {3: 2, 4: 4, 16: 8}; fmts = {3: "H", 4: "I", 16: "Q"}
        inline = 8 if big else 4
        # out-of-line values first
        offs = []
        for tag, typ, vals in tags:
            raw = struct.pack(e + fmts[typ] * len(vals), *vals)
            if len(raw) > inline:
                if len(buf) % 2: buf += b"\0"
                offs.append(len(buf)); buf += raw
            else:
                offs.append(None)
        if len(buf) % 2: buf += b"\0"
        ifd = len(buf)
        struct.pack_into(e + ("Q" if big else "I"), buf, prev_link, ifd)
        buf += struct.pack(e + ("Q" if big else "H"), len(tags))
        for (tag, typ, vals), off in zip(tags, offs):
            raw = struct.pack(e + fmts[typ] * len(vals), *vals)
            if off is None: val = raw.ljust(inline, b"\0")
            else: val = struct.pack(e + ("Q" if big else "I"), off)
            buf += struct.pack(e + "HH", tag, typ) + struct.pack(e + ("Q" if big else "I"), len(vals)) + val
        prev_link = len(buf)
        buf += b"\0" * (8 if big else 4)
    return bytes(buf)


def samples(w, h, spp, bps, fmt, seed, be=False):
    e = ">" if be else "<"
    vals = [((x * 7 + y * 13 + c * 31 + seed * 17) % 251) for y in range(h) for x in range(w) for c in range(spp)]
    if fmt == 3:
        return struct.pack(e + ("f" if bps == 32 else "d") * len(vals), *[v / 250.0 - 0.1 for v in vals])
    if bps == 16:
        return struct.pack(e + "H" * len(vals), *[v * 257 for v in vals])
    return bytes(vals)


def page(w, h, spp=1, bps=8, fmt=1, seed=0, rps=None, tile=None, compression=1, be=False):
    bpp = spp * bps // 8
    data = samples(w, h, spp, bps, fmt, seed, be)
    p = dict(w=w, h=h, spp=spp, bps=bps, fmt=fmt, compression=compression)
    if tile:
        tw, th = tile; chunks = []
        for ty in range(0, h, th):
            for tx in range(0, w, tw):
                t = bytearray()
                for y in range(ty, ty + th):
                    for x in range(tx, tx + tw):
                        if y < h and x < w:
                            i = (y * w + x) * bpp; t += data[i:i + bpp]
                        else:
                            t += b"\0" * bpp
                chunks.append(bytes(t))
        p["tile"] = tile
    else:
        rps = rps or h; p["rps"] = rps
        chunks = [data[y * w * bpp:min(h, y + rps) * w * bpp] for y in range(0, h, rps)]
    p["chunks"] = chunks
    return p


def main():
    isbi = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/isbi2012/membrane/train/image/0.png"
    if os.path.exists(isbi):
        w, h, rows = read_png_gray8(isbi)
        crop = [r[100:132] for r in rows[100:132]]
    else:
        crop = [bytes((x * 8 + y * 3) % 256 for x in range(32)) for y in range(32)]
    flat = b"".join(crop)
    # image_reader
    t = "image_reader"
    out(t, "isbi_crop_gray8.png", png(32, 32, 0, 8, crop))
    out(t, "gray16.png", png(5, 3, 0, 16, [b"".join(struct.pack(">H", (x * 9000 + y * 100) % 65536) for x in range(5)) for y in range(3)]))
    out(t, "rgb8.png", png(4, 3, 2, 8, [bytes((x * 60 + c * 40 + y) % 256 for x in range(4) for c in range(3)) for y in range(3)]))
    out(t, "rgba8.png", png(3, 2, 6, 8, [bytes((x * 60 + c * 40 + y) % 256 for x in range(3) for c in range(4)) for y in range(2)]))
    out(t, "graya8.png", png(3, 3, 4, 8, [bytes((x * 60 + c * 90 + y) % 256 for x in range(3) for c in range(2)) for y in range(3)]))
    out(t, "rgb16.png", png(2, 2, 2, 16, [bytes((x + c + y * 7) % 256 for x in range(2) for c in range(6)) for y in range(2)]))
    out(t, "palette.png", png(2, 2, 3, 8, [b"\x00\x01", b"\x01\x00"], png_chunk(b"PLTE", b"\xff\x00\x00\x00\xff\x00")))
    out(t, "gray1bit.png", png(8, 2, 0, 1, [b"\xa5", b"\x5a"]))
    out(t, "isbi_crop_gray8.tif", tiff([dict(w=32, h=32, spp=1, bps=8, fmt=1, rps=8, chunks=[flat[i:i + 256] for i in range(0, 1024, 256)])]))
    out(t, "gray16_be.tif", tiff([page(5, 4, bps=16, be=True)], be=True))
    out(t, "f32.tif", tiff([page(4, 4, bps=32, fmt=3)]))
    out(t, "f64.tif", tiff([page(3, 2, bps=64, fmt=3)]))
    out(t, "rgb8_deflate.tif", tiff([page(6, 5, spp=3, rps=2, compression=8)]))
    out(t, "rgba8_packbits.tif", tiff([page(4, 3, spp=4, compression=32773)]))
    out(t, "gray8_tiled.tif", tiff([page(20, 18, tile=(16, 16))]))
    out(t, "gray8_big.tif", tiff([page(3, 3)], big=True))
    # volume_reader
    t = "volume_reader"
    out(t, "gray8_3pages_strips.tif", tiff([page(7, 5, seed=z, rps=2) for z in range(3)]))
    out(t, "gray8_2pages_tiled.tif", tiff([page(20, 17, seed=z, tile=(16, 16)) for z in range(2)]))
    out(t, "f32_2pages.tif", tiff([page(4, 3, bps=32, fmt=3, seed=z) for z in range(2)]))
    out(t, "rgb16_2pages_deflate.tif", tiff([page(3, 4, spp=3, bps=16, seed=z, compression=8) for z in range(2)]))
    out(t, "graya8_2pages_big.tif", tiff([page(3, 2, spp=2, seed=z) for z in range(2)], big=True))
    out(t, "gray16_be_2pages.tif", tiff([page(4, 4, bps=16, seed=z, be=True, rps=3) for z in range(2)], be=True))
    out(t, "mismatch_pages.tif", tiff([page(4, 4), page(5, 4)]))
    out(t, "isbi_crop_1page.tif", tiff([dict(w=32, h=32, spp=1, bps=8, fmt=1, rps=32, chunks=[flat])]))
    # zarr_metadata: mode byte, first document, NUL, second document
    t = "zarr_metadata"
    arr3 = {"zarr_format": 3, "node_type": "array", "shape": [4, 9, 7], "data_type": "uint8",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2, 4, 4]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 3, "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "dimension_names": ["z", "y", "x"]}
    j = lambda v: json.dumps(v, separators=(",", ":")).encode()
    out(t, "v3_array_zyx", b"\x00" + j(arr3))
    a = dict(arr3, shape=[2, 3, 5, 6], data_type="float32", fill_value="NaN", dimension_names=["c", "z", "y", "x"],
             chunk_grid={"name": "regular", "configuration": {"chunk_shape": [1, 2, 5, 6]}},
             codecs=[{"name": "sharding_indexed", "configuration": {"chunk_shape": [1, 1, 5, 3],
                     "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "zstd", "configuration": {"level": 1, "checksum": False}}],
                     "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]}}])
    out(t, "v3_array_czyx_sharded", b"\x00" + j(a))
    a = dict(arr3, shape=[1, 1, 3, 4, 5], data_type="int16", fill_value=-1, dimension_names=None,
             chunk_grid={"name": "regular", "configuration": {"chunk_shape": [1, 1, 3, 4, 5]}},
             codecs=[{"name": "transpose", "configuration": {"order": [4, 3, 2, 1, 0]}}, {"name": "bytes", "configuration": {"endian": "big"}}, {"name": "gzip", "configuration": {"level": 1}}])
    out(t, "v3_array_tczyx_transpose", b"\x00" + j(a))
    zarray = {"zarr_format": 2, "shape": [3, 10, 12], "chunks": [1, 10, 12], "dtype": "<u2", "compressor":
              {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}, "fill_value": 0, "order": "C", "filters": None}
    out(t, "v2_array", b"\x01" + j(zarray) + b"\x00" + j({"_ARRAY_DIMENSIONS": ["z", "y", "x"]}))
    out(t, "v2_array_yx_f8", b"\x01" + j(dict(zarray, shape=[6, 5], chunks=[3, 5], dtype=">f8", compressor={"id": "zlib", "level": 1}, fill_value="NaN", order="F")))
    ome2 = {"multiscales": [{"version": "0.4", "axes": [{"name": "z", "type": "space"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1]}]}]}]}
    out(t, "ome_v2_group", b"\x02" + j(ome2) + b"\x00" + j(dict(zarray, dtype="|u1")))
    ome3 = {"zarr_format": 3, "node_type": "group", "attributes": {"ome": {"version": "0.5", "multiscales": [{"axes": [{"name": "c", "type": "channel"}, {"name": "z"}, {"name": "y"}, {"name": "x"}], "datasets": [{"path": "0"}]}]}}}
    out(t, "ome_v3_group", b"\x03" + j(ome3) + b"\x00" + j(dict(arr3, shape=[2, 2, 3, 3], dimension_names=None, chunk_grid={"name": "regular", "configuration": {"chunk_shape": [1, 1, 3, 3]}})))
    # mask_decoding: w-1, h-1, channels sel, depth sel, count-1, hint, samples
    t = "mask_decoding"
    out(t, "binary_u8", bytes([7, 7, 0, 0, 0, 0]) + bytes(255 * ((i * 5) % 3 == 0) for i in range(64)))
    out(t, "indexed_u8_2labels", bytes([3, 3, 0, 0, 1, 4]) + bytes(i % 4 for i in range(32)))
    out(t, "graylevels_u8", bytes([4, 4, 0, 0, 0, 0]) + bytes([0, 128, 255, 128, 0] * 5))
    out(t, "onehot_rgb", bytes([2, 2, 4, 0, 0, 0]) + bytes([255, 0, 0, 0, 255, 0, 0, 0, 255] * 3))
    out(t, "colors_rgb", bytes([2, 2, 4, 0, 0, 0]) + bytes([10, 20, 30, 200, 100, 50, 10, 20, 30] * 3))
    out(t, "binary_u16", bytes([3, 3, 0, 1, 0, 0]) + b"\xff\xff\x00\x00" * 10)
    out(t, "f32_indexed", bytes([3, 1, 0, 2, 0, 3]) + b"".join(struct.pack("<f", v) for v in [0, 1, 2, 1, 0, 2, -0.0, 1]))
    out(t, "f32_nan", bytes([1, 1, 0, 2, 0, 0]) + struct.pack("<ff", float("nan"), 1.0))
    out(t, "gray_as_rgb", bytes([2, 2, 5, 0, 2, 2]) + bytes([0, 0, 0, 255, 255, 255]))
    # model_metadata: hand-encoded ModelProto
    t = "model_metadata"
    def varint(n):
        n &= (1 << 64) - 1; b = bytearray()
        while True:
            x = n & 0x7F; n >>= 7
            if n: b.append(x | 0x80)
            else: b.append(x); return bytes(b)
    fld = lambda no, payload: varint(no << 3 | 2) + varint(len(payload)) + payload
    vi = lambda no, v: varint(no << 3) + varint(v)
    s = lambda no, text: fld(no, text.encode())
    prop = lambda k, v: fld(14, s(1, k) + s(2, v))
    tensor_f = fld(5, vi(1, 2) + vi(1, 1) + vi(2, 1) + fld(4, struct.pack("<ff", 0.5, -1.5)) + s(8, "w"))
    tensor_raw = fld(5, vi(1, 3) + vi(2, 1) + s(8, "b") + fld(9, struct.pack("<fff", 1, 2, 3)))
    tensor_d = fld(5, vi(1, 2) + vi(2, 11) + s(8, "d") + fld(10, struct.pack("<dd", 1.0, 2.0)))
    node = fld(1, s(1, "x") + s(1, "w") + s(2, "y") + s(3, "conv") + s(4, "Conv") + fld(5, s(1, "pads") + vi(20, 7) + fld(8, varint(1) + varint(1))))
    shape = fld(2, fld(1, vi(1, 1) + fld(2, fld(1, vi(1, 1)) + fld(1, s(2, "H")))))
    graph = node + s(2, "g") + tensor_f + tensor_raw + tensor_d + fld(11, s(1, "x") + shape) + fld(12, s(1, "y"))
    head = vi(1, 8) + fld(8, s(1, "") + vi(2, 17)) + s(2, "bioseg") + s(3, "0.1.0") + s(4, "org.bioseg") + vi(5, 1)
    props = (prop("bioseg.architecture", "unet") + prop("bioseg.layout", "NCHW") + prop("bioseg.input_channels", "1")
             + prop("bioseg.classes", "interior,membrane") + prop("bioseg.output", "softmax")
             + prop("bioseg.normalization", "zscore:0.5:0.25") + prop("bioseg.size_multiple", "16")
             + prop("bioseg.receptive_field_radius", "44") + prop("bioseg.recommended_halo", "44")
             + prop("bioseg.task", "binary-segmentation") + prop("bioseg.training", '{"epochs":3}') + prop("other", "x"))
    out(t, "bioseg_unet_like.onnx", head + fld(7, graph) + props)
    out(t, "divide_norm.onnx", head + fld(7, graph) + prop("bioseg.normalization", "divide:255") + prop("bioseg.layout", "NHWC") + prop("bioseg.output", "sigmoid"))
    out(t, "no_metadata.onnx", vi(1, 7) + fld(7, s(2, "empty")))


if __name__ == "__main__":
    main()
