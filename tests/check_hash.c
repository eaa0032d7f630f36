/* check_hash.c — SHA-256 (io.c section 15) against the examples published
 * with FIPS 180-4 (NIST's "Cryptographic Standards and Guidelines:
 * Examples with Intermediate Values", SHA-256): one block, two blocks, the
 * 896-bit message, a million 'a', and the empty message. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "check_util.h"

static const struct {
    const char *message; /* NULL: one million 'a' */
    const char *digest;
} vectors[] = {
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    {NULL, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
};

static char *vector_message(int i, size_t *len)
{
    if (vectors[i].message) {
        *len = strlen(vectors[i].message);
        return strdup(vectors[i].message);
    }
    *len = 1000000;
    char *m = malloc(*len);
    memset(m, 'a', *len);
    return m;
}

static void hex_of(const void *data, size_t len, char hex[65])
{
    sc_sha256 s;
    uint8_t d[32];
    sc_sha256_init(&s);
    sc_sha256_update(&s, data, len);
    sc_sha256_final(&s, d);
    sc_sha256_hex(d, hex);
}

START_TEST(test_fips_examples)
{
    size_t len;
    char *m = vector_message(_i, &len), hex[65];
    hex_of(m, len, hex);
    ck_assert_str_eq(hex, vectors[_i].digest);
    free(m);
}
END_TEST

/* The same digests when the message arrives in pieces of every size from
 * 1 to 130 bytes (crossing block boundaries at every offset). */
START_TEST(test_pieces)
{
    size_t len;
    char *m = vector_message(3, &len), hex[65];
    for (size_t piece = 1; piece <= 130; piece++) {
        sc_sha256 s;
        uint8_t d[32];
        sc_sha256_init(&s);
        for (size_t at = 0; at < len; at += piece) sc_sha256_update(&s, m + at, len - at < piece ? len - at : piece);
        sc_sha256_final(&s, d);
        sc_sha256_hex(d, hex);
        ck_assert_msg(!strcmp(hex, vectors[3].digest), "pieces of %zu bytes: %s", piece, hex);
    }
    free(m);
}
END_TEST

/* Messages of 55, 56 and 64 bytes need one or two padding blocks; their
 * digests are those of sha256sum (GNU coreutils). */
START_TEST(test_padding_edges)
{
    static const struct {
        size_t len;
        const char *digest;
    } cases[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
    };
    char m[64], hex[65];
    memset(m, 'a', sizeof m);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hex_of(m, cases[i].len, hex);
        ck_assert_msg(!strcmp(hex, cases[i].digest), "%zu bytes of 'a': %s", cases[i].len, hex);
    }
}
END_TEST

START_TEST(test_file)
{
    char path[512], hex[65];
    snprintf(path, sizeof path, "%s/abc.txt", sc_test_tmpdir());
    sc_err err;
    ck_assert(sc_write_file_atomic(path, "abc", 3, &err) == SC_OK);
    int64_t bytes = -1;
    ck_assert_msg(sc_sha256_file(path, hex, &bytes, &err) == SC_OK, "%s", err.msg);
    ck_assert_str_eq(hex, vectors[1].digest);
    ck_assert_int_eq(bytes, 3);
    ck_assert_int_eq(sc_sha256_file("/nonexistent/file", hex, NULL, &err), SC_EIO);
    ck_assert(strstr(err.msg, "/nonexistent/file: cannot open") != NULL);
}
END_TEST

Suite *suite_hash(void)
{
    Suite *s = suite_create("hash");
    TCase *tc = tcase_create("sha256");
    tcase_add_loop_test(tc, test_fips_examples, 0, (int)(sizeof vectors / sizeof vectors[0]));
    tcase_add_test(tc, test_pieces);
    tcase_add_test(tc, test_padding_edges);
    tcase_add_test(tc, test_file);
    suite_add_tcase(s, tc);
    return s;
}
