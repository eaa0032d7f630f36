/* check_json_writer.c — tests for the JSON writer of io.c section 2: exact
 * text for compact and indented documents (written out by hand), every
 * escape, invalid UTF-8 replaced, numbers that read back exactly, and a
 * round trip through the parser and the file system. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check_util.h"

/* The text written so far (always NUL-terminated once anything was put). */
static const char *text_of(const sc_json_writer *w)
{
    return w->out.data ? w->out.data : "";
}

START_TEST(test_json_writer_compact)
{
    sc_json_writer w;
    sc_json_writer_init(&w, 0);
    sc_json_begin_object(&w);
    sc_json_put_key(&w, "StudyID");
    sc_json_put_string(&w, "123");
    sc_json_put_key(&w, "boxes");
    sc_json_begin_array(&w);
    sc_json_begin_array(&w);
    sc_json_put_number(&w, 0.25);
    sc_json_put_number(&w, 0.5);
    sc_json_end_array(&w);
    sc_json_end_array(&w);
    sc_json_put_key(&w, "abnormal");
    sc_json_put_bool(&w, 1);
    sc_json_put_key(&w, "progression");
    sc_json_put_null(&w);
    sc_json_put_key(&w, "empty");
    sc_json_begin_object(&w);
    sc_json_end_object(&w);
    sc_json_put_key(&w, "n");
    sc_json_put_int(&w, -42);
    sc_json_end_object(&w);
    ck_assert_str_eq(text_of(&w), "{\"StudyID\":\"123\",\"boxes\":[[0.25,0.5]],\"abnormal\":true,"
                                  "\"progression\":null,\"empty\":{},\"n\":-42}");
    sc_json_writer_free(&w);
}
END_TEST

START_TEST(test_json_writer_indented)
{
    sc_json_writer w;
    sc_json_writer_init(&w, 2);
    sc_json_begin_array(&w);
    sc_json_begin_object(&w);
    sc_json_put_key(&w, "a");
    sc_json_begin_array(&w);
    sc_json_put_int(&w, 1);
    sc_json_put_int(&w, 2);
    sc_json_end_array(&w);
    sc_json_put_key(&w, "b");
    sc_json_begin_array(&w);
    sc_json_end_array(&w);
    sc_json_end_object(&w);
    sc_json_put_string(&w, "x");
    sc_json_end_array(&w);
    ck_assert_str_eq(text_of(&w), "[\n"
                                  "  {\n"
                                  "    \"a\": [\n"
                                  "      1,\n"
                                  "      2\n"
                                  "    ],\n"
                                  "    \"b\": []\n"
                                  "  },\n"
                                  "  \"x\"\n"
                                  "]\n");
    sc_json_writer_free(&w);
}
END_TEST

START_TEST(test_json_writer_escapes)
{
    sc_json_writer w;
    sc_json_writer_init(&w, 0);
    sc_json_begin_array(&w);
    sc_json_put_string(&w, "q\"b\\s/");
    sc_json_put_string(&w, "\n\r\t\b\f\x01\x1f\x7f");
    sc_json_put_string(&w, "Derrame pleural en el seno costofr\xC3\xA9nico izquierdo.");
    sc_json_put_string(&w, "bad \xFF and cut \xE2\x82");  /* a stray byte, a truncated sequence */
    sc_json_put_string(&w, "\xED\xA0\x80");              /* an encoded surrogate: 3 bad bytes */
    sc_json_end_array(&w);
    ck_assert_str_eq(text_of(&w), "[\"q\\\"b\\\\s/\","
                                  "\"\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f\","
                                  "\"Derrame pleural en el seno costofr\xC3\xA9nico izquierdo.\","
                                  "\"bad \xEF\xBF\xBD and cut \xEF\xBF\xBD\xEF\xBF\xBD\","
                                  "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"]");
    sc_json_writer_free(&w);
}
END_TEST

START_TEST(test_json_writer_numbers)
{
    /* (value, text): the shortest of 15-17 significant digits that reads back
     * (1/3 needs 16; Python's repr agrees on each). */
    struct { double x; const char *text; } cases[] = {
        {0.0, "0"},         {0.1, "0.1"},       {-2.5, "-2.5"},        {1e300, "1e+300"},
        {0.4531, "0.4531"}, {1.0 / 3.0, "0.3333333333333333"},    {123456789.0, "123456789"},
        {NAN, "null"},      {INFINITY, "null"}, {5e-324, "4.94065645841247e-324"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sc_json_writer w;
        sc_json_writer_init(&w, 0);
        sc_json_put_number(&w, cases[i].x);
        ck_assert_msg(strcmp(text_of(&w), cases[i].text) == 0, "case %zu: wrote '%s', expected '%s'", i,
                      text_of(&w), cases[i].text);
        sc_json_writer_free(&w);
    }
}
END_TEST

START_TEST(test_json_writer_round_trip)
{
    char path[512];
    snprintf(path, sizeof path, "%s/doc.json", sc_test_tmpdir());
    const double values[] = {0.1, 1.0 / 7.0, -1e-5, 6.02214076e23};
    sc_json_writer w;
    sc_json_writer_init(&w, 1);
    sc_json_begin_object(&w);
    sc_json_put_key(&w, "key with \"quotes\"");
    sc_json_put_string(&w, "line\nbreak \xC3\xB1");
    sc_json_put_key(&w, "values");
    sc_json_begin_array(&w);
    for (int i = 0; i < 4; i++) sc_json_put_number(&w, values[i]);
    sc_json_end_array(&w);
    sc_json_end_object(&w);
    sc_err err = {{0}};
    ck_assert_int_eq(sc_json_writer_save(&w, path, &err), SC_OK);
    sc_json_writer_free(&w);

    sc_json_doc doc;
    ck_assert_msg(sc_json_load(&doc, path, 1 << 20, &err) == SC_OK, "%s", err.msg);
    ck_assert_str_eq(sc_json_get_string(doc.root, "key with \"quotes\"", ""), "line\nbreak \xC3\xB1");
    const sc_json *arr = sc_json_get(doc.root, "values");
    ck_assert_ptr_nonnull(arr);
    ck_assert_int_eq((int)arr->len, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_msg(arr->items[i]->number == values[i], "value %d: %.17g read back as %.17g", i, values[i],
                      arr->items[i]->number);
    sc_json_free(&doc);
}
END_TEST

Suite *suite_json_writer(void)
{
    Suite *s = suite_create("json_writer");
    TCase *tc = tcase_create("json_writer");
    tcase_add_test(tc, test_json_writer_compact);
    tcase_add_test(tc, test_json_writer_indented);
    tcase_add_test(tc, test_json_writer_escapes);
    tcase_add_test(tc, test_json_writer_numbers);
    tcase_add_test(tc, test_json_writer_round_trip);
    suite_add_tcase(s, tc);
    return s;
}
