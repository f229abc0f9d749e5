/*
 * Text formats <-> records. Expected records are built with the msgpack
 * writer in canonical order, so a test fails on the first byte that differs
 * from what eddy's Lua codec would produce for the same value.
 */
#include "test.h"

#include <math.h>
#include <stdint.h>

#include "runtime/format.h"
#include "util/msgpack.h"

/* ---- helpers ---- */

static eddy_buf want;

static void want_reset(void) { eddy_buf_reset(&want); }
static void w_str(const char *s) { eddy_mp_write_str(&want, s, strlen(s)); }
static void w_strn(const char *s, size_t n) { eddy_mp_write_str(&want, s, n); }
static void w_int(int64_t v) { eddy_mp_write_int(&want, v); }
static void w_float(double v) { eddy_mp_write_float(&want, v); }
static void w_bool(int v) { eddy_mp_write_bool(&want, v); }
static void w_array(uint32_t n) { eddy_mp_write_array(&want, n); }
static void w_map(uint32_t n) { eddy_mp_write_map(&want, n); }

/* JSON text -> record, compared with want. */
static void check_json(const char *text)
{
  eddy_buf out = EDDY_BUF_INIT;
  eddy_err err = {0, ""};
  int rc = eddy_format_read_json(text, strlen(text), &out, &err);
  CHECK_EQ_INT(rc, EDDY_OK);
  if (rc != EDDY_OK)
    fprintf(stderr, "  %s -> %s\n", text, err.msg);
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_buf_free(&out);
}

/* JSON text that must fail; the message must contain what. */
static void check_json_error(const char *text, size_t len, const char *what)
{
  eddy_buf out = EDDY_BUF_INIT;
  eddy_err err = {0, ""};
  eddy_buf_append(&out, "xy", 2); /* must stay as it was */
  int rc = eddy_format_read_json(text, len, &out, &err);
  CHECK_EQ_INT(rc, EDDY_EFORMAT);
  CHECK_EQ_INT(out.len, 2);
  CHECK(strstr(err.msg, what) != NULL);
  if (strstr(err.msg, what) == NULL)
    fprintf(stderr, "  message: %s (wanted %s)\n", err.msg, what);
  eddy_buf_free(&out);
}

/* Record (in want) -> JSON line. */
static void check_write_json(const char *expect)
{
  eddy_buf out = EDDY_BUF_INIT;
  eddy_err err = {0, ""};
  int rc = eddy_format_write_json(want.data, want.len, &out, &err);
  CHECK_EQ_INT(rc, EDDY_OK);
  if (rc != EDDY_OK)
    fprintf(stderr, "  write_json: %s\n", err.msg);
  eddy_buf_putc(&out, '\0');
  CHECK_EQ_STR((const char *)out.data, expect);
  eddy_buf_free(&out);
}

static void check_write_json_error(const char *what)
{
  eddy_buf out = EDDY_BUF_INIT;
  eddy_err err = {0, ""};
  int rc = eddy_format_write_json(want.data, want.len, &out, &err);
  CHECK_EQ_INT(rc, EDDY_EFORMAT);
  CHECK_EQ_INT(out.len, 0);
  CHECK(strstr(err.msg, what) != NULL);
  if (strstr(err.msg, what) == NULL)
    fprintf(stderr, "  message: %s (wanted %s)\n", err.msg, what);
  eddy_buf_free(&out);
}

/* ---- JSON -> record ---- */

static void test_json_scalars(void)
{
  want_reset(); w_int(1); check_json("1");
  want_reset(); w_int(-42); check_json("-42");
  want_reset(); w_int(INT64_MAX); check_json("9223372036854775807");
  want_reset(); w_int(INT64_MIN); check_json("-9223372036854775808");
  want_reset(); w_float(1.0); check_json("1.0");
  want_reset(); w_float(2.5); check_json("2.5");
  want_reset(); w_float(1e5); check_json("1e5");
  want_reset(); w_float(-0.0); check_json("-0.0");
  want_reset(); w_str("hi"); check_json("\"hi\"");
  want_reset(); w_str("\xc3\xa9"); check_json("\"\\u00e9\"");
  want_reset(); w_strn("a\0b", 3); check_json("\"a\\u0000b\"");
  want_reset(); w_bool(1); check_json("true");
  want_reset(); w_bool(0); check_json(" false \r\n");

  /* 1 and 1.0 differ: integer 0x01 vs float64 0xcb... */
  eddy_buf a = EDDY_BUF_INIT, b = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_format_read_json("1", 1, &a, NULL), EDDY_OK);
  CHECK_EQ_INT(eddy_format_read_json("1.0", 3, &b, NULL), EDDY_OK);
  CHECK_EQ_INT(a.len, 1);
  CHECK_EQ_INT(a.data[0], 0x01);
  CHECK_EQ_INT(b.len, 9);
  CHECK_EQ_INT(b.data[0], 0xcb);
  eddy_buf_free(&a);
  eddy_buf_free(&b);
}

static void test_json_tables(void)
{
  /* keys sorted by their encoded bytes: "b" (a1 62) before "aa" (a2 ..) */
  want_reset();
  w_map(3);
  w_str("a"); w_array(3); w_int(1); w_float(2.5); w_str("x");
  w_str("b"); w_int(1);
  w_str("aa"); w_bool(1);
  check_json("{\"b\": 1, \"aa\": true, \"a\": [1, 2.5, \"x\"]}");

  /* nested maps are canonical too */
  want_reset();
  w_map(1); w_str("o"); w_map(2); w_str("x"); w_int(1); w_str("y"); w_int(2);
  check_json("{\"o\":{\"y\":2,\"x\":1}}");

  /* an empty object and an empty array are both the empty table: 0x90 */
  want_reset(); w_array(0); check_json("{}");
  want_reset(); w_array(0); check_json("[]");
  want_reset(); w_map(1); w_str("a"); w_array(0); check_json("{\"a\":{}}");

  /* duplicate keys: the last one wins, as in a Lua table constructor */
  want_reset(); w_map(1); w_str("a"); w_int(2); check_json("{\"a\":1,\"a\":2}");

  /* 16 and more elements: array16 */
  want_reset(); w_array(20);
  for (int i = 1; i <= 20; i++)
    w_int(i);
  check_json("[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]");
}

static void test_json_nulls(void)
{
  /* a member whose value is null is not there */
  want_reset(); w_map(1); w_str("a"); w_int(1);
  check_json("{\"a\":1,\"b\":null}");
  want_reset(); w_array(0); check_json("{\"b\":null}");
  want_reset(); w_map(1); w_str("a"); w_array(0);
  check_json("{\"a\":{\"b\":null}}");

  /* trailing nulls go; a null inside makes a map from 1-based index */
  want_reset(); w_array(2); w_int(1); w_int(2); check_json("[1,2,null,null]");
  want_reset(); w_map(2); w_int(1); w_int(1); w_int(3); w_int(3);
  check_json("[1,null,3]");
  want_reset(); w_map(1); w_int(2); w_str("x"); check_json("[null,\"x\",null]");
  want_reset(); w_array(0); check_json("[null,null]");
  want_reset(); w_array(0); check_json("[null]");
  /* a hole with more than 16 elements after it: keys sort as integers */
  want_reset(); w_map(17);
  for (int i = 2; i <= 18; i++) {
    w_int(i);
    w_int(i);
  }
  check_json("[null,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18]");

  check_json_error("null", 4, "a record cannot be null");
  check_json_error(" null\n", 6, "a record cannot be null");
}

static void test_json_errors(void)
{
  check_json_error("{\"a\":1,}", 8, "invalid JSON: ");
  check_json_error("{\"a\":1,}", 8, "at column 8");
  check_json_error("[1", 2, "invalid JSON");
  check_json_error("1 2", 3, "end of file expected");
  check_json_error("", 0, "invalid JSON");
  check_json_error("NaN", 3, "invalid JSON");
  check_json_error("99999999999999999999", 20, "too big integer");
  check_json_error("\"\xff\"", 3, "invalid JSON");           /* bad UTF-8 */
  check_json_error("\"\xc0\x80\"", 4, "invalid JSON");       /* overlong */
  check_json_error("\"a\0b\"", 5, "invalid JSON");           /* raw NUL */
  check_json_error("{\"a\\u0000\":1}", 13, "invalid JSON");  /* NUL in key */
}

static char *nested(int depth, const char *open, const char *inner,
                    const char *close)
{
  size_t ol = strlen(open), il = strlen(inner), cl = strlen(close);
  char *s = malloc((size_t)depth * (ol + cl) + il + 1);
  char *p = s;
  for (int i = 0; i < depth; i++, p += ol)
    memcpy(p, open, ol);
  memcpy(p, inner, il);
  p += il;
  for (int i = 0; i < depth; i++, p += cl)
    memcpy(p, close, cl);
  *p = '\0';
  return s;
}

static void test_json_depth(void)
{
  /* 100 levels are fine and decode again */
  char *s = nested(100, "[", "1", "]");
  eddy_buf out = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_format_read_json(s, strlen(s), &out, NULL), EDDY_OK);
  size_t vlen = 0;
  CHECK_EQ_INT(eddy_mp_value_len(out.data, out.len, &vlen), EDDY_OK);
  CHECK_EQ_INT(vlen, out.len);
  free(s);
  eddy_buf_free(&out);

  s = nested(100, "{\"a\":", "1", "}");
  CHECK_EQ_INT(eddy_format_read_json(s, strlen(s), &out, NULL), EDDY_OK);
  free(s);
  eddy_buf_free(&out);

  s = nested(101, "[", "1", "]");
  check_json_error(s, strlen(s), "nested deeper than 100 levels");
  free(s);
  s = nested(101, "[", "", "]");
  check_json_error(s, strlen(s), "nested deeper than 100 levels");
  free(s);
  s = nested(150, "{\"k\":", "1", "}");
  check_json_error(s, strlen(s), "nested deeper than 100 levels");
  free(s);
  /* jansson refuses this itself; no stack is harmed */
  s = nested(100000, "[", "", "]");
  check_json_error(s, strlen(s), "invalid JSON");
  free(s);
  s = nested(100000, "[", "", "");
  check_json_error(s, strlen(s), "invalid JSON");
  free(s);
}

/* ---- decoders ---- */

typedef struct line_result {
  int rc;
  eddy_decode_result res;
} line_result;

static line_result feed(eddy_decoder *d, const char *line, size_t len,
                        eddy_buf *out, eddy_err *err)
{
  line_result r;
  r.res = (eddy_decode_result)-1;
  r.rc = eddy_format_decode_line(d, line, len, out, &r.res, err);
  return r;
}

#define FEED(d, s, out, err) feed((d), (s), sizeof(s) - 1, (out), (err))

static void test_decode_jsonl(void)
{
  eddy_decoder *d;
  eddy_buf out = EDDY_BUF_INIT;
  eddy_err err;
  CHECK_EQ_INT(eddy_format_decoder_new(EDDY_FORMAT_JSONL, NULL, &d, &err), EDDY_OK);
  CHECK(eddy_format_decoder_has_header(d));
  line_result r = FEED(d, "\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_OK);
  CHECK_EQ_INT(r.res, EDDY_DECODE_SKIP);
  r = FEED(d, "  \t \r\n", &out, &err);
  CHECK_EQ_INT(r.res, EDDY_DECODE_SKIP);
  r = FEED(d, "", &out, &err);
  CHECK_EQ_INT(r.res, EDDY_DECODE_SKIP);
  r = FEED(d, "{\"a\":{\"b\":1}}\r\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_OK);
  CHECK_EQ_INT(r.res, EDDY_DECODE_RECORD);
  want_reset(); w_map(1); w_str("a"); w_map(1); w_str("b"); w_int(1);
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_buf_reset(&out);
  r = FEED(d, "{oops}\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_EFORMAT);
  CHECK(strncmp(err.msg, "invalid JSON: ", 14) == 0);
  /* jansson points at the end of the bad token */
  CHECK_EQ_STR(err.msg, "invalid JSON: string or '}' expected near 'oops' at column 5");
  /* a newline inside what is handed in as one line is misuse */
  r = FEED(d, "1\n2\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_EINVAL);
  CHECK_EQ_INT(eddy_format_decode_end(d, &out, &r.res, &err), EDDY_OK);
  CHECK_EQ_INT(r.res, EDDY_DECODE_SKIP);
  eddy_format_decoder_free(d);
  eddy_buf_free(&out);
}

static void test_decode_lines(void)
{
  eddy_decoder *d;
  eddy_buf out = EDDY_BUF_INIT;
  eddy_err err;
  CHECK_EQ_INT(eddy_format_decoder_new(EDDY_FORMAT_LINES, NULL, &d, &err), EDDY_OK);
  struct {
    const char *in;
    size_t len;
    const char *rec;
    size_t rlen;
  } cases[] = {
      {"abc\n", 4, "abc", 3},
      {"abc\r\n", 5, "abc", 3},
      {"\n", 1, "", 0},
      {"\r\n", 2, "", 0},
      {"  \n", 3, "  ", 2},
      {"last", 4, "last", 4},
      {"cr\r", 3, "cr\r", 3}, /* a CR not before LF is data */
      {"a\rb\n", 4, "a\rb", 3},
      {"n\0l\n", 4, "n\0l", 3},
      {"\xff\xfe\n", 3, "\xff\xfe", 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    eddy_buf_reset(&out);
    line_result r = feed(d, cases[i].in, cases[i].len, &out, &err);
    CHECK_EQ_INT(r.rc, EDDY_OK);
    CHECK_EQ_INT(r.res, EDDY_DECODE_RECORD);
    want_reset();
    w_strn(cases[i].rec, cases[i].rlen);
    CHECK_MEM(out.data, out.len, want.data, want.len);
  }
  eddy_format_decoder_free(d);
  eddy_buf_free(&out);
}

static eddy_decoder *csv_decoder(int header, int infer, unsigned char delim)
{
  eddy_csv_options o;
  eddy_format_csv_defaults(&o);
  o.header = header;
  o.infer_types = infer;
  o.delimiter = delim;
  eddy_decoder *d = NULL;
  CHECK_EQ_INT(eddy_format_decoder_new(EDDY_FORMAT_CSV, &o, &d, NULL), EDDY_OK);
  return d;
}

/* One CSV line without header, a single field, compared with want. */
static void check_csv_field(eddy_decoder *d, const char *line)
{
  eddy_buf out = EDDY_BUF_INIT;
  eddy_err err = {0, ""};
  line_result r = feed(d, line, strlen(line), &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_OK);
  CHECK_EQ_INT(r.res, EDDY_DECODE_RECORD);
  eddy_buf got = EDDY_BUF_INIT;
  eddy_mp_write_array(&got, 1);
  eddy_buf_append(&got, want.data, want.len);
  CHECK_MEM(out.data, out.len, got.data, got.len);
  if (out.len != got.len || memcmp(out.data, got.data, got.len) != 0)
    fprintf(stderr, "  field %s", line);
  eddy_buf_free(&got);
  eddy_buf_free(&out);
}

static void test_csv_inference(void)
{
  eddy_decoder *d = csv_decoder(0, 1, ',');
  want_reset(); w_int(0); check_csv_field(d, "0\n");
  want_reset(); w_int(0); check_csv_field(d, "-0\n");
  want_reset(); w_int(42); check_csv_field(d, "42\n");
  want_reset(); w_int(-7); check_csv_field(d, "-7\n");
  want_reset(); w_int(INT64_MAX); check_csv_field(d, "9223372036854775807\n");
  want_reset(); w_int(INT64_MIN); check_csv_field(d, "-9223372036854775808\n");
  want_reset(); w_str("9223372036854775808"); check_csv_field(d, "9223372036854775808\n");
  want_reset(); w_str("-9223372036854775809"); check_csv_field(d, "-9223372036854775809\n");
  want_reset(); w_str("007"); check_csv_field(d, "007\n");
  want_reset(); w_str("+1"); check_csv_field(d, "+1\n");
  want_reset(); w_str("-"); check_csv_field(d, "-\n");
  want_reset(); w_str(" 1"); check_csv_field(d, " 1\n");
  want_reset(); w_str("1 "); check_csv_field(d, "1 \n");
  want_reset(); w_str("1_000"); check_csv_field(d, "1_000\n");
  want_reset(); w_float(1.5); check_csv_field(d, "1.5\n");
  want_reset(); w_float(1.0); check_csv_field(d, "1.0\n");
  want_reset(); w_float(-0.25); check_csv_field(d, "-0.25\n");
  want_reset(); w_float(1e5); check_csv_field(d, "1e5\n");
  want_reset(); w_float(2.5e-3); check_csv_field(d, "2.5E-3\n");
  want_reset(); w_float(0.5); check_csv_field(d, "0.5\n");
  want_reset(); w_str(".5"); check_csv_field(d, ".5\n");
  want_reset(); w_str("5."); check_csv_field(d, "5.\n");
  want_reset(); w_str("00.5"); check_csv_field(d, "00.5\n");
  want_reset(); w_str("1e"); check_csv_field(d, "1e\n");
  want_reset(); w_str("1e999"); check_csv_field(d, "1e999\n");
  want_reset(); w_str("inf"); check_csv_field(d, "inf\n");
  want_reset(); w_str("nan"); check_csv_field(d, "nan\n");
  want_reset(); w_str("NaN"); check_csv_field(d, "NaN\n");
  want_reset(); w_str("0x10"); check_csv_field(d, "0x10\n");
  want_reset(); w_str("1,5"); check_csv_field(d, "\"1,5\"\n");
  /* quoting does not change the type: a field is its text */
  want_reset(); w_int(12); check_csv_field(d, "\"12\"\n");
  want_reset(); w_str(""); check_csv_field(d, "\"\"\n");
  want_reset(); w_str("true"); check_csv_field(d, "true\n");
  eddy_format_decoder_free(d);

  d = csv_decoder(0, 0, ',');
  want_reset(); w_str("42"); check_csv_field(d, "42\n");
  want_reset(); w_str("1.5"); check_csv_field(d, "1.5\n");
  eddy_format_decoder_free(d);
}

static void test_csv_header(void)
{
  eddy_decoder *d = csv_decoder(1, 1, ',');
  eddy_buf out = EDDY_BUF_INIT;
  eddy_err err;
  CHECK(!eddy_format_decoder_has_header(d));
  line_result r = FEED(d, "\n", &out, &err);
  CHECK_EQ_INT(r.res, EDDY_DECODE_SKIP);
  r = FEED(d, "id,name,price,note\r\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_OK);
  CHECK_EQ_INT(r.res, EDDY_DECODE_HEADER);
  CHECK_EQ_INT(out.len, 0);
  CHECK(eddy_format_decoder_has_header(d));

  r = FEED(d, "1,apple,2.5,\r\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_OK);
  CHECK_EQ_INT(r.res, EDDY_DECODE_RECORD);
  /* sorted by key bytes: "id" "name" "note" "price" (all fixstr, so by
   * length first: a2 "id", a4 "name", a4 "note", a5 "price") */
  want_reset();
  w_map(4);
  w_str("id"); w_int(1);
  w_str("name"); w_str("apple");
  w_str("note"); w_str("");
  w_str("price"); w_float(2.5);
  CHECK_MEM(out.data, out.len, want.data, want.len);

  eddy_buf_reset(&out);
  r = FEED(d, "2,pear,3\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_EFORMAT);
  CHECK_EQ_STR(err.msg, "expected 4 fields (as in the header), got 3");
  CHECK_EQ_INT(out.len, 0);
  r = FEED(d, "2,pear,3,x,y\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_EFORMAT);
  CHECK_EQ_STR(err.msg, "expected 4 fields (as in the header), got 5");
  CHECK_EQ_INT(out.len, 0);
  /* and the decoder goes on */
  r = FEED(d, "3,\"fig, dried\",1,\"say \"\"hi\"\"\"", &out, &err);
  CHECK_EQ_INT(r.res, EDDY_DECODE_MORE); /* no newline: maybe more */
  CHECK_EQ_INT(eddy_format_decode_end(d, &out, &r.res, &err), EDDY_OK);
  CHECK_EQ_INT(r.res, EDDY_DECODE_RECORD);
  want_reset();
  w_map(4);
  w_str("id"); w_int(3);
  w_str("name"); w_str("fig, dried");
  w_str("note"); w_str("say \"hi\"");
  w_str("price"); w_int(1);
  CHECK_MEM(out.data, out.len, want.data, want.len);

  /* forgetting the header: the next record is a header again */
  eddy_format_decoder_forget_header(d);
  CHECK(!eddy_format_decoder_has_header(d));
  eddy_buf_reset(&out);
  r = FEED(d, "x\n", &out, &err);
  CHECK_EQ_INT(r.res, EDDY_DECODE_HEADER);
  r = FEED(d, "1\n", &out, &err);
  want_reset(); w_map(1); w_str("x"); w_int(1);
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_format_decoder_free(d);

  /* bad headers */
  d = csv_decoder(1, 1, ',');
  r = FEED(d, "a,b,a\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_EFORMAT);
  CHECK_EQ_STR(err.msg, "duplicate field name \"a\" in the CSV header");
  CHECK(!eddy_format_decoder_has_header(d));
  r = FEED(d, "a,,c\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_EFORMAT);
  CHECK_EQ_STR(err.msg, "empty field name in the CSV header (field 2)");
  /* names are text: "1" is a string key even with inference on */
  eddy_buf_reset(&out);
  r = FEED(d, "1,b\n", &out, &err);
  CHECK_EQ_INT(r.res, EDDY_DECODE_HEADER);
  r = FEED(d, "x,2\n", &out, &err);
  want_reset(); w_map(2); w_str("1"); w_str("x"); w_str("b"); w_int(2);
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_format_decoder_free(d);
  eddy_buf_free(&out);
}

static void test_csv_quotes_and_lines(void)
{
  eddy_decoder *d = csv_decoder(0, 1, ',');
  eddy_buf out = EDDY_BUF_INIT;
  eddy_err err;

  /* a quoted newline: the record takes three lines; CRLF inside quotes is
   * kept, the CRLF ending the record is not */
  line_result r = FEED(d, "1,\"first\r\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_OK);
  CHECK_EQ_INT(r.res, EDDY_DECODE_MORE);
  r = FEED(d, "\n", &out, &err); /* a blank line inside quotes is data */
  CHECK_EQ_INT(r.res, EDDY_DECODE_MORE);
  r = FEED(d, "third\",x\r\n", &out, &err);
  CHECK_EQ_INT(r.res, EDDY_DECODE_RECORD);
  want_reset(); w_array(3); w_int(1); w_str("first\r\n\nthird"); w_str("x");
  CHECK_MEM(out.data, out.len, want.data, want.len);

  /* CRLF and quoted last fields */
  eddy_buf_reset(&out);
  r = FEED(d, "a,\"b\"\r\n", &out, &err);
  want_reset(); w_array(2); w_str("a"); w_str("b");
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_buf_reset(&out);
  r = FEED(d, "a,\r\n", &out, &err);
  want_reset(); w_array(2); w_str("a"); w_str("");
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_buf_reset(&out);
  r = FEED(d, "a,,c\n", &out, &err);
  want_reset(); w_array(3); w_str("a"); w_str(""); w_str("c");
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_buf_reset(&out);
  r = FEED(d, "a\rb,c\n", &out, &err); /* a CR inside a line is data */
  want_reset(); w_array(2); w_str("a\rb"); w_str("c");
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_buf_reset(&out);
  r = feed(d, "n\0l,\"q\0\"\n", 9, &out, &err);
  want_reset(); w_array(2); w_strn("n\0l", 3); w_strn("q\0", 2);
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_buf_reset(&out);
  r = FEED(d, "\xff\xfe,\xc3\xa9\n", &out, &err); /* bytes pass through */
  want_reset(); w_array(2); w_str("\xff\xfe"); w_str("\xc3\xa9");
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_buf_reset(&out);
  r = FEED(d, " spaced , out \n", &out, &err); /* spaces are data */
  want_reset(); w_array(2); w_str(" spaced "); w_str(" out ");
  CHECK_MEM(out.data, out.len, want.data, want.len);

  /* strict errors, and the decoder goes on after them */
  eddy_buf_reset(&out);
  r = FEED(d, "ab\"c,d\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_EFORMAT);
  CHECK(strstr(err.msg, "a quote inside an unquoted field") != NULL);
  CHECK(strstr(err.msg, "at column 3") != NULL);
  CHECK_EQ_INT(out.len, 0);
  r = FEED(d, "\"ab\"c,d\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_EFORMAT);
  CHECK(strstr(err.msg, "a character after a closing quote at column 5") != NULL);
  r = FEED(d, "\"a\nb\"x\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_EINVAL); /* two lines in one call */
  r = FEED(d, "\"a\n", &out, &err);
  CHECK_EQ_INT(r.res, EDDY_DECODE_MORE);
  r = FEED(d, "b\"x\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_EFORMAT);
  CHECK(strstr(err.msg, "of the record's line 2") != NULL);
  r = FEED(d, "ok\n", &out, &err);
  CHECK_EQ_INT(r.rc, EDDY_OK);
  want_reset(); w_array(1); w_str("ok");
  CHECK_MEM(out.data, out.len, want.data, want.len);

  /* an unterminated quote at the end of input */
  eddy_buf_reset(&out);
  r = FEED(d, "1,\"never closed\n", &out, &err);
  CHECK_EQ_INT(r.res, EDDY_DECODE_MORE);
  r = FEED(d, "more\n", &out, &err);
  CHECK_EQ_INT(r.res, EDDY_DECODE_MORE);
  CHECK_EQ_INT(eddy_format_decode_end(d, &out, &r.res, &err), EDDY_EFORMAT);
  CHECK_EQ_STR(err.msg, "malformed CSV: unterminated quoted field");
  CHECK_EQ_INT(out.len, 0);
  /* reset drops a record in progress */
  r = FEED(d, "\"open\n", &out, &err);
  CHECK_EQ_INT(r.res, EDDY_DECODE_MORE);
  eddy_format_decoder_reset(d);
  r = FEED(d, "fresh\n", &out, &err);
  CHECK_EQ_INT(r.res, EDDY_DECODE_RECORD);
  want_reset(); w_array(1); w_str("fresh");
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_format_decoder_free(d);

  /* other delimiters */
  d = csv_decoder(0, 1, ';');
  eddy_buf_reset(&out);
  r = FEED(d, "1;a,b;\"c;d\"\n", &out, &err);
  want_reset(); w_array(3); w_int(1); w_str("a,b"); w_str("c;d");
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_format_decoder_free(d);
  d = csv_decoder(0, 1, '\t');
  eddy_buf_reset(&out);
  r = FEED(d, "1\t a\t\n", &out, &err);
  want_reset(); w_array(3); w_int(1); w_str(" a"); w_str("");
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_format_decoder_free(d);

  /* a long row: array16 header moved in front */
  d = csv_decoder(0, 1, ',');
  eddy_buf_reset(&out);
  r = FEED(d, "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17\n", &out, &err);
  want_reset(); w_array(17);
  for (int i = 1; i <= 17; i++)
    w_int(i);
  CHECK_MEM(out.data, out.len, want.data, want.len);
  eddy_format_decoder_free(d);
  eddy_buf_free(&out);
}

static void test_csv_options(void)
{
  eddy_csv_options o;
  eddy_err err;
  eddy_decoder *d = (eddy_decoder *)&o;
  eddy_format_csv_defaults(&o);
  CHECK_EQ_INT(o.delimiter, ',');
  CHECK_EQ_INT(o.header, 1);
  CHECK_EQ_INT(o.infer_types, 1);
  o.delimiter = '"';
  CHECK_EQ_INT(eddy_format_decoder_new(EDDY_FORMAT_CSV, &o, &d, &err), EDDY_EINVAL);
  CHECK(d == NULL);
  o.delimiter = '\n';
  CHECK_EQ_INT(eddy_format_csv_check(&o, &err), EDDY_EINVAL);
  eddy_encoder *e;
  CHECK_EQ_INT(eddy_format_encoder_new(EDDY_FORMAT_CSV, &o, &e, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_format_decoder_new((eddy_format_kind)99, NULL, &d, &err), EDDY_EINVAL);

  eddy_format_kind k;
  CHECK_EQ_INT(eddy_format_parse("csv", &k, &err), EDDY_OK);
  CHECK_EQ_INT(k, EDDY_FORMAT_CSV);
  CHECK_EQ_INT(eddy_format_parse("jsonl", &k, &err), EDDY_OK);
  CHECK_EQ_INT(k, EDDY_FORMAT_JSONL);
  CHECK_EQ_INT(eddy_format_parse("lines", &k, &err), EDDY_OK);
  CHECK_EQ_INT(k, EDDY_FORMAT_LINES);
  CHECK_EQ_INT(eddy_format_parse("xml", &k, &err), EDDY_EINVAL);
  CHECK_EQ_STR(err.msg, "unknown format \"xml\" (expected jsonl, csv or lines)");
  CHECK_EQ_INT(eddy_format_parse(NULL, &k, &err), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_format_name(EDDY_FORMAT_LINES), "lines");
  CHECK_EQ_INT(eddy_format_guess("data/orders.JSONL", &k), EDDY_OK);
  CHECK_EQ_INT(k, EDDY_FORMAT_JSONL);
  CHECK_EQ_INT(eddy_format_guess("x.csv", &k), EDDY_OK);
  CHECK_EQ_INT(k, EDDY_FORMAT_CSV);
  CHECK_EQ_INT(eddy_format_guess("app.log", &k), EDDY_OK);
  CHECK_EQ_INT(k, EDDY_FORMAT_LINES);
  CHECK_EQ_INT(eddy_format_guess("dir.csv/noext", &k), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_format_guess(".csv", &k), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_format_guess(NULL, &k), EDDY_ENOTFOUND);
}

/* ---- record -> JSON ---- */

static void test_write_json(void)
{
  want_reset(); w_int(5); check_write_json("5\n");
  want_reset(); w_float(1.0); check_write_json("1.0\n");
  want_reset(); w_float(100.0); check_write_json("100.0\n");
  want_reset(); w_float(0.1); check_write_json("0.1\n");
  want_reset(); w_float(1e300); check_write_json("1e300\n");
  want_reset(); w_float(-0.0); check_write_json("-0.0\n");
  want_reset(); w_float(123456789012345678.0);
  check_write_json("1.23456789012346e17\n");
  want_reset(); w_str("a\"b\\\n\x01"); check_write_json("\"a\\\"b\\\\\\n\\u0001\"\n");
  want_reset(); w_strn("n\0l", 3); check_write_json("\"n\\u0000l\"\n");
  want_reset(); w_str("\xc3\xa9"); check_write_json("\"\xc3\xa9\"\n");
  /* bytes that are not UTF-8 become U+FFFD, one per byte */
  want_reset(); w_str("a\xff\xc3z"); check_write_json("\"a\xef\xbf\xbd\xef\xbf\xbdz\"\n");
  want_reset(); w_str("\xed\xa0\x80"); /* a surrogate */
  check_write_json("\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"\n");
  want_reset(); w_bool(1); check_write_json("true\n");
  want_reset(); w_array(0); check_write_json("[]\n");
  want_reset(); w_map(0); check_write_json("{}\n");

  /* keys sorted as text, compact */
  want_reset();
  w_map(3);
  w_str("b"); w_int(1);
  w_str("aa"); w_array(2); w_int(1); w_float(2.0);
  w_str("c"); w_map(1); w_str("z"); w_bool(0);
  check_write_json("{\"aa\":[1,2.0],\"b\":1,\"c\":{\"z\":false}}\n");

  /* keys that are not strings become their text */
  want_reset();
  w_map(4);
  w_int(1); w_str("a");
  w_int(3); w_str("c");
  w_float(1.5); w_str("f");
  w_bool(1); w_str("t");
  check_write_json("{\"1\":\"a\",\"1.5\":\"f\",\"3\":\"c\",\"true\":\"t\"}\n");
  want_reset(); w_map(1); w_str("k\xff"); w_int(1);
  check_write_json("{\"k\xef\xbf\xbd\":1}\n");

  /* errors name the place */
  want_reset(); w_float(NAN); check_write_json_error("cannot write NaN as JSON");
  want_reset(); w_map(1); w_str("price"); w_float(INFINITY);
  check_write_json_error("cannot write inf as JSON at record.price");
  want_reset(); w_map(1); w_str("a b"); w_array(2); w_int(1); w_float(-INFINITY);
  check_write_json_error("cannot write -inf as JSON at record[\"a b\"][2]");
  want_reset(); w_map(1); w_str("m"); w_map(1); w_array(1); w_int(1); w_int(2);
  check_write_json_error("cannot write an array as a JSON object key at record.m");
  want_reset(); w_map(1); w_map(0); w_int(2);
  check_write_json_error("cannot write a map as a JSON object key");
  want_reset(); w_map(2); w_int(1); w_int(1); w_str("1"); w_int(2);
  check_write_json_error("two map keys have the same JSON text at record[\"1\"]");

  /* not one well-formed value */
  want_reset(); w_array(2); w_int(1);
  check_write_json_error("not well-formed");
  want_reset(); w_int(1); w_int(2);
  check_write_json_error("not well-formed");
  want_reset(); eddy_buf_putc(&want, 0xc1);
  check_write_json_error("not well-formed");
  want_reset(); eddy_buf_append(&want, "\xd4\x01\x02", 3); /* ext */
  check_write_json_error("not well-formed");
  want_reset();
  for (int i = 0; i < 101; i++)
    w_array(1);
  w_int(1);
  check_write_json_error("nested deeper than 100");
}

static void test_json_round_trip(void)
{
  const char *lines[] = {
      "{\"a\":1,\"b\":[1,2.5,\"x\",true],\"c\":{\"d\":-0.5}}\n",
      "[1,2,3]\n",
      "\"just a string\"\n",
      "{\"1\":\"a\",\"3\":\"c\"}\n",
      "{\"big\":9223372036854775807,\"small\":-9223372036854775808}\n",
      "{\"e\":1e-7,\"f\":1.0}\n",
  };
  for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
    eddy_buf rec = EDDY_BUF_INIT, text = EDDY_BUF_INIT;
    CHECK_EQ_INT(eddy_format_read_json(lines[i], strlen(lines[i]), &rec, NULL), EDDY_OK);
    CHECK_EQ_INT(eddy_format_write_json(rec.data, rec.len, &text, NULL), EDDY_OK);
    eddy_buf_putc(&text, '\0');
    CHECK_EQ_STR((const char *)text.data, lines[i]);
    eddy_buf_free(&rec);
    eddy_buf_free(&text);
  }
  /* {1, nil, 3} comes back as an object: JSON has no holes */
  eddy_buf rec = EDDY_BUF_INIT, text = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_format_read_json("[1,null,3]", 10, &rec, NULL), EDDY_OK);
  CHECK_EQ_INT(eddy_format_write_json(rec.data, rec.len, &text, NULL), EDDY_OK);
  CHECK_MEM(text.data, text.len, "{\"1\":1,\"3\":3}\n", 14);
  eddy_buf_free(&rec);
  eddy_buf_free(&text);
}

/* ---- encoders ---- */

static eddy_encoder *encoder(eddy_format_kind k, int header, unsigned char delim)
{
  eddy_csv_options o;
  eddy_format_csv_defaults(&o);
  o.header = header;
  o.delimiter = delim;
  eddy_encoder *e = NULL;
  CHECK_EQ_INT(eddy_format_encoder_new(k, &o, &e, NULL), EDDY_OK);
  return e;
}

/* want -> text appended to out; returns the status */
static int enc(eddy_encoder *e, eddy_buf *out, eddy_err *err)
{
  return eddy_format_encode(e, want.data, want.len, out, err);
}

static void check_text(eddy_buf *out, const char *expect)
{
  eddy_buf_putc(out, '\0');
  CHECK_EQ_STR((const char *)out->data, expect);
  out->len--;
}

static void test_encode_csv(void)
{
  eddy_encoder *e = encoder(EDDY_FORMAT_CSV, 1, ',');
  eddy_buf out = EDDY_BUF_INIT;
  eddy_err err;

  /* a first record that fails writes nothing, header included */
  want_reset(); w_map(2); w_str("tags"); w_array(1); w_int(1); w_str("id"); w_int(0);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_EFORMAT);
  CHECK_EQ_STR(err.msg, "cannot write a nested array to CSV at record.tags");
  CHECK_EQ_INT(out.len, 0);

  /* columns sorted as text (not as msgpack bytes): "id" < "name" < "z" */
  want_reset();
  w_map(4);
  w_str("z"); w_float(2.0);
  w_str("id"); w_int(1);
  w_str("name"); w_str("a,b");
  w_str("ok"); w_bool(1);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  check_text(&out, "id,name,ok,z\n1,\"a,b\",true,2.0\n");

  eddy_buf_reset(&out);
  want_reset();
  w_map(3);
  w_str("name"); w_str("say \"hi\"\r\nbye");
  w_str("id"); w_int(-2);
  w_str("z"); w_float(0.1);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK); /* ok missing: empty */
  check_text(&out, "-2,\"say \"\"hi\"\"\r\nbye\",,0.1\n");

  eddy_buf_reset(&out);
  want_reset(); w_map(2); w_str("id"); w_float(NAN); w_str("z"); w_float(-INFINITY);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  check_text(&out, "nan,,,-inf\n");

  eddy_buf_reset(&out);
  want_reset(); w_array(0); /* an empty record: every column empty */
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  check_text(&out, ",,,\n");

  /* other fields and shapes are errors that write nothing */
  eddy_buf_reset(&out);
  want_reset(); w_map(2); w_str("id"); w_int(1); w_str("extra"); w_int(2);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_EFORMAT);
  CHECK(strstr(err.msg, "field \"extra\" is not a CSV column") != NULL);
  CHECK_EQ_INT(out.len, 0);
  want_reset(); w_map(1); w_str("name"); w_map(1); w_str("x"); w_int(1);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_EFORMAT);
  CHECK_EQ_STR(err.msg, "cannot write a nested map to CSV at record.name");
  want_reset(); w_array(2); w_int(1); w_int(2);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_EFORMAT);
  CHECK_EQ_STR(err.msg, "cannot write an array record to CSV after map records");
  want_reset(); w_map(1); w_array(0); w_int(1);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_EFORMAT);
  CHECK(strstr(err.msg, "cannot write an array as a CSV column name") != NULL);
  want_reset(); w_map(2); w_str("id"); w_int(1); w_str("id"); w_int(2);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_EFORMAT);
  CHECK(strstr(err.msg, "same text") != NULL);
  CHECK_EQ_INT(out.len, 0);

  /* a new file gets the header again */
  eddy_format_encoder_new_file(e);
  want_reset(); w_map(1); w_str("id"); w_int(7);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  check_text(&out, "id,name,ok,z\n7,,,\n");
  eddy_format_encoder_free(e);

  /* no header; arrays; a delimiter that needs quoting elsewhere */
  e = encoder(EDDY_FORMAT_CSV, 0, ';');
  eddy_buf_reset(&out);
  want_reset(); w_array(3); w_str("a;b"); w_str("a,b"); w_int(3);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  want_reset(); w_array(1); w_str(""); /* one empty field is not a blank line */
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  want_reset(); w_str("scalar");
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  want_reset(); w_array(2); w_int(1); w_array(0);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_EFORMAT);
  CHECK_EQ_STR(err.msg, "cannot write a nested array to CSV at record[2]");
  want_reset(); w_map(1); w_str("a"); w_int(1);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_EFORMAT);
  check_text(&out, "\"a;b\";a,b;3\n\"\"\nscalar\n");
  eddy_format_encoder_free(e);

  /* a map record with header off: no header line */
  e = encoder(EDDY_FORMAT_CSV, 0, ',');
  eddy_buf_reset(&out);
  want_reset(); w_map(2); w_str("b"); w_int(2); w_str("a"); w_int(1);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  check_text(&out, "1,2\n");
  eddy_format_encoder_free(e);
  eddy_buf_free(&out);
}

static void test_csv_round_trip(void)
{
  eddy_encoder *e = encoder(EDDY_FORMAT_CSV, 1, ',');
  eddy_decoder *d = csv_decoder(1, 1, ',');
  eddy_buf text = EDDY_BUF_INIT, rec = EDDY_BUF_INIT;
  eddy_buf recs[2] = {EDDY_BUF_INIT, EDDY_BUF_INIT};
  eddy_err err;

  eddy_mp_write_map(&recs[0], 3);
  eddy_mp_write_str(&recs[0], "id", 2); eddy_mp_write_int(&recs[0], 1);
  eddy_mp_write_str(&recs[0], "note", 4); eddy_mp_write_str(&recs[0], "two\nlines, \"q\"", 15);
  eddy_mp_write_str(&recs[0], "price", 5); eddy_mp_write_float(&recs[0], 2.5);
  eddy_mp_write_map(&recs[1], 3);
  eddy_mp_write_str(&recs[1], "id", 2); eddy_mp_write_int(&recs[1], -3);
  eddy_mp_write_str(&recs[1], "note", 4); eddy_mp_write_str(&recs[1], "", 0);
  eddy_mp_write_str(&recs[1], "price", 5); eddy_mp_write_float(&recs[1], 1e20);
  for (int i = 0; i < 2; i++)
    CHECK_EQ_INT(eddy_format_encode(e, recs[i].data, recs[i].len, &text, &err), EDDY_OK);

  /* split the text into lines and decode them back */
  size_t pos = 0;
  int got = 0;
  while (pos < text.len) {
    const unsigned char *nl = memchr(text.data + pos, '\n', text.len - pos);
    size_t n = (size_t)(nl - (text.data + pos)) + 1;
    eddy_decode_result res;
    CHECK_EQ_INT(eddy_format_decode_line(d, text.data + pos, n, &rec, &res, &err), EDDY_OK);
    pos += n;
    if (res == EDDY_DECODE_RECORD) {
      CHECK(got < 2);
      if (got < 2)
        CHECK_MEM(rec.data, rec.len, recs[got].data, recs[got].len);
      got++;
      eddy_buf_reset(&rec);
    }
  }
  CHECK_EQ_INT(got, 2);
  eddy_format_encoder_free(e);
  eddy_format_decoder_free(d);
  eddy_buf_free(&text);
  eddy_buf_free(&rec);
  eddy_buf_free(&recs[0]);
  eddy_buf_free(&recs[1]);
}

static void test_encode_lines_jsonl(void)
{
  eddy_encoder *e = encoder(EDDY_FORMAT_LINES, 1, ',');
  eddy_buf out = EDDY_BUF_INIT;
  eddy_err err;
  want_reset(); w_str("raw \xff line");
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  want_reset(); w_map(1); w_str("a"); w_int(1);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  want_reset(); w_float(2.0);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  want_reset(); w_str(""); /* the empty string is an empty line */
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  want_reset(); w_float(NAN);
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_EFORMAT);
  CHECK_MEM(out.data, out.len, "raw \xff line\n{\"a\":1}\n2.0\n\n", 24);
  eddy_format_encoder_free(e);

  e = encoder(EDDY_FORMAT_JSONL, 1, ',');
  eddy_buf_reset(&out);
  want_reset(); w_str("s");
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  want_reset(); w_array(2); w_bool(0); w_str("x");
  CHECK_EQ_INT(enc(e, &out, &err), EDDY_OK);
  check_text(&out, "\"s\"\n[false,\"x\"]\n");
  eddy_format_encoder_free(e);
  eddy_buf_free(&out);
}

static void test_cleanup(void) { eddy_buf_free(&want); }

TEST_MAIN("format",
          TEST(test_json_scalars),
          TEST(test_json_tables),
          TEST(test_json_nulls),
          TEST(test_json_errors),
          TEST(test_json_depth),
          TEST(test_decode_jsonl),
          TEST(test_decode_lines),
          TEST(test_csv_inference),
          TEST(test_csv_header),
          TEST(test_csv_quotes_and_lines),
          TEST(test_csv_options),
          TEST(test_write_json),
          TEST(test_json_round_trip),
          TEST(test_encode_csv),
          TEST(test_csv_round_trip),
          TEST(test_encode_lines_jsonl),
          TEST(test_cleanup))
