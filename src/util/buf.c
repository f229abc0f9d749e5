/*
 * Growable byte buffer: see buf.h. Growth doubles, so appending n bytes one
 * at a time costs O(n) overall.
 */
#include "util/buf.h"

#include <stdint.h>
#include <stdlib.h>

void eddy_buf_init(eddy_buf *b)
{
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void eddy_buf_free(eddy_buf *b)
{
  free(b->data);
  eddy_buf_init(b);
}

int eddy_buf_grow(eddy_buf *b, size_t extra)
{
  if (extra > SIZE_MAX / 2 - b->len)
    return EDDY_ENOMEM;
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need)
    cap *= 2;
  unsigned char *p = realloc(b->data, cap);
  if (p == NULL)
    return EDDY_ENOMEM;
  b->data = p;
  b->cap = cap;
  return EDDY_OK;
}
