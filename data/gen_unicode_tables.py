#!/usr/bin/env python3
"""Generate the Unicode and HTML tables of the tokenizers in io.c.

    python3 data/gen_unicode_tables.py --update io.c

rewrites the region between the lines

    /* BEGIN GENERATED: data/gen_unicode_tables.py */
    /* END GENERATED: data/gen_unicode_tables.py */

of io.c (section 11). Without --update the tables go to stdout. This script is
run by hand when the Unicode version should change; neither the build nor the
tests run Python.

Source of every fact: the running Python's `unicodedata` (its Unicode version
is printed into the output), Python's own `str.lower()` (probed character by
character, so the case tables are what OpenAI's `text.lower()` does) and
`html.entities`. The CLIP references were computed with Python 3.11
(Unicode 14.0.0), which is what the committed tables were generated with.

Tables:
  uclass     runs of code points with equal class flags (start << 8 | flags),
             covering U+0000..U+10FFFF; the flags of a code point are those of
             the last run starting at or before it.
  ulower     str.lower() of single characters as runs (first, last, step,
             delta): lower(c) = c + delta for c = first, first+step, ... last.
             U+0130 (the one character whose lowercase is two characters) is
             left to the C code.
  udecomp    one level of canonical decomposition (UnicodeData field 5 without
             a <tag>), applied recursively by the C code. Left out: Hangul
             syllables (decomposed algorithmically in C), the CJK
             compatibility ideographs U+F900..FAFF and U+2F800..2FA1F (1002
             singletons; left as they are, to keep the table small) and
             characters of category Mn (they are dropped after decomposition).
  html_ent   the named character references that io.c's html_unescape
             knows: the 252 HTML 4.01 names (html.entities.name2codepoint),
             "apos", and the six upper-case legacy forms AMP COPY GT LT QUOT
             REG, with the values of html.entities.html5 (what html.unescape
             uses). `legacy` marks the names html5 also accepts without ';'
             (all 106 such names are in this subset, so the longest-prefix
             rule of html.unescape is reproduced exactly).
"""
import html.entities
import sys
import unicodedata as ud

UC_L, UC_N, UC_WS, UC_C, UC_P, UC_MN, UC_CASED, UC_CI = (1 << i for i in range(8))

# Unicode White_Space: what the `regex` module's \s and Rust's
# char::is_whitespace match. (Python's str.isspace() adds U+001C..001F.)
WHITE_SPACE = {0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029,
               0x202F, 0x205F, 0x3000, *range(0x2000, 0x200B)}

SIGMA, FINAL_SIGMA = '\u03a3', '\u03c2'


def flags(cp):
    if 0xD800 <= cp <= 0xDFFF:
        return UC_C
    ch = chr(cp)
    cat = ud.category(ch)
    f = 0
    if cat[0] == 'L':
        f |= UC_L
    if cat[0] == 'N':
        f |= UC_N
    if cp in WHITE_SPACE:
        f |= UC_WS
    if cat in ('Cc', 'Cf', 'Cs', 'Co'):
        f |= UC_C  # not Cn: Hugging Face's BertNormalizer keeps unassigned code points
    if cat[0] == 'P':
        f |= UC_P
    if cat == 'Mn':
        f |= UC_MN
    # Probe Python's final-sigma rule: "x Σ" lowers to ς iff x is cased and
    # not case-ignorable; "A x Σ" does iff x is case-ignorable or cased.
    cased = (ch + SIGMA).lower()[-1] == FINAL_SIGMA
    ignorable = ('A' + ch + SIGMA).lower()[-1] == FINAL_SIGMA and not cased
    if cased:
        f |= UC_CASED
    if ignorable:
        f |= UC_CI
    return f


def class_runs():
    runs, prev = [], None
    for cp in range(0x110000):
        f = flags(cp)
        if f != prev:
            runs.append((cp, f))
            prev = f
    return runs


def lower_runs():
    pairs = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        low = chr(cp).lower()
        if low == chr(cp):
            continue
        if len(low) != 1:
            assert cp == 0x130, hex(cp)
            continue
        pairs.append((cp, ord(low) - cp))
    runs, i = [], 0
    while i < len(pairs):
        cp, delta = pairs[i]
        step, j = 1, i
        if i + 1 < len(pairs) and pairs[i + 1][1] == delta and pairs[i + 1][0] - cp <= 2:
            step = pairs[i + 1][0] - cp
            while (j + 1 < len(pairs) and pairs[j + 1][1] == delta
                   and pairs[j + 1][0] - pairs[j][0] == step):
                j += 1
        runs.append((cp, pairs[j][0], step, delta))
        i = j + 1
    return runs


def cjk_compat(cp):
    return 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F


def decomp_entries():
    out = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF or 0xAC00 <= cp <= 0xD7A3 or cjk_compat(cp):
            continue
        ch = chr(cp)
        d = ud.decomposition(ch)
        if not d or d.startswith('<') or ud.category(ch) == 'Mn':
            continue
        parts = [int(x, 16) for x in d.split()]
        assert 1 <= len(parts) <= 2, hex(cp)
        out.append((cp, parts[0], parts[1] if len(parts) == 2 else 0))
    return out


def check_decomp(entries):
    """The C lookup (recursive, dropping Mn) must equal NFD minus Mn."""
    table = {cp: (a, b) for cp, a, b in entries}

    def strip(cp):
        if ud.category(chr(cp)) == 'Mn':
            return ''
        if cp in table:
            a, b = table[cp]
            return strip(a) + (strip(b) if b else '')
        return chr(cp)

    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF or 0xAC00 <= cp <= 0xD7A3 or cjk_compat(cp):
            continue
        want = ''.join(c for c in ud.normalize('NFD', chr(cp)) if ud.category(c) != 'Mn')
        # Canonical reordering only moves marks; compare as multisets of
        # non-Mn characters in order (no non-Mn mark survives in practice).
        assert strip(cp) == want, (hex(cp), strip(cp), want)


def html_entities():
    h5 = html.entities.html5
    names = set(html.entities.name2codepoint) | {'apos', 'AMP', 'COPY', 'GT', 'LT', 'QUOT', 'REG'}
    legacy = {k for k in h5 if not k.endswith(';')}
    assert legacy <= names, legacy - names
    out = []
    for name in sorted(names):
        value = h5[name + ';']
        assert len(value) == 1, name
        out.append((name, ord(value), name in legacy))
    return out


def emit():
    lines = []
    w = lines.append
    w('/* BEGIN GENERATED: data/gen_unicode_tables.py */')
    w('/* Generated by data/gen_unicode_tables.py from Python %s, unicodedata %s.'
      % (sys.version.split()[0], ud.unidata_version))
    w(' * Do not edit by hand; rerun the script (see its docstring). */')
    runs = class_runs()
    w('static const uint32_t uclass[%d] = { /* start << 8 | UC_* flags */' % len(runs))
    for i in range(0, len(runs), 9):
        w('    ' + ' '.join('0x%08X,' % (cp << 8 | f) for cp, f in runs[i:i + 9]))
    w('};')
    lr = lower_runs()
    w('static const struct { uint32_t first, last; uint8_t step; int32_t delta; } ulower[%d] = {' % len(lr))
    for i in range(0, len(lr), 4):
        w('    ' + ' '.join('{0x%05X, 0x%05X, %d, %d},' % r for r in lr[i:i + 4]))
    w('};')
    de = decomp_entries()
    check_decomp(de)
    w('static const uint32_t udecomp[%d][3] = { /* code point, first, second (0 = none) */' % len(de))
    for i in range(0, len(de), 5):
        w('    ' + ' '.join('{0x%05X, 0x%05X, 0x%04X},' % e for e in de[i:i + 5]))
    w('};')
    he = html_entities()
    w('static const struct { const char *name; uint32_t cp; uint8_t legacy; } html_ent[%d] = {' % len(he))
    for i in range(0, len(he), 5):
        w('    ' + ' '.join('{"%s", 0x%04X, %d},' % e for e in he[i:i + 5]))
    w('};')
    w('/* END GENERATED: data/gen_unicode_tables.py */')
    return '\n'.join(lines) + '\n'


def main():
    text = emit()
    if len(sys.argv) == 3 and sys.argv[1] == '--update':
        path = sys.argv[2]
        src = open(path, encoding='utf-8').read()
        begin = src.index('/* BEGIN GENERATED: data/gen_unicode_tables.py */')
        end_marker = '/* END GENERATED: data/gen_unicode_tables.py */\n'
        end = src.index(end_marker) + len(end_marker)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(src[:begin] + text + src[end:])
    else:
        sys.stdout.write(text)


if __name__ == '__main__':
    main()
