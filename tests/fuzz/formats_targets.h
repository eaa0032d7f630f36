/* formats_targets.h — what the format fuzzers run on one input, shared by
 * the libFuzzer harnesses (fuzz_json.c, fuzz_npy.c, fuzz_safetensors.c,
 * fuzz_zip.c) and the Check tests that replay tests/fuzz/regress/<name>/.
 *
 * Each target parses the bytes and, when that succeeds, uses everything
 * the parser handed back — walks every JSON value, converts every array
 * element and every weight tensor — so an out-of-bounds pointer or a
 * lying size shows up under AddressSanitizer. A broken promise of the API
 * (e.g. an error that still returns a value) aborts. */
#ifndef FORMATS_TARGETS_H
#define FORMATS_TARGETS_H

#include <stdlib.h>
#include <string.h>

#include "scale.h"

/* Visit every value; returns a count so the walk cannot be optimised away. */
static inline size_t fuzz_json_walk(const sc_json *v, int depth)
{
    if (depth > SC_JSON_MAX_DEPTH) abort();
    size_t n = 1;
    if (v->type == SC_JSON_STRING && (v->str == NULL || v->str[v->len] != 0)) abort();
    if (v->type == SC_JSON_ARRAY || v->type == SC_JSON_OBJECT)
        for (size_t i = 0; i < v->len; i++) {
            if (v->type == SC_JSON_OBJECT && (sc_json_get(v, v->keys[i]) == NULL)) abort();
            n += fuzz_json_walk(v->items[i], depth + 1);
        }
    return n;
}

static inline int fuzz_json_one(const uint8_t *data, size_t size)
{
    sc_json_doc doc;
    sc_err err;
    if (sc_json_parse(&doc, (const char *)data, size, "fuzz", &err) == SC_OK) {
        if (fuzz_json_walk(doc.root, 1) > size) abort(); /* a value per byte at most */
        sc_json_free(&doc);
    } else if (doc.root != NULL) {
        abort();
    }
    return 0;
}

static inline int fuzz_npy_one(const uint8_t *data, size_t size)
{
    sc_array a;
    sc_err err;
    if (sc_npy_parse(data, size, "fuzz", &a, &err) != SC_OK) {
        if (a.data != NULL) abort();
        return 0;
    }
    if (a.nbytes != (size_t)sc_array_numel(&a) * sc_dtype_size(a.dtype)) abort();
    float *f;
    int64_t *i;
    if (sc_array_to_f32(&a, &f, &err) == SC_OK) free(f);
    if (sc_array_to_i64(&a, &i, &err) == SC_OK) free(i);
    sc_array_free(&a);
    return 0;
}

/* Safetensors and PyTorch checkpoints both enter through sc_weights_parse. */
static inline int fuzz_weights_one(const uint8_t *data, size_t size)
{
    sc_weights *w;
    sc_err err;
    if (sc_weights_parse(&w, data, size, "fuzz", &err) != SC_OK) {
        if (w != NULL) abort();
        return 0;
    }
    for (int k = 0; k < sc_weights_count(w); k++) {
        const sc_weight *t = sc_weights_at(w, k);
        if (k > 0 && strcmp(sc_weights_at(w, k - 1)->name, t->name) >= 0) abort(); /* sorted, unique */
        if (sc_weights_find(w, t->name) != t) abort();
        if (t->numel > (1 << 22)) continue; /* a huge zero-stride view: skip the work, not the check above */
        float *x = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *x);
        if (!x) abort();
        sc_weight_to_f32(t, x);
        free(x);
    }
    sc_weights_close(w);
    return 0;
}

#endif
