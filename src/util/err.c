/*
 * Error values: see err.h. Messages are formatted once, here, so that the
 * cut-off and NUL handling is right everywhere.
 */
#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int eddy_vseterr(eddy_err *err, int code, const char *fmt, va_list ap)
{
  if (err == NULL)
    return code;
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  err->code = code;
  return code;
}

int eddy_seterr(eddy_err *err, int code, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  eddy_vseterr(err, code, fmt, ap);
  va_end(ap);
  return code;
}

int eddy_err_prefix(eddy_err *err, const char *fmt, ...)
{
  if (err == NULL)
    return EDDY_OK;
  char prefix[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(prefix, sizeof prefix - 2, fmt, ap);
  va_end(ap);
  if (n < 0)
    return err->code;
  size_t plen = strlen(prefix);
  memcpy(prefix + plen, ": ", 3);
  plen += 2;
  /* Shift the old message right to make room; what falls off the end is
   * cut, as eddy_seterr would cut it. */
  size_t cap = sizeof err->msg - 1;
  size_t old = strnlen(err->msg, cap);
  if (plen > cap)
    plen = cap;
  if (old > cap - plen)
    old = cap - plen;
  memmove(err->msg + plen, err->msg, old);
  memcpy(err->msg, prefix, plen);
  err->msg[plen + old] = '\0';
  return err->code;
}

void eddy_err_clear(eddy_err *err)
{
  if (err == NULL)
    return;
  err->code = EDDY_OK;
  err->msg[0] = '\0';
}

int eddy_err_copy(eddy_err *dst, const eddy_err *src)
{
  if (dst != src) {
    dst->code = src->code;
    memcpy(dst->msg, src->msg, sizeof dst->msg);
  }
  return src->code;
}

const char *eddy_strerror(int code)
{
  switch (code) {
  case EDDY_OK: return "ok";
  case EDDY_ENOMEM: return "out of memory";
  case EDDY_EINVAL: return "invalid argument";
  case EDDY_EIO: return "input/output error";
  case EDDY_ENOTFOUND: return "not found";
  case EDDY_ECORRUPT: return "corrupt data";
  case EDDY_EFORMAT: return "malformed input";
  case EDDY_ECALLBACK: return "user function failed";
  case EDDY_EINTR: return "interrupted";
  case EDDY_ELIMIT: return "limit exceeded";
  case EDDY_EUNSUPPORTED: return "not supported";
  case EDDY_EEOF: return "end of input";
  case EDDY_EAGAIN: return "nothing yet";
  default: return "unknown error";
  }
}
