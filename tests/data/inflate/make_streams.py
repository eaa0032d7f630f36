#!/usr/bin/env python3
"""Write the inflate test streams (run from this folder: python3 make_streams.py).

Uses only Python's standard library (zlib 1.2.13 on the machine that wrote
the committed files). The tests compare sc_inflate's output with the
original payload files, never with our own decoder's earlier output.
"""
import gzip, struct, zlib

def deflate(data, level=9, wbits=-15, strategy=zlib.Z_DEFAULT_STRATEGY):
    c = zlib.compressobj(level, zlib.DEFLATED, wbits, 9, strategy)
    return c.compress(data) + c.flush()

# Payloads: English text with long repeats, incompressible bytes (stored
# blocks) and a long run (overlapping copies at distance 1).
text = b"".join(b"Line %d: the quick brown lesion jumps over the lazy nevus; "
                b"SCALE adapters on MONET and MedCLIP.\n" % i for i in range(600))
state = 12345
noise = bytearray()
for _ in range(40000):                      # LCG, stable across Python versions
    state = (state * 1103515245 + 12345) & 0x7FFFFFFF
    noise.append(state >> 16 & 0xFF)
noise = bytes(noise)
run = b"\x00" * 60000 + b"abc" * 1000

far = noise[:30000] + text[:2400] + noise[:30000]   # repeats 32400 bytes back (zlib reaches 32506)

open("text.bin", "wb").write(text)
open("far.bin", "wb").write(far)
open("noise.bin", "wb").write(noise)
open("run.bin", "wb").write(run)

open("text.zlib", "wb").write(zlib.compress(text, 9))
open("text_level1.zlib", "wb").write(zlib.compress(text, 1))
open("text_fixed.deflate", "wb").write(deflate(text, 9, -15, zlib.Z_FIXED))
open("text_huffman_only.deflate", "wb").write(deflate(text, 9, -15, zlib.Z_HUFFMAN_ONLY))
open("text_stored.zlib", "wb").write(zlib.compress(text, 0))
open("noise.zlib", "wb").write(zlib.compress(noise, 9))
open("far.deflate", "wb").write(deflate(far, 9))
open("run.deflate", "wb").write(deflate(run, 9))
open("run_rle.deflate", "wb").write(deflate(run, 9, -15, zlib.Z_RLE))
with open("text.gz", "wb") as f:            # FNAME set by the gzip module
    with gzip.GzipFile(filename="text.bin", mode="wb", fileobj=f, mtime=0) as g:
        g.write(text)

# gzip header with every optional field: FHCRC|FEXTRA|FNAME|FCOMMENT.
body = deflate(text, 6)
hdr = bytearray(b"\x1f\x8b\x08" + bytes([2 | 4 | 8 | 16]) + struct.pack("<I", 0) + b"\x00\x03")
hdr += struct.pack("<H", 6) + b"AB\x02\x00xy"   # FEXTRA: subfield AB, 2 bytes
hdr += b"text.bin\x00" + b"a comment\x00"
hdr += struct.pack("<H", zlib.crc32(bytes(hdr)) & 0xFFFF)
trailer = struct.pack("<II", zlib.crc32(text), len(text) & 0xFFFFFFFF)
open("text_allflags.gz", "wb").write(bytes(hdr) + body + trailer)

# Two members back to back (gzip -c a b > ab.gz): text then noise.
open("two_members.gz", "wb").write(gzip.compress(text, mtime=0) + gzip.compress(noise, mtime=0))

# 1 MiB of zeros in about 1 kB: for the output-limit test.
open("zeros_1mib.zlib", "wb").write(zlib.compress(b"\x00" * (1 << 20), 9))
