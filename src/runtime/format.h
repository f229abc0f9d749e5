/*
 * The text formats of sources and sinks (jsonl, csv, lines) and their
 * conversion to and from records, which inside eddy are canonical
 * MessagePack bytes.
 *
 * Reading must give the very bytes that eddy's Lua codec would give for the
 * equivalent Lua value: a record read from a file and the same record built
 * in Lua must key the same state. That is why JSON nulls disappear (a Lua
 * table cannot hold nil), why an array with holes turns into a map from
 * 1-based index to value, and why an empty object is an empty array.
 *
 * The decoder works line by line because the reader owns the I/O, the line
 * numbers and the offsets that checkpoints store; a CSV record with a quoted
 * newline simply takes more than one line. The encoder turns one record into
 * one line of text for a sink. Both are per-stream objects because CSV is
 * stateful in both directions (the header).
 *
 * Messages written to an eddy_err say what was wrong with the data only; the
 * caller adds where (file and line).
 */
#ifndef EDDY_RUNTIME_FORMAT_H
#define EDDY_RUNTIME_FORMAT_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

typedef enum eddy_format_kind {
  EDDY_FORMAT_JSONL = 1, /* one JSON value per line */
  EDDY_FORMAT_CSV,       /* RFC 4180, with a header or not */
  EDDY_FORMAT_LINES      /* each line is a string record */
} eddy_format_kind;

/* "jsonl", "csv" or "lines" -> kind. EDDY_EINVAL with a message naming the
 * accepted names otherwise. */
int eddy_format_parse(const char *name, eddy_format_kind *kind, eddy_err *err);

/* The name of a kind as eddy_format_parse accepts it; a static string. */
const char *eddy_format_name(eddy_format_kind kind);

/* The format a file name suggests (.jsonl .ndjson .json -> jsonl, .csv ->
 * csv, .txt .log -> lines); EDDY_ENOTFOUND when the extension says nothing. */
int eddy_format_guess(const char *path, eddy_format_kind *kind);

typedef struct eddy_csv_options {
  unsigned char delimiter; /* one byte; not '"', CR or LF */
  int header;              /* the first record names the fields */
  int infer_types;         /* integer- and float-looking fields become numbers */
} eddy_csv_options;

/* delimiter ',', header on, infer_types on. */
void eddy_format_csv_defaults(eddy_csv_options *opts);

/* EDDY_EINVAL with a message for a delimiter CSV cannot use. */
int eddy_format_csv_check(const eddy_csv_options *opts, eddy_err *err);

/* ---- reading ---- */

/* Converts one JSON text (any value but null) to a canonical record appended
 * to out. EDDY_EFORMAT with the reason for bad JSON, a null record or
 * nesting deeper than EDDY_MP_MAX_DEPTH; out is then unchanged. For many
 * lines a decoder is cheaper: it keeps its scratch memory. */
int eddy_format_read_json(const void *text, size_t len, eddy_buf *out,
                          eddy_err *err);

typedef struct eddy_decoder eddy_decoder;

typedef enum eddy_decode_result {
  EDDY_DECODE_RECORD, /* out got one record */
  EDDY_DECODE_MORE,   /* the record goes on in the next line (CSV only) */
  EDDY_DECODE_SKIP,   /* a blank line (jsonl, csv): no record */
  EDDY_DECODE_HEADER  /* the CSV header was read: no record */
} eddy_decode_result;

/* A decoder for one stream of lines. csv may be NULL (defaults) and is
 * ignored for other kinds. The caller owns *out and frees it with
 * eddy_format_decoder_free. */
int eddy_format_decoder_new(eddy_format_kind kind, const eddy_csv_options *csv,
                            eddy_decoder **out, eddy_err *err);
void eddy_format_decoder_free(eddy_decoder *d);

/*
 * Decodes one line: its bytes up to and including its '\n' (the last line of
 * a file may have none). A record is appended to out, which the caller
 * resets between records. For a CSV record that spans lines, pass the same
 * out for every line until the result is not EDDY_DECODE_MORE; if the input
 * ends first, call eddy_format_decode_end. (A CSV line without '\n' always
 * gives EDDY_DECODE_MORE: only the caller knows that the input ended.)
 * EDDY_EFORMAT for malformed data (out is back at its length before the
 * record and the partial record is dropped), EDDY_EINVAL if line holds a
 * '\n' before its end, EDDY_ENOMEM.
 */
int eddy_format_decode_line(eddy_decoder *d, const void *line, size_t len,
                            eddy_buf *out, eddy_decode_result *res,
                            eddy_err *err);

/* The input ended: completes a record still open (a CSV last line without
 * '\n' after a quoted newline) or reports an unterminated quoted field.
 * *res is EDDY_DECODE_SKIP when nothing was open. */
int eddy_format_decode_end(eddy_decoder *d, eddy_buf *out,
                           eddy_decode_result *res, eddy_err *err);

/* Drops a partly decoded record (after the caller gave up on it, e.g. for
 * length); the CSV header, if read, is kept. */
void eddy_format_decoder_reset(eddy_decoder *d);

/* Also forgets the CSV header, so that the next record read is the header
 * again (for a reader that goes back to the start of its file). */
void eddy_format_decoder_forget_header(eddy_decoder *d);

/* 1 unless this is a CSV decoder with header on that has not read it yet. */
int eddy_format_decoder_has_header(const eddy_decoder *d);

/* ---- writing ---- */

/*
 * Appends the record (canonical or any well-formed MessagePack) as one line
 * of compact JSON with sorted keys and its '\n'. Floats keep a '.' or an
 * exponent so that they read back as floats; map keys that are numbers or
 * booleans become their text; strings that are not valid UTF-8 get U+FFFD
 * for each bad byte. EDDY_EFORMAT, naming the place in the record, for NaN
 * or infinity, a table as map key, two keys with the same text, and for
 * bytes that are not one well-formed value; out is then unchanged.
 */
int eddy_format_write_json(const void *record, size_t len, eddy_buf *out,
                           eddy_err *err);

typedef struct eddy_encoder eddy_encoder;

/* An encoder for one sink stream; csv may be NULL (defaults). The caller
 * owns *out and frees it with eddy_format_encoder_free. */
int eddy_format_encoder_new(eddy_format_kind kind, const eddy_csv_options *csv,
                            eddy_encoder **out, eddy_err *err);
void eddy_format_encoder_free(eddy_encoder *e);

/*
 * Appends one record as one line of text (with its '\n'; for CSV with the
 * header line first when the stream needs one). jsonl: as
 * eddy_format_write_json. lines: a string record as it is, any other record
 * as its JSON. csv: the first map record fixes the columns (its field names,
 * sorted bytewise); a later record with a field not among them, a nested
 * table or a record of the other shape (map vs. array) is EDDY_EFORMAT.
 * Fields a map record lacks are written empty. On any error out is
 * unchanged.
 */
int eddy_format_encode(eddy_encoder *e, const void *record, size_t len,
                       eddy_buf *out, eddy_err *err);

/* The next record starts a new file: CSV writes its header line again (the
 * columns stay those of the first record). */
void eddy_format_encoder_new_file(eddy_encoder *e);

#endif
