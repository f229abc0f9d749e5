/*
 * Checkpoint storage: round trips through zstd and plain files (read,
 * lent, and read ahead by a thread of the reader's own), the
 * _metadata document, crash leftovers, retention, every kind of damage with
 * the message it gives, fallback to an older checkpoint, listing, file://
 * URIs, and system-call failures (a read-only and a full file system in a
 * private mount namespace when the kernel lets us make one, a file size
 * limit otherwise).
 *
 * With EDDY_STORAGE_BENCH=<MB> set, it measures write and read throughput
 * against the zstd command line instead (see bench() at the end).
 */
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "runtime/storage.h"

/* ---- helpers ---- */

static int exists(const char *p)
{
  struct stat st;
  return lstat(p, &st) == 0;
}

static long long file_size(const char *p)
{
  struct stat st;
  return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

static int starts_with(const char *s, const char *prefix)
{
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static uint64_t next_rand(uint64_t *rng)
{
  *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return *rng >> 33;
}

/* Records shaped like what state snapshots hold: small MessagePack maps
 * with ids, names, amounts, timestamps, a few words. */
static size_t gen_record(unsigned char *p, uint64_t i, uint64_t *rng)
{
  static const char *const words[] = {
      "alpha", "bravo", "charlie", "delta", "echo",  "foxtrot", "golf",
      "hotel", "india", "juliet",  "kilo",  "lima",  "mike",    "order",
      "paid",  "late",  "refund",  "cart",  "click", "view"};
  unsigned char *s = p;
#define RNG next_rand(rng)
#define STR(t)                                                                 \
  do {                                                                         \
    const char *t_ = (t);                                                      \
    size_t l_ = strlen(t_);                                                    \
    *s++ = (unsigned char)(0xa0 | l_);                                         \
    memcpy(s, t_, l_);                                                         \
    s += l_;                                                                   \
  } while (0)
#define U64(v)                                                                 \
  do {                                                                         \
    uint64_t v_ = (v);                                                         \
    *s++ = 0xcf;                                                               \
    for (int b_ = 7; b_ >= 0; b_--)                                            \
      *s++ = (unsigned char)(v_ >> (8 * b_));                                  \
  } while (0)
  *s++ = 0x86;
  STR("id");
  U64(i);
  STR("user");
  char user[16];
  snprintf(user, sizeof user, "user_%05u", (unsigned)(RNG % 50000));
  STR(user);
  STR("amount");
  double amount = (double)(RNG % 100000) / 100.0;
  uint64_t bits;
  memcpy(&bits, &amount, 8);
  *s++ = 0xcb;
  for (int b = 7; b >= 0; b--)
    *s++ = (unsigned char)(bits >> (8 * b));
  STR("ts");
  U64(1700000000000ULL + i * 13 + RNG % 1000);
  STR("tags");
  *s++ = 0x92;
  STR(words[RNG % 20]);
  STR(words[RNG % 20]);
  STR("note");
  char note[32];
  snprintf(note, sizeof note, "%s %s %s", words[RNG % 20], words[RNG % 20],
           words[RNG % 20]);
  STR(note);
#undef RNG
#undef STR
#undef U64
  return (size_t)(s - p);
}

static unsigned char *gen_data(size_t n, uint64_t seed)
{
  unsigned char *b = malloc(n + 256);
  uint64_t rng = seed;
  size_t len = 0;
  for (uint64_t i = 0; len < n; i++)
    len += gen_record(b + len, i, &rng);
  return b;
}

static void gen_random(unsigned char *b, size_t n, uint64_t seed)
{
  for (size_t i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    b[i] = (unsigned char)(seed >> 56);
  }
}

typedef struct spec_file {
  const char *name;
  const char *compression;
  const unsigned char *data;
  size_t len;
  size_t chunk; /* bytes per write call */
} spec_file;

/* Writes and commits checkpoint id with the given files. */
static int write_chk(eddy_store *s, int64_t id, const char *kind,
                     const spec_file *files, int n, json_t *extra)
{
  eddy_err err;
  eddy_err_clear(&err);
  eddy_chk_writer *w;
  int rc = eddy_chk_begin(s, id, kind, &w, &err);
  CHECK_EQ_INT(rc, EDDY_OK);
  if (rc != EDDY_OK) {
    json_decref(extra);
    return rc;
  }
  for (int i = 0; i < n; i++) {
    eddy_chk_file *f;
    rc =
        eddy_chk_file_open(w, files[i].name, files[i].compression, 3, &f, &err);
    CHECK_EQ_INT(rc, EDDY_OK);
    if (rc != EDDY_OK) {
      eddy_chk_abort(w);
      json_decref(extra);
      return rc;
    }
    size_t chunk = files[i].chunk ? files[i].chunk : 4096;
    for (size_t off = 0; off < files[i].len; off += chunk) {
      size_t k = files[i].len - off < chunk ? files[i].len - off : chunk;
      CHECK_EQ_INT(eddy_chk_file_write(f, files[i].data + off, k, &err),
                   EDDY_OK);
    }
    CHECK_EQ_INT(eddy_chk_file_close(f, &err), EDDY_OK);
  }
  rc = eddy_chk_commit(w, extra, &err);
  if (rc != EDDY_OK)
    fprintf(stderr, "commit: %s\n", err.msg);
  CHECK_EQ_INT(rc, EDDY_OK);
  return rc;
}

/* How read_each reads a file: copied or lent, on the caller's thread or
 * read ahead by the reader's own. */
enum { BY_READ, BY_NEXT, AHEAD_READ, AHEAD_NEXT, NWAYS };

static const char *const way_names[NWAYS] = {"read", "next", "read ahead",
                                             "next ahead"};

/* The whole of file name of c, read cap bytes at a time (by next: as it
 * is lent), the way given. */
static int read_each(eddy_chk *c, const char *name, size_t cap, int way,
                     unsigned char **out, size_t *len, eddy_err *err)
{
  *out = NULL;
  *len = 0;
  eddy_chk_reader *r;
  int rc = eddy_chk_reader_open(c, name, &r, err);
  if (rc != EDDY_OK)
    return rc;
  if (way >= AHEAD_READ)
    CHECK_EQ_INT(eddy_chk_reader_ahead(r, err), EDDY_OK);
  int lend = way == BY_NEXT || way == AHEAD_NEXT;
  size_t have = 0, room = 1 << 16;
  unsigned char *b = malloc(room);
  unsigned char *tmp = malloc(cap);
  for (;;) {
    size_t got;
    const void *lent = NULL;
    rc = lend ? eddy_chk_reader_next(r, &lent, &got, err)
              : eddy_chk_reader_read(r, tmp, cap, &got, err);
    if (rc != EDDY_OK || got == 0)
      break;
    CHECK(!lend || lent != NULL);
    if (have + got > room) {
      while (have + got > room)
        room *= 2;
      b = realloc(b, room);
    }
    memcpy(b + have, lend ? lent : tmp, got);
    have += got;
  }
  if (rc == EDDY_OK) {
    /* and the end stays the end, however it is asked for */
    size_t got = 99;
    const void *lent = tmp;
    CHECK_EQ_INT(eddy_chk_reader_read(r, tmp, cap, &got, err), EDDY_OK);
    CHECK_EQ_INT(got, 0);
    got = 99;
    CHECK_EQ_INT(eddy_chk_reader_next(r, &lent, &got, err), EDDY_OK);
    CHECK_EQ_INT(got, 0);
    CHECK(lent == NULL);
  } else if (way >= AHEAD_READ) {
    /* and the thread's failure stays one */
    eddy_err again;
    size_t got = 99;
    CHECK_EQ_INT(eddy_chk_reader_read(r, tmp, cap, &got, &again), rc);
    CHECK_EQ_INT(got, 0);
    CHECK_EQ_STR(again.msg, err->msg);
  }
  free(tmp);
  eddy_chk_reader_close(r);
  if (rc != EDDY_OK) {
    free(b);
    return rc;
  }
  *out = b;
  *len = have;
  return EDDY_OK;
}

static int read_all(eddy_chk *c, const char *name, size_t cap,
                    unsigned char **out, size_t *len, eddy_err *err)
{
  return read_each(c, name, cap, BY_READ, out, len, err);
}

static void flip_byte(const char *path, long off)
{
  int fd = open(path, O_RDWR);
  CHECK(fd >= 0);
  unsigned char c = 0;
  CHECK(pread(fd, &c, 1, off) == 1);
  c ^= 0x5a;
  CHECK(pwrite(fd, &c, 1, off) == 1);
  close(fd);
}

static void put_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

static char *get_file(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  size_t got = fread(b, 1, (size_t)n, f);
  b[got] = '\0';
  fclose(f);
  return b;
}

static eddy_store *open_store(const char *dir, const char *job)
{
  eddy_err err;
  eddy_store *s = NULL;
  int stale = -1;
  int rc = eddy_store_open(dir, job, &stale, &s, &err);
  CHECK_EQ_INT(rc, EDDY_OK);
  if (rc != EDDY_OK)
    fprintf(stderr, "store: %s\n", err.msg);
  return s;
}

/* ---- round trips ---- */

static void test_round_trip(void)
{
  char *dir = test_tmpdir();
  eddy_store *s = open_store(dir, "job-1");
  CHECK_EQ_STR(eddy_store_path(s), pathf("%s/job-1", dir));
  CHECK_EQ_STR(eddy_store_job(s), "job-1");

  size_t big = (size_t)5 << 20;
  unsigned char *data = gen_data(big, 1);
  unsigned char *noise = malloc(3 << 20);
  gen_random(noise, 3 << 20, 7);
  const spec_file files[] = {
      {"records.zst", "zstd", data, big, 100},
      {"records.raw", "none", data, big, 100},
      {"bigwrites.zst", "zstd", data, big, (size_t)3 << 20},
      {"bigwrites.raw", "none", data, big, (size_t)3 << 20},
      {"noise.zst", "zstd", noise, (size_t)3 << 20, 65536},
      {"tiny.zst", "zstd", (const unsigned char *)"hello", 5, 1},
      {"empty.zst", "zstd", NULL, 0, 0},
      {"empty.raw", "none", NULL, 0, 0},
      {"bytewise.zst", "zstd", data, 3000, 1},
  };
  int nf = (int)(sizeof files / sizeof files[0]);
  CHECK_EQ_INT(write_chk(s, 1, "checkpoint", files, nf, NULL), EDDY_OK);
  CHECK(exists(pathf("%s/job-1/chk-1/_metadata", dir)));
  CHECK(!exists(pathf("%s/job-1/chk-1.inprogress", dir)));
  CHECK(!exists(pathf("%s/job-1/shared", dir)));
  /* zstd did its work on the records, and stored noise did not grow much */
  CHECK(file_size(pathf("%s/job-1/chk-1/records.zst", dir)) <
        (long long)big / 3);
  CHECK(file_size(pathf("%s/job-1/chk-1/records.raw", dir)) == (long long)big);
  CHECK(file_size(pathf("%s/job-1/chk-1/noise.zst", dir)) < (3 << 20) + 4096);

  eddy_err err;
  eddy_chk *c = NULL;
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/job-1/chk-1", dir), &c, &err), EDDY_OK);
  if (c == NULL) {
    fprintf(stderr, "open: %s\n", err.msg);
    goto out;
  }
  CHECK_EQ_INT(eddy_chk_id(c), 1);
  CHECK_EQ_STR(eddy_chk_kind(c), "checkpoint");
  CHECK_EQ_STR(eddy_chk_job(c), "job-1");
  CHECK_EQ_STR(eddy_chk_name(c), "chk-1");
  CHECK_EQ_INT(eddy_chk_entry_count(c), nf);
  static const size_t caps[] = {1, 7, 4096, 65536, (size_t)4 << 20};
  for (int i = 0; i < nf; i++) {
    const eddy_chk_entry *e = eddy_chk_entry_find(c, files[i].name);
    CHECK(e != NULL);
    if (e == NULL)
      continue;
    CHECK_EQ_INT(e->raw_size, files[i].len);
    CHECK_EQ_STR(e->compression, files[i].compression);
    CHECK_EQ_INT(e->size,
                 file_size(pathf("%s/job-1/chk-1/%s", dir, files[i].name)));
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
      /* byte-at-a-time only over the small files */
      if (caps[k] < 4096 && files[i].len > 100000)
        continue;
      for (int way = 0; way < NWAYS; way++) {
        /* lent pieces have their own size: one cap is enough */
        if ((way == BY_NEXT || way == AHEAD_NEXT) && k > 0)
          continue;
        unsigned char *got;
        size_t len;
        int rc = read_each(c, files[i].name, caps[k], way, &got, &len, &err);
        CHECK_EQ_INT(rc, EDDY_OK);
        if (rc != EDDY_OK)
          fprintf(stderr, "%s %s by %zu: %s\n", way_names[way], files[i].name,
                  caps[k], err.msg);
        CHECK_MEM(got, len, files[i].data ? files[i].data : got, files[i].len);
        free(got);
      }
    }
  }
  /* entries are listed in name order */
  for (int i = 1; i < nf; i++)
    CHECK(strcmp(eddy_chk_entry_at(c, i - 1)->name,
                 eddy_chk_entry_at(c, i)->name) < 0);
  CHECK(eddy_chk_entry_at(c, nf) == NULL);
  CHECK(eddy_chk_entry_at(c, -1) == NULL);
  eddy_chk_reader *r = NULL;
  CHECK_EQ_INT(eddy_chk_reader_open(c, "nope", &r, &err), EDDY_ENOTFOUND);
  CHECK_EQ_STR(err.msg, "chk-1/nope: no such file in the checkpoint");
  /* a reader outlives its checkpoint */
  CHECK_EQ_INT(eddy_chk_reader_open(c, "tiny.zst", &r, &err), EDDY_OK);
  eddy_chk_close(c);
  char buf[16];
  size_t got = 0;
  CHECK_EQ_INT(eddy_chk_reader_read(r, buf, 0, &got, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_chk_reader_read(r, buf, sizeof buf, &got, &err), EDDY_OK);
  CHECK_MEM(buf, got, "hello", 5);
  eddy_chk_reader_close(r);

  /* opened through its _metadata as well */
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/job-1/chk-1/_metadata", dir), &c, &err),
               EDDY_OK);
  if (c) {
    CHECK_EQ_STR(eddy_chk_name(c), "chk-1");
    CHECK_EQ_STR(eddy_chk_path(c), pathf("%s/job-1/chk-1", dir));
  }
  eddy_chk_close(c);
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/job-1/chk-9", dir), &c, &err),
               EDDY_ENOTFOUND);
  CHECK(strstr(err.msg, "chk-9: No such file or directory") != NULL);
  CHECK_EQ_INT(
      eddy_chk_open(pathf("%s/job-1/chk-1/records.raw", dir), &c, &err),
      EDDY_EINVAL);
out:
  free(data);
  free(noise);
  eddy_store_close(s);
  test_rmdir(dir);
}

/* ---- _metadata ---- */

static void test_metadata(void)
{
  char *dir = test_tmpdir();
  eddy_store *s = open_store(dir, "job-m");
  eddy_err err;
  eddy_chk_writer *w;
  CHECK_EQ_INT(eddy_chk_begin(s, 42, NULL, &w, &err), EDDY_OK);
  CHECK_EQ_STR(eddy_chk_writer_path(w), pathf("%s/job-m/chk-42", dir));
  CHECK_EQ_INT(eddy_chk_writer_id(w), 42);
  CHECK(exists(pathf("%s/job-m/chk-42.inprogress", dir)));
  eddy_chk_set_time(w, 1700000000123);
  eddy_chk_file *a, *b;
  /* two files open at once, closed out of name order */
  CHECK_EQ_INT(eddy_chk_file_open(w, "op-b", "none", 0, &b, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_open(w, "op-a", "zstd", 1, &a, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_write(b, "0123456789", 10, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_write(a, "abc", 3, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_close(b, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_close(a, &err), EDDY_OK);
  uint64_t bytes = eddy_chk_writer_bytes(w);
  json_t *extra =
      json_pack("{s:i, s:s, s:[{s:s, s:i}], s:{s:i}}", "max_parallelism", 128,
                "backend", "heap", "operators", "uid", "count", "parallelism",
                2, "sources", "src", 17);
  CHECK_EQ_INT(eddy_chk_commit(w, extra, &err), EDDY_OK);

  char *text = get_file(pathf("%s/job-m/chk-42/_metadata", dir));
  CHECK(text != NULL);
  if (text == NULL)
    goto out;
  /* what every _metadata opens with, in this order */
  CHECK(starts_with(text, "{\n  \"format\": 1,\n  \"kind\": \"checkpoint\",\n"
                          "  \"job\": \"job-m\",\n  \"id\": 42,\n"
                          "  \"time\": 1700000000123,\n  \"files\": [\n"));
  CHECK(text[strlen(text) - 1] == '\n');
  json_error_t je;
  json_t *m = json_loads(text, 0, &je);
  CHECK(m != NULL);
  json_t *files = json_object_get(m, "files");
  CHECK_EQ_INT(json_array_size(files), 2);
  json_t *fa = json_array_get(files, 0), *fb = json_array_get(files, 1);
  CHECK_EQ_STR(json_string_value(json_object_get(fa, "name")), "op-a");
  CHECK_EQ_STR(json_string_value(json_object_get(fb, "name")), "op-b");
  CHECK_EQ_STR(json_string_value(json_object_get(fa, "compression")), "zstd");
  CHECK_EQ_STR(json_string_value(json_object_get(fb, "compression")), "none");
  CHECK_EQ_INT(json_integer_value(json_object_get(fa, "raw_size")), 3);
  CHECK_EQ_INT(json_integer_value(json_object_get(fb, "raw_size")), 10);
  CHECK_EQ_INT(json_integer_value(json_object_get(fb, "size")), 10);
  CHECK_EQ_INT(json_integer_value(json_object_get(fa, "size")) +
                   json_integer_value(json_object_get(fb, "size")),
               bytes);
  char want[17];
  snprintf(want, sizeof want, "%016" PRIx64,
           (uint64_t)XXH3_64bits("0123456789", 10));
  CHECK_EQ_STR(json_string_value(json_object_get(fb, "checksum")), want);
  CHECK_EQ_INT(json_integer_value(json_object_get(m, "max_parallelism")), 128);
  CHECK_EQ_STR(json_string_value(json_object_get(m, "backend")), "heap");
  CHECK_EQ_INT(json_array_size(json_object_get(m, "operators")), 1);
  CHECK_EQ_INT(
      json_integer_value(json_object_get(json_object_get(m, "sources"), "src")),
      17);
  json_decref(m);

  eddy_chk *c;
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/job-m/chk-42", dir), &c, &err), EDDY_OK);
  if (c) {
    CHECK_EQ_INT(eddy_chk_time(c), 1700000000123);
    size_t len = 0;
    CHECK_EQ_STR(eddy_chk_metadata_text(c, &len), text);
    CHECK_EQ_INT(len, strlen(text));
    CHECK_EQ_STR(
        json_string_value(json_object_get(eddy_chk_metadata(c), "backend")),
        "heap");
    const eddy_chk_entry *e = eddy_chk_entry_find(c, "op-b");
    CHECK(e && e->checksum == XXH3_64bits("0123456789", 10));
  }
  eddy_chk_close(c);

  /* extra as text; reserved names refused, and the checkpoint goes */
  CHECK_EQ_INT(eddy_chk_begin(s, 43, "savepoint", &w, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_commit_text(w, "{\"backend\": \"heap\"}", &err),
               EDDY_OK);
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/job-m/chk-43", dir), &c, &err), EDDY_OK);
  if (c) {
    CHECK_EQ_STR(eddy_chk_kind(c), "savepoint");
    CHECK_EQ_INT(eddy_chk_entry_count(c), 0);
  }
  eddy_chk_close(c);
  CHECK_EQ_INT(eddy_chk_begin(s, 44, NULL, &w, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_commit(w, json_pack("{s:i}", "id", 3), &err),
               EDDY_EINVAL);
  CHECK_EQ_STR(err.msg, "chk-44: extra metadata may not set \"id\"");
  CHECK(!exists(pathf("%s/job-m/chk-44", dir)));
  CHECK(!exists(pathf("%s/job-m/chk-44.inprogress", dir)));
  CHECK_EQ_INT(eddy_chk_begin(s, 45, NULL, &w, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_commit_text(w, "[1]", &err), EDDY_EINVAL);
  CHECK_EQ_STR(err.msg, "chk-45: extra metadata must be a JSON object");
  CHECK_EQ_INT(eddy_chk_begin(s, 46, NULL, &w, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_commit_text(w, "{\"a\":", &err), EDDY_EINVAL);
  CHECK(starts_with(err.msg, "chk-46: extra metadata: "));
  CHECK(!exists(pathf("%s/job-m/chk-46.inprogress", dir)));
  free(text);
out:
  eddy_store_close(s);
  test_rmdir(dir);
}

/* ---- misuse ---- */

static void test_bad_arguments(void)
{
  char *dir = test_tmpdir();
  eddy_err err;
  eddy_store *s = NULL;
  CHECK_EQ_INT(eddy_store_open(dir, "a/b", NULL, &s, &err), EDDY_EINVAL);
  CHECK(starts_with(err.msg, "a bad job id \"a/b\""));
  CHECK_EQ_INT(eddy_store_open(dir, "", NULL, &s, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_store_open(dir, "..", NULL, &s, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_store_open(dir, NULL, NULL, &s, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_store_open(dir, "\xff\xfe", NULL, &s, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_store_open(NULL, "j", NULL, &s, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_store_open("", "j", NULL, &s, &err), EDDY_EINVAL);
  CHECK(s == NULL);

  s = open_store(dir, "j");
  eddy_chk_writer *w = NULL;
  CHECK_EQ_INT(eddy_chk_begin(s, -1, NULL, &w, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_chk_begin(s, 1, "incremental", &w, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_chk_begin(NULL, 1, NULL, &w, &err), EDDY_EINVAL);
  CHECK(w == NULL);
  CHECK_EQ_INT(eddy_chk_begin(s, 1, NULL, &w, &err), EDDY_OK);
  /* the same id twice at once, and again once completed */
  eddy_chk_writer *w2 = NULL;
  CHECK_EQ_INT(eddy_chk_begin(s, 1, NULL, &w2, &err), EDDY_EINVAL);
  CHECK_EQ_STR(err.msg,
               pathf("%s/j/chk-1.inprogress: is being written already", dir));
  eddy_chk_file *f = NULL;
  static const char *const bad[] = {"",   "a/b",       "/x",      ".",
                                    "..", "_metadata", "\xc3\x28"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_EQ_INT(eddy_chk_file_open(w, bad[i], "zstd", 1, &f, &err),
                 EDDY_EINVAL);
    CHECK(starts_with(err.msg, "chk-1: a bad checkpoint file name"));
  }
  char longname[260];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  CHECK_EQ_INT(eddy_chk_file_open(w, longname, "zstd", 1, &f, &err),
               EDDY_EINVAL);
  CHECK_EQ_INT(eddy_chk_file_open(w, "x", "lz4", 1, &f, &err), EDDY_EINVAL);
  CHECK_EQ_STR(err.msg,
               "compression must be \"zstd\" or \"none\", not \"lz4\"");
  CHECK_EQ_INT(eddy_chk_file_open(w, "x", "zstd", 99, &f, &err), EDDY_EINVAL);
  CHECK(starts_with(err.msg, "zstd level 99 is not in "));
  CHECK_EQ_INT(eddy_chk_file_open(w, NULL, "zstd", 1, &f, &err), EDDY_EINVAL);
  CHECK(f == NULL);
  /* level 0 (zstd's default) and a negative (fast) level are fine */
  CHECK_EQ_INT(eddy_chk_file_open(w, "x", "zstd", 0, &f, &err), EDDY_OK);
  eddy_chk_file *g = NULL, *h = NULL;
  CHECK_EQ_INT(eddy_chk_file_open(w, "x", "none", 0, &g, &err), EDDY_EINVAL);
  CHECK_EQ_STR(err.msg, "chk-1/x: the checkpoint has this file already");
  CHECK_EQ_INT(eddy_chk_file_open(w, "y", "zstd", -5, &h, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_write(h, "fast", 4, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_close(h, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_open(w, "y", "none", 0, &g, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_chk_file_close(NULL, &err), EDDY_EINVAL);
  /* a commit with a file still open fails and takes the folder with it */
  CHECK_EQ_INT(eddy_chk_commit(w, NULL, &err), EDDY_EINVAL);
  CHECK_EQ_STR(err.msg, "chk-1: 1 file is still open");
  CHECK(!exists(pathf("%s/j/chk-1.inprogress", dir)));
  CHECK(!exists(pathf("%s/j/chk-1", dir)));
  CHECK_EQ_INT(eddy_chk_commit(NULL, json_object(), &err), EDDY_EINVAL);
  eddy_chk_abort(NULL);

  CHECK_EQ_INT(write_chk(s, 2, NULL, NULL, 0, NULL), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_begin(s, 2, NULL, &w, &err), EDDY_EINVAL);
  CHECK_EQ_STR(err.msg,
               pathf("%s/j/chk-2: already exists (checkpoint ids are never "
                     "reused)",
                     dir));
  CHECK_EQ_INT(eddy_store_retain(s, 0, NULL, &err), EDDY_EINVAL);
  eddy_store_close(s);
  eddy_store_close(NULL);
  eddy_chk_close(NULL);
  eddy_chk_reader_close(NULL);
  test_rmdir(dir);
}

/* ---- crash leftovers and abort ---- */

static void test_stale_and_abort(void)
{
  char *dir = test_tmpdir();
  eddy_store *s = open_store(dir, "job");
  CHECK_EQ_INT(write_chk(s, 2, NULL, NULL, 0, NULL), EDDY_OK);
  eddy_err err;
  eddy_chk_writer *w;
  CHECK_EQ_INT(eddy_chk_begin(s, 3, NULL, &w, &err), EDDY_OK);
  eddy_chk_file *f;
  CHECK_EQ_INT(eddy_chk_file_open(w, "half", "zstd", 1, &f, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_write(f, "partial", 7, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_close(f, &err), EDDY_OK);
  /* "crash": the writer is never finished; the process forgets it */
  char *inprog = strdup(pathf("%s/job/chk-3.inprogress", dir));
  CHECK(exists(inprog));
  /* and an interrupted deletion, a nested folder, and bystanders */
  CHECK(mkdir(pathf("%s/job/chk-1.discard", dir), 0777) == 0);
  CHECK(mkdir(pathf("%s/job/chk-1.discard/sub", dir), 0777) == 0);
  put_file(pathf("%s/job/chk-1.discard/sub/x", dir), "x");
  CHECK(mkdir(pathf("%s/job/shared", dir), 0777) == 0);
  CHECK(mkdir(pathf("%s/job/other.inprogress", dir), 0777) == 0);
  eddy_store *s2 = NULL;
  int stale = -1;
  CHECK_EQ_INT(eddy_store_open(dir, "job", &stale, &s2, &err), EDDY_OK);
  CHECK_EQ_INT(stale, 2);
  CHECK(!exists(inprog));
  CHECK(!exists(pathf("%s/job/chk-1.discard", dir)));
  CHECK(exists(pathf("%s/job/chk-2/_metadata", dir)));
  CHECK(exists(pathf("%s/job/shared", dir)));
  CHECK(exists(pathf("%s/job/other.inprogress", dir)));
  eddy_store_close(s2);
  /* the forgotten writer can still be aborted: its folder is gone already */
  eddy_chk_abort(w);

  /* abort with files open and closed */
  CHECK_EQ_INT(eddy_chk_begin(s, 4, NULL, &w, &err), EDDY_OK);
  eddy_chk_file *g;
  CHECK_EQ_INT(eddy_chk_file_open(w, "done", "none", 0, &f, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_close(f, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_open(w, "open", "zstd", 3, &g, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_write(g, "abc", 3, &err), EDDY_OK);
  eddy_chk_abort(w);
  CHECK(!exists(pathf("%s/job/chk-4.inprogress", dir)));
  CHECK(!exists(pathf("%s/job/chk-4", dir)));
  /* the id is free again: nothing completed under it */
  CHECK_EQ_INT(write_chk(s, 4, NULL, NULL, 0, NULL), EDDY_OK);
  free(inprog);
  eddy_store_close(s);
  test_rmdir(dir);
}

/* ---- retention ---- */

static void test_retention(void)
{
  char *dir = test_tmpdir();
  eddy_store *s = open_store(dir, "job");
  const spec_file one[] = {{"f", "zstd", (const unsigned char *)"x", 1, 1}};
  for (int id = 1; id <= 5; id++)
    write_chk(s, id, NULL, one, 1, NULL);
  eddy_err err;
  int removed = -1;
  CHECK_EQ_INT(eddy_store_retain(s, 2, &removed, &err), EDDY_OK);
  CHECK_EQ_INT(removed, 3);
  for (int id = 1; id <= 5; id++)
    CHECK_EQ_INT(exists(pathf("%s/job/chk-%d", dir, id)), id >= 4);
  CHECK(!exists(pathf("%s/job/chk-1.discard", dir)));
  CHECK_EQ_INT(eddy_store_retain(s, 2, &removed, &err), EDDY_OK);
  CHECK_EQ_INT(removed, 0);
  CHECK_EQ_INT(eddy_store_retain(s, 1, &removed, &err), EDDY_OK);
  CHECK_EQ_INT(removed, 1);
  CHECK(!exists(pathf("%s/job/chk-4", dir)));
  CHECK(exists(pathf("%s/job/chk-5", dir)));
  /* in-progress folders are not counted and not touched */
  eddy_chk_writer *w;
  CHECK_EQ_INT(eddy_chk_begin(s, 6, NULL, &w, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_store_retain(s, 1, &removed, &err), EDDY_OK);
  CHECK_EQ_INT(removed, 0);
  CHECK(exists(pathf("%s/job/chk-6.inprogress", dir)));
  eddy_chk_abort(w);

  /* Flink's rules: [5, sp6, 7(damaged _metadata)] with 1 retained keeps
   * the newest, and the newest checkpoint below a newer savepoint */
  write_chk(s, 6, "savepoint", one, 1, NULL);
  CHECK_EQ_INT(eddy_store_retain(s, 1, &removed, &err), EDDY_OK);
  CHECK_EQ_INT(removed, 0);
  CHECK(exists(pathf("%s/job/chk-5", dir)));
  CHECK(exists(pathf("%s/job/chk-6", dir)));
  write_chk(s, 7, NULL, one, 1, NULL);
  write_chk(s, 8, NULL, one, 1, NULL);
  put_file(pathf("%s/job/chk-8/_metadata", dir), "{");
  /* the savepoint leaves the count but keeps its files; 5 goes; the
   * damaged 8 is newer than every readable one and stays */
  CHECK_EQ_INT(eddy_store_retain(s, 1, &removed, &err), EDDY_OK);
  CHECK_EQ_INT(removed, 1);
  CHECK(!exists(pathf("%s/job/chk-5", dir)));
  CHECK(exists(pathf("%s/job/chk-6", dir)));
  CHECK(exists(pathf("%s/job/chk-7", dir)));
  CHECK(exists(pathf("%s/job/chk-8", dir)));
  /* once a readable one is newer, the damaged one goes */
  write_chk(s, 9, NULL, one, 1, NULL);
  CHECK_EQ_INT(eddy_store_retain(s, 2, &removed, &err), EDDY_OK);
  CHECK_EQ_INT(removed, 1);
  CHECK(!exists(pathf("%s/job/chk-8", dir)));
  CHECK(exists(pathf("%s/job/chk-6", dir)));
  CHECK(exists(pathf("%s/job/chk-7", dir)));
  CHECK(exists(pathf("%s/job/chk-9", dir)));
  eddy_store_close(s);
  test_rmdir(dir);
}

/* ---- shared files (incremental checkpoints) ---- */

/* Begins checkpoint id with one small file of its own. */
static eddy_chk_writer *begin_with_file(eddy_store *s, int64_t id)
{
  eddy_err err;
  eddy_chk_writer *w = NULL;
  CHECK_EQ_INT(eddy_chk_begin(s, id, NULL, &w, &err), EDDY_OK);
  eddy_chk_file *f;
  CHECK_EQ_INT(eddy_chk_file_open(w, "own", "none", 0, &f, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_write(f, "abc", 3, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_close(f, &err), EDDY_OK);
  return w;
}

static int count_files(const char *dir)
{
  int n = 0;
  DIR *d = opendir(dir);
  struct dirent *de;
  while (d != NULL && (de = readdir(d)) != NULL)
    n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
  if (d != NULL)
    closedir(d);
  return n;
}

typedef struct eddy_chk_info_probe {
  int n;
  uint64_t size[8], shared[8];
} eddy_chk_info_probe;

static int probe_visit(void *ud, const eddy_chk_info *info)
{
  eddy_chk_info_probe *p = ud;
  if (info->state == EDDY_CHK_COMPLETED && p->n < 8) {
    p->size[p->n] = info->size;
    p->shared[p->n] = info->shared;
    p->n++;
  }
  return 0;
}

static void test_shared(void)
{
  char *dir = test_tmpdir();
  eddy_err err;
  eddy_store *s = open_store(dir, "job");
  const char *shared = pathf("%s/job/shared", dir);
  char local[3][4096];
  unsigned char *data = gen_data(200000, 3);
  for (int i = 0; i < 3; i++) {
    snprintf(local[i], sizeof local[i], "%s/local-%d", dir, i);
    FILE *f = fopen(local[i], "wb");
    CHECK(f != NULL);
    fwrite(data + i * 1000, 1, (size_t)(50000 + i * 10000), f);
    fclose(f);
  }
  uint64_t want_a = XXH3_64bits(data, 50000);

  /* chk-1 uploads a; its bytes and state size count it */
  eddy_chk_writer *w = begin_with_file(s, 1);
  uint64_t size = 0, sum = 0;
  CHECK_EQ_INT(eddy_chk_share(w, local[0], "a.sst", &size, &sum, &err), EDDY_OK);
  CHECK_EQ_INT(size, 50000);
  CHECK(sum == want_a);
  CHECK_EQ_INT(file_size(pathf("%s/a.sst", shared)), 50000);
  CHECK_EQ_INT(eddy_chk_writer_bytes(w), 50003);
  CHECK_EQ_INT(eddy_chk_writer_state_size(w), 50003);
  /* a name is shared once */
  CHECK_EQ_INT(eddy_chk_share(w, local[1], "a.sst", NULL, NULL, &err), EDDY_EINVAL);
  CHECK(starts_with(err.msg, "chk-1: lists shared file a.sst already"));
  CHECK_EQ_INT(eddy_chk_share(w, local[1], ".hidden", NULL, NULL, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_chk_share(w, local[1], "x/y", NULL, NULL, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_chk_reference(w, "nothing.sst", 1, 2, &err), EDDY_ENOTFOUND);
  CHECK_EQ_STR(err.msg, pathf("%s/nothing.sst: missing", shared));
  CHECK_EQ_INT(eddy_chk_reference(w, "a.sst", 49999, sum, &err), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_chk_commit(w, NULL, &err), EDDY_OK);
  char *meta = get_file(pathf("%s/job/chk-1/_metadata", dir));
  CHECK(meta != NULL && strstr(meta, "\"format\": 2") != NULL);
  CHECK(meta != NULL && strstr(meta, "\"shared\": [") != NULL);
  free(meta);

  /* a savepoint has no shared files */
  eddy_chk_writer *sp;
  CHECK_EQ_INT(eddy_savepoint_begin(pathf("%s/sp", dir), "job", 1, &sp, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_share(sp, local[0], "a.sst", NULL, NULL, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_chk_reference(sp, "a.sst", 50000, want_a, &err), EDDY_EINVAL);
  eddy_chk_abort(sp);

  /* chk-2 references a and uploads b: only b is written */
  w = begin_with_file(s, 2);
  CHECK_EQ_INT(eddy_chk_reference(w, "a.sst", 50000, want_a, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_share(w, local[1], "b.sst", &size, &sum, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_writer_bytes(w), 60003);
  CHECK_EQ_INT(eddy_chk_writer_state_size(w), 110003);
  CHECK_EQ_INT(eddy_chk_commit(w, NULL, &err), EDDY_OK);
  uint64_t sum_b = sum;

  /* an aborted checkpoint takes its uploads with it */
  w = begin_with_file(s, 3);
  CHECK_EQ_INT(eddy_chk_reference(w, "b.sst", 60000, sum_b, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_share(w, local[2], "c.sst", NULL, NULL, &err), EDDY_OK);
  CHECK(exists(pathf("%s/c.sst", shared)));
  eddy_chk_abort(w);
  CHECK(!exists(pathf("%s/c.sst", shared)));
  CHECK(exists(pathf("%s/b.sst", shared)));
  /* and so does one whose commit fails */
  w = begin_with_file(s, 4);
  CHECK_EQ_INT(eddy_chk_share(w, local[2], "c.sst", NULL, NULL, &err), EDDY_OK);
  eddy_chk_file *open_one;
  CHECK_EQ_INT(eddy_chk_file_open(w, "left-open", "none", 0, &open_one, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_commit(w, NULL, &err), EDDY_EINVAL);
  CHECK(!exists(pathf("%s/c.sst", shared)));

  /* reading: the shared files are listed and checked */
  eddy_chk *c;
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/job/chk-2", dir), &c, &err), EDDY_OK);
  if (c != NULL) {
    CHECK_EQ_INT(eddy_chk_shared_count(c), 2);
    CHECK_EQ_STR(eddy_chk_shared_at(c, 0)->name, "a.sst");
    CHECK_EQ_INT(eddy_chk_shared_find(c, "b.sst")->size, 60000);
    CHECK(eddy_chk_shared_find(c, "b.sst")->checksum == sum_b);
    CHECK(eddy_chk_shared_find(c, "c.sst") == NULL);
    /* extracting: a shared file is linked, a file of the checkpoint copied */
    CHECK_EQ_INT(eddy_chk_extract(c, "a.sst", 1, pathf("%s/out-a", dir), &err), EDDY_OK);
    CHECK_EQ_INT(file_size(pathf("%s/out-a", dir)), 50000);
    CHECK_EQ_INT(eddy_chk_extract(c, "own", 0, pathf("%s/out-own", dir), &err), EDDY_OK);
    char *own = get_file(pathf("%s/out-own", dir));
    CHECK(own != NULL && strcmp(own, "abc") == 0);
    free(own);
    CHECK_EQ_INT(eddy_chk_extract(c, "zz.sst", 1, pathf("%s/out-z", dir), &err), EDDY_ENOTFOUND);
    CHECK_EQ_INT(eddy_chk_extract(c, "a.sst", 1, pathf("%s/out-a", dir), &err), EDDY_EIO);
    json_error_t je;
    json_t *files = json_loads("[{\"name\": \"000001.sst\", \"shared\": \"a.sst\"}, "
                               "{\"name\": \"CURRENT\", \"file\": \"own\"}]",
                               0, &je);
    CHECK_EQ_INT(eddy_chk_extract_files(c, files, pathf("%s/set", dir), &err), EDDY_OK);
    CHECK_EQ_INT(file_size(pathf("%s/set/000001.sst", dir)), 50000);
    CHECK_EQ_INT(file_size(pathf("%s/set/CURRENT", dir)), 3);
    json_decref(files);
    files = json_loads("[{\"name\": \"../x\", \"shared\": \"a.sst\"}]", 0, &je);
    CHECK_EQ_INT(eddy_chk_extract_files(c, files, pathf("%s/set2", dir), &err), EDDY_ECORRUPT);
    CHECK(!exists(pathf("%s/set2", dir)));
    json_decref(files);
    files = json_loads("[{\"name\": \"x\", \"shared\": \"gone.sst\"}]", 0, &je);
    CHECK_EQ_INT(eddy_chk_extract_files(c, files, pathf("%s/set3", dir), &err), EDDY_ECORRUPT);
    CHECK_EQ_STR(err.msg, "chk-2/_metadata: native file x names gone.sst, which the checkpoint "
                          "does not list");
    CHECK(!exists(pathf("%s/set3", dir)));
    json_decref(files);
    eddy_chk_close(c);
  }

  /* damage to a shared file is found, and named */
  flip_byte(pathf("%s/b.sst", shared), 100);
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/job/chk-2", dir), &c, &err), EDDY_ECORRUPT);
  CHECK(starts_with(err.msg, "chk-2: shared file b.sst: checksum mismatch (expected "));
  flip_byte(pathf("%s/b.sst", shared), 100);
  CHECK(rename(pathf("%s/b.sst", shared), pathf("%s/b.moved", dir)) == 0);
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/job/chk-2", dir), &c, &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, "chk-2: shared file b.sst: missing");
  /* the latest usable one is then chk-1 */
  CHECK_EQ_INT(eddy_store_latest(pathf("%s/job", dir), &c, NULL, NULL, &err), EDDY_OK);
  CHECK(c != NULL && eddy_chk_id(c) == 1);
  eddy_chk_close(c);
  CHECK(rename(pathf("%s/b.moved", dir), pathf("%s/b.sst", shared)) == 0);
  /* listing counts them in, and --verify reads them */
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/job/chk-2", dir), &c, &err), EDDY_OK);
  eddy_chk_close(c);

  /* retention: chk-1 goes, a stays (chk-2 lists it) */
  int removed = -1;
  CHECK_EQ_INT(eddy_store_retain(s, 1, &removed, &err), EDDY_OK);
  CHECK_EQ_INT(removed, 1);
  CHECK(exists(pathf("%s/a.sst", shared)));
  CHECK(exists(pathf("%s/b.sst", shared)));
  /* chk-5 lists only b; chk-2 goes, and a with it, unless a checkpoint
   * being written may still reference it */
  w = begin_with_file(s, 5);
  CHECK_EQ_INT(eddy_chk_reference(w, "b.sst", 60000, sum_b, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_commit(w, NULL, &err), EDDY_OK);
  const char *keep[] = {"a.sst"};
  CHECK_EQ_INT(eddy_store_retain_keep(s, 1, keep, 1, &removed, &err), EDDY_OK);
  CHECK_EQ_INT(removed, 1);
  CHECK(exists(pathf("%s/a.sst", shared)));
  CHECK(exists(pathf("%s/b.sst", shared)));
  /* what a crash leaves (a file nobody lists, an upload cut short) goes at
   * the next open; what is listed stays */
  put_file(pathf("%s/orphan.sst", shared), "x");
  put_file(pathf("%s/.d.sst.tmp", shared), "x");
  eddy_store_close(s);
  s = open_store(dir, "job");
  CHECK(!exists(pathf("%s/a.sst", shared)));
  CHECK(!exists(pathf("%s/orphan.sst", shared)));
  CHECK(!exists(pathf("%s/.d.sst.tmp", shared)));
  CHECK(exists(pathf("%s/b.sst", shared)));
  CHECK_EQ_INT(count_files(shared), 1);

  /* a damaged _metadata cannot be restored from: it protects nothing; an
   * unreadable one (newer format) protects everything */
  w = begin_with_file(s, 6);
  CHECK_EQ_INT(eddy_chk_share(w, local[0], "e.sst", NULL, NULL, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_commit(w, NULL, &err), EDDY_OK);
  char *m6 = get_file(pathf("%s/job/chk-6/_metadata", dir));
  put_file(pathf("%s/job/chk-6/_metadata", dir), "{\"format\": 9}");
  eddy_store_close(s);
  s = open_store(dir, "job");
  CHECK(exists(pathf("%s/e.sst", shared)));
  put_file(pathf("%s/job/chk-6/_metadata", dir), m6 ? m6 : "");
  free(m6);

  /* listing: a checkpoint's size takes in its shared files */
  eddy_chk_info_probe probe = {0};
  CHECK_EQ_INT(eddy_store_list(pathf("%s/job", dir), 1, probe_visit, &probe, &err), EDDY_OK);
  CHECK_EQ_INT(probe.n, 2);
  CHECK_EQ_INT(probe.shared[0], 60000); /* chk-5: b */
  CHECK(probe.size[0] > 60003); /* with _metadata */
  CHECK_EQ_INT(probe.shared[1], 50000); /* chk-6: e */

  /* disposing of chk-6 takes e, which nothing else lists */
  CHECK_EQ_INT(eddy_chk_dispose(pathf("%s/job/chk-6", dir), &err), EDDY_OK);
  CHECK(!exists(pathf("%s/e.sst", shared)));
  CHECK(exists(pathf("%s/b.sst", shared)));

  /* discarding the job's checkpoints takes the shared folder too */
  eddy_store_close(s);
  CHECK_EQ_INT(eddy_store_discard(pathf("%s/job", dir), &err), EDDY_OK);
  CHECK(!exists(shared));
  CHECK(!exists(pathf("%s/job", dir)));
  free(data);
  test_rmdir(dir);
}

/* ---- discarding ---- */

static void test_discard(void)
{
  char *dir = test_tmpdir();
  eddy_err err;
  const spec_file one[] = {{"f", "zstd", (const unsigned char *)"x", 1, 1}};
  eddy_store *s = open_store(dir, "job");
  write_chk(s, 1, NULL, one, 1, NULL);
  write_chk(s, 2, "savepoint", one, 1, NULL);
  write_chk(s, 3, NULL, one, 1, NULL);
  write_chk(s, 4, NULL, one, 1, NULL);
  put_file(pathf("%s/job/chk-4/_metadata", dir), "damaged");
  CHECK(mkdir(pathf("%s/job/chk-5.inprogress", dir), 0777) == 0);
  CHECK(mkdir(pathf("%s/job/shared", dir), 0777) == 0);
  eddy_store_close(s);
  CHECK_EQ_INT(eddy_store_discard(pathf("file://%s/job", dir), &err), EDDY_OK);
  CHECK(!exists(pathf("%s/job/chk-1", dir)));
  CHECK(exists(pathf("%s/job/chk-2/f", dir)));
  CHECK(!exists(pathf("%s/job/chk-3", dir)));
  CHECK(!exists(pathf("%s/job/chk-4", dir)));
  CHECK(!exists(pathf("%s/job/chk-5.inprogress", dir)));
  CHECK(!exists(pathf("%s/job/shared", dir)));
  /* the savepoint keeps the folder; once it is disposed of, all goes */
  CHECK_EQ_INT(eddy_chk_dispose(pathf("%s/job/chk-2/_metadata", dir), &err),
               EDDY_OK);
  CHECK(!exists(pathf("%s/job/chk-2", dir)));
  CHECK_EQ_INT(eddy_store_discard(pathf("%s/job", dir), &err), EDDY_OK);
  CHECK(!exists(pathf("%s/job", dir)));
  CHECK_EQ_INT(eddy_store_discard(pathf("%s/job", dir), &err), EDDY_OK);
  /* a folder that is not a checkpoint is never disposed of */
  CHECK(mkdir(pathf("%s/precious", dir), 0777) == 0);
  put_file(pathf("%s/precious/data", dir), "keep me");
  CHECK_EQ_INT(eddy_chk_dispose(pathf("%s/precious", dir), &err),
               EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, "precious/_metadata: missing");
  CHECK(exists(pathf("%s/precious/data", dir)));
  CHECK_EQ_INT(eddy_chk_dispose(pathf("%s/nothing", dir), &err),
               EDDY_ENOTFOUND);
  /* a savepoint in its own folder */
  eddy_chk_writer *w;
  CHECK_EQ_INT(eddy_savepoint_begin(dir, "job", 9, &w, &err), EDDY_OK);
  char *sp = strdup(eddy_chk_writer_path(w));
  CHECK_EQ_INT(eddy_chk_commit(w, NULL, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_dispose(sp, &err), EDDY_OK);
  CHECK(!exists(sp));
  CHECK(!exists(pathf("%s.discard", sp)));
  free(sp);
  test_rmdir(dir);
}

/* ---- damage ---- */

/* A fresh chk-1 with a.zst and b.raw; returns the store's path. */
static const char *damage_fixture(const char *dir, unsigned char *data,
                                  size_t n)
{
  static char job[4096];
  test_rmdir(strdup(pathf("%s/job", dir)));
  eddy_store *s = open_store(dir, "job");
  const spec_file files[] = {{"a.zst", "zstd", data, n, 1000},
                             {"b.raw", "none", data, n / 2, 1000}};
  write_chk(s, 1, NULL, files, 2, NULL);
  eddy_store_close(s);
  snprintf(job, sizeof job, "%s/job", dir);
  return job;
}

static int open_err(const char *path, eddy_err *err)
{
  eddy_chk *c = NULL;
  int rc = eddy_chk_open(path, &c, err);
  eddy_chk_close(c);
  return rc;
}

static void test_damage(void)
{
  char *dir = test_tmpdir();
  size_t n = 300000;
  unsigned char *data = gen_data(n, 3);
  eddy_err err;
  const char *job;

  /* truncated _metadata */
  job = damage_fixture(dir, data, n);
  const char *meta = pathf("%s/chk-1/_metadata", job);
  CHECK(truncate(meta, 120) == 0);
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, "chk-1/_metadata: truncated JSON at byte 120");
  CHECK(truncate(meta, 0) == 0);
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, "chk-1/_metadata: truncated JSON at byte 0");

  /* bad JSON, and JSON that is not ours */
  put_file(meta, "{\"format\": 1,, \"kind\": 2}");
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_ECORRUPT);
  CHECK(starts_with(err.msg, "chk-1/_metadata: bad JSON at byte 14: "));
  put_file(meta, "[1, 2]");
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, "chk-1/_metadata: expected a JSON object");
  put_file(meta, "{\"format\": 1, \"kind\": \"checkpoint\", \"job\": \"j\", "
                 "\"id\": 1, \"time\": 5, \"files\": [{\"name\": \"a\"}]}");
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, "chk-1/_metadata: files[0].size: missing");
  put_file(meta, "{\"format\": 1, \"kind\": \"checkpoint\", \"job\": \"j\", "
                 "\"id\": \"1\", \"time\": 5, \"files\": []}");
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, "chk-1/_metadata: id: expected an integer");
  put_file(meta, "{\"format\": 1, \"kind\": \"checkpoint\", \"job\": \"j\", "
                 "\"id\": 1, \"time\": 5, \"files\": [{\"name\": \"../x\", "
                 "\"size\": 1, \"raw_size\": 1, \"checksum\": "
                 "\"0000000000000000\", \"compression\": \"none\"}]}");
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg,
               "chk-1/_metadata: files[0].name: a bad file name \"../x\"");
  /* a newer format is refused as such, not as damage */
  put_file(meta, "{\"format\": 3, \"whatever\": true}");
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_EUNSUPPORTED);
  CHECK_EQ_STR(err.msg,
               "chk-1/_metadata: format 3 is newer than this eddy reads (2)");
  CHECK(unlink(meta) == 0);
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, "chk-1/_metadata: missing");

  /* a missing file */
  job = damage_fixture(dir, data, n);
  CHECK(unlink(pathf("%s/chk-1/a.zst", job)) == 0);
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, "chk-1/a.zst: missing");

  /* a truncated file, and one that grew */
  job = damage_fixture(dir, data, n);
  long long size = file_size(pathf("%s/chk-1/a.zst", job));
  CHECK(truncate(pathf("%s/chk-1/a.zst", job), 1000) == 0);
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, pathf("chk-1/a.zst: truncated (expected %lld bytes, "
                              "found 1000)",
                              size));
  CHECK(truncate(pathf("%s/chk-1/a.zst", job), size + 1) == 0);
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, pathf("chk-1/a.zst: size mismatch (expected %lld "
                              "bytes, found %lld)",
                              size, size + 1));

  /* a flipped byte */
  job = damage_fixture(dir, data, n);
  eddy_chk *c = NULL;
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/chk-1", job), &c, &err), EDDY_OK);
  uint64_t want = c ? eddy_chk_entry_find(c, "b.raw")->checksum : 0;
  eddy_chk_close(c);
  flip_byte(pathf("%s/chk-1/b.raw", job), 1234);
  char *raw = get_file(pathf("%s/chk-1/b.raw", job));
  uint64_t found = XXH3_64bits(raw, n / 2);
  free(raw);
  CHECK_EQ_INT(open_err(pathf("%s/chk-1", job), &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, pathf("chk-1/b.raw: checksum mismatch (expected "
                              "%016" PRIx64 ", found %016" PRIx64 ")",
                              want, found));

  /* damage after the open is still caught by the reader, naming the file,
   * in the same words whichever way the file is read */
  job = damage_fixture(dir, data, n);
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/chk-1", job), &c, &err), EDDY_OK);
  flip_byte(pathf("%s/chk-1/a.zst", job), 500);
  flip_byte(pathf("%s/chk-1/b.raw", job), 500);
  unsigned char *got;
  size_t len;
  char first[2][EDDY_ERR_MSG_MAX];
  for (int way = 0; way < NWAYS; way++) {
    CHECK_EQ_INT(read_each(c, "a.zst", 65536, way, &got, &len, &err), EDDY_ECORRUPT);
    CHECK(starts_with(err.msg, "chk-1/a.zst: "));
    if (way == 0)
      snprintf(first[0], sizeof first[0], "%s", err.msg);
    CHECK_EQ_STR(err.msg, first[0]);
    CHECK_EQ_INT(read_each(c, "b.raw", 65536, way, &got, &len, &err), EDDY_ECORRUPT);
    CHECK(starts_with(err.msg, "chk-1/b.raw: checksum mismatch (expected "));
    if (way == 0)
      snprintf(first[1], sizeof first[1], "%s", err.msg);
    CHECK_EQ_STR(err.msg, first[1]);
  }
  CHECK(truncate(pathf("%s/chk-1/a.zst", job), 100) == 0);
  for (int way = 0; way < NWAYS; way++) {
    CHECK_EQ_INT(read_each(c, "a.zst", 65536, way, &got, &len, &err), EDDY_ECORRUPT);
    CHECK(starts_with(err.msg, "chk-1/a.zst: "));
  }
  CHECK(unlink(pathf("%s/chk-1/a.zst", job)) == 0);
  CHECK_EQ_INT(read_all(c, "a.zst", 65536, &got, &len, &err), EDDY_ECORRUPT);
  CHECK_EQ_STR(err.msg, "chk-1/a.zst: missing");
  eddy_chk_close(c);

  free(data);
  test_rmdir(dir);
}

/* ---- latest ---- */

typedef struct damage_log {
  int n;
  char lines[8][1200];
} damage_log;

static void on_damaged(void *ud, const char *name, const char *why,
                       const char *next)
{
  damage_log *log = ud;
  if (log->n < 8)
    snprintf(log->lines[log->n], sizeof log->lines[0],
             "%s is damaged (%s): falling back to %s", name, why,
             next ? next : "nothing");
  log->n++;
}

static void test_latest(void)
{
  char *dir = test_tmpdir();
  eddy_err err;
  eddy_chk *c = NULL;
  CHECK_EQ_INT(eddy_store_latest(pathf("%s/nojob", dir), &c, NULL, NULL, &err),
               EDDY_ENOTFOUND);
  eddy_store *s = open_store(dir, "job");
  CHECK_EQ_INT(eddy_store_latest(eddy_store_path(s), &c, NULL, NULL, &err),
               EDDY_ENOTFOUND);
  CHECK_EQ_STR(err.msg, pathf("%s/job: no completed checkpoint", dir));
  const spec_file one[] = {{"f", "zstd", (const unsigned char *)"xyz", 3, 1}};
  for (int id = 1; id <= 3; id++)
    write_chk(s, id, NULL, one, 1, NULL);
  /* ids sort as numbers: chk-10 is newer than chk-9 */
  write_chk(s, 10, NULL, one, 1, NULL);
  eddy_chk_writer *w;
  CHECK_EQ_INT(eddy_chk_begin(s, 11, NULL, &w, &err), EDDY_OK);

  damage_log log = {0};
  CHECK_EQ_INT(
      eddy_store_latest(eddy_store_path(s), &c, on_damaged, &log, &err),
      EDDY_OK);
  CHECK_EQ_INT(log.n, 0);
  CHECK(c && eddy_chk_id(c) == 10);
  eddy_chk_close(c);

  /* 10 and 3 damaged: 2 it is */
  flip_byte(pathf("%s/job/chk-10/f", dir), 2);
  CHECK(unlink(pathf("%s/job/chk-3/_metadata", dir)) == 0);
  CHECK_EQ_INT(eddy_store_latest(pathf("file://%s/job", dir), &c, on_damaged,
                                 &log, &err),
               EDDY_OK);
  CHECK(c && eddy_chk_id(c) == 2);
  eddy_chk_close(c);
  CHECK_EQ_INT(log.n, 2);
  CHECK(starts_with(log.lines[0], "chk-10 is damaged (chk-10/f: checksum "
                                  "mismatch (expected "));
  CHECK(strstr(log.lines[0], ")): falling back to chk-3") != NULL);
  CHECK_EQ_STR(log.lines[1], "chk-3 is damaged (chk-3/_metadata: missing): "
                             "falling back to chk-2");

  /* all damaged */
  CHECK(unlink(pathf("%s/job/chk-1/f", dir)) == 0);
  CHECK(unlink(pathf("%s/job/chk-2/f", dir)) == 0);
  log.n = 0;
  CHECK_EQ_INT(
      eddy_store_latest(eddy_store_path(s), &c, on_damaged, &log, &err),
      EDDY_ENOTFOUND);
  CHECK(c == NULL);
  CHECK_EQ_INT(log.n, 4);
  CHECK_EQ_STR(log.lines[3], "chk-1 is damaged (chk-1/f: missing): falling "
                             "back to nothing");
  CHECK_EQ_STR(err.msg, pathf("%s/job: no usable checkpoint (4 damaged)", dir));
  eddy_chk_abort(w);
  eddy_store_close(s);
  test_rmdir(dir);
}

/* ---- list ---- */

typedef struct listing {
  int n;
  char lines[16][512];
  uint64_t sizes[16];
} listing;

static int collect(void *ud, const eddy_chk_info *info)
{
  listing *l = ud;
  if (l->n < 16) {
    snprintf(l->lines[l->n], sizeof l->lines[0],
             "%s %s %" PRId64 " %s %s %d%s%s", info->job ? info->job : "-",
             info->name, info->id, info->kind, eddy_chk_state_name(info->state),
             info->files, info->problem ? " " : "",
             info->problem ? info->problem : "");
    l->sizes[l->n] = info->size;
    CHECK(info->time > 0);
    CHECK(info->path != NULL && strstr(info->path, info->name) != NULL);
  }
  l->n++;
  return 0;
}

static int stop_at_two(void *ud, const eddy_chk_info *info)
{
  (void)info;
  return ++*(int *)ud == 2 ? 1 : 0;
}

static void test_list(void)
{
  char *dir = test_tmpdir();
  eddy_err err;
  const spec_file two[] = {{"f", "zstd", (const unsigned char *)"xyz", 3, 1},
                           {"g", "none", (const unsigned char *)"abcd", 4, 2}};
  eddy_store *a = open_store(dir, "job-a");
  eddy_store *b = open_store(dir, "job-b");
  write_chk(a, 1, NULL, two, 2, NULL);
  write_chk(a, 2, NULL, two, 2, NULL);
  write_chk(b, 5, NULL, two, 1, NULL);
  CHECK(unlink(pathf("%s/job-a/chk-2/f", dir)) == 0);
  eddy_chk_writer *w, *sp;
  CHECK_EQ_INT(eddy_chk_begin(a, 3, NULL, &w, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_savepoint_begin(dir, "job-a", 7, &sp, &err), EDDY_OK);
  char *sp_path = strdup(eddy_chk_writer_path(sp));
  const char *sp_name = strrchr(sp_path, '/') + 1;
  eddy_chk_file *f;
  CHECK_EQ_INT(eddy_chk_file_open(sp, "state", NULL, 1, &f, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_write(f, "s", 1, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_close(f, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_commit(sp, NULL, &err), EDDY_OK);

  listing l = {0};
  CHECK_EQ_INT(eddy_store_list(dir, 1, collect, &l, &err), EDDY_OK);
  CHECK_EQ_INT(l.n, 5);
  CHECK_EQ_STR(l.lines[0], "job-a chk-1 1 checkpoint completed 2");
  CHECK_EQ_STR(l.lines[1],
               "job-a chk-2 2 checkpoint damaged 1 chk-2/f: missing");
  CHECK_EQ_STR(l.lines[2], "job-a chk-3.inprogress 3 checkpoint in progress 0");
  CHECK_EQ_STR(l.lines[3], "job-b chk-5 5 checkpoint completed 1");
  CHECK_EQ_STR(l.lines[4], pathf("job-a %s 7 savepoint completed 1", sp_name));
  /* sizes: every file of the folder, _metadata included */
  CHECK_EQ_INT(l.sizes[0],
               file_size(pathf("%s/job-a/chk-1/f", dir)) + 4 +
                   file_size(pathf("%s/job-a/chk-1/_metadata", dir)));

  /* one job folder, through a URI; one checkpoint folder */
  l.n = 0;
  CHECK_EQ_INT(
      eddy_store_list(pathf("file://%s/job-a", dir), 1, collect, &l, &err),
      EDDY_OK);
  CHECK_EQ_INT(l.n, 3);
  CHECK_EQ_STR(l.lines[2], "job-a chk-3.inprogress 3 checkpoint in progress 0");
  l.n = 0;
  CHECK_EQ_INT(
      eddy_store_list(pathf("%s/job-b/chk-5", dir), 1, collect, &l, &err),
      EDDY_OK);
  CHECK_EQ_INT(l.n, 1);
  CHECK_EQ_STR(l.lines[0], "job-b chk-5 5 checkpoint completed 1");
  l.n = 0;
  CHECK_EQ_INT(
      eddy_store_list(pathf("%s/job-a/chk-2", dir), 1, collect, &l, &err),
      EDDY_OK);
  CHECK_EQ_STR(l.lines[0], "- chk-2 2 checkpoint damaged 1 chk-2/f: missing");

  /* without verify, a flipped byte is not seen; with it, it is */
  flip_byte(pathf("%s/job-b/chk-5/f", dir), 0);
  l.n = 0;
  CHECK_EQ_INT(eddy_store_list(pathf("%s/job-b", dir), 0, collect, &l, &err),
               EDDY_OK);
  CHECK_EQ_STR(l.lines[0], "job-b chk-5 5 checkpoint completed 1");
  l.n = 0;
  CHECK_EQ_INT(eddy_store_list(pathf("%s/job-b", dir), 1, collect, &l, &err),
               EDDY_OK);
  CHECK(starts_with(l.lines[0], "job-b chk-5 5 checkpoint damaged 1 chk-5/f: "
                                "checksum mismatch"));

  int seen = 0;
  CHECK_EQ_INT(eddy_store_list(dir, 1, stop_at_two, &seen, &err), 1);
  CHECK_EQ_INT(seen, 2);
  CHECK_EQ_INT(eddy_store_list(pathf("%s/none", dir), 1, collect, &l, &err),
               EDDY_ENOTFOUND);
  eddy_chk_abort(w);
  free(sp_path);
  eddy_store_close(a);
  eddy_store_close(b);
  test_rmdir(dir);
}

/* ---- savepoints ---- */

static void test_savepoint(void)
{
  char *dir = test_tmpdir();
  eddy_err err;
  eddy_chk_writer *w;
  const char *target = pathf("%s/sp/deeper", dir);
  CHECK_EQ_INT(eddy_savepoint_begin(target, "cca7bc99ab", 12, &w, &err),
               EDDY_OK);
  char *path = strdup(eddy_chk_writer_path(w));
  const char *name = strrchr(path, '/') + 1;
  CHECK(starts_with(name, "savepoint-cca7bc-"));
  CHECK_EQ_INT(strlen(name), strlen("savepoint-cca7bc-") + 12);
  for (const char *p = name + 17; *p; p++)
    CHECK(strchr("0123456789abcdef", *p) != NULL);
  CHECK(exists(pathf("%s.inprogress", path)));
  CHECK_EQ_INT(eddy_chk_commit(w, NULL, &err), EDDY_OK);
  eddy_chk *c;
  CHECK_EQ_INT(eddy_chk_open(path, &c, &err), EDDY_OK);
  if (c) {
    CHECK_EQ_STR(eddy_chk_kind(c), "savepoint");
    CHECK_EQ_STR(eddy_chk_job(c), "cca7bc99ab");
    CHECK_EQ_INT(eddy_chk_id(c), 12);
    CHECK_EQ_STR(eddy_chk_name(c), name);
  }
  eddy_chk_close(c);
  /* a short job id gives a short prefix; two savepoints never collide */
  eddy_chk_writer *w2, *w3;
  CHECK_EQ_INT(eddy_savepoint_begin(target, "ab", 13, &w2, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_savepoint_begin(target, "ab", 14, &w3, &err), EDDY_OK);
  CHECK(
      starts_with(strrchr(eddy_chk_writer_path(w2), '/') + 1, "savepoint-ab-"));
  CHECK(strcmp(eddy_chk_writer_path(w2), eddy_chk_writer_path(w3)) != 0);
  eddy_chk_abort(w2);
  eddy_chk_abort(w3);
  CHECK_EQ_INT(eddy_savepoint_begin(target, "a/b", 1, &w2, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_savepoint_begin(target, "ab", -1, &w2, &err), EDDY_EINVAL);
  free(path);
  test_rmdir(dir);
}

/* ---- file:// URIs ---- */

static void test_uris(void)
{
  char *dir = test_tmpdir();
  eddy_err err;
  CHECK(mkdir(pathf("%s/with space", dir), 0777) == 0);
  eddy_store *s = NULL;
  CHECK_EQ_INT(eddy_store_open(pathf("file://%s/with%%20space/", dir), "j",
                               NULL, &s, &err),
               EDDY_OK);
  if (s) {
    CHECK_EQ_STR(eddy_store_path(s), pathf("%s/with space/j", dir));
    write_chk(s, 1, NULL, NULL, 0, NULL);
  }
  eddy_store_close(s);
  eddy_chk *c = NULL;
  CHECK_EQ_INT(
      eddy_chk_open(pathf("file://localhost%s/with%%20space/j/chk-1", dir), &c,
                    &err),
      EDDY_OK);
  eddy_chk_close(c);
  CHECK_EQ_INT(eddy_chk_open(pathf("file:%s/with space/j/chk-1/_metadata", dir),
                             &c, &err),
               EDDY_OK);
  eddy_chk_close(c);
  CHECK_EQ_INT(eddy_store_open("s3://bucket/x", "j", NULL, &s, &err),
               EDDY_EUNSUPPORTED);
  CHECK_EQ_STR(err.msg, "s3://bucket/x: only local paths and file:// URIs are "
                        "supported");
  CHECK_EQ_INT(eddy_store_open("file://host/x", "j", NULL, &s, &err),
               EDDY_EUNSUPPORTED);
  CHECK_EQ_STR(err.msg, "file://host/x: a file URI on another host");
  CHECK_EQ_INT(eddy_store_open("file:relative", "j", NULL, &s, &err),
               EDDY_EINVAL);
  CHECK_EQ_INT(eddy_store_open("file:///x%2", "j", NULL, &s, &err),
               EDDY_EINVAL);
  CHECK_EQ_STR(err.msg, "file:///x%2: a bad %-escape in a URI");
  CHECK_EQ_INT(eddy_store_open("file:///x%00y", "j", NULL, &s, &err),
               EDDY_EINVAL);
  test_rmdir(dir);
}

/* ---- threads ---- */

typedef struct thread_arg {
  eddy_chk_writer *w;
  int index;
  const unsigned char *data;
  size_t n;
  int failures;
} thread_arg;

static void *write_files(void *p)
{
  thread_arg *a = p;
  eddy_err err;
  for (int k = 0; k < 3; k++) {
    char name[32];
    snprintf(name, sizeof name, "t%d-%d", a->index, k);
    eddy_chk_file *f;
    if (eddy_chk_file_open(a->w, name, k == 1 ? "none" : "zstd", 1, &f, &err) !=
        EDDY_OK) {
      a->failures++;
      continue;
    }
    for (size_t off = 0; off < a->n; off += 777) {
      size_t m = a->n - off < 777 ? a->n - off : 777;
      if (eddy_chk_file_write(f, a->data + off, m, &err) != EDDY_OK)
        a->failures++;
    }
    if (eddy_chk_file_close(f, &err) != EDDY_OK)
      a->failures++;
  }
  return NULL;
}

static void test_threads(void)
{
  char *dir = test_tmpdir();
  eddy_store *s = open_store(dir, "job");
  size_t n = (size_t)2 << 20;
  unsigned char *data = gen_data(n, 11);
  eddy_err err;
  eddy_chk_writer *w;
  CHECK_EQ_INT(eddy_chk_begin(s, 1, NULL, &w, &err), EDDY_OK);
  pthread_t th[3];
  thread_arg args[3];
  for (int i = 0; i < 3; i++) {
    args[i] = (thread_arg){w, i, data, n, 0};
    CHECK(pthread_create(&th[i], NULL, write_files, &args[i]) == 0);
  }
  /* meanwhile the main thread writes and completes the next checkpoint */
  const spec_file one[] = {{"main", "zstd", data, n / 4, 5000}};
  write_chk(s, 2, NULL, one, 1, NULL);
  for (int i = 0; i < 3; i++) {
    pthread_join(th[i], NULL);
    CHECK_EQ_INT(args[i].failures, 0);
  }
  CHECK_EQ_INT(eddy_chk_commit(w, NULL, &err), EDDY_OK);
  eddy_chk *c;
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/job/chk-1", dir), &c, &err), EDDY_OK);
  if (c) {
    CHECK_EQ_INT(eddy_chk_entry_count(c), 9);
    unsigned char *got;
    size_t len;
    CHECK_EQ_INT(read_all(c, "t2-0", 1 << 16, &got, &len, &err), EDDY_OK);
    CHECK_MEM(got, len, data, n);
    free(got);
  }
  eddy_chk_close(c);
  free(data);
  eddy_store_close(s);
  test_rmdir(dir);
}

/* Reading ahead, and lending: started after some reads, mixed with reads,
 * closed long before the end (the thread must stop, not hang or leak),
 * and the calls it refuses. */
static void test_read_ahead(void)
{
  char *dir = test_tmpdir();
  eddy_store *s = open_store(dir, "job");
  size_t n = (size_t)6 << 20;
  unsigned char *data = gen_data(n, 5);
  const spec_file files[] = {{"big.zst", "zstd", data, n, 1 << 16},
                             {"big.raw", "none", data, n, 1 << 16}};
  write_chk(s, 1, NULL, files, 2, NULL);
  eddy_err err;
  eddy_chk *c = NULL;
  CHECK_EQ_INT(eddy_chk_open(pathf("%s/job/chk-1", dir), &c, &err), EDDY_OK);
  if (c == NULL)
    goto out;
  unsigned char *buf = malloc(n);
  for (int f = 0; f < 2; f++) {
    eddy_chk_reader *r;
    size_t have = 0, got;
    const void *p;
    CHECK_EQ_INT(eddy_chk_reader_open(c, files[f].name, &r, &err), EDDY_OK);
    /* some bytes read here first, then the thread goes on from there */
    CHECK_EQ_INT(eddy_chk_reader_read(r, buf, 1000, &got, &err), EDDY_OK);
    have += got;
    CHECK_EQ_INT(eddy_chk_reader_ahead(r, &err), EDDY_OK);
    CHECK_EQ_INT(eddy_chk_reader_ahead(r, &err), EDDY_OK); /* once is enough */
    /* reads and nexts by turns */
    for (int i = 0;; i++) {
      if (i % 2) {
        CHECK_EQ_INT(eddy_chk_reader_next(r, &p, &got, &err), EDDY_OK);
        if (got > 0 && have + got <= n)
          memcpy(buf + have, p, got);
      } else {
        CHECK_EQ_INT(eddy_chk_reader_read(r, buf + have, have < n ? 77777 : 1, &got, &err),
                     EDDY_OK);
      }
      if (got == 0)
        break;
      have += got;
      if (have > n)
        break;
    }
    CHECK_MEM(buf, have, data, n);
    CHECK_EQ_INT(eddy_chk_reader_next(r, &p, &got, &err), EDDY_OK);
    CHECK_EQ_INT(got, 0);
    eddy_chk_reader_close(r);

    /* a reader closed while its thread is still busy */
    CHECK_EQ_INT(eddy_chk_reader_open(c, files[f].name, &r, &err), EDDY_OK);
    CHECK_EQ_INT(eddy_chk_reader_ahead(r, &err), EDDY_OK);
    CHECK_EQ_INT(eddy_chk_reader_next(r, &p, &got, &err), EDDY_OK);
    CHECK(got > 0 && got < n && memcmp(p, data, got) == 0);
    eddy_chk_reader_close(r);
    CHECK_EQ_INT(eddy_chk_reader_open(c, files[f].name, &r, &err), EDDY_OK);
    CHECK_EQ_INT(eddy_chk_reader_ahead(r, &err), EDDY_OK);
    eddy_chk_reader_close(r);
  }

  /* what the calls refuse */
  eddy_chk_reader *r;
  size_t got = 5;
  const void *p;
  CHECK_EQ_INT(eddy_chk_reader_ahead(NULL, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_chk_reader_open(c, "big.zst", &r, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_reader_read(r, NULL, 10, &got, &err), EDDY_EINVAL);
  CHECK_EQ_STR(err.msg, "chk-1/big.zst: a read into no buffer");
  CHECK_EQ_INT(eddy_chk_reader_next(r, NULL, &got, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_chk_reader_next(r, &p, NULL, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_chk_reader_ahead(r, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_reader_read(r, buf, 0, &got, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_chk_reader_read(r, NULL, 10, &got, &err), EDDY_EINVAL);
  eddy_chk_reader_close(r);
  eddy_chk_reader_close(NULL);
  free(buf);
out:
  eddy_chk_close(c);
  free(data);
  eddy_store_close(s);
  test_rmdir(dir);
}

/* ---- system-call failures ---- */

static void test_unwritable(void)
{
  char *dir = test_tmpdir();
  eddy_err err;
  eddy_store *s = NULL;
  put_file(pathf("%s/afile", dir), "x");
  CHECK_EQ_INT(eddy_store_open(pathf("%s/afile", dir), "j", NULL, &s, &err),
               EDDY_EIO);
  CHECK_EQ_STR(err.msg, pathf("%s/afile: Not a directory", dir));
  CHECK_EQ_INT(
      eddy_store_open(pathf("%s/afile/deeper", dir), "j", NULL, &s, &err),
      EDDY_EIO);
  CHECK_EQ_STR(err.msg, pathf("%s/afile: Not a directory", dir));
  if (geteuid() != 0) {
    /* permissions mean nothing to root */
    CHECK(mkdir(pathf("%s/ro", dir), 0555) == 0);
    CHECK_EQ_INT(eddy_store_open(pathf("%s/ro", dir), "j", NULL, &s, &err),
                 EDDY_EIO);
    CHECK_EQ_STR(err.msg, pathf("%s/ro/j: Permission denied", dir));
  }
  test_rmdir(dir);
}

static int write_text(const char *path, const char *text)
{
  int fd = open(path, O_WRONLY);
  if (fd < 0)
    return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* A private mount namespace in which tmpfs can be mounted (as root, or in
 * a new user namespace); -1 if the kernel says no. Mounts made in it never
 * show outside. */
static int private_mounts(void)
{
  uid_t uid = geteuid();
  gid_t gid = getegid();
  if (uid != 0) {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
      return -1;
    char map[64];
    write_text("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
    if (write_text("/proc/self/uid_map", map) != 0)
      return -1;
    snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
    if (write_text("/proc/self/gid_map", map) != 0)
      return -1;
  } else if (unshare(CLONE_NEWNS) != 0) {
    return -1;
  }
  return mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
}

/* In the child: a full disk and a read-only one. */
static void fs_failures(const char *dir)
{
  eddy_err err;
  char ro[4096], full[4096];
  snprintf(ro, sizeof ro, "%s/ro", dir);
  snprintf(full, sizeof full, "%s/full", dir);
  CHECK(mkdir(ro, 0777) == 0 && mkdir(full, 0777) == 0);
  CHECK(mount("tmpfs", ro, "tmpfs", MS_RDONLY, "size=64k") == 0);
  eddy_store *s = NULL;
  CHECK_EQ_INT(eddy_store_open(ro, "j", NULL, &s, &err), EDDY_EIO);
  CHECK_EQ_STR(err.msg, pathf("%s/j: Read-only file system", ro));

  CHECK(mount("tmpfs", full, "tmpfs", 0, "size=512k") == 0);
  s = open_store(full, "j");
  if (s == NULL)
    return;
  unsigned char *data = gen_data((size_t)4 << 20, 5);
  eddy_chk_writer *w;
  eddy_chk_file *f, *g;
  /* the disk fills while a file is written */
  CHECK_EQ_INT(eddy_chk_begin(s, 1, NULL, &w, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_open(w, "small", "zstd", 1, &g, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_write(g, "ok", 2, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_close(g, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_open(w, "big", "none", 0, &f, &err), EDDY_OK);
  int rc = EDDY_OK;
  for (size_t off = 0; off < ((size_t)4 << 20) && rc == EDDY_OK; off += 100)
    rc = eddy_chk_file_write(f, data + off, 100, &err);
  CHECK_EQ_INT(rc, EDDY_EIO);
  const char *want =
      pathf("%s/j/chk-1.inprogress/big: No space left on device", full);
  CHECK_EQ_STR(err.msg, want);
  /* the failure sticks: later writes, the close and the commit say it */
  eddy_err_clear(&err);
  CHECK_EQ_INT(eddy_chk_file_write(f, "x", 1, &err), EDDY_EIO);
  CHECK_EQ_STR(err.msg, want);
  eddy_chk_file *h;
  CHECK_EQ_INT(eddy_chk_file_open(w, "more", "none", 0, &h, &err), EDDY_EIO);
  CHECK_EQ_INT(eddy_chk_file_close(f, NULL), EDDY_EIO);
  eddy_err_clear(&err);
  CHECK_EQ_INT(eddy_chk_commit(w, NULL, &err), EDDY_EIO);
  CHECK_EQ_STR(err.msg, want);
  CHECK(!exists(pathf("%s/j/chk-1", full)));
  CHECK(!exists(pathf("%s/j/chk-1.inprogress", full)));

  /* the disk fills under zstd, at close (the last bytes are flushed) */
  CHECK_EQ_INT(eddy_chk_begin(s, 2, NULL, &w, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_open(w, "z", "zstd", 1, &f, &err), EDDY_OK);
  unsigned char *noise = malloc(700 << 10);
  gen_random(noise, 700 << 10, 9);
  CHECK_EQ_INT(eddy_chk_file_write(f, noise, 700 << 10, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_close(f, &err), EDDY_EIO);
  CHECK_EQ_STR(err.msg, pathf("%s/j/chk-2.inprogress/z: No space left on "
                              "device",
                              full));
  eddy_chk_abort(w);
  CHECK(!exists(pathf("%s/j/chk-2.inprogress", full)));
  free(noise);

  /* the disk is full when _metadata is written */
  CHECK_EQ_INT(eddy_chk_begin(s, 3, NULL, &w, &err), EDDY_OK);
  int fd = open(pathf("%s/filler", full), O_WRONLY | O_CREAT, 0666);
  CHECK(fd >= 0);
  while (write(fd, data, 4096) > 0)
    ;
  close(fd);
  CHECK_EQ_INT(eddy_chk_commit(w, NULL, &err), EDDY_EIO);
  CHECK_EQ_STR(err.msg, pathf("%s/j/chk-3.inprogress/_metadata: No space "
                              "left on device",
                              full));
  CHECK(!exists(pathf("%s/j/chk-3", full)));
  CHECK(!exists(pathf("%s/j/chk-3.inprogress", full)));
  free(data);
  eddy_store_close(s);
  umount(full);
  umount(ro);
}

/* In the child: a file size limit makes write(2) fail with EFBIG. */
static void size_limit(const char *dir)
{
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl = {100000, 100000};
  CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
  eddy_store *s = open_store(dir, "lim");
  if (s == NULL)
    return;
  eddy_err err;
  eddy_chk_writer *w;
  eddy_chk_file *f;
  unsigned char *noise = malloc(3 << 20);
  gen_random(noise, 3 << 20, 1);
  CHECK_EQ_INT(eddy_chk_begin(s, 1, NULL, &w, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_open(w, "f", "none", 0, &f, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_chk_file_write(f, noise, 3 << 20, &err), EDDY_EIO);
  CHECK_EQ_STR(err.msg,
               pathf("%s/lim/chk-1.inprogress/f: File too large", dir));
  CHECK_EQ_INT(eddy_chk_file_close(f, &err), EDDY_EIO);
  CHECK_EQ_INT(eddy_chk_commit(w, NULL, &err), EDDY_EIO);
  CHECK(!exists(pathf("%s/lim/chk-1", dir)));
  free(noise);
  eddy_store_close(s);
}

/* Runs fn(dir) in a child process; 77 from it means skipped. */
static void in_child(const char *what, void (*fn)(const char *), int mounts)
{
  char *dir = test_tmpdir();
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    if (mounts && private_mounts() != 0)
      _exit(77);
    fn(dir);
    fflush(NULL);
    _exit(test_failures > 0 ? 1 : 0);
  }
  int st = 0;
  CHECK(waitpid(pid, &st, 0) == pid);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
    fprintf(stderr, "storage: %s skipped (no private mount namespace)\n", what);
  else if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
    CHECK(!"the child failed");
  if (WIFSIGNALED(st))
    fprintf(stderr, "storage: %s: killed by signal %d\n", what, WTERMSIG(st));
  test_rmdir(dir);
}

static void test_disk_full(void) { in_child("disk full", fs_failures, 1); }

static void test_size_limit(void) { in_child("size limit", size_limit, 0); }

/* ---- benchmark (EDDY_STORAGE_BENCH=<MB>) ---- */

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double run_cmd(const char *cmd)
{
  double t = now_s();
  int rc = system(cmd);
  t = now_s() - t;
  if (rc != 0)
    fprintf(stderr, "bench: %s failed\n", cmd);
  return t;
}

static void bench(size_t mb, const char *where)
{
  size_t n = mb << 20;
  char tmpl[512];
  snprintf(tmpl, sizeof tmpl, "%s/eddy-bench-XXXXXX", where);
  char *dir = mkdtemp(tmpl);
  if (dir == NULL) {
    perror(where);
    return;
  }
  dir = strdup(dir);
  /* the records: ~100-byte MessagePack maps, one write call each */
  unsigned char *data = malloc(n + 256);
  size_t *ends = malloc(sizeof *ends * (n / 50 + 1));
  size_t len = 0, nrec = 0;
  uint64_t rng = 42;
  while (len < n) {
    len += gen_record(data + len, nrec, &rng);
    ends[nrec++] = len;
  }
  n = len;
  const char *raw = pathf("%s/raw", dir);
  FILE *fp = fopen(raw, "wb");
  fwrite(data, 1, n, fp);
  fclose(fp);
  printf("bench in %s: %zu records, %.1f MB, %.1f bytes each\n", where, nrec,
         (double)n / 1e6, (double)n / (double)nrec);
  eddy_store *s = open_store(dir, "job");
  eddy_err err;
  unsigned char *buf = malloc(1 << 16);
  for (int level = 1; level <= 3; level += 2) {
    double best_w = 1e9, best_r = 1e9, best_zc = 1e9, best_zd = 1e9;
    double best_chunk = 1e9, best_open = 1e9;
    long long csize = 0;
    for (int rep = 0; rep < 3; rep++) {
      int64_t id = level * 100 + rep * 2;
      eddy_chk_writer *w;
      eddy_chk_file *f;
      double t = now_s();
      eddy_chk_begin(s, id, NULL, &w, &err);
      eddy_chk_file_open(w, "state", "zstd", level, &f, &err);
      size_t start = 0;
      for (size_t i = 0; i < nrec; i++) {
        eddy_chk_file_write(f, data + start, ends[i] - start, &err);
        start = ends[i];
      }
      eddy_chk_file_close(f, &err);
      eddy_chk_commit(w, NULL, &err);
      t = now_s() - t;
      if (t < best_w)
        best_w = t;
      /* the same bytes in 64 KiB writes: the layer without per-call cost */
      t = now_s();
      eddy_chk_begin(s, id + 1, NULL, &w, &err);
      eddy_chk_file_open(w, "state", "zstd", level, &f, &err);
      for (size_t off = 0; off < n; off += 65536)
        eddy_chk_file_write(f, data + off, n - off < 65536 ? n - off : 65536,
                            &err);
      eddy_chk_file_close(f, &err);
      eddy_chk_commit(w, NULL, &err);
      t = now_s() - t;
      if (t < best_chunk)
        best_chunk = t;

      const char *chk = pathf("%s/job/chk-%" PRId64, dir, id);
      csize = file_size(pathf("%s/state", chk));
      t = now_s();
      eddy_chk *c;
      eddy_chk_open(chk, &c, &err);
      double topen = now_s() - t;
      eddy_chk_reader *r;
      eddy_chk_reader_open(c, "state", &r, &err);
      size_t got, total = 0;
      while (eddy_chk_reader_read(r, buf, 1 << 16, &got, &err) == EDDY_OK &&
             got > 0)
        total += got;
      eddy_chk_reader_close(r);
      eddy_chk_close(c);
      t = now_s() - t;
      if (total != n)
        fprintf(stderr, "bench: read %zu of %zu bytes\n", total, n);
      if (t < best_r)
        best_r = t;
      if (topen < best_open)
        best_open = topen;

      char cmd[2048];
      snprintf(cmd, sizeof cmd, "zstd -q -f -T1 -%d '%s' -o '%s/raw.zst'",
               level, raw, dir);
      t = run_cmd(cmd);
      if (t < best_zc)
        best_zc = t;
      snprintf(cmd, sizeof cmd, "zstd -q -d -c '%s/raw.zst' > /dev/null", dir);
      t = run_cmd(cmd);
      if (t < best_zd)
        best_zd = t;
    }
    double mbs = (double)n / 1e6;
    printf("level %d: %.1f MB -> %.1f MB\n", level, mbs, (double)csize / 1e6);
    printf("  write  eddy %7.0f MB/s (100-byte writes, fsync included)   "
           "%7.0f MB/s (64 KiB writes)   zstd -T1 -%d %7.0f MB/s   "
           "ratio %.2f\n",
           mbs / best_w, mbs / best_chunk, level, mbs / best_zc,
           best_zc / best_w);
    printf("  read   eddy %7.0f MB/s (open with checksums %.0f ms, 64 KiB "
           "reads)   zstd -d %7.0f MB/s   ratio %.2f\n",
           mbs / best_r, best_open * 1e3, mbs / best_zd, best_zd / best_r);
  }
  free(buf);
  free(data);
  free(ends);
  eddy_store_close(s);
  test_rmdir(dir);
}

int main(void)
{
  const char *b = getenv("EDDY_STORAGE_BENCH");
  if (b != NULL) {
    size_t mb = (size_t)strtoul(b, NULL, 10);
    const char *where = getenv("EDDY_STORAGE_BENCH_DIR");
    bench(mb ? mb : 100, where ? where : "/tmp");
    return 0;
  }
  static const test_case cases[] = {
      TEST(test_round_trip),    TEST(test_metadata),
      TEST(test_bad_arguments), TEST(test_stale_and_abort),
      TEST(test_retention),     TEST(test_discard),
      TEST(test_damage),        TEST(test_latest),
      TEST(test_list),          TEST(test_savepoint),
      TEST(test_uris),          TEST(test_threads),
      TEST(test_read_ahead),    TEST(test_unwritable),    TEST(test_disk_full),
      TEST(test_size_limit),    TEST(test_shared)};
  return test_run("storage", cases, sizeof cases / sizeof cases[0]);
}
