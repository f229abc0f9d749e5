/*
 * A growable byte buffer: the one way the engine builds encoded values,
 * frames and file contents, so that growth and out-of-memory are handled in
 * one place.
 */
#ifndef EDDY_UTIL_BUF_H
#define EDDY_UTIL_BUF_H

#include <stddef.h>
#include <string.h>

#include "util/err.h"

/* A view of bytes someone else owns; who and for how long is said by the
 * function that hands it out. */
typedef struct eddy_slice {
  const void *data;
  size_t len;
} eddy_slice;

typedef struct eddy_buf {
  unsigned char *data; /* owned; NULL until something is written */
  size_t len;
  size_t cap;
} eddy_buf;

#define EDDY_BUF_INIT {NULL, 0, 0}

void eddy_buf_init(eddy_buf *b);
void eddy_buf_free(eddy_buf *b);

/* Makes room for extra more bytes; EDDY_ENOMEM (buffer unchanged) on failure. */
int eddy_buf_grow(eddy_buf *b, size_t extra);

static inline int eddy_buf_reserve(eddy_buf *b, size_t extra)
{
  return (b->cap - b->len >= extra) ? EDDY_OK : eddy_buf_grow(b, extra);
}

/* p must not point into b itself: growing b may move its bytes. */
static inline int eddy_buf_append(eddy_buf *b, const void *p, size_t n)
{
  int rc = eddy_buf_reserve(b, n);
  if (rc != EDDY_OK)
    return rc;
  if (n > 0)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  return EDDY_OK;
}

static inline int eddy_buf_putc(eddy_buf *b, unsigned char c)
{
  int rc = eddy_buf_reserve(b, 1);
  if (rc != EDDY_OK)
    return rc;
  b->data[b->len++] = c;
  return EDDY_OK;
}

static inline void eddy_buf_reset(eddy_buf *b) { b->len = 0; }

#endif
