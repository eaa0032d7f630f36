/* check_json.c — tests for io.c section 2 (JSON, RFC 8259): the RFC's own
 * examples, every escape, surrogate pairs, the number grammar, depth limit,
 * UTF-8 validation, trailing garbage, error positions, and the golden
 * config.json / vocab.json files (values checked against Python's json). */
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "formats_util.h"

/* Parse a NUL-terminated text; returns the status, leaves doc parsed. */
static sc_status parse(sc_json_doc *doc, const char *text, sc_err *err)
{
    return sc_json_parse(doc, text, strlen(text), "t.json", err);
}

/* Parse and expect failure with `says` in the message. */
static void expect_error(const char *text, size_t len, const char *says)
{
    sc_json_doc doc;
    sc_err err = {{0}};
    sc_status s = sc_json_parse(&doc, text, len, "t.json", &err);
    ck_assert_msg(s == SC_EFORMAT, "'%.40s' parsed (status %d)", text, s);
    ck_assert_msg(strstr(err.msg, says) != NULL, "'%.40s': message '%s' lacks '%s'", text, err.msg, says);
    ck_assert_msg(strncmp(err.msg, "t.json: line ", 13) == 0, "message '%s'", err.msg);
    ck_assert_ptr_null(doc.root);
}

static void expect_error_str(const char *text, const char *says)
{
    expect_error(text, strlen(text), says);
}

START_TEST(test_json_rfc8259_examples)
{
    /* RFC 8259 section 13, first example. */
    const char *text =
        "{\n"
        "  \"Image\": {\n"
        "      \"Width\":  800,\n"
        "      \"Height\": 600,\n"
        "      \"Title\":  \"View from 15th Floor\",\n"
        "      \"Thumbnail\": {\n"
        "          \"Url\":    \"http://www.example.com/image/481989943\",\n"
        "          \"Height\": 125,\n"
        "          \"Width\":  100\n"
        "      },\n"
        "      \"Animated\" : false,\n"
        "      \"IDs\": [116, 943, 234, 38793]\n"
        "    }\n"
        "}\n";
    sc_json_doc doc;
    sc_err err;
    ck_assert_msg(parse(&doc, text, &err) == SC_OK, "%s", err.msg);
    const sc_json *img = sc_json_get(doc.root, "Image");
    ck_assert_ptr_nonnull(img);
    ck_assert_int_eq(img->type, SC_JSON_OBJECT);
    ck_assert_uint_eq(img->len, 6);
    ck_assert_str_eq(img->keys[0], "Width");
    ck_assert_double_eq(sc_json_get_number(img, "Width", 0), 800);
    ck_assert_str_eq(sc_json_get_string(img, "Title", ""), "View from 15th Floor");
    ck_assert_int_eq(sc_json_get_bool(img, "Animated", 1), 0);
    const sc_json *thumb = sc_json_get(img, "Thumbnail");
    ck_assert_str_eq(sc_json_get_string(thumb, "Url", ""), "http://www.example.com/image/481989943");
    const sc_json *ids = sc_json_get(img, "IDs");
    ck_assert_int_eq(ids->type, SC_JSON_ARRAY);
    ck_assert_uint_eq(ids->len, 4);
    ck_assert_double_eq(ids->items[3]->number, 38793);
    /* Defaults when missing or of another type. */
    ck_assert_double_eq(sc_json_get_number(img, "Title", -1), -1);
    ck_assert_str_eq(sc_json_get_string(img, "Nope", "d"), "d");
    ck_assert_ptr_null(sc_json_get(ids, "x"));
    sc_json_free(&doc);

    /* Section 13, second example: an array of objects with negative and
     * fractional numbers. */
    text = "[{\"precision\": \"zip\", \"Latitude\": 37.7668, \"Longitude\": -122.3959,"
           " \"Address\": \"\", \"City\": \"SAN FRANCISCO\", \"Zip\": \"94107\"},"
           " {\"precision\": \"zip\", \"Latitude\": 37.371991, \"Longitude\": -122.026020}]";
    ck_assert_int_eq(parse(&doc, text, &err), SC_OK);
    ck_assert_uint_eq(doc.root->len, 2);
    ck_assert_double_eq(sc_json_get_number(doc.root->items[0], "Longitude", 0), -122.3959);
    ck_assert_double_eq(sc_json_get_number(doc.root->items[1], "Latitude", 0), 37.371991);
    ck_assert_uint_eq(sc_json_get(doc.root->items[0], "Address")->len, 0);
    sc_json_free(&doc);

    /* Section 13: scalars are documents too. */
    ck_assert_int_eq(parse(&doc, "\"Hello world!\"", &err), SC_OK);
    ck_assert_str_eq(doc.root->str, "Hello world!");
    sc_json_free(&doc);
    ck_assert_int_eq(parse(&doc, " 42 ", &err), SC_OK);
    ck_assert_double_eq(doc.root->number, 42);
    sc_json_free(&doc);
    ck_assert_int_eq(parse(&doc, "true", &err), SC_OK);
    ck_assert_int_eq(doc.root->type, SC_JSON_BOOL);
    ck_assert_int_eq(doc.root->boolean, 1);
    sc_json_free(&doc);
    ck_assert_int_eq(parse(&doc, "\t\r\nnull\n", &err), SC_OK);
    ck_assert_int_eq(doc.root->type, SC_JSON_NULL);
    sc_json_free(&doc);
    ck_assert_int_eq(parse(&doc, "[[], {}, [[]], {\"a\": {}}]", &err), SC_OK);
    ck_assert_uint_eq(doc.root->len, 4);
    ck_assert_uint_eq(doc.root->items[0]->len, 0);
    ck_assert_int_eq(doc.root->items[1]->type, SC_JSON_OBJECT);
    ck_assert_uint_eq(doc.root->items[2]->items[0]->len, 0);
    ck_assert_int_eq(sc_json_get(doc.root->items[3], "a")->type, SC_JSON_OBJECT);
    sc_json_free(&doc);
}
END_TEST

START_TEST(test_json_string_escapes)
{
    sc_json_doc doc;
    sc_err err;
    ck_assert_int_eq(parse(&doc, "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", &err), SC_OK);
    ck_assert_uint_eq(doc.root->len, 8);
    ck_assert_str_eq(doc.root->str, "\"\\/\b\f\n\r\t");
    sc_json_free(&doc);
    /* \u escapes of 1, 2, 3 bytes, a surrogate pair (U+1F600) and the
     * raw UTF-8 of the same characters. */
    ck_assert_int_eq(parse(&doc, "[\"\\u0041\\u00e9\\u20AC\\uD83D\\uDE00\", \"A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"]",
                           &err), SC_OK);
    ck_assert_str_eq(doc.root->items[0]->str, "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
    ck_assert_str_eq(doc.root->items[1]->str, doc.root->items[0]->str);
    ck_assert_uint_eq(doc.root->items[0]->len, 10);
    sc_json_free(&doc);
    /* U+10FFFF, the last code point, as a pair; and an embedded NUL. */
    ck_assert_int_eq(parse(&doc, "[\"\\uDBFF\\uDFFF\", \"a\\u0000b\"]", &err), SC_OK);
    ck_assert_str_eq(doc.root->items[0]->str, "\xF4\x8F\xBF\xBF");
    ck_assert_uint_eq(doc.root->items[1]->len, 3);
    ck_assert(memcmp(doc.root->items[1]->str, "a\0b", 4) == 0);
    sc_json_free(&doc);
    /* Keys are decoded the same way. */
    ck_assert_int_eq(parse(&doc, "{\"\\u00e9t\\u00e9\": 1}", &err), SC_OK);
    ck_assert_double_eq(sc_json_get_number(doc.root, "\xC3\xA9t\xC3\xA9", 0), 1);
    sc_json_free(&doc);

    expect_error_str("\"\\uD800\"", "high surrogate \\uD800 is not followed by a low surrogate");
    expect_error_str("\"\\uD800\\u0041\"", "not followed by a low surrogate");
    expect_error_str("\"\\uD800\\uD800\"", "not followed by a low surrogate");
    expect_error_str("\"\\uDC00\"", "lone low surrogate");
    expect_error_str("\"\\u12\"", "four hex digits");
    expect_error_str("\"\\u12G4\"", "four hex digits");
    expect_error_str("\"\\x41\"", "invalid escape '\\x'");
    expect_error_str("\"\\'\"", "invalid escape");
    expect_error_str("\"tab\there\"", "control character U+0009");
    expect_error_str("\"abc", "unterminated string");
    expect_error_str("\"abc\\", "unterminated string");
    expect_error_str("['single']", "unexpected character '''");
}
END_TEST

START_TEST(test_json_invalid_utf8)
{
    static const char *bad[] = {
        "\"\xC3\x28\"",         /* bad continuation byte */
        "\"\xC0\xAF\"",         /* overlong '/' */
        "\"\xE0\x80\xAF\"",     /* overlong 3-byte */
        "\"\xED\xA0\x80\"",     /* UTF-8-encoded surrogate U+D800 */
        "\"\xF4\x90\x80\x80\"", /* U+110000 */
        "\"\xF8\x88\x80\x80\x80\"",
        "\"\x80\"",             /* lone continuation byte */
        "\"\xE2\x82\"",         /* truncated, then the quote */
        "\"\xFF\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_error_str(bad[i], "invalid UTF-8");
    /* Truncated at the very end of the input (no closing quote either). */
    expect_error("\"\xF0\x9F\x98", 4, "invalid UTF-8");
    /* Outside strings only ASCII is grammar. */
    expect_error_str("\xC3\xA9", "unexpected byte 0xC3");
    /* A leading byte order mark is skipped; one elsewhere is an error. */
    sc_json_doc doc;
    sc_err err;
    ck_assert_int_eq(parse(&doc, "\xEF\xBB\xBF{\"a\": 1}", &err), SC_OK);
    sc_json_free(&doc);
    expect_error_str(" \xEF\xBB\xBF{}", "unexpected byte 0xEF");
}
END_TEST

START_TEST(test_json_numbers)
{
    static const struct {
        const char *text;
        double value;
    } good[] = {
        {"0", 0}, {"-0", -0.0}, {"1", 1}, {"-12", -12}, {"3.25", 3.25}, {"1e3", 1000}, {"1E+2", 100},
        {"-12.25e-1", -1.225}, {"2.5E-3", 0.0025}, {"1e-400", 0}, /* underflow rounds to 0 */
        {"123456789012345678901234567890", 1.2345678901234568e29},
        {"9007199254740993", 9007199254740992.0}, /* rounds to even, as strtod does */
        {"1e-05", 1e-05}, {"0.1", 0.1},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        sc_json_doc doc;
        sc_err err;
        ck_assert_msg(parse(&doc, good[i].text, &err) == SC_OK, "%s: %s", good[i].text, err.msg);
        ck_assert_int_eq(doc.root->type, SC_JSON_NUMBER);
        ck_assert_msg(doc.root->number == good[i].value, "%s -> %.17g", good[i].text, doc.root->number);
        sc_json_free(&doc);
    }
    /* A number longer than the small stack buffer. */
    char longnum[300];
    memset(longnum, '0', sizeof longnum);
    longnum[0] = '1';
    longnum[1] = '.';
    longnum[sizeof longnum - 1] = 0;
    sc_json_doc doc;
    sc_err err;
    ck_assert_int_eq(parse(&doc, longnum, &err), SC_OK);
    ck_assert_double_eq(doc.root->number, 1.0);
    sc_json_free(&doc);

    expect_error_str("01", "unexpected data after the JSON value");
    expect_error_str("+1", "unexpected character '+'");
    expect_error_str(".5", "unexpected character '.'");
    expect_error_str("1.", "digit after the decimal point");
    expect_error_str("1.e5", "digit after the decimal point");
    expect_error_str("1e", "digit in the exponent");
    expect_error_str("1e+", "digit in the exponent");
    expect_error_str("-", "expected a digit");
    expect_error_str("-a", "expected a digit");
    expect_error_str("0x10", "unexpected data after");
    expect_error_str("NaN", "unexpected character 'N'");
    expect_error_str("Infinity", "unexpected character 'I'");
    expect_error_str("[-Infinity]", "expected a digit");
    expect_error_str("1e400", "out of the range of a double");
    expect_error_str("-1e400", "out of the range");
}
END_TEST

START_TEST(test_json_structure_errors)
{
    expect_error_str("", "unexpected end of input");
    expect_error_str("   ", "unexpected end of input");
    expect_error_str("[1,]", "unexpected character ']'");
    expect_error_str("{\"a\": 1,}", "expected a string key");
    expect_error_str("{\"a\" 1}", "expected ':'");
    expect_error_str("{1: 2}", "expected a string key");
    expect_error_str("[1 2]", "expected ',' or ']' in an array");
    expect_error_str("{\"a\": 1 \"b\": 2}", "expected ',' or '}' in an object");
    expect_error_str("[1, 2", "expected ',' or ']'");
    expect_error_str("{\"a\": [}", "unexpected character '}'");
    expect_error_str("[1]]", "unexpected data after the JSON value");
    expect_error_str("{} x", "unexpected data after");
    expect_error_str("1 2", "unexpected data after");
    expect_error_str("tru", "unexpected character 't'");
    expect_error_str("nul", "unexpected character 'n'");
    expect_error_str("True", "unexpected character 'T'");
    expect_error_str("[true false]", "expected ',' or ']'");
    expect_error_str("// comment\n{}", "unexpected character '/'");
    expect_error("[1,\0 2]", 7, "unexpected byte 0x00");
    /* Positions: line and column of the offending byte, 1-based. */
    sc_json_doc doc;
    sc_err err;
    ck_assert_int_eq(parse(&doc, "{\n  \"a\": tru\n}", &err), SC_EFORMAT);
    ck_assert_str_eq(err.msg, "t.json: line 2, column 8: unexpected character 't'");
    ck_assert_int_eq(parse(&doc, "[1,\n2,\n\n   x]", &err), SC_EFORMAT);
    ck_assert_str_eq(err.msg, "t.json: line 4, column 4: unexpected character 'x'");
}
END_TEST

START_TEST(test_json_depth_limit)
{
    /* 10 000 nested arrays: a clear error at level 257, not a crash. */
    size_t n = 10000;
    char *deep = malloc(2 * n + 1);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = 0;
    sc_json_doc doc;
    sc_err err;
    ck_assert_int_eq(sc_json_parse(&doc, deep, 2 * n, "deep.json", &err), SC_EFORMAT);
    ck_assert_str_eq(err.msg, "deep.json: line 1, column 257: nesting deeper than 256 levels");
    /* Objects count the same way. */
    size_t k = 0;
    for (size_t i = 0; i < 300; i++) k += (size_t)sprintf(deep + k, "{\"a\":");
    ck_assert_int_eq(sc_json_parse(&doc, deep, k, "deep.json", &err), SC_EFORMAT);
    ck_assert(strstr(err.msg, "nesting deeper than 256 levels") != NULL);
    /* Exactly SC_JSON_MAX_DEPTH levels are fine. */
    memset(deep, '[', SC_JSON_MAX_DEPTH);
    memset(deep + SC_JSON_MAX_DEPTH, ']', SC_JSON_MAX_DEPTH);
    ck_assert_int_eq(sc_json_parse(&doc, deep, 2 * SC_JSON_MAX_DEPTH, "deep.json", &err), SC_OK);
    const sc_json *v = doc.root;
    int depth = 1;
    while (v->len == 1) {
        v = v->items[0];
        depth++;
    }
    ck_assert_int_eq(depth, SC_JSON_MAX_DEPTH);
    sc_json_free(&doc);
    free(deep);
}
END_TEST

START_TEST(test_json_duplicates_and_order)
{
    sc_json_doc doc;
    sc_err err;
    ck_assert_int_eq(parse(&doc, "{\"k\": 1, \"j\": [1, {\"x\": null}], \"k\": 2}", &err), SC_OK);
    ck_assert_uint_eq(doc.root->len, 3);
    ck_assert_double_eq(sc_json_get_number(doc.root, "k", 0), 2); /* the last one */
    ck_assert_str_eq(doc.root->keys[1], "j");
    ck_assert_int_eq(sc_json_get(doc.root->items[1]->items[1], "x")->type, SC_JSON_NULL);
    sc_json_free(&doc);
    sc_json_free(&doc); /* freeing twice is harmless */
}
END_TEST

START_TEST(test_json_golden_files)
{
    sc_json_doc doc;
    sc_err err;
    ck_assert_int_eq(sc_json_load(&doc, sc_test_path("tests/golden/clip-tiny/config.json"), 1 << 20, &err), SC_OK);
    const sc_json *text = sc_json_get(doc.root, "text_config");
    const sc_json *vision = sc_json_get(doc.root, "vision_config");
    ck_assert_double_eq(sc_json_get_number(text, "eos_token_id", 0), 511);
    ck_assert_double_eq(sc_json_get_number(text, "num_attention_heads", 0), 4);
    ck_assert_double_eq(sc_json_get_number(text, "layer_norm_eps", 0), 1e-5);
    ck_assert_double_eq(sc_json_get_number(vision, "hidden_size", 0), 128);
    ck_assert_str_eq(sc_json_get_string(vision, "hidden_act", ""), "quick_gelu");
    ck_assert_double_eq(sc_json_get_number(doc.root, "logit_scale_init_value", 0), 2.6592600345611572);
    ck_assert_str_eq(sc_json_get(doc.root, "architectures")->items[0]->str, "CLIPModel");
    sc_json_free(&doc);

    /* OpenAI's CLIP vocabulary: 49 408 entries (Python's json agrees). */
    ck_assert_int_eq(sc_json_load(&doc, sc_test_path("tests/golden/io/tokenizer-clip/vocab.json"), 1 << 24, &err),
                     SC_OK);
    ck_assert_uint_eq(doc.root->len, 49408);
    ck_assert_str_eq(doc.root->keys[0], "!");
    ck_assert_str_eq(doc.root->keys[1], "\"");
    ck_assert_double_eq(sc_json_get_number(doc.root, "<|startoftext|>", 0), 49406);
    ck_assert_double_eq(sc_json_get_number(doc.root, "<|endoftext|>", 0), 49407);
    ck_assert_double_eq(sc_json_get_number(doc.root, "\xC2\xA1", 0), 94); /* '¡' */
    sc_json_free(&doc);

    /* The size cap of sc_json_load. */
    ck_assert_int_eq(sc_json_load(&doc, sc_test_path("tests/golden/io/tokenizer-clip/vocab.json"), 1000, &err),
                     SC_ENOMEM);
    ck_assert_int_eq(sc_json_load(&doc, "/nonexistent.json", 1000, &err), SC_EIO);
}
END_TEST

Suite *suite_json(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("json");
    tcase_add_test(tc, test_json_rfc8259_examples);
    tcase_add_test(tc, test_json_string_escapes);
    tcase_add_test(tc, test_json_invalid_utf8);
    tcase_add_test(tc, test_json_numbers);
    tcase_add_test(tc, test_json_structure_errors);
    tcase_add_test(tc, test_json_depth_limit);
    tcase_add_test(tc, test_json_duplicates_and_order);
    tcase_add_test(tc, test_json_golden_files);
    suite_add_tcase(s, tc);
    return s;
}
