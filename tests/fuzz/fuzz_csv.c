/* fuzz_csv.c — libFuzzer harness for the CSV reader and writer (io.c
 * section 13).
 *
 * Any bytes must either parse or fail with a message naming the input;
 * never crash, hang or leak. What parses must also survive a round trip:
 * writing the records with sc_csv_writer and parsing that text again gives
 * the same fields, which checks the writer's quoting against the reader.
 * The Check suite replays the seeds and every saved crash through this
 * same function (tests/check_csv.c includes this file). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scale.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort (which the fuzzer and Check both report) when cond is false. */
#define FUZZ_REQUIRE(cond)                                                     \
    do {                                                                       \
        if (!(cond)) sc__assert_fail(__FILE__, __LINE__, #cond, "fuzz property"); \
    } while (0)

static void require_same_row(const sc_csv_row *a, const sc_csv_row *b)
{
    FUZZ_REQUIRE(a->n_fields == b->n_fields);
    for (int i = 0; i < a->n_fields; i++) FUZZ_REQUIRE(strcmp(a->field[i], b->field[i]) == 0);
}

static void write_row(sc_csv_writer *w, const sc_csv_row *r)
{
    for (int i = 0; i < r->n_fields; i++) sc_csv_put(w, r->field[i]);
    sc_csv_end_row(w);
}

static void check_round_trip(const sc_csv *csv, const sc_csv_options *lim)
{
    sc_csv_writer w;
    sc_csv_writer_init(&w);
    write_row(&w, &csv->header);
    for (int64_t r = 0; r < csv->n_rows; r++) write_row(&w, &csv->rows[r]);
    FUZZ_REQUIRE(!w.out.failed);

    sc_csv_options relaxed = *lim;
    relaxed.max_file_bytes = 0; /* quoting may make the text longer */
    sc_csv again;
    sc_err err;
    sc_status st = sc_csv_parse(&again, w.out.data, w.out.len, "rewritten", &relaxed, &err);
    FUZZ_REQUIRE(st == SC_OK);
    FUZZ_REQUIRE(again.n_rows == csv->n_rows);
    require_same_row(&again.header, &csv->header);
    for (int64_t r = 0; r < csv->n_rows; r++) require_same_row(&again.rows[r], &csv->rows[r]);
    sc_csv_free(&again);
    sc_csv_writer_free(&w);
}

static void check_parsed(const sc_csv *csv, const sc_csv_options *lim)
{
    FUZZ_REQUIRE(csv->n_cols == csv->header.n_fields && csv->n_cols >= 1);
    int64_t line = csv->header.line;
    for (int64_t r = 0; r < csv->n_rows; r++) {
        const sc_csv_row *row = &csv->rows[r];
        FUZZ_REQUIRE(row->line > line); /* records start on later lines */
        line = row->line;
        FUZZ_REQUIRE(lim->ragged_ok || row->n_fields == csv->n_cols);
        for (int i = 0; i < row->n_fields; i++) FUZZ_REQUIRE(strlen(row->field[i]) <= lim->max_field_bytes);
        for (int c = 0; c < csv->n_cols + 1; c++) (void)sc_csv_get(csv, r, c);
    }
    for (int c = 0; c < csv->n_cols; c++) {
        int found = sc_csv_column(csv, csv->header.field[c]);
        FUZZ_REQUIRE(found >= 0 && found <= c);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Small caps so the fuzzer reaches them; both field-count policies. */
    for (int ragged = 0; ragged <= 1; ragged++) {
        sc_csv_options lim = {.ragged_ok = ragged,
                              .max_file_bytes = 1 << 20,
                              .max_rows = 200,
                              .max_fields = 32,
                              .max_field_bytes = 512};
        sc_csv csv;
        sc_err err = {{0}};
        sc_status st = sc_csv_parse(&csv, (const char *)data, size, "fuzz.csv", &lim, &err);
        if (st == SC_OK) {
            check_parsed(&csv, &lim);
            check_round_trip(&csv, &lim);
        } else {
            FUZZ_REQUIRE(strncmp(err.msg, "fuzz.csv", 8) == 0);
            FUZZ_REQUIRE(csv.rows == NULL && csv.fields == NULL && csv.text == NULL);
        }
        sc_csv_free(&csv);
    }
    return 0;
}
