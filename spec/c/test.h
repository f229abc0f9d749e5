/*
 * A tiny C test harness: CHECK(expr) reports file:line and the expression
 * and counts a failure; TEST_MAIN runs the listed test functions and exits
 * non-zero if any check failed. Enough for engine unit tests, which must
 * run under the sanitizers without any framework.
 */
#ifndef EDDY_TEST_H
#define EDDY_TEST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/buf.h"
#include "util/fs.h"
#include "util/msgpack.h"

static int test_failures;
static int test_checks;

#define CHECK(expr)                                                          \
  do {                                                                       \
    test_checks++;                                                           \
    if (!(expr)) {                                                           \
      test_failures++;                                                       \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #expr); \
    }                                                                        \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                   \
  do {                                                                       \
    long long va_ = (long long)(a), vb_ = (long long)(b);                    \
    test_checks++;                                                           \
    if (va_ != vb_) {                                                        \
      test_failures++;                                                       \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__,    \
              __LINE__, #a, #b, va_, vb_);                                   \
    }                                                                        \
  } while (0)

#define CHECK_EQ_STR(a, b)                                                   \
  do {                                                                       \
    const char *sa_ = (a), *sb_ = (b);                                       \
    test_checks++;                                                           \
    if (sa_ == NULL || sb_ == NULL || strcmp(sa_, sb_) != 0) {               \
      test_failures++;                                                       \
      fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n",          \
              __FILE__, __LINE__, #a, #b, sa_ ? sa_ : "(null)",              \
              sb_ ? sb_ : "(null)");                                         \
    }                                                                        \
  } while (0)

#define CHECK_MEM(a, alen, b, blen)                                          \
  CHECK((size_t)(alen) == (size_t)(blen) && memcmp((a), (b), (alen)) == 0)

/* A new folder under /tmp for a test: its path, malloc'd; test_rmdir
 * removes the folder with everything in it and frees the path. */
static inline char *test_tmpdir(void)
{
  char tmpl[] = "/tmp/eddy-test-XXXXXX";
  char *d = mkdtemp(tmpl);
  CHECK(d != NULL);
  return strdup(d != NULL ? d : "/tmp");
}

static inline void test_rmdir(char *dir)
{
  eddy_remove_tree(dir);
  free(dir);
}

/* A formatted path in a ring of buffers, so that a test holds a few at
 * once without frees; a path kept for long is copied. */
static inline const char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline const char *pathf(const char *fmt, ...)
{
  static char ring[64][4096];
  static int next;
  char *b = ring[next++ % 64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof ring[0], fmt, ap);
  va_end(ap);
  return b;
}

/* A MessagePack value in a fixed buffer, so that tests keep keys and
 * namespaces on the stack and in arrays. */
typedef struct test_val {
  unsigned char b[64];
  size_t len;
} test_val;

/* The bytes of buf as a test_val; buf is freed. */
static inline test_val test_val_of(eddy_buf *buf)
{
  test_val v = {{0}, 0};
  CHECK(buf->len <= sizeof v.b);
  if (buf->len <= sizeof v.b) {
    memcpy(v.b, buf->data, buf->len);
    v.len = buf->len;
  }
  eddy_buf_free(buf);
  return v;
}

static inline test_val test_int(int64_t i)
{
  eddy_buf buf = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_mp_write_int(&buf, i), EDDY_OK);
  return test_val_of(&buf);
}

static inline test_val test_str(const char *s)
{
  eddy_buf buf = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_mp_write_str(&buf, s, strlen(s)), EDDY_OK);
  return test_val_of(&buf);
}

typedef void (*test_fn)(void);
typedef struct test_case {
  const char *name;
  test_fn fn;
} test_case;

#define TEST(fn) {#fn, fn}

/* With EDDY_TEST_TIMES set in the environment, each test's wall time. */
static inline double test_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int test_run(const char *suite, const test_case *cases, size_t n)
{
  int times = getenv("EDDY_TEST_TIMES") != NULL;
  for (size_t i = 0; i < n; i++) {
    int before = test_failures;
    double start = times ? test_now() : 0;
    cases[i].fn();
    if (times)
      fprintf(stderr, "%s: %s %.3f s\n", suite, cases[i].name, test_now() - start);
    if (test_failures != before)
      fprintf(stderr, "%s: %s FAILED\n", suite, cases[i].name);
  }
  printf("%s: %d checks, %d failed\n", suite, test_checks, test_failures);
  return test_failures ? 1 : 0;
}

#define TEST_MAIN(suite, ...)                                                \
  int main(void)                                                             \
  {                                                                          \
    static const test_case cases[] = {__VA_ARGS__};                          \
    return test_run(suite, cases, sizeof cases / sizeof cases[0]);           \
  }

#endif
