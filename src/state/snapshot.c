/*
 * The canonical keyed snapshot (see snapshot.h for the format and who calls
 * what from which thread).
 *
 * take encodes, on the main thread, everything that is not a row: the
 * head (magic, version, key groups, states) and the timers, group by group,
 * as finished TIMER sections. The rows stay in the backend's frozen
 * snapshot, so write, on its own thread, only merges the two streams by key
 * group and never touches k.
 *
 * restore parses sections where the source lends them, copying only a
 * section that runs over the end of a piece (see source below). A section
 * is parsed with exact sizes (header byte, then as many bytes as it says),
 * so a damaged length can only make the reader want more than the stream
 * has, and it says where. The bytes of a section stay in the window until
 * the section is done; the fields of a section are kept as stream offsets,
 * because taking more of the stream may move them into the carry buffer.
 * Rows, nearly all of a snapshot, take a quicker path when they are
 * encoded the way the writer does it and lie whole in the window; anything
 * else, damage included, goes through the general one, which names it.
 */
#include "state/snapshot.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util/msgpack.h"

#define MAGIC "EDDYKEYS"
#define MAGIC_LEN 8

/* Output is handed to write, and input asked of read, in pieces this big. */
#define CHUNK (256 * 1024)

enum {
  SEC_HEADER = 1,
  SEC_STATE = 2,
  SEC_GROUP = 3,
  SEC_ROW = 4,
  SEC_TIMER = 5,
  SEC_GROUP_END = 6,
  SEC_END = 7
};

static const char *section_name(int64_t type)
{
  switch (type) {
  case SEC_HEADER: return "header";
  case SEC_STATE: return "state";
  case SEC_GROUP: return "key-group";
  case SEC_ROW: return "row";
  case SEC_TIMER: return "timer";
  case SEC_GROUP_END: return "key-group end";
  case SEC_END: return "end";
  default: return "unknown";
  }
}

/* Elements of each section's array, the type included. */
static uint32_t section_len(int64_t type)
{
  switch (type) {
  case SEC_HEADER: return 5;
  case SEC_STATE: return 4;
  case SEC_GROUP: return 2;
  case SEC_ROW: return 5;
  case SEC_TIMER: return 5;
  case SEC_GROUP_END: return 3;
  case SEC_END: return 5;
  default: return 0;
  }
}

/* The timers of one key group, as TIMER sections in timers. */
typedef struct timer_group {
  int key_group;
  uint32_t count;
  size_t off;
  size_t len;
} timer_group;

struct eddy_keyed_snapshot {
  eddy_backend_snapshot *rows;
  eddy_buf head;   /* magic, version, header and state sections */
  eddy_buf timers; /* timer sections of every key group, ascending */
  timer_group *groups;
  size_t ngroups;
  size_t groups_cap;
  int written;
};

/* ---- encoding ---- */

/* A bin (MessagePack bin 8/16/32): bytes that are not text. */
static int put_bin(eddy_buf *b, const void *p, size_t n)
{
  unsigned char h[5];
  size_t hn;
  if (n > UINT32_MAX)
    return EDDY_ELIMIT;
  if (n <= 0xff) {
    h[0] = 0xc4;
    h[1] = (unsigned char)n;
    hn = 2;
  } else if (n <= 0xffff) {
    h[0] = 0xc5;
    h[1] = (unsigned char)(n >> 8);
    h[2] = (unsigned char)n;
    hn = 3;
  } else {
    h[0] = 0xc6;
    for (int i = 0; i < 4; i++)
      h[1 + i] = (unsigned char)(n >> (24 - 8 * i));
    hn = 5;
  }
  int rc = eddy_buf_reserve(b, hn + n);
  if (rc != EDDY_OK)
    return rc;
  memcpy(b->data + b->len, h, hn);
  if (n > 0)
    memcpy(b->data + b->len + hn, p, n);
  b->len += hn + n;
  return EDDY_OK;
}

/* A section's array header and type. */
static int put_section(eddy_buf *b, int type)
{
  int rc = eddy_mp_write_array(b, section_len(type));
  return rc != EDDY_OK ? rc : eddy_mp_write_int(b, type);
}

static int put_ints(eddy_buf *b, int n, const int64_t *v)
{
  int rc = EDDY_OK;
  for (int i = 0; i < n && rc == EDDY_OK; i++)
    rc = eddy_mp_write_int(b, v[i]);
  return rc;
}

static int encode_head(eddy_buf *b, eddy_backend *be)
{
  int maxp, first, last;
  eddy_backend_key_groups(be, &maxp, &first, &last);
  uint32_t n = eddy_backend_state_count(be);
  int64_t header[4] = {maxp, first, last, n};
  int rc = eddy_buf_append(b, MAGIC, MAGIC_LEN);
  if (rc == EDDY_OK)
    rc = eddy_mp_write_int(b, EDDY_KEYED_SNAPSHOT_VERSION);
  if (rc == EDDY_OK)
    rc = put_section(b, SEC_HEADER);
  if (rc == EDDY_OK)
    rc = put_ints(b, 4, header);
  for (uint32_t id = 0; id < n && rc == EDDY_OK; id++) {
    const char *name = eddy_backend_state_name(be, id);
    const char *kind = eddy_state_kind_name(eddy_backend_state_kind(be, id));
    if ((rc = put_section(b, SEC_STATE)) == EDDY_OK &&
        (rc = eddy_mp_write_int(b, id)) == EDDY_OK &&
        (rc = eddy_mp_write_str(b, name, strlen(name))) == EDDY_OK)
      rc = eddy_mp_write_str(b, kind, strlen(kind));
  }
  return rc;
}

typedef struct timer_visit {
  eddy_keyed_snapshot *s;
  eddy_timer_kind kind;
  uint32_t count;
} timer_visit;

static int encode_timer(void *ud, const eddy_timer *t)
{
  timer_visit *tv = ud;
  eddy_buf *b = &tv->s->timers;
  int64_t head[2] = {tv->kind, t->timestamp};
  int rc = put_section(b, SEC_TIMER);
  if (rc == EDDY_OK && (rc = put_ints(b, 2, head)) == EDDY_OK &&
      (rc = put_bin(b, t->key.data, t->key.len)) == EDDY_OK)
    rc = put_bin(b, t->ns.data, t->ns.len);
  tv->count += rc == EDDY_OK;
  return rc;
}

/* Encodes the timers of both kinds, key group by key group. */
static int encode_timers(eddy_keyed_snapshot *s, eddy_timers *t, int first,
                         int last, eddy_err *err)
{
  for (int kg = first; kg <= last; kg++) {
    timer_visit tv = {s, EDDY_TIMER_EVENT, 0};
    size_t off = s->timers.len;
    int rc = eddy_timers_each(t, EDDY_TIMER_EVENT, kg, encode_timer, &tv);
    if (rc == EDDY_OK) {
      tv.kind = EDDY_TIMER_PROCESSING;
      rc = eddy_timers_each(t, EDDY_TIMER_PROCESSING, kg, encode_timer, &tv);
    }
    if (rc != EDDY_OK)
      return eddy_seterr(err, rc, "keyed snapshot: copying the timers of key group %d: %s", kg,
                         rc == EDDY_ENOMEM ? "out of memory" : eddy_timers_errmsg(t));
    if (tv.count == 0)
      continue;
    if (s->ngroups == s->groups_cap) {
      size_t cap = s->groups_cap ? 2 * s->groups_cap : 16;
      timer_group *g = realloc(s->groups, cap * sizeof *g);
      if (g == NULL)
        return eddy_seterr(err, EDDY_ENOMEM, "keyed snapshot: out of memory copying the timers");
      s->groups = g;
      s->groups_cap = cap;
    }
    s->groups[s->ngroups++] = (timer_group){kg, tv.count, off, s->timers.len - off};
  }
  return EDDY_OK;
}

static int take(eddy_keyed *k, int rows, eddy_keyed_snapshot **out, eddy_err *err);

int eddy_keyed_snapshot_take(eddy_keyed *k, eddy_keyed_snapshot **out, eddy_err *err)
{
  return take(k, 1, out, err);
}

int eddy_keyed_snapshot_take_timers(eddy_keyed *k, eddy_keyed_snapshot **out, eddy_err *err)
{
  return take(k, 0, out, err);
}

static int take(eddy_keyed *k, int rows, eddy_keyed_snapshot **out, eddy_err *err)
{
  if (k == NULL || out == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "keyed snapshot: no keyed state or no result pointer");
  *out = NULL;
  eddy_backend *b = eddy_keyed_backend(k);
  eddy_keyed_snapshot *s = calloc(1, sizeof *s);
  if (s == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "keyed snapshot: out of memory");
  int maxp, first, last, rc;
  eddy_backend_key_groups(b, &maxp, &first, &last);
  if (encode_head(&s->head, b) != EDDY_OK) {
    rc = eddy_seterr(err, EDDY_ENOMEM, "keyed snapshot: out of memory");
    goto fail;
  }
  /* beside a native snapshot, timers kept in the backend are in it */
  eddy_timers *timers = eddy_keyed_timers(k);
  if ((rows || !eddy_timers_in_backend(timers)) &&
      (rc = encode_timers(s, timers, first, last, err)) != EDDY_OK)
    goto fail;
  if (rows && (rc = eddy_backend_snapshot_open(b, &s->rows)) != EDDY_OK) {
    eddy_seterr(err, rc, "keyed snapshot: %s", eddy_backend_errmsg(b));
    goto fail;
  }
  *out = s;
  return EDDY_OK;
fail:
  eddy_keyed_snapshot_free(s);
  return rc;
}

void eddy_keyed_snapshot_free(eddy_keyed_snapshot *s)
{
  if (s == NULL)
    return;
  eddy_backend_snapshot_close(s->rows);
  eddy_buf_free(&s->head);
  eddy_buf_free(&s->timers);
  free(s->groups);
  free(s);
}

/* ---- writing ---- */

typedef struct sink {
  int (*write)(void *ud, const void *p, size_t n);
  void *ud;
  eddy_buf buf;
  size_t written; /* stream bytes handed to write */
  XXH3_state_t *hash;
  eddy_err *err;
} sink;

/* Hands the buffered bytes to write; hashed ones go into the checksum. */
static int flush(sink *o, int hashed)
{
  if (o->buf.len == 0)
    return EDDY_OK;
  if (hashed)
    XXH3_64bits_update(o->hash, o->buf.data, o->buf.len);
  int rc = o->write(o->ud, o->buf.data, o->buf.len);
  if (rc != 0)
    return eddy_seterr(o->err, rc, "keyed snapshot: writing %zu bytes at byte %zu failed",
                       o->buf.len, o->written);
  o->written += o->buf.len;
  eddy_buf_reset(&o->buf);
  return EDDY_OK;
}

static int out_of_memory(sink *o)
{
  return eddy_seterr(o->err, EDDY_ENOMEM, "keyed snapshot: out of memory writing at byte %zu",
                     o->written + o->buf.len);
}

static int put_row(sink *o, const eddy_row *r, eddy_slice v)
{
  eddy_buf *b = &o->buf;
  int rc = put_section(b, SEC_ROW);
  if (rc == EDDY_OK && (rc = eddy_mp_write_int(b, r->state)) == EDDY_OK &&
      (rc = put_bin(b, r->key, r->key_len)) == EDDY_OK &&
      (rc = put_bin(b, r->ns, r->ns_len)) == EDDY_OK)
    rc = put_bin(b, v.data, v.len);
  if (rc == EDDY_ELIMIT)
    return eddy_seterr(o->err, rc, "keyed snapshot: a row of state %u is 4 GiB or more",
                       r->state);
  return rc == EDDY_OK ? EDDY_OK : out_of_memory(o);
}

/* The rows (from the backend) and the timers (from take), merged by key
 * group. */
static int write_groups(eddy_keyed_snapshot *s, sink *o, int64_t totals[3])
{
  eddy_row row;
  eddy_slice v;
  int rc = s->rows != NULL ? eddy_backend_snapshot_next(s->rows, &row, &v) : EDDY_EEOF;
  size_t ti = 0;
  int prev = -1;
  for (;;) {
    if (rc != EDDY_OK && rc != EDDY_EEOF)
      return eddy_seterr(o->err, rc, "keyed snapshot: %s",
                         eddy_backend_snapshot_errmsg(s->rows));
    if (rc == EDDY_EEOF && ti == s->ngroups)
      return EDDY_OK;
    int kg = rc == EDDY_OK ? row.key_group : INT_MAX;
    if (ti < s->ngroups && s->groups[ti].key_group < kg)
      kg = s->groups[ti].key_group;
    if (kg <= prev)
      return eddy_seterr(o->err, EDDY_EINVAL,
                         "keyed snapshot: the backend gave key group %d after %d", kg, prev);
    prev = kg;
    int64_t counts[2] = {0, 0};
    if (put_section(&o->buf, SEC_GROUP) != EDDY_OK || eddy_mp_write_int(&o->buf, kg) != EDDY_OK)
      return out_of_memory(o);
    for (; rc == EDDY_OK && row.key_group == kg;
         rc = eddy_backend_snapshot_next(s->rows, &row, &v)) {
      int wrc = put_row(o, &row, v);
      if (wrc == EDDY_OK && o->buf.len >= CHUNK)
        wrc = flush(o, 1);
      if (wrc != EDDY_OK)
        return wrc;
      counts[0]++;
    }
    if (ti < s->ngroups && s->groups[ti].key_group == kg) {
      const timer_group *g = &s->groups[ti++];
      if (eddy_buf_append(&o->buf, s->timers.data + g->off, g->len) != EDDY_OK)
        return out_of_memory(o);
      counts[1] = g->count;
    }
    if (put_section(&o->buf, SEC_GROUP_END) != EDDY_OK || put_ints(&o->buf, 2, counts) != EDDY_OK)
      return out_of_memory(o);
    if (o->buf.len >= CHUNK && (rc = flush(o, 1)) != EDDY_OK)
      return rc;
    totals[0]++;
    totals[1] += counts[0];
    totals[2] += counts[1];
  }
}

int eddy_keyed_snapshot_write(eddy_keyed_snapshot *s,
                              int (*write)(void *ud, const void *p, size_t n),
                              void *ud, eddy_err *err)
{
  if (s == NULL || write == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "keyed snapshot: no snapshot or no write function");
  if (s->written)
    return eddy_seterr(err, EDDY_EINVAL,
                       "keyed snapshot: already written (a snapshot is written once)");
  s->written = 1;
  sink o = {write, ud, EDDY_BUF_INIT, 0, XXH3_createState(), err};
  int64_t end[4] = {0, 0, 0, 0}; /* key groups, rows, timers, checksum */
  int rc;
  if (o.hash == NULL || XXH3_64bits_reset(o.hash) != XXH_OK ||
      eddy_buf_reserve(&o.buf, CHUNK + CHUNK / 4) != EDDY_OK) {
    rc = out_of_memory(&o);
    goto done;
  }
  if ((rc = eddy_buf_append(&o.buf, s->head.data, s->head.len)) != EDDY_OK) {
    rc = out_of_memory(&o);
    goto done;
  }
  if ((rc = write_groups(s, &o, end)) != EDDY_OK || (rc = flush(&o, 1)) != EDDY_OK)
    goto done;
  end[3] = (int64_t)XXH3_64bits_digest(o.hash);
  if (put_section(&o.buf, SEC_END) != EDDY_OK || put_ints(&o.buf, 4, end) != EDDY_OK) {
    rc = out_of_memory(&o);
    goto done;
  }
  rc = flush(&o, 0);
done:
  XXH3_freeState(o.hash);
  eddy_buf_free(&o.buf);
  return rc;
}

/* ---- reading ---- */

/*
 * The bytes being parsed, a window on the stream. It is the piece the
 * source lent last, parsed where it lies; only a section that runs over
 * the end of a piece is copied, with what it needs of the next piece, into
 * carry, and the window goes back to the piece at the first section that
 * starts in it. The section being parsed stays in the window until it is
 * done.
 */
typedef struct source {
  const eddy_keyed_source *src;
  const unsigned char *data; /* the window: the piece, or carry.data */
  size_t len;
  size_t base;   /* the stream offset of data[0] */
  size_t pos;    /* the next byte to parse */
  size_t start;  /* the section being parsed starts here */
  size_t hashed; /* bytes before this one are in the checksum */
  int in_carry;  /* the window is carry */
  const unsigned char *piece; /* lent last, until the next call of next */
  size_t piece_len;
  size_t used;     /* of the piece, bytes in the window */
  size_t piece_at; /* in carry: where the piece's bytes begin */
  size_t lent;     /* stream bytes lent so far */
  eddy_buf carry;
  int eof;
  int64_t section; /* type of the section being parsed, 0 before the first */
  XXH3_state_t *hash; /* NULL when the source checks the bytes */
  eddy_err *err;
} source;

/* A field of a section: where its bytes are in the stream. */
typedef struct field {
  size_t at;
  uint32_t len;
} field;

static size_t offset(const source *in) { return in->base + in->pos; }

static const void *field_ptr(const source *in, field f)
{
  return in->data + (f.at - in->base);
}

static int corrupt(source *in, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* EDDY_ECORRUPT with "what at byte at". */
static int corrupt(source *in, size_t at, const char *fmt, ...)
{
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return eddy_seterr(in->err, EDDY_ECORRUPT, "keyed snapshot: %s at byte %zu", what, at);
}

static int truncated(source *in)
{
  if (in->section == 0)
    return eddy_seterr(in->err, EDDY_ECORRUPT,
                       "keyed snapshot: the stream ends at byte %zu, inside its format version",
                       in->lent);
  return eddy_seterr(in->err, EDDY_ECORRUPT,
                     "keyed snapshot: the stream ends at byte %zu, inside the %s%ssection "
                     "that starts at byte %zu",
                     in->lent, in->section > 0 ? section_name(in->section) : "",
                     in->section > 0 ? " " : "", in->base + in->start);
}

/* Puts the bytes before the section being parsed into the checksum: in
 * large pieces, before they leave the window and at the end, because XXH3
 * takes a while to start on each piece it is given (per section, it cost
 * as much as the rest of the parsing). */
static void hash_done(source *in)
{
  if (in->hash != NULL)
    XXH3_64bits_update(in->hash, in->data + in->hashed, in->start - in->hashed);
  in->hashed = in->start;
}

static int read_oom(source *in)
{
  return eddy_seterr(in->err, EDDY_ENOMEM, "keyed snapshot: out of memory reading byte %zu",
                     in->lent);
}

/* Asks the source for the next piece, once the bytes of the window that
 * are still needed (from start on) are in carry. */
static int next_piece(source *in)
{
  hash_done(in);
  if (in->start == in->len && !in->in_carry) {
    /* nothing to keep: the next piece is the window */
    in->base += in->len;
    in->data = NULL;
    in->len = in->pos = in->start = in->hashed = 0;
  } else {
    if (!in->in_carry) {
      eddy_buf_reset(&in->carry);
      if (eddy_buf_append(&in->carry, in->data + in->start, in->len - in->start) != EDDY_OK)
        return read_oom(in);
    } else if (in->start > 0) {
      memmove(in->carry.data, in->carry.data + in->start, in->carry.len - in->start);
      in->carry.len -= in->start;
    }
    in->base += in->start;
    in->pos -= in->start;
    in->start = in->hashed = 0;
    in->in_carry = 1;
    in->data = in->carry.data;
    in->len = in->carry.len;
  }
  const void *p = NULL;
  size_t n = 0;
  int rc = in->src->next(in->src->ud, &p, &n);
  if (rc != 0)
    return eddy_seterr(in->err, rc, "keyed snapshot: reading at byte %zu failed", in->lent);
  if (n > 0 && p == NULL)
    return eddy_seterr(in->err, EDDY_EINVAL, "keyed snapshot: the source lent no bytes");
  in->lent += n;
  in->piece = n > 0 ? p : NULL;
  in->piece_len = n;
  in->used = 0;
  in->piece_at = in->len;
  in->eof = n == 0;
  if (!in->in_carry) {
    in->data = in->piece;
    in->len = in->used = n;
  }
  return EDDY_OK;
}

/* Makes at least n bytes from pos on available, asking for pieces as
 * needed; EDDY_EEOF (no message) if the stream ends first. */
static int fill(source *in, size_t n)
{
  while (in->len - in->pos < n) {
    if (in->used == in->piece_len) {
      if (in->eof)
        return EDDY_EEOF;
      int rc = next_piece(in);
      if (rc != EDDY_OK)
        return rc;
      continue;
    }
    /* a section runs over the end of a piece: what it needs of the next */
    size_t k = n - (in->len - in->pos);
    if (k > in->piece_len - in->used)
      k = in->piece_len - in->used;
    if (eddy_buf_append(&in->carry, in->piece + in->used, k) != EDDY_OK)
      return read_oom(in);
    in->used += k;
    in->data = in->carry.data;
    in->len = in->carry.len;
  }
  return EDDY_OK;
}

/* A section starts at pos. Once one starts in the piece's own bytes,
 * parsing goes back to the piece, where the rest of it is too. */
static void section_start(source *in)
{
  in->start = in->pos;
  if (!in->in_carry || in->piece == NULL || in->pos < in->piece_at)
    return;
  hash_done(in);
  size_t at = in->pos - in->piece_at;
  in->base += in->piece_at;
  in->data = in->piece;
  in->len = in->used = in->piece_len;
  in->pos = in->start = in->hashed = at;
  in->in_carry = 0;
  eddy_buf_reset(&in->carry);
}

/* fill, for bytes that must be there. */
static int need(source *in, size_t n)
{
  int rc = fill(in, n);
  return rc == EDDY_EEOF ? truncated(in) : rc;
}

/* Bytes of the header of the item that starts with tag, string lengths
 * included; 1 for tags eddy_mp_read refuses anyway. */
static size_t header_len(unsigned char tag)
{
  switch (tag) {
  case 0xc4: case 0xd9: case 0xcc: case 0xd0: return 2;
  case 0xc5: case 0xda: case 0xcd: case 0xd1: case 0xdc: case 0xde: return 3;
  case 0xc6: case 0xdb: case 0xce: case 0xd2: case 0xca: case 0xdd: case 0xdf: return 5;
  case 0xcf: case 0xd3: case 0xcb: return 9;
  default: return 1;
  }
}

/* The next item, a whole one: for strings and bins, the bytes are in the
 * buffer too (item->v.s.ptr is valid until the next read). */
static int read_item(source *in, eddy_mp_item *item, size_t *at)
{
  int rc;
  *at = offset(in);
  if ((rc = need(in, 1)) != EDDY_OK)
    return rc;
  const unsigned char *p = in->data + in->pos;
  size_t hdr = header_len(p[0]), len = hdr;
  if ((rc = need(in, hdr)) != EDDY_OK)
    return rc;
  p = in->data + in->pos;
  if ((p[0] & 0xe0) == 0xa0)
    len += p[0] & 0x1f;
  else if (p[0] == 0xc4 || p[0] == 0xd9)
    len += p[1];
  else if (p[0] == 0xc5 || p[0] == 0xda)
    len += (size_t)p[1] << 8 | p[2];
  else if (p[0] == 0xc6 || p[0] == 0xdb)
    len += (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
  if ((rc = need(in, len)) != EDDY_OK)
    return rc;
  eddy_mp_reader r;
  eddy_mp_reader_init(&r, in->data + in->pos, len);
  if (eddy_mp_read(&r, item) != EDDY_OK || eddy_mp_reader_offset(&r) != len)
    return corrupt(in, *at, "malformed MessagePack");
  in->pos += len;
  return EDDY_OK;
}

/* An integer in [lo, hi]; what names it in the message. */
static int read_int(source *in, int64_t lo, int64_t hi, const char *what, int64_t *v)
{
  eddy_mp_item it;
  size_t at;
  int rc = read_item(in, &it, &at);
  if (rc != EDDY_OK)
    return rc;
  if (it.type != EDDY_MP_INT || it.v.i < lo || it.v.i > hi)
    return corrupt(in, at, "%s is not an integer in [%lld, %lld]", what, (long long)lo,
                   (long long)hi);
  *v = it.v.i;
  return EDDY_OK;
}

static int read_bytes(source *in, const char *what, field *f)
{
  eddy_mp_item it;
  size_t at;
  int rc = read_item(in, &it, &at);
  if (rc != EDDY_OK)
    return rc;
  if (it.type != EDDY_MP_STR)
    return corrupt(in, at, "%s is not a byte string", what);
  f->at = in->base + (size_t)((const unsigned char *)it.v.s.ptr - in->data);
  f->len = it.v.s.len;
  return EDDY_OK;
}

/* Starts the next section: the bytes of the one before are done. *type
 * is the new one's. */
static int begin_section(source *in, int64_t *type)
{
  section_start(in);
  in->section = -1; /* not known yet, for the message of a truncation */
  eddy_mp_item it;
  size_t at;
  int rc = read_item(in, &it, &at);
  if (rc != EDDY_OK)
    return rc;
  if (it.type != EDDY_MP_ARRAY || it.v.n == 0)
    return corrupt(in, at, "a section does not start here");
  uint32_t n = it.v.n;
  int64_t t;
  if ((rc = read_int(in, SEC_HEADER, SEC_END, "the section type", &t)) != EDDY_OK)
    return rc;
  if (n != section_len(t))
    return corrupt(in, at, "a section has the wrong number of fields");
  in->section = t;
  *type = t;
  return EDDY_OK;
}

static int expect_section(source *in, int64_t want)
{
  int64_t t;
  size_t at = offset(in);
  int rc = begin_section(in, &t);
  if (rc == EDDY_OK && t != want)
    return corrupt(in, at, "a section of type %s where one of type %s belongs", section_name(t),
                   section_name(want));
  return rc;
}

/* What restore knows while it reads. */
typedef struct restore {
  source in;
  eddy_keyed *k;
  eddy_backend *b;
  int first, last;   /* the snapshot's key groups */
  int kfirst, klast; /* k's */
  uint32_t nstates;
  uint32_t states_cap;
  uint32_t *ids;     /* state id in the snapshot -> id in k's backend */
  eddy_state_kind *kinds;
  eddy_buf name;
} restore;

static int kind_of(const void *s, size_t len, eddy_state_kind *kind)
{
  for (int k = EDDY_STATE_VALUE; k <= EDDY_STATE_AGGREGATING; k++) {
    const char *name = eddy_state_kind_name((eddy_state_kind)k);
    if (strlen(name) == len && memcmp(name, s, len) == 0) {
      *kind = (eddy_state_kind)k;
      return EDDY_OK;
    }
  }
  return EDDY_ENOTFOUND;
}

static int read_head(restore *r)
{
  source *in = &r->in;
  int rc = fill(in, MAGIC_LEN);
  if (rc == EDDY_EEOF)
    return eddy_seterr(in->err, EDDY_ECORRUPT,
                       "keyed snapshot: not an eddy keyed-state snapshot (the stream ends at "
                       "byte %zu, inside the magic)", in->lent);
  if (rc != EDDY_OK)
    return rc;
  if (memcmp(in->data, MAGIC, MAGIC_LEN) != 0)
    return eddy_seterr(in->err, EDDY_ECORRUPT,
                       "keyed snapshot: not an eddy keyed-state snapshot (no magic at byte 0)");
  in->pos = MAGIC_LEN;
  int64_t version, v[4];
  if ((rc = read_int(in, 0, INT64_MAX, "the format version", &version)) != EDDY_OK)
    return rc;
  if (version > EDDY_KEYED_SNAPSHOT_VERSION)
    return eddy_seterr(in->err, EDDY_EINVAL,
                       "keyed snapshot: format version %lld is newer than this eddy reads (%d)",
                       (long long)version, EDDY_KEYED_SNAPSHOT_VERSION);
  if (version < 1)
    return corrupt(in, MAGIC_LEN, "format version 0");

  int maxp, kfirst, klast;
  eddy_backend_key_groups(r->b, &maxp, &kfirst, &klast);
  if ((rc = expect_section(in, SEC_HEADER)) != EDDY_OK ||
      (rc = read_int(in, 1, INT_MAX, "the max parallelism", &v[0])) != EDDY_OK)
    return rc;
  if (v[0] != maxp)
    return eddy_seterr(in->err, EDDY_EINVAL,
                       "keyed snapshot: the snapshot has %lld key groups, this operator %d",
                       (long long)v[0], maxp);
  if ((rc = read_int(in, 0, v[0] - 1, "the first key group", &v[1])) != EDDY_OK ||
      (rc = read_int(in, v[1], v[0] - 1, "the last key group", &v[2])) != EDDY_OK ||
      (rc = read_int(in, 0, UINT32_MAX, "the number of states", &v[3])) != EDDY_OK)
    return rc;
  r->first = (int)v[1];
  r->last = (int)v[2];
  r->kfirst = kfirst;
  r->klast = klast;

  for (uint32_t i = 0; i < (uint32_t)v[3]; i++) {
    int64_t id;
    field name, kind;
    if ((rc = expect_section(in, SEC_STATE)) != EDDY_OK ||
        (rc = read_int(in, i, i, "the state id", &id)) != EDDY_OK ||
        (rc = read_bytes(in, "the state name", &name)) != EDDY_OK)
      return rc;
    size_t kind_at = offset(in);
    if ((rc = read_bytes(in, "the state kind", &kind)) != EDDY_OK)
      return rc;
    eddy_state_kind sk;
    if (kind_of(field_ptr(in, kind), kind.len, &sk) != EDDY_OK)
      return corrupt(in, kind_at, "unknown state kind");
    if (name.len == 0 || memchr(field_ptr(in, name), 0, name.len) != NULL)
      return corrupt(in, name.at, "a state name that is empty or holds a zero byte");
    /* grown as states come, not sized by a count that may be damaged */
    if (i == r->states_cap) {
      size_t cap = r->states_cap ? 2 * (size_t)r->states_cap : 8;
      uint32_t *ids = realloc(r->ids, cap * sizeof *ids);
      if (ids != NULL)
        r->ids = ids;
      eddy_state_kind *kinds = ids != NULL ? realloc(r->kinds, cap * sizeof *kinds) : NULL;
      if (kinds == NULL)
        return eddy_seterr(in->err, EDDY_ENOMEM, "keyed snapshot: out of memory");
      r->kinds = kinds;
      r->states_cap = (uint32_t)cap;
    }
    eddy_buf_reset(&r->name);
    if (eddy_buf_append(&r->name, field_ptr(in, name), name.len) != EDDY_OK ||
        eddy_buf_putc(&r->name, '\0') != EDDY_OK)
      return eddy_seterr(in->err, EDDY_ENOMEM, "keyed snapshot: out of memory");
    if ((rc = eddy_backend_register(r->b, (const char *)r->name.data, sk, &r->ids[i])) != EDDY_OK)
      return eddy_seterr(in->err, rc, "keyed snapshot: cannot restore state '%s' as a %s state: %s",
                         (const char *)r->name.data, eddy_state_kind_name(sk),
                         eddy_backend_errmsg(r->b));
    r->kinds[i] = sk;
    r->nstates = i + 1;
  }
  return EDDY_OK;
}

/* A failure of the backend while restoring the section at byte at. */
static int backend_failed(restore *r, int rc, size_t at)
{
  return eddy_seterr(r->in.err, rc, "keyed snapshot: restoring the row at byte %zu: %s", at,
                     eddy_backend_errmsg(r->b));
}

/* A row of the section being parsed, its bytes in the window, into k. */
static int restore_put(restore *r, int kg, uint32_t state, eddy_slice key, eddy_slice ns,
                       eddy_slice payload)
{
  source *in = &r->in;
  size_t at = in->base + in->start;
  if (r->kinds[state] == EDDY_STATE_MAP) {
    /* user key, value, user key, value... each one MessagePack value */
    const unsigned char *p = payload.data;
    for (size_t done = 0, kl, vl; done < payload.len; done += kl + vl)
      if (eddy_mp_value_len(p + done, payload.len - done, &kl) != EDDY_OK ||
          eddy_mp_value_len(p + done + kl, payload.len - done - kl, &vl) != EDDY_OK)
        return corrupt(in, in->base + (size_t)(p + done - in->data),
                       "a malformed map entry");
  }
  eddy_row row = {r->ids[state], kg, key.data, key.len, ns.len > 0 ? ns.data : NULL, ns.len};
  int rc = eddy_backend_restore_row(r->b, &row, payload.data, payload.len);
  return rc == EDDY_OK ? EDDY_OK : backend_failed(r, rc, at);
}

/* The fields of a ROW section, and the row put into k if in_range. */
static int restore_row(restore *r, int kg, int in_range)
{
  source *in = &r->in;
  size_t at = in->base + in->start;
  int64_t state;
  field key, ns, payload;
  int rc;
  if ((rc = read_int(in, 0, (int64_t)r->nstates - 1, "the state id", &state)) != EDDY_OK ||
      (rc = read_bytes(in, "the key", &key)) != EDDY_OK ||
      (rc = read_bytes(in, "the namespace", &ns)) != EDDY_OK ||
      (rc = read_bytes(in, "the payload", &payload)) != EDDY_OK)
    return rc;
  if (key.len == 0 || payload.len == 0)
    return corrupt(in, at, "a row with an empty key or payload");
  if (!in_range)
    return EDDY_OK;
  return restore_put(r, kg, (uint32_t)state, (eddy_slice){field_ptr(in, key), key.len},
                     (eddy_slice){field_ptr(in, ns), ns.len},
                     (eddy_slice){field_ptr(in, payload), payload.len});
}

/* A bin starting at *p, wholly before end, with a header of the kind the
 * writer uses (bin 8, 16 or 32); 0 for anything else. */
static inline int quick_bin(const unsigned char **p, const unsigned char *end, eddy_slice *v)
{
  const unsigned char *q = *p;
  size_t left = (size_t)(end - q), h, n;
  if (left >= 2 && q[0] == 0xc4) {
    h = 2;
    n = q[1];
  } else if (left >= 3 && q[0] == 0xc5) {
    h = 3;
    n = (size_t)q[1] << 8 | q[2];
  } else if (left >= 5 && q[0] == 0xc6) {
    h = 5;
    n = (size_t)q[1] << 24 | (size_t)q[2] << 16 | (size_t)q[3] << 8 | q[4];
  } else {
    return 0;
  }
  if (left - h < n)
    return 0;
  v->data = q + h;
  v->len = n;
  *p = q + h + n;
  return 1;
}

/*
 * The next section if it is a ROW as the writer makes them (a state id
 * below 128, non-empty key and payload) and wholly in the window: rows are
 * nearly all of a snapshot, and the general path, which reads item by item
 * and checks each, took longer than decompressing them. Returns 0, having
 * read nothing, for anything else; the general path then reads it, and
 * says what is wrong with it. Else 1, with *rc what putting the row gave.
 */
static int quick_row(restore *r, int kg, int in_range, int *rc)
{
  source *in = &r->in;
  section_start(in);
  const unsigned char *p = in->data + in->pos, *end = in->data + in->len;
  eddy_slice key, ns, payload;
  if (end - p < 3 || p[0] != 0x95 || p[1] != SEC_ROW || p[2] >= 0x80 || p[2] >= r->nstates)
    return 0;
  uint32_t state = p[2];
  p += 3;
  if (!quick_bin(&p, end, &key) || !quick_bin(&p, end, &ns) || !quick_bin(&p, end, &payload) ||
      key.len == 0 || payload.len == 0)
    return 0;
  in->section = SEC_ROW;
  in->pos = (size_t)(p - in->data);
  *rc = in_range ? restore_put(r, kg, state, key, ns, payload) : EDDY_OK;
  return 1;
}

/* The fields of a TIMER section, and the timer registered if in_range. */
static int restore_timer(restore *r, int kg, int in_range)
{
  source *in = &r->in;
  size_t at = in->base + in->start;
  int64_t kind, ts;
  field key, ns;
  int rc;
  if ((rc = read_int(in, 0, 1, "the timer kind", &kind)) != EDDY_OK ||
      (rc = read_int(in, INT64_MIN, INT64_MAX, "the timestamp", &ts)) != EDDY_OK ||
      (rc = read_bytes(in, "the key", &key)) != EDDY_OK ||
      (rc = read_bytes(in, "the namespace", &ns)) != EDDY_OK)
    return rc;
  if (key.len == 0)
    return corrupt(in, at, "a timer with an empty key");
  if (!in_range)
    return EDDY_OK;
  eddy_timers *timers = eddy_keyed_timers(r->k);
  eddy_timer t = {ts, kg, {field_ptr(in, key), key.len},
                  {ns.len > 0 ? field_ptr(in, ns) : NULL, ns.len}};
  rc = eddy_timers_register(timers, kind == 0 ? EDDY_TIMER_EVENT : EDDY_TIMER_PROCESSING, &t,
                            NULL);
  if (rc != EDDY_OK)
    return eddy_seterr(in->err, rc, "keyed snapshot: restoring the timer at byte %zu: %s", at,
                       eddy_timers_errmsg(timers));
  return EDDY_OK;
}

/* Key groups until the end, then the end and nothing after it. */
static int read_groups(restore *r)
{
  source *in = &r->in;
  int64_t t, totals[3] = {0, 0, 0}, kg = r->first - 1;
  size_t at;
  int rc;
  for (;;) {
    at = offset(in);
    if ((rc = begin_section(in, &t)) != EDDY_OK)
      return rc;
    if (t == SEC_END)
      break;
    if (t != SEC_GROUP)
      return corrupt(in, at, "a section of type %s outside a key group", section_name(t));
    if ((rc = read_int(in, kg + 1, r->last, "the key group (ascending, in the snapshot's range)",
                       &kg)) != EDDY_OK)
      return rc;
    int in_range = kg >= r->kfirst && kg <= r->klast;
    int64_t counts[2] = {0, 0}, want[2];
    for (;;) {
      if (quick_row(r, (int)kg, in_range, &rc)) {
        if (rc != EDDY_OK)
          return rc;
        counts[0]++;
        continue;
      }
      at = offset(in);
      if ((rc = begin_section(in, &t)) != EDDY_OK)
        return rc;
      if (t == SEC_ROW)
        rc = restore_row(r, (int)kg, in_range);
      else if (t == SEC_TIMER)
        rc = restore_timer(r, (int)kg, in_range);
      else if (t != SEC_GROUP_END)
        return corrupt(in, at, "a section of type %s inside key group %lld", section_name(t),
                       (long long)kg);
      if (rc != EDDY_OK)
        return rc;
      if (t == SEC_GROUP_END)
        break;
      counts[t == SEC_TIMER]++;
    }
    if ((rc = read_int(in, 0, INT64_MAX, "the row count", &want[0])) != EDDY_OK ||
        (rc = read_int(in, 0, INT64_MAX, "the timer count", &want[1])) != EDDY_OK)
      return rc;
    if (want[0] != counts[0] || want[1] != counts[1])
      return corrupt(in, at, "the counts of a key group do not match its rows and timers");
    totals[0]++;
    totals[1] += counts[0];
    totals[2] += counts[1];
  }

  int64_t end[4];
  if ((rc = read_int(in, 0, INT64_MAX, "the key-group count", &end[0])) != EDDY_OK ||
      (rc = read_int(in, 0, INT64_MAX, "the row count", &end[1])) != EDDY_OK ||
      (rc = read_int(in, 0, INT64_MAX, "the timer count", &end[2])) != EDDY_OK ||
      (rc = read_int(in, INT64_MIN, INT64_MAX, "the checksum", &end[3])) != EDDY_OK)
    return rc;
  if (end[0] != totals[0] || end[1] != totals[1] || end[2] != totals[2])
    return corrupt(in, at, "the counts of the end do not match the sections before it");
  hash_done(in); /* everything before the end */
  if (in->hash != NULL && (uint64_t)end[3] != XXH3_64bits_digest(in->hash))
    return corrupt(in, at, "checksum mismatch over the bytes before the end");
  rc = fill(in, 1);
  if (rc == EDDY_OK)
    return corrupt(in, offset(in), "bytes after the end");
  return rc == EDDY_EEOF ? EDDY_OK : rc;
}

int eddy_keyed_restore(eddy_keyed *k, const eddy_keyed_source *src, eddy_err *err)
{
  if (k == NULL || src == NULL || src->next == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "keyed snapshot: no keyed state or no source");
  restore r;
  memset(&r, 0, sizeof r);
  r.in.src = src;
  r.in.err = err;
  r.k = k;
  r.b = eddy_keyed_backend(k);
  eddy_buf_init(&r.in.carry);
  eddy_buf_init(&r.name);
  int rc;
  if (!src->checked &&
      ((r.in.hash = XXH3_createState()) == NULL || XXH3_64bits_reset(r.in.hash) != XXH_OK))
    rc = eddy_seterr(err, EDDY_ENOMEM, "keyed snapshot: out of memory");
  else if ((rc = read_head(&r)) == EDDY_OK)
    rc = read_groups(&r);
  /* the rows the backend held back go in, after a failure too: the
   * backend must not be left between a restore's rows and its end */
  int done = eddy_backend_restore_done(r.b);
  if (rc == EDDY_OK && done != EDDY_OK)
    rc = eddy_seterr(err, done, "keyed snapshot: %s", eddy_backend_errmsg(r.b));
  XXH3_freeState(r.in.hash);
  eddy_buf_free(&r.in.carry);
  eddy_buf_free(&r.name);
  free(r.ids);
  free(r.kinds);
  return rc;
}
