/*
 * One error-code space for the whole engine, and one place to write the
 * message that goes with a failure.
 *
 * Engine functions return an int status (EDDY_OK or one of the negative
 * codes below) and put results in out-parameters. The human message sits in
 * an eddy_err next to the handle that failed, written only through
 * eddy_seterr(), so every message has the same shape: what went wrong and
 * where. The binding turns it into a Lua error after it has cleaned up.
 */
#ifndef EDDY_UTIL_ERR_H
#define EDDY_UTIL_ERR_H

#include <stdarg.h>
#include <stddef.h>

enum {
  EDDY_OK = 0,
  EDDY_ENOMEM = -1,      /* allocation failed */
  EDDY_EINVAL = -2,      /* bad argument or configuration */
  EDDY_EIO = -3,         /* a system call failed; errno text in the message */
  EDDY_ENOTFOUND = -4,   /* absent (not always an error: state lookups) */
  EDDY_ECORRUPT = -5,    /* stored bytes that cannot be what we wrote */
  EDDY_EFORMAT = -6,     /* malformed input data (a bad line in a file) */
  EDDY_ECALLBACK = -7,   /* user code failed; the binding wrote the message */
  EDDY_EINTR = -8,       /* interrupted (Ctrl-C, cancel) */
  EDDY_ELIMIT = -9,      /* a size or depth limit was exceeded */
  EDDY_EUNSUPPORTED = -10,
  EDDY_EEOF = -11,       /* end of input; not an error for readers */
  EDDY_EAGAIN = -12      /* nothing yet (non-blocking input); try later */
};

#define EDDY_ERR_MSG_MAX 1024

typedef struct eddy_err {
  int code;
  char msg[EDDY_ERR_MSG_MAX];
} eddy_err;

/* Records code and message in err (which may be NULL) and returns code, so
 * callers can write `return eddy_seterr(err, EDDY_EINVAL, "...")`. A message
 * longer than the buffer is cut, never overflowed. */
int eddy_seterr(eddy_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* eddy_seterr with a va_list, for functions that take a format of their own. */
int eddy_vseterr(eddy_err *err, int code, const char *fmt, va_list ap);

/* Prefixes the message already in err with "prefix: "; returns err->code. */
int eddy_err_prefix(eddy_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void eddy_err_clear(eddy_err *err);

/* Copies src into dst (both may be the same); returns src->code. */
int eddy_err_copy(eddy_err *dst, const eddy_err *src);

/* A short fixed text for a code, for messages that have nothing better. */
const char *eddy_strerror(int code);

#endif
