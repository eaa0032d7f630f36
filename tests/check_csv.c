/* check_csv.c — tests for io.c section 13 (CSV): the reader against
 * RFC 4180's rules and hand-decoded fields, the real Derm7p header, every
 * error path with the file and line it must name, the writer's exact bytes,
 * and a replay of the fuzz seeds and saved crashes. */
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "formats_util.h"

/* The harness itself: replaying a file is calling it on the bytes. */
#include "fuzz/fuzz_csv.c"

/* Parse a string literal (strict options), failing the test on error. */
static void parse_ok(sc_csv *csv, const char *text)
{
    sc_err err;
    sc_status st = sc_csv_parse(csv, text, strlen(text), "t.csv", NULL, &err);
    ck_assert_msg(st == SC_OK, "parse failed: %s", err.msg);
}

/* Parse and expect failure with `code` and a message containing `want`. */
static void parse_fails(const char *text, size_t len, const sc_csv_options *opt, sc_status code, const char *want)
{
    sc_csv csv;
    sc_err err = {{0}};
    sc_status st = sc_csv_parse(&csv, text, len, "bad.csv", opt, &err);
    ck_assert_msg(st == code, "status %d (%s), wanted %d, for input '%s'", st, err.msg, code, text);
    ck_assert_msg(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg, want);
    ck_assert_ptr_null(csv.rows);
    sc_csv_free(&csv);
}

static const char *const derm7p_columns[19] = {
    "case_num", "diagnosis", "seven_point_score", "pigment_network", "streaks", "pigmentation",
    "regression_structures", "dots_and_globules", "blue_whitish_veil", "vascular_structures",
    "level_of_diagnostic_difficulty", "elevation", "location", "sex", "management", "clinic", "derm",
    "case_id", "notes"};

/* The header of release_v0/meta/meta.csv (facts.md §6) with two records
 * built from the file's real value strings. */
START_TEST(test_csv_derm7p_header)
{
    sc_csv csv;
    sc_err err;
    ck_assert_int_eq(sc_csv_load(&csv, sc_test_path("tests/fuzz/corpus/csv/derm7p_meta.csv"), NULL, &err), SC_OK);
    ck_assert_int_eq(csv.n_cols, 19);
    ck_assert_int_eq(csv.n_rows, 2);
    for (int i = 0; i < 19; i++) {
        ck_assert_str_eq(csv.header.field[i], derm7p_columns[i]);
        int col;
        ck_assert_int_eq(sc_csv_require_column(&csv, derm7p_columns[i], &col, &err), SC_OK);
        ck_assert_int_eq(col, i);
    }
    int diag = sc_csv_column(&csv, "diagnosis"), derm = sc_csv_column(&csv, "derm");
    ck_assert_str_eq(sc_csv_get(&csv, 0, diag), "melanoma (less than 0.76 mm)");
    ck_assert_str_eq(sc_csv_get(&csv, 0, derm), "NEL/NEL025.JPG");
    ck_assert_str_eq(sc_csv_get(&csv, 1, sc_csv_column(&csv, "pigmentation")), "diffuse regular");
    ck_assert_str_eq(sc_csv_get(&csv, 1, sc_csv_column(&csv, "management")), "clinical follow up");
    ck_assert_str_eq(sc_csv_get(&csv, 0, 18), "");   /* empty notes */
    ck_assert_str_eq(sc_csv_get(&csv, 1, 18), "Replaced clinic X, with derm Y");
    ck_assert_int_eq(csv.rows[0].line, 2);
    ck_assert_int_eq(csv.rows[1].line, 3);

    int64_t score;
    ck_assert_int_eq(sc_csv_get_int(&csv, 0, 2, &score, &err), SC_OK);
    ck_assert_int_eq(score, 3);
    /* A text field read as a number names file, line and column. */
    ck_assert_int_eq(sc_csv_get_int(&csv, 1, 3, &score, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "derm7p_meta.csv:3: column pigment_network: 'typical' is not an integer"),
                  "%s", err.msg);
    ck_assert_int_eq(sc_csv_require_column(&csv, "image", &diag, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "derm7p_meta.csv:1: no column 'image' in the header"), "%s", err.msg);
    sc_csv_free(&csv);
}
END_TEST

START_TEST(test_csv_tricky_quoting)
{
    /* Decoded by hand from RFC 4180 §2 rules 5–7. */
    sc_csv csv;
    parse_ok(&csv,
             "name,value,note\n"
             "\"a,b\",\"say \"\"hi\"\"\",plain\n"
             "\"two\nlines\",\"\",\"\"\"\"\n"
             "x,,\"crlf\r\ninside\"\n"
             "last,1,\"no newline at end\"");
    ck_assert_int_eq(csv.n_rows, 4);
    ck_assert_str_eq(sc_csv_get(&csv, 0, 0), "a,b");
    ck_assert_str_eq(sc_csv_get(&csv, 0, 1), "say \"hi\"");
    ck_assert_str_eq(sc_csv_get(&csv, 0, 2), "plain");
    ck_assert_str_eq(sc_csv_get(&csv, 1, 0), "two\nlines");
    ck_assert_str_eq(sc_csv_get(&csv, 1, 1), "");
    ck_assert_str_eq(sc_csv_get(&csv, 1, 2), "\"");
    ck_assert_str_eq(sc_csv_get(&csv, 2, 1), "");
    ck_assert_str_eq(sc_csv_get(&csv, 2, 2), "crlf\r\ninside");
    ck_assert_str_eq(sc_csv_get(&csv, 3, 2), "no newline at end");
    /* Records start on lines 2, 3, 5 and 7: the quoted line ends count. */
    ck_assert_int_eq(csv.rows[0].line, 2);
    ck_assert_int_eq(csv.rows[1].line, 3);
    ck_assert_int_eq(csv.rows[2].line, 5);
    ck_assert_int_eq(csv.rows[3].line, 7);
    sc_csv_free(&csv);
}
END_TEST

START_TEST(test_csv_line_ends_bom_blank_lines)
{
    static const char *const variants[] = {
        "a,b\r\n1,2\r\n3,4\r\n",         /* CRLF */
        "a,b\n1,2\n3,4",                 /* LF, last line unterminated */
        "a,b\r1,2\r3,4\r",               /* old Mac CR */
        ("\xEF\xBB\xBF" "a,b\n1,2\n3,4\n"), /* UTF-8 byte-order mark */
        "a,b\n\n1,2\r\n\r\n\n3,4\n\n",   /* blank lines are not records */
    };
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        sc_csv csv;
        parse_ok(&csv, variants[v]);
        ck_assert_int_eq(csv.n_cols, 2);
        ck_assert_str_eq(csv.header.field[0], "a");
        ck_assert_int_eq(sc_csv_column(&csv, "a"), 0);
        ck_assert_int_eq(csv.n_rows, 2);
        ck_assert_str_eq(sc_csv_get(&csv, 0, 0), "1");
        ck_assert_str_eq(sc_csv_get(&csv, 1, 1), "4");
        sc_csv_free(&csv);
    }
    /* Blank lines still advance the line count: "3,4" is on line 6. */
    sc_csv csv;
    parse_ok(&csv, variants[4]);
    ck_assert_int_eq(csv.rows[1].line, 6);
    sc_csv_free(&csv);

    /* A trailing delimiter is an empty last field; another delimiter. */
    sc_csv_options semi = {.delimiter = ';'};
    sc_err err;
    const char *text = "p;q\nx,y;\n";
    ck_assert_int_eq(sc_csv_parse(&csv, text, strlen(text), "s.csv", &semi, &err), SC_OK);
    ck_assert_str_eq(sc_csv_get(&csv, 0, 0), "x,y");
    ck_assert_str_eq(sc_csv_get(&csv, 0, 1), "");
    sc_csv_free(&csv);
}
END_TEST

START_TEST(test_csv_malformed)
{
    parse_fails("a,b\n1,2\nx,y\"z\n", 15, NULL, SC_EFORMAT, "bad.csv:3: a quote inside an unquoted field");
    parse_fails("a,b\n1,\"open\n\n\n", 14, NULL, SC_EFORMAT, "bad.csv:2: unterminated quoted field");
    parse_fails("a,b\n\"x\"y,2\n", 11, NULL, SC_EFORMAT, "bad.csv:2: text after the closing quote");
    parse_fails("a,b\n1,2\x00\n", 9, NULL, SC_EFORMAT, "bad.csv:2: NUL byte");
    parse_fails("a,b\n\"1\x00\",2\n", 11, NULL, SC_EFORMAT, "bad.csv:2: NUL byte");
    parse_fails("a,b,c\n1,2,3\n\"multi\nline\",5\n", 27, NULL, SC_EFORMAT, "bad.csv:3: 2 fields but the header has 3");
    parse_fails("", 0, NULL, SC_EFORMAT, "bad.csv: no header line");
    parse_fails("\xEF\xBB\xBF\r\n\n", 6, NULL, SC_EFORMAT, "bad.csv: no header line");

    /* Caps. */
    sc_csv_options few = {.max_rows = 2, .max_fields = 3, .max_field_bytes = 4};
    parse_fails("a\n1\n2\n3\n", 8, &few, SC_ENOMEM, "bad.csv:4: more than 2 records");
    parse_fails("a,b,c,d\n", 8, &few, SC_ENOMEM, "bad.csv:1: more than 3 fields");
    parse_fails("a\n\"12345\"\n", 10, &few, SC_ENOMEM, "bad.csv:2: a field is longer than the limit of 4 bytes");
    sc_csv_options tiny_file = {.max_file_bytes = 4};
    parse_fails("a,b\n1,2\n", 8, &tiny_file, SC_ENOMEM, "larger than the limit");

    /* Ragged records are allowed on request; missing fields read as "". */
    sc_csv_options ragged = {.ragged_ok = 1};
    sc_csv csv;
    sc_err err;
    ck_assert_int_eq(sc_csv_parse(&csv, "a,b,c\n1\n1,2,3,4\n", 16, "r.csv", &ragged, &err), SC_OK);
    ck_assert_int_eq(csv.rows[0].n_fields, 1);
    ck_assert_str_eq(sc_csv_get(&csv, 0, 2), "");
    ck_assert_str_eq(sc_csv_get(&csv, 1, 3), "4");
    sc_csv_free(&csv);

    /* Duplicate header names make a look-up ambiguous. */
    parse_ok(&csv, "id,x,id\n1,2,3\n");
    int col;
    ck_assert_int_eq(sc_csv_require_column(&csv, "id", &col, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "t.csv:1: column 'id' appears twice in the header (columns 1 and 3)"), "%s",
                  err.msg);
    sc_csv_free(&csv);

    ck_assert_int_eq(sc_csv_load(&csv, "/nonexistent/meta.csv", NULL, &err), SC_EIO);
    ck_assert_msg(strstr(err.msg, "/nonexistent/meta.csv: cannot open"), "%s", err.msg);
}
END_TEST

START_TEST(test_csv_numbers)
{
    sc_csv csv;
    sc_err err;
    parse_ok(&csv, "i,x\n42,0.25\n-7,1e-3\n 5,nan\n99999999999999999999,1e999\n,\n");
    int64_t i;
    double x;
    ck_assert_int_eq(sc_csv_get_int(&csv, 0, 0, &i, &err), SC_OK);
    ck_assert_int_eq(i, 42);
    ck_assert_int_eq(sc_csv_get_int(&csv, 1, 0, &i, &err), SC_OK);
    ck_assert_int_eq(i, -7);
    ck_assert_int_eq(sc_csv_get_double(&csv, 0, 1, &x, &err), SC_OK);
    ck_assert_double_eq(x, 0.25);
    ck_assert_int_eq(sc_csv_get_double(&csv, 1, 1, &x, &err), SC_OK);
    ck_assert_double_eq(x, 1e-3);
    ck_assert_int_eq(sc_csv_get_double(&csv, 2, 1, &x, &err), SC_OK); /* "nan" marks an undefined metric */
    ck_assert(x != x);
    ck_assert_int_eq(sc_csv_get_int(&csv, 2, 0, &i, &err), SC_EFORMAT); /* leading blank */
    ck_assert_msg(strstr(err.msg, "t.csv:4: column i: ' 5' is not an integer"), "%s", err.msg);
    ck_assert_int_eq(sc_csv_get_int(&csv, 3, 0, &i, &err), SC_ERANGE);
    ck_assert_int_eq(sc_csv_get_double(&csv, 3, 1, &x, &err), SC_ERANGE);
    ck_assert_int_eq(sc_csv_get_int(&csv, 4, 0, &i, &err), SC_EFORMAT);
    ck_assert_int_eq(sc_csv_get_double(&csv, 4, 1, &x, &err), SC_EFORMAT);
    ck_assert_int_eq(sc_csv_fail(&err, SC_ERANGE, &csv, 1, 1, "%d is too big", 7), SC_ERANGE);
    ck_assert_str_eq(err.msg, "t.csv:3: column x: 7 is too big");
    ck_assert_int_eq(sc_csv_fail(&err, SC_EFORMAT, &csv, 0, -1, "bad row"), SC_EFORMAT);
    ck_assert_str_eq(err.msg, "t.csv:2: bad row");
    sc_csv_free(&csv);
}
END_TEST

/* The writer's bytes, spelled out by hand from RFC 4180 (LF line ends). */
START_TEST(test_csv_writer_exact_bytes)
{
    const char *dir = sc_test_tmpdir();
    const char *path = join_path(dir, "out.csv");
    sc_csv_writer w;
    sc_csv_writer_init(&w);
    sc_csv_put(&w, "method");
    sc_csv_put(&w, "fraction");
    sc_csv_put(&w, "note");
    sc_csv_end_row(&w);
    sc_csv_put(&w, "linear probe, weighted");
    sc_csv_putf(&w, "%.2f", 0.05);
    sc_csv_put(&w, "he said \"no\"\nthen left");
    sc_csv_end_row(&w);
    sc_csv_put(&w, "");
    sc_csv_end_row(&w);
    sc_csv_put(&w, "");
    sc_csv_put(&w, "");
    sc_csv_end_row(&w);
    sc_err err;
    ck_assert_int_eq(sc_csv_writer_save(&w, path, &err), SC_OK);
    sc_csv_writer_free(&w);

    const char *want = "method,fraction,note\n"
                       "\"linear probe, weighted\",0.05,\"he said \"\"no\"\"\nthen left\"\n"
                       "\"\"\n"
                       ",\n";
    uint8_t *got;
    size_t len;
    ck_assert_int_eq(sc_read_file(path, 1 << 20, &got, &len, &err), SC_OK);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_str_eq((const char *)got, want);
    free(got);

    /* Read back with ragged records allowed (the third record has one). */
    sc_csv csv;
    sc_csv_options ragged = {.ragged_ok = 1};
    ck_assert_int_eq(sc_csv_load(&csv, path, &ragged, &err), SC_OK);
    ck_assert_int_eq(csv.n_rows, 3);
    ck_assert_str_eq(sc_csv_get(&csv, 0, 2), "he said \"no\"\nthen left");
    ck_assert_int_eq(csv.rows[1].n_fields, 1);
    ck_assert_str_eq(sc_csv_get(&csv, 1, 0), "");
    sc_csv_free(&csv);

    /* Saving into a missing directory fails and leaves nothing behind. */
    sc_csv_writer_init(&w);
    sc_csv_put(&w, "x");
    sc_csv_end_row(&w);
    ck_assert_int_eq(sc_csv_writer_save(&w, join_path(dir, "missing/out.csv"), &err), SC_EIO);
    sc_csv_writer_free(&w);
}
END_TEST

/* Every seed and every crash the fuzzer ever found goes through the
 * harness again: parse, check, round trip. */
START_TEST(test_csv_fuzz_replay)
{
    ck_assert_int_ge(sc_test_replay_dir("tests/fuzz/corpus/csv", LLVMFuzzerTestOneInput, 1), 9);
    sc_test_replay_dir("tests/fuzz/regress/csv", LLVMFuzzerTestOneInput, 1);
}
END_TEST

Suite *suite_csv(void)
{
    Suite *s = suite_create("csv");
    TCase *tc = tcase_create("csv");
    tcase_add_test(tc, test_csv_derm7p_header);
    tcase_add_test(tc, test_csv_tricky_quoting);
    tcase_add_test(tc, test_csv_line_ends_bom_blank_lines);
    tcase_add_test(tc, test_csv_malformed);
    tcase_add_test(tc, test_csv_numbers);
    tcase_add_test(tc, test_csv_writer_exact_bytes);
    suite_add_tcase(s, tc);
    TCase *fz = tcase_create("csv_fuzz_replay");
    tcase_add_test(fz, test_csv_fuzz_replay);
    suite_add_tcase(s, fz);
    return s;
}
