/* check_tokenizers.c — the CLIP BPE and BERT WordPiece tokenizers (io.c
 * sections 11–12) against tests/golden/io/tokenizer-{clip,bert}: every case,
 * ids and masks identical. The references are OpenAI's clip.tokenize and
 * Hugging Face's Rust tokenizers (MANIFEST.md §1–2); the texts come from
 * cases.jsonl, the expected rows from the .npy files. Then the equivalences
 * that Python's clean-up implies, malformed files and texts, and the fuzz
 * regressions. */
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "fuzz/fuzz_tok.h"

#define CLIP_DIR "tests/golden/io/tokenizer-clip"
#define BERT_DIR "tests/golden/io/tokenizer-bert"

/* ---- fixtures ----------------------------------------------------------- */

/* The "text" of every line of a cases.jsonl, in file order. */
typedef struct {
    sc_json_doc doc[128];
    const char *text[128];
    size_t len[128];
    int n;
} cases;

static void cases_load(cases *c, const char *rel)
{
    uint8_t *data;
    size_t len;
    sc_err err;
    ck_assert_msg(sc_read_file(sc_test_path(rel), 1 << 20, &data, &len, &err) == SC_OK, "%s", err.msg);
    c->n = 0;
    for (char *p = (char *)data, *end = p + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 0) {
            ck_assert_int_lt(c->n, 128);
            ck_assert_msg(sc_json_parse(&c->doc[c->n], p, n, rel, &err) == SC_OK, "%s", err.msg);
            const sc_json *t = sc_json_get(c->doc[c->n].root, "text");
            ck_assert_msg(t && t->type == SC_JSON_STRING, "%s: case %d has no text", rel, c->n);
            c->text[c->n] = t->str;
            c->len[c->n] = t->len;
            c->n++;
        }
        p += n + 1;
    }
    free(data);
}

static void cases_free(cases *c)
{
    for (int i = 0; i < c->n; i++) sc_json_free(&c->doc[i]);
}

/* An int64 (R, 77) fixture. */
static int64_t *rows_load(const char *rel, int expect_rows)
{
    sc_array a;
    sc_err err;
    ck_assert_msg(sc_npy_read(sc_test_path(rel), &a, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(a.dtype, SC_DT_I64);
    ck_assert_int_eq(a.ndim, 2);
    ck_assert_int_eq(a.shape[0], expect_rows);
    ck_assert_int_eq(a.shape[1], 77);
    return a.data;
}

/* The first difference between two rows, or -1. */
static int row_diff(const int64_t *got, const int64_t *want, int T)
{
    for (int t = 0; t < T; t++)
        if (got[t] != want[t]) return t;
    return -1;
}

/* Encode every case and compare ids (and masks) with the fixture rows. */
static void check_all_cases(sc_tokenizer *tok, const cases *c, const int64_t *want_ids,
                            const int64_t *want_mask, const char *label)
{
    int64_t ids[77], mask[77];
    sc_err err;
    ck_assert_int_eq(sc_tokenizer_max_length(tok), 77);
    for (int i = 0; i < c->n; i++) {
        ck_assert_msg(sc_tokenizer_encode(tok, c->text[i], c->len[i], ids, mask, NULL, NULL, &err) == SC_OK,
                      "%s case %d: %s", label, i, err.msg);
        int t = row_diff(ids, want_ids + i * 77, 77);
        ck_assert_msg(t < 0, "%s case %d ('%s'): id %d is %lld, expected %lld", label, i, c->text[i], t,
                      (long long)ids[t], (long long)want_ids[i * 77 + t]);
        t = row_diff(mask, want_mask + i * 77, 77);
        ck_assert_msg(t < 0, "%s case %d: mask %d is %lld, expected %lld", label, i, t, (long long)mask[t],
                      (long long)want_mask[i * 77 + t]);
    }
}

/* CLIP has no mask fixture: the mask is 1 on the unpadded ids listed in
 * expected_ids.jsonl. Also returns each case's "truncated" flag. */
static int64_t *clip_masks(int n, int *truncated)
{
    cases lines;
    cases_load(&lines, CLIP_DIR "/cases.jsonl"); /* for the count check only */
    ck_assert_int_eq(lines.n, n);
    cases_free(&lines);
    uint8_t *data;
    size_t len;
    sc_err err;
    ck_assert(sc_read_file(sc_test_path(CLIP_DIR "/expected_ids.jsonl"), 1 << 20, &data, &len, &err) == SC_OK);
    int64_t *mask = calloc((size_t)n * 77, sizeof *mask);
    int i = 0;
    for (char *p = (char *)data, *end = p + len; p < end && i < n;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
        sc_json_doc doc;
        ck_assert_msg(sc_json_parse(&doc, p, k, "expected_ids.jsonl", &err) == SC_OK, "%s", err.msg);
        const sc_json *ids = sc_json_get(doc.root, "ids");
        ck_assert(ids && ids->type == SC_JSON_ARRAY && ids->len <= 77);
        for (size_t t = 0; t < ids->len; t++) mask[i * 77 + (int)t] = 1;
        truncated[i] = sc_json_get_bool(doc.root, "truncated", -1);
        sc_json_free(&doc);
        i++;
        p += k + 1;
    }
    ck_assert_int_eq(i, n);
    free(data);
    return mask;
}

/* ---- CLIP: the golden cases through each file layout ------------------- */

static void check_clip(sc_tokenizer *tok, const char *label)
{
    cases c;
    cases_load(&c, CLIP_DIR "/cases.jsonl");
    int64_t *want = rows_load(CLIP_DIR "/expected_ids.npy", c.n);
    int truncated[128];
    int64_t *mask = clip_masks(c.n, truncated);
    check_all_cases(tok, &c, want, mask, label);
    /* The truncation flag agrees with the reference's. */
    for (int i = 0; i < c.n; i++) {
        int64_t ids[77];
        int n, trunc;
        sc_err err;
        ck_assert(sc_tokenizer_encode(tok, c.text[i], c.len[i], ids, NULL, &n, &trunc, &err) == SC_OK);
        ck_assert_msg(trunc == truncated[i], "%s case %d: truncated %d, expected %d", label, i, trunc,
                      truncated[i]);
    }
    free(want);
    free(mask);
    cases_free(&c);
}

START_TEST(test_clip_merges_txt)
{
    /* merges.txt alone: the vocabulary is built from the merges as OpenAI does. */
    sc_tokenizer *tok;
    sc_err err;
    ck_assert_msg(sc_tokenizer_load_bpe(&tok, sc_test_path(CLIP_DIR "/merges.txt"), NULL, NULL, &err) == SC_OK,
                  "%s", err.msg);
    ck_assert_int_eq(sc_tokenizer_kind(tok), SC_TOK_BPE);
    ck_assert_int_eq(sc_tokenizer_vocab_size(tok), 49408);
    ck_assert_int_eq(sc_tokenizer_id(tok, "<|endoftext|>"), 49407);
    ck_assert_str_eq(sc_tokenizer_token(tok, 40862), "melanoma</w>");
    ck_assert_ptr_null(sc_tokenizer_token(tok, 49408));
    check_clip(tok, "merges.txt");
    sc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_clip_hf_directory)
{
    /* The directory holds vocab.json + merges.txt: Hugging Face's layout. */
    sc_tokenizer *tok;
    sc_err err;
    ck_assert_msg(sc_tokenizer_load(&tok, sc_test_path(CLIP_DIR), NULL, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(sc_tokenizer_vocab_size(tok), 49408);
    check_clip(tok, "vocab.json+merges.txt");
    sc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_clip_openai_gz)
{
    sc_tokenizer *tok;
    sc_err err;
    const char *gz = sc_test_path(CLIP_DIR "/bpe_simple_vocab_16e6.txt.gz");
    ck_assert_msg(sc_tokenizer_load_bpe(&tok, gz, NULL, NULL, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(sc_tokenizer_vocab_size(tok), 49408);
    check_clip(tok, "bpe_simple_vocab_16e6.txt.gz");
    sc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_clip_hf_padding)
{
    /* Hugging Face's CLIPTokenizer pads with <|endoftext|>: the same rows
     * with every 0 after the first EOT replaced by 49407. */
    sc_tok_options opt = sc_tok_defaults();
    opt.pad_id = 49407;
    sc_tokenizer *tok;
    sc_err err;
    ck_assert(sc_tokenizer_load_bpe(&tok, sc_test_path(CLIP_DIR "/merges.txt"), NULL, &opt, &err) == SC_OK);
    cases c;
    cases_load(&c, CLIP_DIR "/cases.jsonl");
    int64_t *want = rows_load(CLIP_DIR "/expected_ids.npy", c.n);
    for (int i = 0; i < c.n; i++) {
        int64_t ids[77];
        int n;
        ck_assert(sc_tokenizer_encode(tok, c.text[i], c.len[i], ids, NULL, &n, NULL, &err) == SC_OK);
        for (int t = 0; t < 77; t++) {
            int64_t w = t >= n ? 49407 : want[i * 77 + t];
            ck_assert_msg(ids[t] == w, "case %d position %d: %lld, expected %lld", i, t, (long long)ids[t],
                          (long long)w);
        }
    }
    free(want);
    cases_free(&c);
    sc_tokenizer_free(tok);
}
END_TEST

/* ---- BERT --------------------------------------------------------------- */

static void check_bert(sc_tokenizer *tok, const char *ids_rel, const char *mask_rel, const char *label)
{
    cases c;
    cases_load(&c, BERT_DIR "/cases.jsonl");
    int64_t *want = rows_load(ids_rel, c.n), *mask = rows_load(mask_rel, c.n);
    check_all_cases(tok, &c, want, mask, label);
    free(want);
    free(mask);
    cases_free(&c);
}

START_TEST(test_bert_lower_directory)
{
    /* tokenizer_config.json says do_lower_case: true (what MedCLIP runs). */
    sc_tokenizer *tok;
    sc_err err;
    ck_assert_msg(sc_tokenizer_load(&tok, sc_test_path(BERT_DIR), NULL, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(sc_tokenizer_kind(tok), SC_TOK_WORDPIECE);
    ck_assert_int_eq(sc_tokenizer_vocab_size(tok), 28996);
    check_bert(tok, BERT_DIR "/input_ids_lower.npy", BERT_DIR "/attention_mask_lower.npy", "lower");
    sc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_bert_lower_by_default)
{
    /* Bio_ClinicalBERT ships no tokenizer_config.json: lower case is the
     * default, as in Hugging Face. */
    sc_tokenizer *tok;
    sc_err err;
    const char *vocab = sc_test_path(BERT_DIR "/vocab.txt");
    ck_assert(sc_tokenizer_load_wordpiece(&tok, vocab, NULL, NULL, &err) == SC_OK);
    check_bert(tok, BERT_DIR "/input_ids_lower.npy", BERT_DIR "/attention_mask_lower.npy", "default");
    sc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_bert_cased)
{
    sc_tok_options opt = sc_tok_defaults();
    opt.lower_case = 0;
    sc_tokenizer *tok;
    sc_err err;
    ck_assert(sc_tokenizer_load(&tok, sc_test_path(BERT_DIR), &opt, &err) == SC_OK);
    check_bert(tok, BERT_DIR "/input_ids_cased.npy", BERT_DIR "/attention_mask_cased.npy", "cased");
    sc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_bert_token_strings)
{
    /* expected.jsonl lists the token strings of each lower-case row. */
    sc_tokenizer *tok;
    sc_err err;
    ck_assert(sc_tokenizer_load(&tok, sc_test_path(BERT_DIR), NULL, &err) == SC_OK);
    cases c;
    cases_load(&c, BERT_DIR "/cases.jsonl");
    cases want;
    uint8_t *data;
    size_t len;
    ck_assert(sc_read_file(sc_test_path(BERT_DIR "/expected.jsonl"), 1 << 20, &data, &len, &err) == SC_OK);
    int i = 0;
    for (char *p = (char *)data, *end = p + len; p < end && i < c.n; i++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
        ck_assert(sc_json_parse(&want.doc[0], p, k, "expected.jsonl", &err) == SC_OK);
        const sc_json *tokens = sc_json_get(sc_json_get(want.doc[0].root, "lower"), "tokens");
        ck_assert(tokens && tokens->type == SC_JSON_ARRAY);
        int64_t ids[77];
        int n;
        ck_assert(sc_tokenizer_encode(tok, c.text[i], c.len[i], ids, NULL, &n, NULL, &err) == SC_OK);
        ck_assert_int_eq(n, (int)tokens->len);
        for (int t = 0; t < n; t++)
            ck_assert_str_eq(sc_tokenizer_token(tok, ids[t]), tokens->items[t]->str);
        sc_json_free(&want.doc[0]);
        p += k + 1;
    }
    ck_assert_int_eq(i, c.n);
    free(data);
    cases_free(&c);
    sc_tokenizer_free(tok);
}
END_TEST

/* ---- equivalences that follow from the reference algorithms ------------ */

/* Two texts that the reference turns into the same ids. */
static void same_ids(sc_tokenizer *tok, const char *a, const char *b)
{
    int64_t ia[77], ib[77];
    sc_err err;
    ck_assert_msg(sc_tokenizer_encode(tok, a, strlen(a), ia, NULL, NULL, NULL, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_tokenizer_encode(tok, b, strlen(b), ib, NULL, NULL, NULL, &err) == SC_OK, "%s", err.msg);
    int t = row_diff(ia, ib, 77);
    ck_assert_msg(t < 0, "'%s' and '%s' differ at %d: %lld vs %lld", a, b, t, (long long)ia[t],
                  (long long)ib[t]);
}

START_TEST(test_clip_cleanup_rules)
{
    sc_tokenizer *tok;
    sc_err err;
    ck_assert(sc_tokenizer_load_bpe(&tok, sc_test_path(CLIP_DIR "/merges.txt"), NULL, NULL, &err) == SC_OK);
    /* html.unescape twice; numeric forms; the HTML5 repairs. */
    same_ids(tok, "a &amp;lt; b", "a < b");
    same_ids(tok, "&#39;s &#x27;t", "'s 't");
    same_ids(tok, "&#128; &#x80", "\xE2\x82\xAC \xE2\x82\xAC");        /* Windows-1252 € */
    same_ids(tok, "x&#0;y", "x\xEF\xBF\xBDy");                          /* NUL → U+FFFD */
    same_ids(tok, "x&#1;y &#99999999999999999999;", "xy \xEF\xBF\xBD"); /* dropped; too large */
    same_ids(tok, "&notit; &ampx &eacute;", "\xC2\xACit; &x \xC3\xA9");  /* legacy prefixes */
    same_ids(tok, "&Xyz; &notarealname;", "&xyz; \xC2\xAC" "arealname;");   /* unknown; legacy prefix */
    /* white space: \s collapses (incl. U+3000), strip() also drops U+001C. */
    same_ids(tok, "\x1c  a \xE3\x80\x80\t b\n", "a b");
    /* lower(): İ → i + U+0307, final sigma, and ſ matching 's under IGNORECASE. */
    same_ids(tok, "\xC4\xB0", "i\xCC\x87");
    same_ids(tok, "\xCE\x9F\xCE\x94\xCE\x9F\xCE\xA3", "\xCE\xBF\xCE\xB4\xCE\xBF\xCF\x82"); /* ΟΔΟΣ → οδος */
    same_ids(tok, "\xCE\xA3\xCE\x91", "\xCF\x83\xCE\xB1");                                   /* ΣΑ → σα */
    same_ids(tok, "it'\xC5\xBF", "it '\xC5\xBF");
    /* A literal <|endoftext|> in the text is the special token. */
    int64_t ids[77];
    int n;
    ck_assert(sc_tokenizer_encode(tok, "a <|endoftext|>", 15, ids, NULL, &n, NULL, &err) == SC_OK);
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(ids[2], 49407);
    /* A name stops at NUL, which is not a name character: "&amp\0y" is
     * "&" + "\0y" (a bug found by comparing with Python on random text). */
    int64_t with_nul[77], expect[77];
    ck_assert(sc_tokenizer_encode(tok, "x &amp\0y", 9, with_nul, NULL, NULL, NULL, &err) == SC_OK);
    ck_assert(sc_tokenizer_encode(tok, "x &\0y", 6, expect, NULL, NULL, NULL, &err) == SC_OK);
    ck_assert_int_eq(row_diff(with_nul, expect, 77), -1);
    /* U+0345 belongs to no class of the pattern: skipped like a space. */
    same_ids(tok, "a\xCD\x85" "b", "a b");
    sc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_bert_normalizer_rules)
{
    sc_tokenizer *tok;
    sc_err err;
    ck_assert(sc_tokenizer_load(&tok, sc_test_path(BERT_DIR), NULL, &err) == SC_OK);
    same_ids(tok, "Caf\xC3\xA9 \xC3\x85ngstr\xC3\xB6m", "cafe angstrom");   /* NFD, drop Mn, lower */
    same_ids(tok, "\xE2\x84\xAA" "elvin", "kelvin");                           /* K (U+212A) → K → k */
    same_ids(tok, "a\xE2\x80\x8B" "b\xC2\xAD" "c", "abc");                      /* Cf vanishes */
    same_ids(tok, "a\xE2\x80\xA8" "b", "a b");                                  /* U+2028 is white space */
    same_ids(tok, "x\xE8\x83\xB8y", "x \xE8\x83\xB8 y");                        /* CJK split */
    same_ids(tok, "\xED\x9D\x89", "\xE1\x84\x92\xE1\x85\xB2\xE1\x86\xBC");       /* 흉 → ᄒ ᅲ ᆼ */
    /* Private use (Co) vanishes but an unassigned code point (Cn) stays and
     * makes its word [UNK]: what Hugging Face's Rust normalizer does (probed
     * with the fixtures' reference, tokenizers 0.6.0), not Google's. */
    same_ids(tok, "a\xEE\x80\x80" "b", "ab");
    int64_t ids[77];
    int n;
    ck_assert(sc_tokenizer_encode(tok, "a\xCD\xB8" "b", 4, ids, NULL, &n, NULL, &err) == SC_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(ids[1], 100);
    ck_assert(sc_tokenizer_encode(tok, "x\xE2\x98\x83y", 5, ids, NULL, &n, NULL, &err) == SC_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(ids[1], 100); /* [UNK]: the remainder "☃y" matches nothing */
    sc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_max_length_and_truncation)
{
    sc_tok_options opt = sc_tok_defaults();
    opt.max_length = 5;
    sc_tokenizer *tok;
    sc_err err;
    ck_assert(sc_tokenizer_load(&tok, sc_test_path(BERT_DIR), &opt, &err) == SC_OK);
    int64_t ids[5], mask[5];
    int n, trunc;
    /* "no acute process ." → [CLS] no acute process [SEP]: the end stays last. */
    ck_assert(sc_tokenizer_encode(tok, "No acute process.", 17, ids, mask, &n, &trunc, &err) == SC_OK);
    int64_t want[5] = {101, 1185, 12104, 1965, 102};
    ck_assert_int_eq(row_diff(ids, want, 5), -1);
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(trunc, 1);
    ck_assert(sc_tokenizer_encode(tok, "", 0, ids, mask, &n, &trunc, &err) == SC_OK);
    int64_t empty[5] = {101, 102, 0, 0, 0}, empty_mask[5] = {1, 1, 0, 0, 0};
    ck_assert_int_eq(row_diff(ids, empty, 5), -1);
    ck_assert_int_eq(row_diff(mask, empty_mask, 5), -1);
    ck_assert_int_eq(trunc, 0);
    const char *texts[2] = {"No acute process.", ""};
    int64_t batch[10], batch_mask[10];
    ck_assert(sc_tokenizer_encode_batch(tok, texts, 2, batch, batch_mask, &err) == SC_OK);
    ck_assert_int_eq(row_diff(batch, want, 5), -1);
    ck_assert_int_eq(row_diff(batch + 5, empty, 5), -1);
    sc_tokenizer_free(tok);
}
END_TEST

/* ---- bad input ---------------------------------------------------------- */

static const char *write_tmp(const char *name, const char *data, size_t n)
{
    static char path[8][1024];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, sizeof path[0], "%s/%s", sc_test_tmpdir(), name);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
    return p;
}

/* Loading must fail with `code` and a message containing `part`. */
static void bpe_fails(const char *merges, sc_status code, const char *part)
{
    sc_tokenizer *tok = (sc_tokenizer *)1;
    sc_err err = {{0}};
    sc_status s = sc_tokenizer_parse_bpe(&tok, merges, strlen(merges), -1, NULL, "m.txt", NULL, &err);
    ck_assert_msg(s == code, "merges '%s': status %d (%s)", merges, s, err.msg);
    ck_assert_ptr_null(tok);
    ck_assert_msg(strstr(err.msg, part) && strstr(err.msg, "m.txt"), "message '%s' lacks '%s'", err.msg, part);
}

static void wordpiece_fails(const char *vocab, sc_status code, const char *part)
{
    sc_tokenizer *tok = (sc_tokenizer *)1;
    sc_err err = {{0}};
    sc_status s = sc_tokenizer_parse_wordpiece(&tok, vocab, strlen(vocab), "v.txt", NULL, &err);
    ck_assert_msg(s == code, "vocab '%s': status %d (%s)", vocab, s, err.msg);
    ck_assert_ptr_null(tok);
    ck_assert_msg(strstr(err.msg, part) && strstr(err.msg, "v.txt"), "message '%s' lacks '%s'", err.msg, part);
}

START_TEST(test_bad_merges)
{
    bpe_fails("", SC_EFORMAT, "no merges");
    bpe_fails("#version: 0.2\n", SC_EFORMAT, "no merges");
    bpe_fails("#version: 0.2\nt h\nthe\n", SC_EFORMAT, "line 3 is not two tokens");
    bpe_fails("#version: 0.2\nt h\nt  h\n", SC_EFORMAT, "line 3 is not two tokens");
    bpe_fails("#version: 0.2\nt h e\n", SC_EFORMAT, "line 2 is not two tokens");
    bpe_fails("#version: 0.2\nt h\n\ni n\n", SC_EFORMAT, "line 3 is empty");
    bpe_fails("#version: 0.2\nt h\nt h\n", SC_EFORMAT, "token 513 ('th') repeats token 512");
    bpe_fails("#version: 0.2\nt h\nth x\nt hx\n", SC_EFORMAT, "token 514 ('thx') repeats token 513");
    bpe_fails("#version: 0.2\nt zz\n", SC_EFORMAT, "not in the vocabulary");
    /* A good tiny file loads (empty lines may end it). */
    sc_tokenizer *tok;
    sc_err err;
    const char *ok = "#version: 0.2\nt h\nth e</w>\n\n\n";
    ck_assert(sc_tokenizer_parse_bpe(&tok, ok, strlen(ok), -1, NULL, "ok", NULL, &err) == SC_OK);
    int64_t ids[77];
    ck_assert(sc_tokenizer_encode(tok, "the", 3, ids, NULL, NULL, NULL, &err) == SC_OK);
    ck_assert_int_eq(ids[1], 513); /* 512 + rank 1: "the</w>" */
    sc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_bad_vocab_json)
{
    const char *merges = "#version: 0.2\nt h\n";
    sc_json_doc doc;
    sc_err err;
    sc_tokenizer *tok;
    const char *bad[] = {"[1, 2]", "{\"a\": 0, \"b\": 0}", "{\"a\": 1}", "{\"a\": 0.5}", "{\"a\": \"0\"}",
                         "{\"t\": 0, \"h\": 1, \"th\": 2}"};
    const char *part[] = {"not a JSON object", "two tokens", "no id", "no id", "no id", "has no token"};
    for (int i = 0; i < 6; i++) {
        ck_assert(sc_json_parse(&doc, bad[i], strlen(bad[i]), "v.json", &err) == SC_OK);
        sc_status s = sc_tokenizer_parse_bpe(&tok, merges, strlen(merges), -1, doc.root, "m.txt", NULL, &err);
        ck_assert_int_eq(s, SC_EFORMAT);
        ck_assert_msg(strstr(err.msg, part[i]), "'%s': message '%s'", bad[i], err.msg);
        sc_json_free(&doc);
    }
}
END_TEST

START_TEST(test_bad_vocab_txt)
{
    wordpiece_fails("", SC_EFORMAT, "empty vocabulary");
    wordpiece_fails("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n##s\nthe\n", SC_EFORMAT,
                    "line 7 repeats the token 'the' of line 5");
    wordpiece_fails("[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n", SC_EFORMAT, "line 3 is empty");
    wordpiece_fails("[PAD]\n[UNK]\n[SEP]\n", SC_EFORMAT, "no [CLS] token");
    /* CRLF line ends and trailing spaces are not part of the tokens. */
    sc_tokenizer *tok;
    sc_err err;
    const char *ok = "[PAD]\r\n[UNK] \r\n[CLS]\n[SEP]\nlung\n##s\n";
    ck_assert(sc_tokenizer_parse_wordpiece(&tok, ok, strlen(ok), "ok", NULL, &err) == SC_OK);
    int64_t ids[77], want[5] = {2, 4, 5, 3, 0};
    ck_assert(sc_tokenizer_encode(tok, "Lungs", 5, ids, NULL, NULL, NULL, &err) == SC_OK);
    ck_assert_int_eq(row_diff(ids, want, 5), -1);
    sc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_bad_files_and_options)
{
    sc_tokenizer *tok = (sc_tokenizer *)1;
    sc_err err;
    const char *dir = sc_test_tmpdir();
    ck_assert_int_eq(sc_tokenizer_load(&tok, dir, NULL, &err), SC_EIO);
    ck_assert_ptr_null(tok);
    ck_assert_msg(strstr(err.msg, "no tokenizer files"), "%s", err.msg);
    ck_assert_int_eq(sc_tokenizer_load_bpe(&tok, "/nonexistent/merges.txt", NULL, NULL, &err), SC_EIO);
    ck_assert_msg(strstr(err.msg, "/nonexistent/merges.txt"), "%s", err.msg);
    const char *empty = write_tmp("vocab.txt", "", 0);
    ck_assert_int_eq(sc_tokenizer_load_wordpiece(&tok, empty, NULL, NULL, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, empty), "%s", err.msg);
    const char *gz = write_tmp("bad.gz", "\x1f\x8b\x08\x00garbage", 12);
    ck_assert_int_ne(sc_tokenizer_load_bpe(&tok, gz, NULL, NULL, &err), SC_OK);
    const char *cfg = write_tmp("tokenizer_config.json", "{\"do_lower_case\": tru", 21);
    ck_assert_int_eq(sc_tokenizer_load_wordpiece(&tok, sc_test_path(BERT_DIR "/vocab.txt"), cfg, NULL, &err),
                     SC_EFORMAT);
    sc_tok_options opt = sc_tok_defaults();
    opt.max_length = 1;
    ck_assert_int_eq(sc_tokenizer_load(&tok, sc_test_path(BERT_DIR), &opt, &err), SC_EARG);
    opt = sc_tok_defaults();
    opt.pad_id = 28996;
    ck_assert_int_eq(sc_tokenizer_load(&tok, sc_test_path(BERT_DIR), &opt, &err), SC_EARG);
    ck_assert_msg(strstr(err.msg, "pad id 28996"), "%s", err.msg);
}
END_TEST

START_TEST(test_invalid_utf8)
{
    /* Python strings cannot hold these: each is an error naming the byte. */
    static const struct {
        const char *text;
        size_t len, at;
    } bad[] = {
        {"ab\xff", 3, 2},            /* not a UTF-8 byte */
        {"\x80", 1, 0},              /* lone continuation */
        {"a\xc3", 2, 1},             /* truncated sequence */
        {"\xc0\xaf", 2, 0},          /* overlong '/' */
        {"\xe0\x80\xaf", 3, 0},      /* overlong */
        {"x\xed\xa0\x80", 4, 1},     /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 4, 0},  /* above U+10FFFF */
        {"\xe2\x82", 2, 0},          /* truncated € */
    };
    sc_tokenizer *toks[2];
    sc_err err;
    ck_assert(sc_tokenizer_load_bpe(&toks[0], sc_test_path(CLIP_DIR "/merges.txt"), NULL, NULL, &err) == SC_OK);
    ck_assert(sc_tokenizer_load(&toks[1], sc_test_path(BERT_DIR), NULL, &err) == SC_OK);
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            int64_t ids[77];
            ck_assert_int_eq(sc_tokenizer_encode(toks[k], bad[i].text, bad[i].len, ids, NULL, NULL, NULL, &err),
                             SC_EFORMAT);
            char want[64];
            snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", bad[i].at);
            ck_assert_msg(strstr(err.msg, want), "case %zu: '%s'", i, err.msg);
        }
        const char *texts[2] = {"fine", "bad \xff"};
        int64_t ids[2 * 77];
        ck_assert_int_eq(sc_tokenizer_encode_batch(toks[k], texts, 2, ids, NULL, &err), SC_EFORMAT);
        ck_assert_msg(strstr(err.msg, "text 1: invalid UTF-8 at byte 4"), "%s", err.msg);
        sc_tokenizer_free(toks[k]);
    }
}
END_TEST

/* ---- fuzz regressions --------------------------------------------------- */

/* The harness bodies in the shape of a replay target. */
static int replay_bpe(const uint8_t *data, size_t size)
{
    fuzz_tok_bpe_one(data, size);
    return 0;
}

static int replay_wordpiece(const uint8_t *data, size_t size)
{
    fuzz_tok_wordpiece_one(data, size);
    return 0;
}

START_TEST(test_fuzz_regressions)
{
    /* Every input the fuzzers once crashed on must now pass through the
     * same harness code cleanly. */
    int n = sc_test_replay_dir("tests/fuzz/regress/bpe", replay_bpe, 0);
    n += sc_test_replay_dir("tests/fuzz/regress/wordpiece", replay_wordpiece, 0);
    ck_assert_int_ge(n, 0);
    fuzz_tok_cleanup();
}
END_TEST

/* ---- `scale tokenize --in FILE`: errors name the file and line -------------- */

/* Run `scale ARGS` in dir; its exit status (read back from a file, since
 * system()'s own needs POSIX's macros to read) and its stderr in err_text. */
static int run_tokenize(const char *dir, const char *args, char *err_text, size_t n)
{
    char cmd[4096], path[600];
    snprintf(cmd, sizeof cmd, "%s %s 2>%s/stderr >/dev/null; echo $? >%s/status", sc_test_path("scale"), args, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/stderr", dir);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t got = fread(err_text, 1, n - 1, f);
    err_text[got] = '\0';
    fclose(f);
    snprintf(path, sizeof path, "%s/status", dir);
    f = fopen(path, "rb");
    int status = -1;
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%d", &status), 1);
    fclose(f);
    return status;
}

START_TEST(test_cli_in_file_errors)
{
    const char *dir = sc_test_tmpdir();
    char path[600], args[2000], err_text[1024];
    snprintf(path, sizeof path, "%s/texts.txt", dir);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs("a photo of a mole\r\n\nb\xff" "ad\n", f);   /* line 3 holds 0xFF at its byte 1 */
    fclose(f);
    const char *model = sc_test_path("data/tiny-vlm");
    char want[700];
    snprintf(want, sizeof want, "scale tokenize: %s:3: invalid UTF-8 at byte 1 (0xFF)\n", path);
    snprintf(args, sizeof args, "tokenize --model %s --in %s", model, path);
    ck_assert_int_eq(run_tokenize(dir, args, err_text, sizeof err_text), 1);
    ck_assert_str_eq(err_text, want);
    snprintf(args, sizeof args, "tokenize --model %s --explain --in %s", model, path);
    ck_assert_int_eq(run_tokenize(dir, args, err_text, sizeof err_text), 1);
    ck_assert_str_eq(err_text, want);
    /* texts given as arguments are numbered from 0, as before */
    snprintf(args, sizeof args, "tokenize --model %s ok $(printf 'b\\377ad')", model);
    ck_assert_int_eq(run_tokenize(dir, args, err_text, sizeof err_text), 1);
    ck_assert_str_eq(err_text, "scale tokenize: text 1: invalid UTF-8 at byte 1 (0xFF)\n");
    /* a file that is not there: a message, not a crash */
    snprintf(args, sizeof args, "tokenize --model %s --in %s/missing.txt", model, dir);
    ck_assert_int_eq(run_tokenize(dir, args, err_text, sizeof err_text), 1);
    ck_assert_msg(strstr(err_text, "missing.txt: cannot open"), "%s", err_text);
}
END_TEST

Suite *suite_tokenizers(void)
{
    Suite *s = suite_create("tokenizers");
    TCase *golden = tcase_create("tokenizer_golden");
    tcase_set_timeout(golden, 60);
    tcase_add_test(golden, test_clip_merges_txt);
    tcase_add_test(golden, test_clip_hf_directory);
    tcase_add_test(golden, test_clip_openai_gz);
    tcase_add_test(golden, test_clip_hf_padding);
    tcase_add_test(golden, test_bert_lower_directory);
    tcase_add_test(golden, test_bert_lower_by_default);
    tcase_add_test(golden, test_bert_cased);
    tcase_add_test(golden, test_bert_token_strings);
    suite_add_tcase(s, golden);
    TCase *rules = tcase_create("tokenizer_rules");
    tcase_set_timeout(rules, 60);
    tcase_add_test(rules, test_clip_cleanup_rules);
    tcase_add_test(rules, test_bert_normalizer_rules);
    tcase_add_test(rules, test_max_length_and_truncation);
    suite_add_tcase(s, rules);
    TCase *bad = tcase_create("tokenizer_bad_input");
    tcase_set_timeout(bad, 60);
    tcase_add_test(bad, test_bad_merges);
    tcase_add_test(bad, test_bad_vocab_json);
    tcase_add_test(bad, test_bad_vocab_txt);
    tcase_add_test(bad, test_bad_files_and_options);
    tcase_add_test(bad, test_invalid_utf8);
    tcase_add_test(bad, test_fuzz_regressions);
    suite_add_tcase(s, bad);
    TCase *cli = tcase_create("tokenizer_cli");
    tcase_set_timeout(cli, 60);
    tcase_add_test(cli, test_cli_in_file_errors);
    suite_add_tcase(s, cli);
    return s;
}
