#!/usr/bin/env python3
"""make.py — writes the image fixtures of tests/unit/test_media.c into this
folder, with Python's standard library only (zlib for PNG; the JPEG encoder
is the small baseline one below). The outputs are committed; run this again
only to change them: python3 tests/unit/media/make.py

  photo.png    400x300 RGB gradient              -> a 320x240 thumbnail
  alpha.png    32x32 RGBA, left half transparent -> flattened, 32x32
  rotated.jpg  80x40 grayscale baseline JPEG with EXIF Orientation 6 (the
               camera was turned: shown 40x80)   -> a portrait thumbnail
  bomb.png     a valid PNG header claiming 100000x100000 pixels, then a few
               bytes of pixel data               -> refused before decoding
  notimage.txt plain text                        -> not an image
"""
import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")


# ---- PNG ----

def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width, height, color_type, rows, declared=None):
    """rows: raw scanlines (bytes, filter byte included)."""
    w, h = declared or (width, height)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


def sub_filtered(pixels, bpp):
    """PNG filter 1 (Sub): each byte minus the one bpp to its left."""
    out = bytearray([1])
    for i, v in enumerate(pixels):
        out.append((v - (pixels[i - bpp] if i >= bpp else 0)) & 0xFF)
    return bytes(out)


def photo():
    rows = []
    for y in range(300):
        px = bytearray()
        for x in range(400):
            px += bytes((x * 255 // 399, y * 255 // 299, 128))
        rows.append(sub_filtered(px, 3))
    return png(400, 300, 2, rows)


def alpha():
    rows = []
    for y in range(32):
        px = bytearray()
        for x in range(32):
            px += bytes((200, 30, 30, 0 if x < 16 else 255))
        rows.append(b"\0" + bytes(px))
    return png(32, 32, 6, rows)


def bomb():
    # Only the first rows' worth of data: the header alone is what matters.
    return png(0, 0, 2, [b"\0" * 301] * 4, declared=(100000, 100000))


# ---- JPEG: baseline, one 8-bit component, flat quantisation, own tables ----

ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48,
          41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15,
          23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63]
Q = 8  # every coefficient divided by 8: |DC| <= 128, |AC| <= 128, sizes <= 8

# Huffman tables: any complete-enough canonical code is valid, so every DC
# category gets a 4-bit code and every AC symbol an 8-bit one.
DC_SYMS = list(range(12))
AC_SYMS = [0x00, 0xF0] + [(r << 4) | s for r in range(16) for s in range(1, 11)]


def canonical(symbols, length):
    return {s: (i, length) for i, s in enumerate(symbols)}


DC_CODE = canonical(DC_SYMS, 4)
AC_CODE = canonical(AC_SYMS, 8)


def dht(cls_id, symbols, length):
    counts = [0] * 16
    counts[length - 1] = len(symbols)
    body = bytes([cls_id]) + bytes(counts) + bytes(symbols)
    return b"\xFF\xC4" + struct.pack(">H", len(body) + 2) + body


class Bits:
    def __init__(self):
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, code, length):
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((code >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)  # byte stuffing
                self.acc, self.n = 0, 0

    def flush(self):
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with 1 bits
        return bytes(self.out)


def category(v):
    return abs(v).bit_length()


def amplitude(v, size):
    return v if v >= 0 else v + (1 << size) - 1


def fdct(block):
    out = [0.0] * 64
    for v in range(8):
        for u in range(8):
            s = 0.0
            for y in range(8):
                for x in range(8):
                    s += (block[y * 8 + x] * math.cos((2 * x + 1) * u * math.pi / 16) *
                          math.cos((2 * y + 1) * v * math.pi / 16))
            cu = math.sqrt(0.5) if u == 0 else 1.0
            cv = math.sqrt(0.5) if v == 0 else 1.0
            out[v * 8 + u] = 0.25 * cu * cv * s
    return out


def jpeg(width, height, pixel, orientation):
    bits, prev_dc = Bits(), 0
    for by in range(0, height, 8):
        for bx in range(0, width, 8):
            block = [pixel(min(bx + x, width - 1), min(by + y, height - 1)) - 128
                     for y in range(8) for x in range(8)]
            coef = [int(round(c / Q)) for c in fdct(block)]
            zz = [coef[ZIGZAG[i]] for i in range(64)]
            diff, prev_dc = zz[0] - prev_dc, zz[0]
            size = category(diff)
            bits.put(*DC_CODE[size])
            if size:
                bits.put(amplitude(diff, size), size)
            run = 0
            for v in zz[1:]:
                if v == 0:
                    run += 1
                    continue
                while run > 15:
                    bits.put(*AC_CODE[0xF0])
                    run -= 16
                size = category(v)
                bits.put(*AC_CODE[(run << 4) | size])
                bits.put(amplitude(v, size), size)
                run = 0
            if run:
                bits.put(*AC_CODE[0x00])  # EOB
    # EXIF: big-endian TIFF, one IFD with one entry: Orientation (0x0112), SHORT.
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + \
        struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    app1 = b"Exif\0\0" + tiff
    dqt = bytes([0]) + bytes([Q] * 64)
    sof = struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0])
    sos = bytes([1, 1, 0x00, 0, 63, 0])
    seg = lambda m, body: bytes([0xFF, m]) + struct.pack(">H", len(body) + 2) + body
    return (b"\xFF\xD8" + seg(0xE1, app1) + seg(0xDB, dqt) + seg(0xC0, sof) +
            dht(0x00, DC_SYMS, 4) + dht(0x10, AC_SYMS, 8) + seg(0xDA, sos) +
            bits.flush() + b"\xFF\xD9")


def rotated():
    return jpeg(80, 40, lambda x, y: (x * 3 + y * 2) & 0xFF, orientation=6)


if __name__ == "__main__":
    write("photo.png", photo())
    write("alpha.png", alpha())
    write("rotated.jpg", rotated())
    write("bomb.png", bomb())
    write("notimage.txt", "이것은 그림이 아닙니다. This is not an image.\n".encode())
