/*
 * The record reader: see reader.h. One buffer holds what read(2) brought
 * in; lines are found in it with memchr and handed to the decoder in place,
 * so a line costs no copy and no system call. The buffer grows for long
 * lines, but never much past max_line: a longer line is dropped as it
 * streams by.
 */
#include "runtime/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "util/interrupt.h"

#define READ_CHUNK ((size_t)64 * 1024)

struct eddy_reader {
  char *name;
  int fd;
  int own_fd;
  eddy_csv_options csv;
  eddy_format_kind format;
  size_t max_line;
  int skip_errors;
  int nonblocking;
  eddy_decoder *dec;

  /* bytes read and not yet consumed are buf[head, tail) */
  unsigned char *buf;
  size_t cap, head, tail;
  size_t scan;       /* no '\n' in buf[head, scan) */
  uint64_t head_off; /* file offset of buf[head] */
  uint64_t line;     /* lines consumed */
  int eof;
  int bom_checked;
  int discarding; /* dropping the rest of an over-long line */

  /* the record being decoded (a CSV record may take several lines) */
  int in_record;
  uint64_t rec_line;
  uint64_t rec_bytes;

  uint64_t done_off, done_line; /* after the last record returned */
  eddy_buf out;

  uint64_t skipped;
  char *first_skipped;
  int broken; /* a bad CSV header: every call fails with it */
  eddy_err broken_err;
};

void eddy_reader_config_init(eddy_reader_config *cfg)
{
  memset(cfg, 0, sizeof *cfg);
  cfg->fd = -1;
  cfg->format = EDDY_FORMAT_JSONL;
  eddy_format_csv_defaults(&cfg->csv);
  cfg->max_line = EDDY_READER_MAX_LINE;
}

/* "64 MiB" rather than 67108864 in messages. */
static void size_text(size_t n, char *buf, size_t cap)
{
  if (n >= ((size_t)1 << 20) && n % ((size_t)1 << 20) == 0)
    snprintf(buf, cap, "%zu MiB", n >> 20);
  else if (n >= 1024 && n % 1024 == 0)
    snprintf(buf, cap, "%zu KiB", n >> 10);
  else
    snprintf(buf, cap, "%zu bytes", n);
}

int eddy_reader_open(const eddy_reader_config *cfg, eddy_reader **out,
                     eddy_err *err)
{
  *out = NULL;
  if (cfg->fd < 0 && (cfg->path == NULL || cfg->path[0] == '\0'))
    return eddy_seterr(err, EDDY_EINVAL, "a reader needs a path or a descriptor");
  eddy_decoder *dec;
  int rc = eddy_format_decoder_new(cfg->format, &cfg->csv, &dec, err);
  if (rc != EDDY_OK)
    return rc;
  eddy_reader *r = calloc(1, sizeof *r);
  char fdname[32];
  const char *name = cfg->name;
  if (name == NULL && cfg->fd >= 0) {
    if (cfg->fd == 0)
      name = "<stdin>";
    else {
      snprintf(fdname, sizeof fdname, "<fd %d>", cfg->fd);
      name = fdname;
    }
  }
  if (name == NULL)
    name = cfg->path;
  if (r == NULL || (r->name = strdup(name)) == NULL) {
    free(r);
    eddy_format_decoder_free(dec);
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory");
  }
  r->dec = dec;
  r->format = cfg->format;
  r->csv = cfg->csv;
  r->max_line = cfg->max_line ? cfg->max_line : EDDY_READER_MAX_LINE;
  r->skip_errors = cfg->skip_errors;
  r->nonblocking = cfg->nonblocking;
  eddy_buf_init(&r->out);

  if (cfg->fd >= 0) {
    r->fd = cfg->fd;
  } else {
    r->fd = open(cfg->path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
      rc = eddy_seterr(err, EDDY_EIO, "%s: %s", r->name, strerror(errno));
      eddy_reader_close(r);
      return rc;
    }
    r->own_fd = 1;
  }
  struct stat st;
  if (fstat(r->fd, &st) != 0) {
    rc = eddy_seterr(err, EDDY_EIO, "%s: %s", r->name, strerror(errno));
    eddy_reader_close(r);
    return rc;
  }
  if (S_ISDIR(st.st_mode)) {
    rc = eddy_seterr(err, EDDY_EIO, "%s: %s", r->name, strerror(EISDIR));
    eddy_reader_close(r);
    return rc;
  }
  /* A descriptor may come positioned (a shell redirect after a read):
   * offsets stay file offsets, so that seek finds them again. */
  if (cfg->fd >= 0) {
    off_t pos = lseek(r->fd, 0, SEEK_CUR);
    if (pos > 0) {
      r->head_off = r->done_off = (uint64_t)pos;
      r->bom_checked = 1;
    }
  }
  *out = r;
  return EDDY_OK;
}

void eddy_reader_close(eddy_reader *r)
{
  if (r == NULL)
    return;
  if (r->own_fd && r->fd >= 0)
    close(r->fd);
  eddy_format_decoder_free(r->dec);
  eddy_buf_free(&r->out);
  free(r->buf);
  free(r->name);
  free(r->first_skipped);
  free(r);
}

/* Reads more into the buffer, after moving what is left to its front. */
static int fill(eddy_reader *r, eddy_err *err)
{
  if (r->head > 0) {
    size_t n = r->tail - r->head;
    if (n > 0)
      memmove(r->buf, r->buf + r->head, n);
    r->scan = r->scan > r->head ? r->scan - r->head : 0;
    r->tail = n;
    r->head = 0;
  }
  if (r->cap - r->tail < READ_CHUNK) {
    size_t cap = r->cap ? r->cap : READ_CHUNK;
    while (cap - r->tail < READ_CHUNK)
      cap *= 2;
    unsigned char *p = realloc(r->buf, cap);
    if (p == NULL)
      return eddy_seterr(err, EDDY_ENOMEM, "%s: out of memory", r->name);
    r->buf = p;
    r->cap = cap;
  }
  for (;;) {
    if (r->nonblocking) {
      /* a pipe that may stay quiet (tail -f): let the job go on meanwhile */
      struct pollfd pfd = {r->fd, POLLIN, 0};
      int ready = poll(&pfd, 1, 0);
      if (ready == 0)
        return EDDY_EAGAIN;
      if (ready < 0 && errno != EINTR)
        return eddy_seterr(err, EDDY_EIO, "%s: %s", r->name, strerror(errno));
    }
    ssize_t n = read(r->fd, r->buf + r->tail, r->cap - r->tail);
    if (n > 0) {
      r->tail += (size_t)n;
      return EDDY_OK;
    }
    if (n == 0) {
      r->eof = 1;
      return EDDY_OK;
    }
    if (errno == EINTR) {
      if (eddy_interrupt_pending())
        return eddy_seterr(err, EDDY_EINTR, "%s: interrupted", r->name);
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      /* a non-blocking stdin: wait for it rather than fail */
      struct pollfd pfd = {r->fd, POLLIN, 0};
      if (poll(&pfd, 1, -1) < 0 && errno == EINTR &&
          eddy_interrupt_pending())
        return eddy_seterr(err, EDDY_EINTR, "%s: interrupted", r->name);
      continue;
    }
    return eddy_seterr(err, EDDY_EIO, "%s: %s", r->name, strerror(errno));
  }
}

static void drop_buffered(eddy_reader *r)
{
  r->head_off += r->tail - r->head;
  r->head = r->tail = r->scan = 0;
}

/*
 * The next line, its '\n' included when it has one (only the last line of
 * the input may lack it); valid until the next call. EDDY_ELIMIT for a line
 * longer than max_line: it is consumed (counted, and its rest dropped as it
 * is read) and the line number r->line is its own. EDDY_EEOF, EDDY_EIO,
 * EDDY_EINTR.
 */
static int next_line(eddy_reader *r, const unsigned char **line, size_t *len,
                     int *has_nl, eddy_err *err)
{
  int rc;
  while (r->discarding) {
    unsigned char *nl = memchr(r->buf + r->head, '\n', r->tail - r->head);
    if (nl != NULL) {
      size_t k = (size_t)(nl + 1 - (r->buf + r->head));
      r->head += k;
      r->head_off += k;
      r->scan = r->head;
      r->discarding = 0;
    } else {
      drop_buffered(r);
      if (r->eof)
        r->discarding = 0;
      else if ((rc = fill(r, err)) != EDDY_OK)
        return rc;
    }
  }
  if (!r->bom_checked) {
    while (r->tail - r->head < 3 && !r->eof)
      if ((rc = fill(r, err)) != EDDY_OK)
        return rc;
    if (r->tail - r->head >= 3 &&
        memcmp(r->buf + r->head, "\xef\xbb\xbf", 3) == 0) {
      r->head += 3;
      r->head_off += 3;
    }
    r->scan = r->head;
    r->bom_checked = 1;
  }
  for (;;) {
    unsigned char *nl = NULL;
    if (r->scan < r->tail)
      nl = memchr(r->buf + r->scan, '\n', r->tail - r->scan);
    if (nl != NULL) {
      size_t content = (size_t)(nl - (r->buf + r->head));
      *line = r->buf + r->head;
      *len = content + 1;
      *has_nl = 1;
      r->head += content + 1;
      r->head_off += content + 1;
      r->scan = r->head;
      r->line++;
      return content > r->max_line ? EDDY_ELIMIT : EDDY_OK;
    }
    r->scan = r->tail;
    if (r->tail - r->head > r->max_line) {
      r->line++;
      drop_buffered(r);
      r->discarding = 1;
      return EDDY_ELIMIT;
    }
    if (r->eof) {
      if (r->tail == r->head)
        return EDDY_EEOF;
      *line = r->buf + r->head;
      *len = r->tail - r->head;
      *has_nl = 0;
      r->head_off += *len;
      r->head = r->scan = r->tail;
      r->line++;
      return EDDY_OK;
    }
    if ((rc = fill(r, err)) != EDDY_OK)
      return rc;
  }
}

/* A malformed record: an error, or with skip_errors one more skipped
 * (EDDY_OK then). fatal marks errors that no skipping can get past. */
static int malformed(eddy_reader *r, uint64_t line, int fatal, eddy_err *err,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int malformed(eddy_reader *r, uint64_t line, int fatal, eddy_err *err,
                     const char *fmt, ...)
{
  char what[EDDY_ERR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (fatal) {
    eddy_seterr(&r->broken_err, EDDY_EFORMAT, "%s:%" PRIu64 ": %s", r->name,
                line, what);
    r->broken = 1;
    return eddy_err_copy(err ? err : &r->broken_err, &r->broken_err);
  }
  if (!r->skip_errors)
    return eddy_seterr(err, EDDY_EFORMAT, "%s:%" PRIu64 ": %s", r->name, line,
                       what);
  r->skipped++;
  if (r->first_skipped == NULL) {
    eddy_err tmp;
    eddy_seterr(&tmp, EDDY_EFORMAT, "%s:%" PRIu64 ": %s", r->name, line, what);
    r->first_skipped = strdup(tmp.msg); /* NULL on ENOMEM: count only */
  }
  return EDDY_OK;
}

/* Reads up to and including the next record, header or blank line handled
 * on the way. want_header: stop after the CSV header instead (for seek). */
static int advance(eddy_reader *r, int want_header, eddy_slice *record,
                   eddy_err *err)
{
  char limit[32];
  for (;;) {
    const unsigned char *line = NULL;
    size_t len = 0;
    int has_nl = 0;
    eddy_decode_result res = EDDY_DECODE_SKIP;
    eddy_err derr;
    int header_phase = !eddy_format_decoder_has_header(r->dec);
    int rc = next_line(r, &line, &len, &has_nl, err);

    if (rc == EDDY_EEOF) {
      if (!r->in_record)
        return eddy_seterr(err, EDDY_EEOF, "%s: end of input", r->name);
      rc = eddy_format_decode_end(r->dec, &r->out, &res, &derr);
    } else if (rc == EDDY_ELIMIT) {
      uint64_t at = r->in_record ? r->rec_line : r->line;
      eddy_format_decoder_reset(r->dec);
      r->in_record = 0;
      size_text(r->max_line, limit, sizeof limit);
      rc = malformed(r, at, header_phase, err, "line longer than %s", limit);
      if (rc != EDDY_OK)
        return rc;
      continue;
    } else if (rc != EDDY_OK) {
      return rc;
    } else {
      if (!r->in_record) {
        r->rec_line = r->line;
        r->rec_bytes = 0;
        eddy_buf_reset(&r->out);
      }
      r->rec_bytes += len;
      rc = eddy_format_decode_line(r->dec, line, len, &r->out, &res, &derr);
      if (rc == EDDY_OK && res == EDDY_DECODE_MORE && !has_nl)
        rc = eddy_format_decode_end(r->dec, &r->out, &res, &derr);
      if (rc == EDDY_OK && res == EDDY_DECODE_MORE &&
          r->rec_bytes > r->max_line) {
        eddy_format_decoder_reset(r->dec);
        r->in_record = 0;
        size_text(r->max_line, limit, sizeof limit);
        rc = malformed(r, r->rec_line, header_phase, err,
                       "CSV record longer than %s (a quoted field that is "
                       "never closed?)",
                       limit);
        if (rc != EDDY_OK)
          return rc;
        continue;
      }
    }

    if (rc == EDDY_ENOMEM || rc == EDDY_EINVAL)
      return eddy_seterr(err, rc, "%s: %s", r->name, derr.msg);
    if (rc != EDDY_OK) {
      r->in_record = 0;
      rc = malformed(r, r->rec_line, header_phase, err, "%s", derr.msg);
      if (rc != EDDY_OK)
        return rc;
      continue;
    }
    switch (res) {
    case EDDY_DECODE_RECORD:
      r->in_record = 0;
      r->done_off = r->head_off;
      r->done_line = r->line;
      record->data = r->out.data;
      record->len = r->out.len;
      return EDDY_OK;
    case EDDY_DECODE_MORE:
      r->in_record = 1;
      break;
    case EDDY_DECODE_HEADER:
      r->in_record = 0;
      if (want_header)
        return EDDY_OK;
      break;
    case EDDY_DECODE_SKIP:
      r->in_record = 0;
      break;
    }
  }
}

int eddy_reader_next(eddy_reader *r, eddy_slice *record, eddy_err *err)
{
  if (r->broken)
    return eddy_err_copy(err ? err : &r->broken_err, &r->broken_err);
  record->data = NULL;
  record->len = 0;
  return advance(r, 0, record, err);
}

uint64_t eddy_reader_offset(const eddy_reader *r) { return r->done_off; }

uint64_t eddy_reader_line(const eddy_reader *r) { return r->done_line; }

/* Forgets everything buffered and decoded and reads on from offset. */
static int reposition(eddy_reader *r, uint64_t offset, uint64_t line,
                      eddy_err *err)
{
  if (lseek(r->fd, (off_t)offset, SEEK_SET) < 0)
    return eddy_seterr(err, EDDY_EIO, "%s: cannot seek: %s", r->name,
                       strerror(errno));
  r->head = r->tail = r->scan = 0;
  r->head_off = offset;
  r->line = line;
  r->eof = 0;
  r->discarding = 0;
  r->bom_checked = offset > 0;
  r->in_record = 0;
  eddy_format_decoder_reset(r->dec);
  return EDDY_OK;
}

int eddy_reader_seek(eddy_reader *r, uint64_t offset, uint64_t line,
                     eddy_err *err)
{
  struct stat st;
  if (lseek(r->fd, 0, SEEK_CUR) < 0)
    return eddy_seterr(err, EDDY_EUNSUPPORTED,
                       "%s: cannot resume at an offset: %s", r->name,
                       strerror(errno));
  if (fstat(r->fd, &st) != 0)
    return eddy_seterr(err, EDDY_EIO, "%s: %s", r->name, strerror(errno));
  if (S_ISREG(st.st_mode) && offset > (uint64_t)st.st_size)
    return eddy_seterr(err, EDDY_EINVAL,
                       "%s: cannot resume at byte %" PRIu64
                       ": the file has only %" PRIu64 " bytes",
                       r->name, offset, (uint64_t)st.st_size);
  r->broken = 0;
  int rc;
  if (r->format == EDDY_FORMAT_CSV && r->csv.header) {
    /* The header gives the field names of every record after it. */
    eddy_format_decoder_forget_header(r->dec);
    if ((rc = reposition(r, 0, 0, err)) != EDDY_OK)
      return rc;
    eddy_slice unused;
    rc = advance(r, 1, &unused, err);
    if (rc == EDDY_EEOF) {
      if (offset > 0)
        return eddy_seterr(err, EDDY_EINVAL,
                           "%s: cannot resume at byte %" PRIu64
                           ": the file has no CSV header",
                           r->name, offset);
      rc = EDDY_OK;
    }
    if (rc != EDDY_OK)
      return rc;
    if (offset > 0 && offset < r->head_off)
      return eddy_seterr(err, EDDY_EINVAL,
                         "%s: cannot resume at byte %" PRIu64
                         ": that is inside the CSV header",
                         r->name, offset);
    if (offset > r->head_off && (rc = reposition(r, offset, line, err)) != EDDY_OK)
      return rc;
    if (offset == r->head_off)
      r->line = line;
  } else if ((rc = reposition(r, offset, line, err)) != EDDY_OK) {
    return rc;
  }
  r->done_off = offset;
  r->done_line = line;
  return EDDY_OK;
}

uint64_t eddy_reader_skipped(const eddy_reader *r) { return r->skipped; }

const char *eddy_reader_first_skipped(const eddy_reader *r)
{
  return r->first_skipped;
}

const char *eddy_reader_name(const eddy_reader *r) { return r->name; }
