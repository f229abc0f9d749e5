/*
 * Text formats <-> canonical MessagePack records: see format.h for the
 * rules. Parsing is left to the libraries (jansson for JSON, libcsv for
 * CSV); what is written here is the mapping between their values and eddy's
 * data model, which is where the Lua-compatibility rules live.
 */
#include "runtime/format.h"

#include <ctype.h>
#include <csv.h>
#include <inttypes.h>
#include <jansson.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/msgpack.h"

/* ------------------------------------------------------------------ */
/* names and options                                                    */

int eddy_format_parse(const char *name, eddy_format_kind *kind, eddy_err *err)
{
  if (name != NULL) {
    if (strcmp(name, "jsonl") == 0) {
      *kind = EDDY_FORMAT_JSONL;
      return EDDY_OK;
    }
    if (strcmp(name, "csv") == 0) {
      *kind = EDDY_FORMAT_CSV;
      return EDDY_OK;
    }
    if (strcmp(name, "lines") == 0) {
      *kind = EDDY_FORMAT_LINES;
      return EDDY_OK;
    }
  }
  return eddy_seterr(err, EDDY_EINVAL,
                     "unknown format \"%s\" (expected jsonl, csv or lines)",
                     name ? name : "(null)");
}

const char *eddy_format_name(eddy_format_kind kind)
{
  switch (kind) {
  case EDDY_FORMAT_JSONL: return "jsonl";
  case EDDY_FORMAT_CSV: return "csv";
  case EDDY_FORMAT_LINES: return "lines";
  }
  return "?";
}

int eddy_format_guess(const char *path, eddy_format_kind *kind)
{
  if (path == NULL)
    return EDDY_ENOTFOUND;
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  const char *dot = strrchr(base, '.');
  if (dot == NULL || dot == base)
    return EDDY_ENOTFOUND;
  static const struct {
    const char *ext;
    eddy_format_kind kind;
  } exts[] = {
      {".jsonl", EDDY_FORMAT_JSONL}, {".ndjson", EDDY_FORMAT_JSONL},
      {".json", EDDY_FORMAT_JSONL},  {".csv", EDDY_FORMAT_CSV},
      {".txt", EDDY_FORMAT_LINES},   {".log", EDDY_FORMAT_LINES},
  };
  for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
    if (strcasecmp(dot, exts[i].ext) == 0) {
      *kind = exts[i].kind;
      return EDDY_OK;
    }
  }
  return EDDY_ENOTFOUND;
}

void eddy_format_csv_defaults(eddy_csv_options *opts)
{
  opts->delimiter = ',';
  opts->header = 1;
  opts->infer_types = 1;
}

int eddy_format_csv_check(const eddy_csv_options *opts, eddy_err *err)
{
  unsigned char d = opts->delimiter;
  if (d == '"' || d == '\r' || d == '\n' || d == '\0')
    return eddy_seterr(err, EDDY_EINVAL,
                       "a CSV delimiter cannot be a quote, CR, LF or NUL");
  return EDDY_OK;
}

/* ------------------------------------------------------------------ */
/* shared helpers                                                       */

/* Maps under construction nest (a map inside a map), and each level keeps
 * its own run of pairs until eddy_mp_finish_map sorts them: one stack for
 * all levels, addressed by index because it may move when it grows. */
typedef struct map_stack {
  eddy_mp_pair *pairs;
  size_t n, cap;
  eddy_buf scratch; /* eddy_mp_finish_map's copy */
} map_stack;

static void map_stack_free(map_stack *s)
{
  free(s->pairs);
  eddy_buf_free(&s->scratch);
  memset(s, 0, sizeof *s);
}

static int map_stack_push(map_stack *s, size_t *idx)
{
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 32;
    eddy_mp_pair *p = realloc(s->pairs, cap * sizeof *p);
    if (p == NULL)
      return EDDY_ENOMEM;
    s->pairs = p;
    s->cap = cap;
  }
  *idx = s->n++;
  return EDDY_OK;
}

/* Writers return EDDY_ELIMIT only for a string over 4 GiB; for data that is
 * a malformed record, not a resource problem. */
static int mp_rc(int rc, eddy_err *err)
{
  if (rc == EDDY_ENOMEM)
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory");
  if (rc == EDDY_ELIMIT)
    return eddy_seterr(err, EDDY_EFORMAT, "a string longer than 4 GiB");
  return rc;
}

static int is_blank(const unsigned char *s, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '\v' &&
        c != '\f')
      return 0;
  }
  return 1;
}

/* Text of a float as jansson writes it in JSON (15 significant digits, a
 * '.' or exponent always present), so CSV and map keys agree with JSON.
 * Only for finite values. */
static int real_text(double v, char *buf, size_t cap, size_t *len)
{
  json_t *j = json_real(v);
  if (j == NULL)
    return EDDY_ENOMEM;
  size_t n = json_dumpb(j, buf, cap, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
  json_decref(j);
  if (n == 0 || n >= cap)
    return EDDY_ENOMEM;
  *len = n;
  return EDDY_OK;
}

/* ------------------------------------------------------------------ */
/* JSON -> MessagePack                                                  */

static int too_deep(eddy_err *err)
{
  return eddy_seterr(err, EDDY_EFORMAT, "nested deeper than %d levels",
                     EDDY_MP_MAX_DEPTH);
}

static int json_value(map_stack *s, const json_t *v, int depth, eddy_buf *out,
                      eddy_err *err);

/* An object member whose value is null is left out: the Lua table it
 * becomes cannot hold nil. An object with nothing left is an empty table,
 * which eddy writes as an empty array. */
static int json_object_value(map_stack *s, json_t *v, int depth, eddy_buf *out,
                             eddy_err *err)
{
  size_t start = out->len, base = s->n;
  uint32_t n = 0;
  int rc = EDDY_OK;
  for (void *it = json_object_iter(v); it != NULL;
       it = json_object_iter_next(v, it)) {
    json_t *val = json_object_iter_value(it);
    if (json_is_null(val))
      continue;
    size_t idx;
    if ((rc = map_stack_push(s, &idx)) != EDDY_OK)
      goto done;
    size_t off = out->len;
    rc = eddy_mp_write_str(out, json_object_iter_key(it),
                           json_object_iter_key_len(it));
    if (rc != EDDY_OK)
      goto done;
    s->pairs[idx].off = off;
    s->pairs[idx].key_len = out->len - off;
    if ((rc = json_value(s, val, depth + 1, out, err)) != EDDY_OK)
      goto done;
    s->pairs[idx].len = out->len - off;
    n++;
  }
  if (n == 0) {
    out->len = start;
    rc = eddy_mp_write_array(out, 0);
  } else {
    rc = eddy_mp_finish_map(out, start, s->pairs + base, n, &s->scratch);
  }
done:
  s->n = base;
  return rc;
}

/* Lua's view of an array: nil elements at the end vanish; a nil inside
 * leaves a table with holes, which the codec writes as a map from 1-based
 * index to value (as for the Lua table {1, nil, 3}). */
static int json_array_value(map_stack *s, json_t *v, int depth, eddy_buf *out,
                            eddy_err *err)
{
  size_t m = json_array_size(v);
  while (m > 0 && json_is_null(json_array_get(v, m - 1)))
    m--;
  if (m == 0)
    return eddy_mp_write_array(out, 0);
  if (m > UINT32_MAX)
    return eddy_seterr(err, EDDY_EFORMAT, "an array too long for a record");
  int holes = 0;
  for (size_t i = 0; i < m && !holes; i++)
    holes = json_is_null(json_array_get(v, i));
  int rc;
  if (!holes) {
    if ((rc = eddy_mp_write_array(out, (uint32_t)m)) != EDDY_OK)
      return rc;
    for (size_t i = 0; i < m; i++) {
      rc = json_value(s, json_array_get(v, i), depth + 1, out, err);
      if (rc != EDDY_OK)
        return rc;
    }
    return EDDY_OK;
  }
  size_t start = out->len, base = s->n;
  uint32_t n = 0;
  rc = EDDY_OK;
  for (size_t i = 0; i < m; i++) {
    json_t *el = json_array_get(v, i);
    if (json_is_null(el))
      continue;
    size_t idx;
    if ((rc = map_stack_push(s, &idx)) != EDDY_OK)
      goto done;
    size_t off = out->len;
    if ((rc = eddy_mp_write_int(out, (int64_t)i + 1)) != EDDY_OK)
      goto done;
    s->pairs[idx].off = off;
    s->pairs[idx].key_len = out->len - off;
    if ((rc = json_value(s, el, depth + 1, out, err)) != EDDY_OK)
      goto done;
    s->pairs[idx].len = out->len - off;
    n++;
  }
  rc = eddy_mp_finish_map(out, start, s->pairs + base, n, &s->scratch);
done:
  s->n = base;
  return rc;
}

/* depth: how many containers enclose v. jansson bounds its own nesting
 * (2048), so the recursion here is bounded twice over. */
static int json_value(map_stack *s, const json_t *v, int depth, eddy_buf *out,
                      eddy_err *err)
{
  json_t *mv = (json_t *)v; /* jansson's getters take non-const */
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    if (depth + 1 > EDDY_MP_MAX_DEPTH)
      return too_deep(err);
    return json_object_value(s, mv, depth, out, err);
  case JSON_ARRAY:
    if (depth + 1 > EDDY_MP_MAX_DEPTH)
      return too_deep(err);
    return json_array_value(s, mv, depth, out, err);
  case JSON_STRING:
    return eddy_mp_write_str(out, json_string_value(v), json_string_length(v));
  case JSON_INTEGER:
    return eddy_mp_write_int(out, (int64_t)json_integer_value(v));
  case JSON_REAL:
    return eddy_mp_write_float(out, json_real_value(v));
  case JSON_TRUE:
    return eddy_mp_write_bool(out, 1);
  case JSON_FALSE:
    return eddy_mp_write_bool(out, 0);
  case JSON_NULL:
    break;
  }
  /* Nested nulls are dropped by their parents; only a top-level one gets
   * here. */
  return eddy_seterr(err, EDDY_EFORMAT, "a record cannot be null");
}

static int json_text(map_stack *s, const void *text, size_t len, eddy_buf *out,
                     eddy_err *err)
{
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (root == NULL) {
    if (json_error_code(&jerr) == json_error_out_of_memory)
      return eddy_seterr(err, EDDY_ENOMEM, "out of memory");
    if (jerr.column > 0)
      return eddy_seterr(err, EDDY_EFORMAT, "invalid JSON: %s at column %d",
                         jerr.text, jerr.column);
    return eddy_seterr(err, EDDY_EFORMAT, "invalid JSON: %s", jerr.text);
  }
  size_t start = out->len;
  s->n = 0;
  int rc = json_value(s, root, 0, out, err);
  json_decref(root);
  if (rc != EDDY_OK) {
    out->len = start;
    return mp_rc(rc, err);
  }
  return EDDY_OK;
}

int eddy_format_read_json(const void *text, size_t len, eddy_buf *out,
                          eddy_err *err)
{
  map_stack s;
  memset(&s, 0, sizeof s);
  int rc = json_text(&s, text, len, out, err);
  map_stack_free(&s);
  return rc;
}

/* ------------------------------------------------------------------ */
/* CSV -> MessagePack                                                   */

struct eddy_decoder {
  eddy_format_kind kind;
  map_stack maps; /* JSON maps; CSV uses its scratch and pairs too */

  /* CSV */
  eddy_csv_options csv;
  struct csv_parser parser;
  locale_t c_locale; /* strtod must read '.' whatever the process locale */
  int in_record;     /* lines fed, row not finished */
  int header_row;    /* the row in progress is the header */
  int row_done;
  unsigned lines_in_record;
  eddy_buf *out; /* where the record in progress goes */
  size_t start;  /* its offset in out */
  uint64_t nfields;
  int cb_rc; /* first failure inside a libcsv callback */
  eddy_err cb_err;
  /* the header: names as encoded msgpack str, back to back */
  int have_header;
  eddy_buf names;
  size_t *name_off; /* nnames + 1 offsets into names */
  size_t name_cap;
  uint32_t nnames;
};

/* libcsv treats CR as a space, so that it is trimmed from the end of an
 * unquoted field (CRLF files) and tolerated after a closing quote, while a
 * CR inside quotes stays data. Only LF ends a row: a line is what the
 * reader hands in, and a CR in the middle of a line is not a line break.
 * Blanks other than CR are data (RFC 4180: spaces are part of a field). */
static int csv_is_space(unsigned char c) { return c == '\r'; }
static int csv_is_term(unsigned char c) { return c == '\n'; }

static int csv_parser_init(eddy_decoder *d)
{
  if (csv_init(&d->parser, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
    return EDDY_ENOMEM;
  csv_set_delim(&d->parser, d->csv.delimiter);
  csv_set_space_func(&d->parser, csv_is_space);
  csv_set_term_func(&d->parser, csv_is_term);
  /* The default growth of 128 bytes means a realloc per 128 bytes of a
   * long field. */
  csv_set_blk_size(&d->parser, 64 * 1024);
  return EDDY_OK;
}

static void csv_parser_restart(eddy_decoder *d)
{
  csv_free(&d->parser);
  csv_parser_init(d);
}

/* A plain decimal integer: optional '-', no '+', no leading zeros. */
static int parse_int(const char *s, size_t n, int64_t *v)
{
  size_t i = 0;
  int neg = 0;
  if (i < n && s[i] == '-') {
    neg = 1;
    i++;
  }
  if (i == n || s[i] < '0' || s[i] > '9')
    return 0;
  if (s[i] == '0' && n - i > 1)
    return 0;
  uint64_t acc = 0;
  uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return 0;
    unsigned dgt = (unsigned)(s[i] - '0');
    if (acc > (lim - dgt) / 10)
      return 0;
    acc = acc * 10 + dgt;
  }
  *v = neg ? (acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc)
           : (int64_t)acc;
  return 1;
}

/* A float is what JSON calls a number with a fraction or an exponent; that
 * excludes inf, nan, hex, a leading '+' or '.', and leading zeros. */
static int is_float_literal(const char *s, size_t n)
{
  size_t i = 0;
  int digits = 0, frac = 0, exp = 0;
  if (i < n && s[i] == '-')
    i++;
  if (i < n && s[i] == '0') {
    i++;
    digits = 1;
  } else {
    while (i < n && s[i] >= '0' && s[i] <= '9') {
      i++;
      digits = 1;
    }
  }
  if (!digits)
    return 0;
  if (i < n && s[i] == '.') {
    i++;
    size_t f = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
    if (i == f)
      return 0;
    frac = 1;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-'))
      i++;
    size_t e = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
    if (i == e)
      return 0;
    exp = 1;
  }
  return i == n && (frac || exp);
}

/* s is NUL-terminated at s[n] (CSV_APPEND_NULL). */
static int csv_value(eddy_decoder *d, const char *s, size_t n, eddy_buf *out)
{
  if (d->csv.infer_types && n > 0 && n < 1024) {
    int64_t iv;
    if (parse_int(s, n, &iv))
      return eddy_mp_write_int(out, iv);
    if (is_float_literal(s, n)) {
      char *end;
      double f = strtod_l(s, &end, d->c_locale);
      /* 1e999 does not fit a double; a string keeps what was written */
      if (end == s + n && isfinite(f))
        return eddy_mp_write_float(out, f);
    }
  }
  return eddy_mp_write_str(out, s, n);
}

static void cb_fail(eddy_decoder *d, int rc)
{
  if (d->cb_rc == EDDY_OK) {
    d->cb_rc = rc;
    if (rc == EDDY_ENOMEM)
      eddy_seterr(&d->cb_err, rc, "out of memory");
    else if (rc == EDDY_ELIMIT)
      d->cb_rc = eddy_seterr(&d->cb_err, EDDY_EFORMAT,
                             "a field longer than 4 GiB");
  }
}

static void cb_header_field(eddy_decoder *d, const char *s, size_t n)
{
  if (d->nnames + 2 > d->name_cap) {
    size_t cap = d->name_cap ? 2 * d->name_cap : 16;
    size_t *p = realloc(d->name_off, cap * sizeof *p);
    if (p == NULL) {
      cb_fail(d, EDDY_ENOMEM);
      return;
    }
    d->name_off = p;
    d->name_cap = cap;
  }
  if (d->nnames == 0)
    d->name_off[0] = 0;
  int rc = eddy_mp_write_str(&d->names, s, n);
  if (rc != EDDY_OK) {
    cb_fail(d, rc);
    return;
  }
  d->nnames++;
  d->name_off[d->nnames] = d->names.len;
}

static void cb_field(void *field, size_t n, void *data)
{
  eddy_decoder *d = data;
  const char *s = field ? field : "";
  if (d->cb_rc != EDDY_OK)
    return;
  if (d->csv.header && !d->have_header) {
    cb_header_field(d, s, n);
    d->nfields++;
    return;
  }
  eddy_buf *out = d->out;
  int rc = EDDY_OK;
  if (d->csv.header) {
    /* Extra fields are only counted: the row is an error at its end. */
    if (d->nfields < d->nnames) {
      size_t i = (size_t)d->nfields;
      size_t off = out->len, klen = d->name_off[i + 1] - d->name_off[i];
      rc = eddy_buf_append(out, d->names.data + d->name_off[i], klen);
      if (rc == EDDY_OK)
        rc = csv_value(d, s, n, out);
      if (rc == EDDY_OK) {
        d->maps.pairs[i].off = off;
        d->maps.pairs[i].key_len = klen;
        d->maps.pairs[i].len = out->len - off;
      }
    }
  } else {
    rc = csv_value(d, s, n, out);
  }
  if (rc != EDDY_OK)
    cb_fail(d, rc);
  d->nfields++;
}

typedef struct name_ref {
  const unsigned char *p;
  size_t len;
} name_ref;

static int cmp_name_ref(const void *x, const void *y)
{
  const name_ref *a = x, *b = y;
  return eddy_mp_compare(a->p, a->len, b->p, b->len);
}

/* The header becomes the map keys of every record: an empty or repeated
 * name would lose a column silently, so both are refused. */
static int header_done(eddy_decoder *d)
{
  if (d->nnames > UINT32_MAX / 2)
    return eddy_seterr(&d->cb_err, EDDY_EFORMAT, "too many CSV columns");
  for (uint32_t i = 0; i < d->nnames; i++) {
    if (d->name_off[i + 1] - d->name_off[i] == 1) /* 0xa0: the empty str */
      return eddy_seterr(&d->cb_err, EDDY_EFORMAT,
                         "empty field name in the CSV header (field %" PRIu32
                         ")",
                         i + 1);
  }
  name_ref *refs = malloc((d->nnames ? d->nnames : 1) * sizeof *refs);
  if (refs == NULL)
    return eddy_seterr(&d->cb_err, EDDY_ENOMEM, "out of memory");
  for (uint32_t i = 0; i < d->nnames; i++) {
    refs[i].p = d->names.data + d->name_off[i];
    refs[i].len = d->name_off[i + 1] - d->name_off[i];
  }
  qsort(refs, d->nnames, sizeof *refs, cmp_name_ref);
  for (uint32_t i = 1; i < d->nnames; i++) {
    if (cmp_name_ref(&refs[i - 1], &refs[i]) == 0) {
      eddy_mp_reader r;
      eddy_mp_item it;
      eddy_mp_reader_init(&r, refs[i].p, refs[i].len);
      eddy_mp_read(&r, &it);
      int rc = eddy_seterr(&d->cb_err, EDDY_EFORMAT,
                           "duplicate field name \"%.*s\" in the CSV header",
                           (int)(it.v.s.len > 200 ? 200 : it.v.s.len),
                           it.v.s.ptr);
      free(refs);
      return rc;
    }
  }
  free(refs);
  /* One pair slot per column, reused by every record. */
  if (d->maps.cap < d->nnames) {
    eddy_mp_pair *p = realloc(d->maps.pairs, d->nnames * sizeof *p);
    if (p == NULL)
      return eddy_seterr(&d->cb_err, EDDY_ENOMEM, "out of memory");
    d->maps.pairs = p;
    d->maps.cap = d->nnames;
  }
  d->have_header = 1;
  return EDDY_OK;
}

static int array_row_done(eddy_decoder *d)
{
  eddy_buf *out = d->out;
  if (d->nfields > UINT32_MAX)
    return eddy_seterr(&d->cb_err, EDDY_EFORMAT, "too many CSV fields");
  size_t body = out->len - d->start;
  unsigned char hdr[8];
  int rc = eddy_mp_write_array(out, (uint32_t)d->nfields);
  if (rc != EDDY_OK)
    return rc;
  /* The count is known only now: move the header written at the end to
   * the front. */
  size_t hlen = out->len - d->start - body;
  memcpy(hdr, out->data + d->start + body, hlen);
  memmove(out->data + d->start + hlen, out->data + d->start, body);
  memcpy(out->data + d->start, hdr, hlen);
  return EDDY_OK;
}

static void cb_row(int c, void *data)
{
  (void)c;
  eddy_decoder *d = data;
  d->row_done = 1;
  if (d->cb_rc != EDDY_OK)
    return;
  int rc;
  if (d->csv.header && !d->have_header) {
    rc = header_done(d);
  } else if (d->csv.header) {
    if (d->nfields != d->nnames)
      rc = eddy_seterr(&d->cb_err, EDDY_EFORMAT,
                       "expected %" PRIu32 " field%s (as in the header), got "
                       "%" PRIu64,
                       d->nnames, d->nnames == 1 ? "" : "s", d->nfields);
    else
      rc = eddy_mp_finish_map(d->out, d->start, d->maps.pairs, d->nnames,
                              &d->maps.scratch);
  } else {
    rc = array_row_done(d);
  }
  if (rc != EDDY_OK) {
    if (rc == EDDY_ENOMEM)
      eddy_seterr(&d->cb_err, rc, "out of memory");
    d->cb_rc = rc;
  }
}

static void csv_abandon(eddy_decoder *d)
{
  if (d->out != NULL)
    d->out->len = d->start;
  if (d->csv.header && !d->have_header) {
    d->nnames = 0;
    eddy_buf_reset(&d->names);
  }
  d->in_record = 0;
  d->row_done = 0;
  d->out = NULL;
  csv_parser_restart(d);
}

static int csv_record_end(eddy_decoder *d, eddy_decode_result *res,
                          eddy_err *err)
{
  int header = d->header_row;
  if (d->cb_rc != EDDY_OK) {
    eddy_err_copy(err, &d->cb_err);
    int rc = d->cb_rc;
    csv_abandon(d);
    return rc;
  }
  d->in_record = 0;
  if (header) {
    *res = EDDY_DECODE_HEADER;
    d->out->len = d->start;
  } else {
    *res = EDDY_DECODE_RECORD;
  }
  d->out = NULL;
  return EDDY_OK;
}

static int csv_line(eddy_decoder *d, const unsigned char *line, size_t len,
                    eddy_buf *out, eddy_decode_result *res, eddy_err *err)
{
  if (!d->in_record) {
    if (is_blank(line, len)) {
      *res = EDDY_DECODE_SKIP;
      return EDDY_OK;
    }
    d->in_record = 1;
    d->header_row = d->csv.header && !d->have_header;
    d->lines_in_record = 0;
    d->out = out;
    d->start = out->len;
    d->nfields = 0;
    d->row_done = 0;
    d->cb_rc = EDDY_OK;
  } else if (out != d->out) {
    return eddy_seterr(err, EDDY_EINVAL,
                       "a CSV record must be decoded into one buffer");
  }
  d->lines_in_record++;
  size_t used = csv_parse(&d->parser, line, len, cb_field, cb_row, d);
  if (used < len) {
    int st = csv_error(&d->parser);
    unsigned char c = line[used];
    int rc;
    if (st != CSV_EPARSE) {
      rc = eddy_seterr(err, EDDY_ENOMEM, "out of memory");
    } else {
      const char *what =
          !d->parser.quoted
              ? "a quote inside an unquoted field (quote the whole field "
                "and double the quote)"
              : (c == '"' ? "a quote after a closing quote and blanks"
                          : "a character after a closing quote");
      if (d->lines_in_record > 1)
        rc = eddy_seterr(err, EDDY_EFORMAT,
                         "malformed CSV: %s at column %zu of the record's "
                         "line %u",
                         what, used + 1, d->lines_in_record);
      else
        rc = eddy_seterr(err, EDDY_EFORMAT, "malformed CSV: %s at column %zu",
                         what, used + 1);
    }
    csv_abandon(d);
    return rc;
  }
  if (!d->row_done) {
    if (d->cb_rc != EDDY_OK) {
      eddy_err_copy(err, &d->cb_err);
      int rc = d->cb_rc;
      csv_abandon(d);
      return rc;
    }
    *res = EDDY_DECODE_MORE;
    return EDDY_OK;
  }
  return csv_record_end(d, res, err);
}

static int csv_end(eddy_decoder *d, eddy_decode_result *res, eddy_err *err)
{
  if (!d->in_record) {
    *res = EDDY_DECODE_SKIP;
    return EDDY_OK;
  }
  if (csv_fini(&d->parser, cb_field, cb_row, d) != 0) {
    csv_abandon(d);
    return eddy_seterr(err, EDDY_EFORMAT,
                       "malformed CSV: unterminated quoted field");
  }
  if (!d->row_done) {
    /* nothing but blanks was fed: no row */
    csv_abandon(d);
    *res = EDDY_DECODE_SKIP;
    return EDDY_OK;
  }
  return csv_record_end(d, res, err);
}

/* ------------------------------------------------------------------ */
/* decoder                                                              */

int eddy_format_decoder_new(eddy_format_kind kind, const eddy_csv_options *csv,
                            eddy_decoder **out, eddy_err *err)
{
  *out = NULL;
  if (kind != EDDY_FORMAT_JSONL && kind != EDDY_FORMAT_CSV &&
      kind != EDDY_FORMAT_LINES)
    return eddy_seterr(err, EDDY_EINVAL, "unknown format %d", (int)kind);
  eddy_decoder *d = calloc(1, sizeof *d);
  if (d == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory");
  d->kind = kind;
  if (csv != NULL)
    d->csv = *csv;
  else
    eddy_format_csv_defaults(&d->csv);
  if (kind == EDDY_FORMAT_CSV) {
    int rc = eddy_format_csv_check(&d->csv, err);
    if (rc != EDDY_OK) {
      free(d);
      return rc;
    }
    d->c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (d->c_locale == (locale_t)0 || csv_parser_init(d) != EDDY_OK) {
      if (d->c_locale != (locale_t)0)
        freelocale(d->c_locale);
      free(d);
      return eddy_seterr(err, EDDY_ENOMEM, "out of memory");
    }
  }
  *out = d;
  return EDDY_OK;
}

void eddy_format_decoder_free(eddy_decoder *d)
{
  if (d == NULL)
    return;
  if (d->kind == EDDY_FORMAT_CSV) {
    csv_free(&d->parser);
    freelocale(d->c_locale);
  }
  map_stack_free(&d->maps);
  eddy_buf_free(&d->names);
  free(d->name_off);
  free(d);
}

int eddy_format_decode_line(eddy_decoder *d, const void *line, size_t len,
                            eddy_buf *out, eddy_decode_result *res,
                            eddy_err *err)
{
  const unsigned char *s = line;
  if (len > 1 && memchr(s, '\n', len - 1) != NULL)
    return eddy_seterr(err, EDDY_EINVAL,
                       "a line handed to the decoder holds a newline before "
                       "its end");
  switch (d->kind) {
  case EDDY_FORMAT_JSONL:
    if (is_blank(s, len)) {
      *res = EDDY_DECODE_SKIP;
      return EDDY_OK;
    }
    *res = EDDY_DECODE_RECORD;
    return json_text(&d->maps, s, len, out, err);
  case EDDY_FORMAT_LINES: {
    size_t n = len;
    if (n > 0 && s[n - 1] == '\n') {
      n--;
      if (n > 0 && s[n - 1] == '\r')
        n--;
    }
    *res = EDDY_DECODE_RECORD;
    return mp_rc(eddy_mp_write_str(out, s, n), err);
  }
  case EDDY_FORMAT_CSV:
    return csv_line(d, s, len, out, res, err);
  }
  return eddy_seterr(err, EDDY_EINVAL, "unknown format");
}

int eddy_format_decode_end(eddy_decoder *d, eddy_buf *out,
                           eddy_decode_result *res, eddy_err *err)
{
  if (d->kind != EDDY_FORMAT_CSV) {
    *res = EDDY_DECODE_SKIP;
    return EDDY_OK;
  }
  if (d->in_record && out != d->out)
    return eddy_seterr(err, EDDY_EINVAL,
                       "a CSV record must be decoded into one buffer");
  return csv_end(d, res, err);
}

void eddy_format_decoder_reset(eddy_decoder *d)
{
  if (d->kind == EDDY_FORMAT_CSV && d->in_record)
    csv_abandon(d);
}

void eddy_format_decoder_forget_header(eddy_decoder *d)
{
  eddy_format_decoder_reset(d);
  d->have_header = 0;
  d->nnames = 0;
  eddy_buf_reset(&d->names);
}

int eddy_format_decoder_has_header(const eddy_decoder *d)
{
  return d->kind != EDDY_FORMAT_CSV || !d->csv.header || d->have_header;
}

/* ------------------------------------------------------------------ */
/* where in a record: for messages only                                 */

typedef struct path_seg {
  const struct path_seg *up;
  const char *key; /* NULL: an array index */
  size_t key_len;
  int bracket; /* key is a number or boolean's text: [1.5] */
  int64_t index;
} path_seg;

static int is_ident(const char *s, size_t n)
{
  if (n == 0 || n > 64 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
    return 0;
  for (size_t i = 1; i < n; i++)
    if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
      return 0;
  return 1;
}

/* " at record.items[2].name", or "" for the record itself. */
static const char *path_text(const path_seg *p, char *buf, size_t cap)
{
  const path_seg *segs[EDDY_MP_MAX_DEPTH + 2];
  int n = 0;
  for (; p != NULL && n < (int)(sizeof segs / sizeof segs[0]); p = p->up)
    segs[n++] = p;
  if (n == 0)
    return "";
  size_t len = (size_t)snprintf(buf, cap, " at record");
  for (int i = n - 1; i >= 0 && len < cap; i--) {
    const path_seg *s = segs[i];
    int w;
    if (s->key == NULL)
      w = snprintf(buf + len, cap - len, "[%" PRId64 "]", s->index);
    else if (s->bracket)
      w = snprintf(buf + len, cap - len, "[%.*s]", (int)s->key_len, s->key);
    else if (is_ident(s->key, s->key_len))
      w = snprintf(buf + len, cap - len, ".%.*s", (int)s->key_len, s->key);
    else {
      char shown[48];
      size_t k = 0;
      for (size_t j = 0; j < s->key_len && k < sizeof shown - 4; j++) {
        unsigned char c = (unsigned char)s->key[j];
        shown[k++] = (c < 0x20 || c == '"' || c == 0x7f) ? '?' : (char)c;
      }
      if (s->key_len > k) {
        memcpy(shown + k, "...", 3);
        k += 3;
      }
      shown[k] = '\0';
      w = snprintf(buf + len, cap - len, "[\"%s\"]", shown);
    }
    if (w < 0)
      break;
    len += (size_t)w;
  }
  return buf;
}

/* ------------------------------------------------------------------ */
/* MessagePack -> JSON                                                  */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF), 0 if there is none. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
  unsigned c = s[0];
  if (c < 0x80)
    return 1;
  if (c < 0xc2)
    return 0;
  if (c < 0xe0)
    return (n >= 2 && (s[1] & 0xc0) == 0x80) ? 2 : 0;
  if (c < 0xf0) {
    if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
      return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))
      return 0;
    return 3;
  }
  if (c < 0xf5) {
    if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
        (s[3] & 0xc0) != 0x80)
      return 0;
    if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))
      return 0;
    return 4;
  }
  return 0;
}

typedef struct json_out {
  eddy_buf fixed; /* a string with its bad bytes replaced */
} json_out;

/* JSON text must be UTF-8; eddy strings are bytes (a lines source passes
 * anything through). A bad byte becomes U+FFFD, as Flink's String would
 * have it after decoding, rather than failing the sink. */
static int utf8_text(json_out *jo, const char *s, size_t n, const char **res,
                     size_t *res_len)
{
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0, k;
  while (i < n && (k = utf8_seq(u + i, n - i)) != 0)
    i += k;
  if (i == n) {
    *res = s;
    *res_len = n;
    return EDDY_OK;
  }
  eddy_buf_reset(&jo->fixed);
  int rc = eddy_buf_append(&jo->fixed, s, i);
  while (rc == EDDY_OK && i < n) {
    k = utf8_seq(u + i, n - i);
    if (k == 0) {
      rc = eddy_buf_append(&jo->fixed, "\xef\xbf\xbd", 3);
      i++;
    } else {
      rc = eddy_buf_append(&jo->fixed, u + i, k);
      i += k;
    }
  }
  if (rc != EDDY_OK)
    return rc;
  *res = (const char *)jo->fixed.data;
  *res_len = jo->fixed.len;
  return EDDY_OK;
}

static int bad_record(eddy_err *err)
{
  return eddy_seterr(err, EDDY_EFORMAT,
                     "a record that is not well-formed MessagePack");
}

static int nonfinite(double v, const char *fmt, const path_seg *at,
                     eddy_err *err)
{
  char where[256];
  const char *name = isnan(v) ? "NaN" : (v > 0 ? "inf" : "-inf");
  return eddy_seterr(err, EDDY_EFORMAT, "cannot write %s as %s%s", name, fmt,
                     path_text(at, where, sizeof where));
}

/* The text a non-string map key gets; buf must hold 64 bytes. */
static int key_text(const eddy_mp_item *k, const path_seg *at, const char *fmt,
                    char *buf, const char **s, size_t *n, int *bracket,
                    eddy_err *err)
{
  char where[256];
  *bracket = 1;
  switch (k->type) {
  case EDDY_MP_STR:
    *s = k->v.s.ptr;
    *n = k->v.s.len;
    *bracket = 0;
    return EDDY_OK;
  case EDDY_MP_INT:
    *n = (size_t)snprintf(buf, 64, "%" PRId64, k->v.i);
    *s = buf;
    return EDDY_OK;
  case EDDY_MP_FLOAT:
    if (!isfinite(k->v.f))
      return nonfinite(k->v.f, fmt, at, err);
    *s = buf;
    return real_text(k->v.f, buf, 64, n);
  case EDDY_MP_BOOL:
    *s = k->v.b ? "true" : "false";
    *n = strlen(*s);
    return EDDY_OK;
  case EDDY_MP_NIL:
    return eddy_seterr(err, EDDY_EFORMAT, "cannot write a nil map key as %s%s",
                       fmt, path_text(at, where, sizeof where));
  case EDDY_MP_ARRAY:
  case EDDY_MP_MAP:
    break;
  }
  return eddy_seterr(err, EDDY_EFORMAT, "cannot write %s as a %s%s",
                     k->type == EDDY_MP_ARRAY ? "an array" : "a map",
                     strcmp(fmt, "JSON") == 0 ? "JSON object key"
                                              : "CSV column name",
                     path_text(at, where, sizeof where));
}

/* Recursion is bounded: the record was checked against EDDY_MP_MAX_DEPTH
 * before. */
static int mp_to_json(json_out *jo, eddy_mp_reader *r, const path_seg *at,
                      json_t **out, eddy_err *err)
{
  eddy_mp_item it;
  char where[256];
  int rc;
  *out = NULL;
  if (eddy_mp_read(r, &it) != EDDY_OK)
    return bad_record(err);
  switch (it.type) {
  case EDDY_MP_NIL:
    *out = json_null();
    break;
  case EDDY_MP_BOOL:
    *out = json_boolean(it.v.b);
    break;
  case EDDY_MP_INT:
    *out = json_integer((json_int_t)it.v.i);
    break;
  case EDDY_MP_FLOAT:
    if (!isfinite(it.v.f))
      return nonfinite(it.v.f, "JSON", at, err);
    *out = json_real(it.v.f);
    break;
  case EDDY_MP_STR: {
    const char *s;
    size_t n;
    if ((rc = utf8_text(jo, it.v.s.ptr, it.v.s.len, &s, &n)) != EDDY_OK)
      return mp_rc(rc, err);
    *out = json_stringn_nocheck(s, n);
    break;
  }
  case EDDY_MP_ARRAY: {
    json_t *a = json_array();
    if (a == NULL)
      break;
    for (uint32_t i = 0; i < it.v.n; i++) {
      path_seg seg = {at, NULL, 0, 0, (int64_t)i + 1};
      json_t *el;
      if ((rc = mp_to_json(jo, r, &seg, &el, err)) != EDDY_OK ||
          json_array_append_new(a, el) != 0) {
        json_decref(a);
        return rc != EDDY_OK ? rc : mp_rc(EDDY_ENOMEM, err);
      }
    }
    *out = a;
    break;
  }
  case EDDY_MP_MAP: {
    json_t *o = json_object();
    if (o == NULL)
      break;
    for (uint32_t i = 0; i < it.v.n; i++) {
      eddy_mp_item k;
      char kbuf[64];
      const char *ks;
      size_t kn;
      int bracket;
      if (eddy_mp_read(r, &k) != EDDY_OK) {
        json_decref(o);
        return bad_record(err);
      }
      rc = key_text(&k, at, "JSON", kbuf, &ks, &kn, &bracket, err);
      if (rc == EDDY_OK && !bracket)
        rc = mp_rc(utf8_text(jo, ks, kn, &ks, &kn), err);
      if (rc != EDDY_OK) {
        json_decref(o);
        return rc;
      }
      /* A repaired key lives in jo->fixed, which the value may reuse. */
      char *copy = NULL;
      if (kn > 0 && ks == (const char *)jo->fixed.data) {
        if ((copy = malloc(kn)) == NULL) {
          json_decref(o);
          return mp_rc(EDDY_ENOMEM, err);
        }
        memcpy(copy, ks, kn);
        ks = copy;
      }
      const char *key = ks;
      path_seg seg = {at, key, kn, bracket, 0};
      json_t *val;
      rc = mp_to_json(jo, r, &seg, &val, err);
      if (rc == EDDY_OK && json_object_getn(o, key, kn) != NULL) {
        json_decref(val);
        rc = eddy_seterr(err, EDDY_EFORMAT,
                         "two map keys have the same JSON text%s",
                         path_text(&seg, where, sizeof where));
      } else if (rc == EDDY_OK &&
                 json_object_setn_new_nocheck(o, key, kn, val) != 0) {
        rc = mp_rc(EDDY_ENOMEM, err);
      }
      free(copy);
      if (rc != EDDY_OK) {
        json_decref(o);
        return rc;
      }
    }
    *out = o;
    break;
  }
  }
  if (*out == NULL)
    return mp_rc(EDDY_ENOMEM, err);
  return EDDY_OK;
}

static int dump_to_buf(const char *buffer, size_t size, void *data)
{
  return eddy_buf_append(data, buffer, size) == EDDY_OK ? 0 : -1;
}

static int check_record(const void *record, size_t len, eddy_err *err)
{
  size_t vlen;
  int rc = eddy_mp_value_len(record, len, &vlen);
  if (rc == EDDY_ELIMIT)
    return eddy_seterr(err, EDDY_EFORMAT,
                       "a record nested deeper than %d levels",
                       EDDY_MP_MAX_DEPTH);
  if (rc != EDDY_OK || vlen != len)
    return bad_record(err);
  return EDDY_OK;
}

int eddy_format_write_json(const void *record, size_t len, eddy_buf *out,
                           eddy_err *err)
{
  int rc = check_record(record, len, err);
  if (rc != EDDY_OK)
    return rc;
  json_out jo = {EDDY_BUF_INIT};
  eddy_mp_reader r;
  json_t *root;
  eddy_mp_reader_init(&r, record, len);
  rc = mp_to_json(&jo, &r, NULL, &root, err);
  eddy_buf_free(&jo.fixed);
  if (rc != EDDY_OK)
    return rc;
  size_t start = out->len;
  if (json_dump_callback(root, dump_to_buf, out,
                         JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY |
                             JSON_REAL_PRECISION(15)) != 0 ||
      eddy_buf_putc(out, '\n') != EDDY_OK) {
    out->len = start;
    rc = eddy_seterr(err, EDDY_ENOMEM, "out of memory");
  }
  json_decref(root);
  return rc;
}

/* ------------------------------------------------------------------ */
/* MessagePack -> CSV                                                   */

enum { SHAPE_NONE, SHAPE_MAP, SHAPE_ARRAY };

struct eddy_encoder {
  eddy_format_kind kind;
  eddy_csv_options csv;
  int shape;
  int header_due;
  eddy_buf names;   /* column names' text, back to back, sorted */
  size_t *name_off; /* ncols + 1 offsets */
  uint32_t ncols;
  eddy_slice *vals; /* per column: the value's bytes in the record */
  uint32_t vals_cap;
};

static int needs_quotes(const unsigned char *s, size_t n, unsigned char delim)
{
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (c == delim || c == '"' || c == '\r' || c == '\n')
      return 1;
  }
  return 0;
}

static int csv_text(eddy_buf *out, const void *s, size_t n, unsigned char delim)
{
  if (!needs_quotes(s, n, delim))
    return eddy_buf_append(out, s, n);
  size_t need = csv_write2(NULL, 0, s, n, '"');
  int rc = eddy_buf_reserve(out, need);
  if (rc != EDDY_OK)
    return rc;
  out->len += csv_write2(out->data + out->len, need, s, n, '"');
  return EDDY_OK;
}

/* One field's text; nothing for an absent (val NULL) or nil value. */
static int csv_field(eddy_encoder *e, const void *val, size_t vlen,
                     const path_seg *at, eddy_buf *out, eddy_err *err)
{
  char buf[64], where[256];
  size_t n;
  eddy_mp_item it;
  eddy_mp_reader r;
  int rc;
  if (val == NULL)
    return EDDY_OK;
  eddy_mp_reader_init(&r, val, vlen);
  if (eddy_mp_read(&r, &it) != EDDY_OK)
    return bad_record(err);
  switch (it.type) {
  case EDDY_MP_NIL:
    return EDDY_OK;
  case EDDY_MP_BOOL:
    return mp_rc(eddy_buf_append(out, it.v.b ? "true" : "false",
                                 it.v.b ? 4 : 5), err);
  case EDDY_MP_INT:
    n = (size_t)snprintf(buf, sizeof buf, "%" PRId64, it.v.i);
    return mp_rc(eddy_buf_append(out, buf, n), err);
  case EDDY_MP_FLOAT:
    /* Lua's own spelling; CSV has no standard one and reads it back as a
     * string, but a sink should not fail on it. */
    if (isnan(it.v.f))
      return mp_rc(eddy_buf_append(out, "nan", 3), err);
    if (isinf(it.v.f))
      return mp_rc(it.v.f > 0 ? eddy_buf_append(out, "inf", 3)
                              : eddy_buf_append(out, "-inf", 4), err);
    if ((rc = real_text(it.v.f, buf, sizeof buf, &n)) != EDDY_OK)
      return mp_rc(rc, err);
    return mp_rc(eddy_buf_append(out, buf, n), err);
  case EDDY_MP_STR:
    return mp_rc(csv_text(out, it.v.s.ptr, it.v.s.len, e->csv.delimiter), err);
  case EDDY_MP_ARRAY:
  case EDDY_MP_MAP:
    break;
  }
  return eddy_seterr(err, EDDY_EFORMAT, "cannot write a nested %s to CSV%s",
                     it.type == EDDY_MP_ARRAY ? "array" : "map",
                     path_text(at, where, sizeof where));
}

typedef struct col_ref {
  const char *p;
  size_t len;
} col_ref;

static int cmp_text(const void *a, size_t alen, const void *b, size_t blen)
{
  size_t n = alen < blen ? alen : blen;
  int c = n ? memcmp(a, b, n) : 0;
  return c != 0 ? c : (alen > blen) - (alen < blen);
}

static int cmp_col_ref(const void *x, const void *y)
{
  const col_ref *a = x, *b = y;
  return cmp_text(a->p, a->len, b->p, b->len);
}

static int find_col(const eddy_encoder *e, const char *s, size_t n, uint32_t *idx)
{
  uint32_t lo = 0, hi = e->ncols;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    const void *p = e->names.data + e->name_off[mid];
    int c = cmp_text(p, e->name_off[mid + 1] - e->name_off[mid], s, n);
    if (c == 0) {
      *idx = mid;
      return 1;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

/* The first map record fixes the columns: its keys' text, sorted. */
static int set_columns(eddy_encoder *e, const unsigned char *rec, size_t len,
                       eddy_err *err)
{
  eddy_mp_reader r;
  eddy_mp_item m, k;
  eddy_buf text = EDDY_BUF_INIT;
  col_ref *refs = NULL;
  size_t *offs = NULL;
  char where[256];
  int rc = EDDY_OK;
  eddy_mp_reader_init(&r, rec, len);
  eddy_mp_read(&r, &m);
  uint32_t n = m.v.n;
  offs = malloc(((size_t)n + 1) * sizeof *offs);
  refs = malloc(((size_t)n + 1) * sizeof *refs);
  if (offs == NULL || refs == NULL) {
    rc = mp_rc(EDDY_ENOMEM, err);
    goto done;
  }
  offs[0] = 0;
  for (uint32_t i = 0; i < n; i++) {
    char kbuf[64];
    const char *ks;
    size_t kn;
    int bracket;
    if (eddy_mp_read(&r, &k) != EDDY_OK) {
      rc = bad_record(err);
      goto done;
    }
    if ((rc = key_text(&k, NULL, "CSV", kbuf, &ks, &kn, &bracket, err)) != EDDY_OK)
      goto done;
    if ((rc = mp_rc(eddy_buf_append(&text, ks, kn), err)) != EDDY_OK)
      goto done;
    offs[i + 1] = text.len;
    if (eddy_mp_skip(&r) != EDDY_OK) {
      rc = bad_record(err);
      goto done;
    }
  }
  for (uint32_t i = 0; i < n; i++) {
    refs[i].p = (const char *)text.data + offs[i];
    refs[i].len = offs[i + 1] - offs[i];
  }
  qsort(refs, n, sizeof *refs, cmp_col_ref);
  for (uint32_t i = 1; i < n; i++) {
    if (cmp_col_ref(&refs[i - 1], &refs[i]) == 0) {
      path_seg seg = {NULL, refs[i].p, refs[i].len, 0, 0};
      rc = eddy_seterr(err, EDDY_EFORMAT, "two map keys have the same text%s",
                       path_text(&seg, where, sizeof where));
      goto done;
    }
  }
  eddy_buf_reset(&e->names);
  size_t *noff = realloc(e->name_off, ((size_t)n + 1) * sizeof *noff);
  eddy_slice *vals = realloc(e->vals, ((size_t)n + 1) * sizeof *vals);
  if (noff != NULL)
    e->name_off = noff;
  if (vals != NULL)
    e->vals = vals;
  if (noff == NULL || vals == NULL) {
    rc = mp_rc(EDDY_ENOMEM, err);
    goto done;
  }
  e->name_off[0] = 0;
  for (uint32_t i = 0; i < n; i++) {
    if ((rc = mp_rc(eddy_buf_append(&e->names, refs[i].p, refs[i].len), err)) !=
        EDDY_OK)
      goto done;
    e->name_off[i + 1] = e->names.len;
  }
  e->ncols = n;
  e->shape = SHAPE_MAP;
  e->header_due = e->csv.header;
done:
  eddy_buf_free(&text);
  free(refs);
  free(offs);
  return rc;
}

static int write_header(eddy_encoder *e, eddy_buf *out, eddy_err *err)
{
  for (uint32_t i = 0; i < e->ncols; i++) {
    if (i > 0 && eddy_buf_putc(out, e->csv.delimiter) != EDDY_OK)
      return mp_rc(EDDY_ENOMEM, err);
    size_t n = e->name_off[i + 1] - e->name_off[i];
    if (csv_text(out, e->names.data + e->name_off[i], n, e->csv.delimiter) !=
        EDDY_OK)
      return mp_rc(EDDY_ENOMEM, err);
  }
  if (e->ncols == 1 && e->name_off[1] == 0 &&
      eddy_buf_append(out, "\"\"", 2) != EDDY_OK)
    return mp_rc(EDDY_ENOMEM, err);
  return mp_rc(eddy_buf_putc(out, '\n'), err);
}

static int csv_map_row(eddy_encoder *e, eddy_mp_reader *r, uint32_t n,
                       eddy_buf *out, eddy_err *err)
{
  char where[256], kbuf[64];
  for (uint32_t i = 0; i < e->ncols; i++)
    e->vals[i].data = NULL;
  for (uint32_t i = 0; i < n; i++) {
    eddy_mp_item k;
    const char *ks;
    size_t kn;
    int bracket;
    uint32_t col;
    if (eddy_mp_read(r, &k) != EDDY_OK)
      return bad_record(err);
    int rc = key_text(&k, NULL, "CSV", kbuf, &ks, &kn, &bracket, err);
    if (rc != EDDY_OK)
      return rc;
    path_seg seg = {NULL, ks, kn, bracket, 0};
    if (!find_col(e, ks, kn, &col))
      return eddy_seterr(err, EDDY_EFORMAT,
                         "field \"%.*s\" is not a CSV column (the columns come "
                         "from the first record written)%s",
                         (int)(kn > 200 ? 200 : kn), ks,
                         path_text(&seg, where, sizeof where));
    if (e->vals[col].data != NULL)
      return eddy_seterr(err, EDDY_EFORMAT, "two map keys have the same text%s",
                         path_text(&seg, where, sizeof where));
    const unsigned char *v = r->p;
    if (eddy_mp_skip(r) != EDDY_OK)
      return bad_record(err);
    e->vals[col].data = v;
    e->vals[col].len = (size_t)(r->p - v);
  }
  for (uint32_t i = 0; i < e->ncols; i++) {
    if (i > 0 && eddy_buf_putc(out, e->csv.delimiter) != EDDY_OK)
      return mp_rc(EDDY_ENOMEM, err);
    size_t kn = e->name_off[i + 1] - e->name_off[i];
    path_seg seg = {NULL, (const char *)e->names.data + e->name_off[i], kn, 0, 0};
    int rc = csv_field(e, e->vals[i].data, e->vals[i].len, &seg, out, err);
    if (rc != EDDY_OK)
      return rc;
  }
  return EDDY_OK;
}

static int csv_encode(eddy_encoder *e, const unsigned char *rec, size_t len,
                      eddy_buf *out, eddy_err *err)
{
  eddy_mp_reader r;
  eddy_mp_item top;
  int rc;
  eddy_mp_reader_init(&r, rec, len);
  eddy_mp_read(&r, &top); /* well-formed: checked by the caller */
  int is_map = top.type == EDDY_MP_MAP && top.v.n > 0;
  int is_empty = (top.type == EDDY_MP_ARRAY || top.type == EDDY_MP_MAP) &&
                 top.v.n == 0;
  /* The shape and header take effect only with a record written. */
  int old_shape = e->shape, header = 0;

  if (is_map && e->shape == SHAPE_NONE &&
      (rc = set_columns(e, rec, len, err)) != EDDY_OK)
    return rc;
  if (is_map && e->shape != SHAPE_MAP)
    return eddy_seterr(err, EDDY_EFORMAT,
                       "cannot write a map record to CSV after array records");
  if (!is_map && !is_empty && e->shape == SHAPE_MAP)
    return eddy_seterr(err, EDDY_EFORMAT,
                       "cannot write %s record to CSV after map records",
                       top.type == EDDY_MP_ARRAY ? "an array" : "a scalar");
  if (!is_map && !is_empty)
    e->shape = SHAPE_ARRAY;

  if (e->shape == SHAPE_MAP && e->header_due) {
    if ((rc = write_header(e, out, err)) != EDDY_OK)
      goto fail;
    header = 1;
  }
  size_t row = out->len;
  uint32_t nfields;
  if (e->shape == SHAPE_MAP) {
    /* an empty record is a row with every column empty */
    nfields = e->ncols;
    rc = csv_map_row(e, &r, is_empty ? 0 : top.v.n, out, err);
  } else if (is_empty) {
    nfields = 0;
    rc = EDDY_OK;
  } else if (top.type == EDDY_MP_ARRAY) {
    nfields = top.v.n;
    rc = EDDY_OK;
    for (uint32_t i = 0; i < top.v.n && rc == EDDY_OK; i++) {
      path_seg seg = {NULL, NULL, 0, 0, (int64_t)i + 1};
      const unsigned char *v = r.p;
      if (eddy_mp_skip(&r) != EDDY_OK)
        rc = bad_record(err);
      else if (i > 0 && eddy_buf_putc(out, e->csv.delimiter) != EDDY_OK)
        rc = mp_rc(EDDY_ENOMEM, err);
      else
        rc = csv_field(e, v, (size_t)(r.p - v), &seg, out, err);
    }
  } else {
    /* a scalar record: a row of one field */
    nfields = 1;
    rc = csv_field(e, rec, len, NULL, out, err);
  }
  if (rc != EDDY_OK)
    goto fail;
  /* A lone empty field would be an empty line, which readers skip. */
  if ((nfields == 1 && out->len == row &&
       eddy_buf_append(out, "\"\"", 2) != EDDY_OK) ||
      eddy_buf_putc(out, '\n') != EDDY_OK) {
    rc = mp_rc(EDDY_ENOMEM, err);
    goto fail;
  }
  if (header)
    e->header_due = 0;
  return EDDY_OK;
fail:
  e->shape = old_shape;
  return rc;
}

/* ------------------------------------------------------------------ */
/* encoder                                                              */

int eddy_format_encoder_new(eddy_format_kind kind, const eddy_csv_options *csv,
                            eddy_encoder **out, eddy_err *err)
{
  *out = NULL;
  if (kind != EDDY_FORMAT_JSONL && kind != EDDY_FORMAT_CSV &&
      kind != EDDY_FORMAT_LINES)
    return eddy_seterr(err, EDDY_EINVAL, "unknown format %d", (int)kind);
  eddy_encoder *e = calloc(1, sizeof *e);
  if (e == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory");
  e->kind = kind;
  if (csv != NULL)
    e->csv = *csv;
  else
    eddy_format_csv_defaults(&e->csv);
  if (kind == EDDY_FORMAT_CSV) {
    int rc = eddy_format_csv_check(&e->csv, err);
    if (rc != EDDY_OK) {
      free(e);
      return rc;
    }
  }
  *out = e;
  return EDDY_OK;
}

void eddy_format_encoder_free(eddy_encoder *e)
{
  if (e == NULL)
    return;
  eddy_buf_free(&e->names);
  free(e->name_off);
  free(e->vals);
  free(e);
}

int eddy_format_encode(eddy_encoder *e, const void *record, size_t len,
                       eddy_buf *out, eddy_err *err)
{
  size_t start = out->len;
  int rc;
  switch (e->kind) {
  case EDDY_FORMAT_JSONL:
    return eddy_format_write_json(record, len, out, err);
  case EDDY_FORMAT_LINES: {
    eddy_mp_reader r;
    eddy_mp_item it;
    eddy_mp_reader_init(&r, record, len);
    if (eddy_mp_read(&r, &it) == EDDY_OK && it.type == EDDY_MP_STR &&
        eddy_mp_reader_done(&r)) {
      if (eddy_buf_append(out, it.v.s.ptr, it.v.s.len) != EDDY_OK ||
          eddy_buf_putc(out, '\n') != EDDY_OK) {
        out->len = start;
        return mp_rc(EDDY_ENOMEM, err);
      }
      return EDDY_OK;
    }
    return eddy_format_write_json(record, len, out, err);
  }
  case EDDY_FORMAT_CSV:
    if ((rc = check_record(record, len, err)) != EDDY_OK)
      return rc;
    rc = csv_encode(e, record, len, out, err);
    if (rc != EDDY_OK)
      out->len = start;
    return rc;
  }
  return eddy_seterr(err, EDDY_EINVAL, "unknown format");
}

void eddy_format_encoder_new_file(eddy_encoder *e)
{
  e->header_due = e->shape == SHAPE_MAP && e->csv.header;
}
