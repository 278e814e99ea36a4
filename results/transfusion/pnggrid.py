"""Tiny PNG reader/writer (8-bit RGB/RGBA; Debian's python3 has no PIL here) that tiles images into an upscaled grid."""
import struct, sys, zlib

def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos+4]); typ = data[pos+4:pos+8]; body = data[pos+8:pos+8+n]
        if typ == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat); stride = w * bpp; rows = []; prev = bytearray(stride); i = 0
    for _ in range(h):
        f = raw[i]; line = bytearray(raw[i+1:i+1+stride]); i += 1 + stride
        for x in range(stride):
            a = line[x-bpp] if x >= bpp else 0; b = prev[x]; c = prev[x-bpp] if x >= bpp else 0
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c; pa, pb, pc = abs(p-a), abs(p-b), abs(p-c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x*bpp:x*bpp+3]) for x in range(w)]); prev = line
    return rows

def write_png(path, rows):
    h, w = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + bytes(v for px in r for v in px) for r in rows)
    def chunk(t, b): return struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
                           chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

def grid(grid_paths, out, scale=4, pad=2):
    imgs = [[read_png(p) for p in row] for row in grid_paths]
    ch, cw = len(imgs[0][0]) * scale, len(imgs[0][0][0]) * scale
    H = len(imgs) * (ch + pad) + pad; W = max(len(r) for r in imgs) * (cw + pad) + pad
    canvas = [[(64, 64, 64)] * W for _ in range(H)]
    for r, row in enumerate(imgs):
        for c, im in enumerate(row):
            for y in range(ch):
                for x in range(cw):
                    canvas[pad + r * (ch + pad) + y][pad + c * (cw + pad) + x] = im[y // scale][x // scale]
    write_png(out, canvas)

if __name__ == "__main__":
    # usage: pnggrid.py OUT.png COLS a.png b.png ...
    out, cols, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    grid([paths[i:i+cols] for i in range(0, len(paths), cols)], out)
