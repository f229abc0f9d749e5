/*
 * The record reader over real files, pipes and hostile input, and the
 * part-file writer whose output it reads back. Files live in a mkdtemp
 * folder that the last test removes.
 */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/format.h"
#include "runtime/reader.h"
#include "runtime/writer.h"
#include "util/interrupt.h"
#include "util/msgpack.h"

static char tmpdir[256];

static void tpath(char *buf, size_t cap, const char *name)
{
  snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const void *data, size_t len)
{
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (f == NULL)
    return;
  CHECK_EQ_INT(fwrite(data, 1, len, f), len);
  fclose(f);
}

#define WRITE(path, lit) write_file((path), (lit), sizeof(lit) - 1)

static char *read_whole(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  eddy_buf b = EDDY_BUF_INIT;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    eddy_buf_append(&b, chunk, n);
  fclose(f);
  eddy_buf_putc(&b, '\0');
  *len = b.len - 1;
  return (char *)b.data;
}

typedef struct ropts {
  eddy_format_kind format;
  int header;
  int skip;
  size_t max_line;
  unsigned char delim;
} ropts;

static eddy_reader *open_r(const char *path, ropts o)
{
  eddy_reader_config cfg;
  eddy_reader_config_init(&cfg);
  cfg.path = path;
  cfg.format = o.format ? o.format : EDDY_FORMAT_JSONL;
  cfg.csv.header = o.header;
  if (o.delim)
    cfg.csv.delimiter = o.delim;
  cfg.skip_errors = o.skip;
  cfg.max_line = o.max_line;
  eddy_reader *r = NULL;
  eddy_err err = {0, ""};
  int rc = eddy_reader_open(&cfg, &r, &err);
  CHECK_EQ_INT(rc, EDDY_OK);
  if (rc != EDDY_OK)
    fprintf(stderr, "  open: %s\n", err.msg);
  return r;
}

/* The next record as JSON text (no newline) in text; the status. */
static char text[1 << 16];
static eddy_err rerr;

static int rd(eddy_reader *r)
{
  eddy_slice rec;
  text[0] = '\0';
  eddy_err_clear(&rerr);
  int rc = eddy_reader_next(r, &rec, &rerr);
  if (rc == EDDY_OK) {
    eddy_buf out = EDDY_BUF_INIT;
    int wrc = eddy_format_write_json(rec.data, rec.len, &out, NULL);
    CHECK_EQ_INT(wrc, EDDY_OK);
    if (wrc == EDDY_OK) {
      size_t n = out.len - 1 < sizeof text - 1 ? out.len - 1 : sizeof text - 1;
      memcpy(text, out.data, n);
      text[n] = '\0';
    }
    eddy_buf_free(&out);
  }
  return rc;
}

#define EXPECT(r, json)                                                      \
  do {                                                                       \
    int rc_ = rd(r);                                                         \
    CHECK_EQ_INT(rc_, EDDY_OK);                                              \
    if (rc_ != EDDY_OK)                                                      \
      fprintf(stderr, "  error: %s\n", rerr.msg);                            \
    CHECK_EQ_STR(text, json);                                                \
  } while (0)

#define EXPECT_ERR(r, code, want)                                            \
  do {                                                                       \
    CHECK_EQ_INT(rd(r), code);                                               \
    CHECK_EQ_STR(rerr.msg, want);                                            \
  } while (0)

/* path followed by rest: the expected message for a file */
static const char *at(const char *path, const char *rest)
{
  static char buf[1024];
  snprintf(buf, sizeof buf, "%s%s", path, rest);
  return buf;
}

/* ---- tests ---- */

static void test_setup(void)
{
  snprintf(tmpdir, sizeof tmpdir, "%s/eddy-reader-XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  CHECK(mkdtemp(tmpdir) != NULL);
}

static void test_open_errors(void)
{
  char p[512];
  eddy_reader_config cfg;
  eddy_reader *r = (eddy_reader *)&cfg;
  eddy_err err;
  eddy_reader_config_init(&cfg);
  tpath(p, sizeof p, "missing.jsonl");
  cfg.path = p;
  CHECK_EQ_INT(eddy_reader_open(&cfg, &r, &err), EDDY_EIO);
  CHECK(r == NULL);
  CHECK_EQ_STR(err.msg, at(p, ": No such file or directory"));
  cfg.path = tmpdir;
  CHECK_EQ_INT(eddy_reader_open(&cfg, &r, &err), EDDY_EIO);
  CHECK_EQ_STR(err.msg, at(tmpdir, ": Is a directory"));
  cfg.path = NULL;
  CHECK_EQ_INT(eddy_reader_open(&cfg, &r, &err), EDDY_EINVAL);
  tpath(p, sizeof p, "x.csv");
  WRITE(p, "a\n");
  cfg.path = p;
  cfg.format = EDDY_FORMAT_CSV;
  cfg.csv.delimiter = '\n';
  CHECK_EQ_INT(eddy_reader_open(&cfg, &r, &err), EDDY_EINVAL);
  eddy_reader_close(NULL);
}

static void test_empty_input(void)
{
  char p[512];
  tpath(p, sizeof p, "empty");
  WRITE(p, "");
  static const eddy_format_kind kinds[] = {EDDY_FORMAT_JSONL, EDDY_FORMAT_CSV,
                                           EDDY_FORMAT_LINES};
  for (int i = 0; i < 3; i++) {
    eddy_reader *r = open_r(p, (ropts){kinds[i], 1, 0, 0, 0});
    CHECK_EQ_INT(rd(r), EDDY_EEOF);
    CHECK_EQ_INT(rd(r), EDDY_EEOF);
    CHECK_EQ_INT(eddy_reader_offset(r), 0);
    CHECK_EQ_INT(eddy_reader_line(r), 0);
    eddy_reader_close(r);
  }

  /* blank lines: nothing in jsonl and csv, empty strings in lines */
  tpath(p, sizeof p, "blank");
  WRITE(p, "\n  \n\t\r\n\r\n");
  for (int i = 0; i < 2; i++) {
    eddy_reader *r = open_r(p, (ropts){kinds[i], 1, 0, 0, 0});
    CHECK_EQ_INT(rd(r), EDDY_EEOF);
    CHECK_EQ_INT(eddy_reader_skipped(r), 0);
    eddy_reader_close(r);
  }
  eddy_reader *r = open_r(p, (ropts){EDDY_FORMAT_LINES, 0, 0, 0, 0});
  EXPECT(r, "\"\"");
  EXPECT(r, "\"  \"");
  EXPECT(r, "\"\\t\"");
  EXPECT(r, "\"\"");
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);

  /* a CSV file with only a header */
  tpath(p, sizeof p, "header.csv");
  WRITE(p, "id,name\r\n\r\n");
  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 1, 0, 0, 0});
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);
  WRITE(p, "id,name");
  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 1, 0, 0, 0});
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);
}

static void test_jsonl(void)
{
  char p[512];
  tpath(p, sizeof p, "basic.jsonl");
  /* offsets:   0            8 9 12      19   */
  WRITE(p, "{\"a\":1}\n\n  \n[1,2]\r\n\"last\"");
  eddy_reader *r = open_r(p, (ropts){0, 0, 0, 0, 0});
  CHECK_EQ_STR(eddy_reader_name(r), p);
  EXPECT(r, "{\"a\":1}");
  CHECK_EQ_INT(eddy_reader_offset(r), 8);
  CHECK_EQ_INT(eddy_reader_line(r), 1);
  EXPECT(r, "[1,2]");
  CHECK_EQ_INT(eddy_reader_offset(r), 19);
  CHECK_EQ_INT(eddy_reader_line(r), 4);
  EXPECT(r, "\"last\"");
  CHECK_EQ_INT(eddy_reader_offset(r), 25);
  CHECK_EQ_INT(eddy_reader_line(r), 5);
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  CHECK_EQ_STR(rerr.msg, at(p, ": end of input"));
  eddy_reader_close(r);

  /* exact bytes of a record, and NUL bytes */
  tpath(p, sizeof p, "nul.jsonl");
  write_file(p, "{\"b\":[true],\"a\":\"x\\u0000y\"}\n\"raw\0nul\"\n", 38);
  r = open_r(p, (ropts){0, 0, 0, 0, 0});
  eddy_slice rec;
  CHECK_EQ_INT(eddy_reader_next(r, &rec, NULL), EDDY_OK);
  eddy_buf want = EDDY_BUF_INIT;
  eddy_mp_write_map(&want, 2);
  eddy_mp_write_str(&want, "a", 1);
  eddy_mp_write_str(&want, "x\0y", 3);
  eddy_mp_write_str(&want, "b", 1);
  eddy_mp_write_array(&want, 1);
  eddy_mp_write_bool(&want, 1);
  CHECK_MEM(rec.data, rec.len, want.data, want.len);
  eddy_buf_free(&want);
  CHECK_EQ_INT(rd(r), EDDY_EFORMAT);
  CHECK(strstr(rerr.msg, ":2: invalid JSON: ") != NULL);
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);
}

static void test_malformed_and_skip(void)
{
  char p[512];
  tpath(p, sizeof p, "orders.jsonl");
  eddy_buf f = EDDY_BUF_INIT;
  const char *head = "{\"id\":1}\n{\"id\":\n{\"id\":3}\nnull\n{\"id\":5}\n";
  eddy_buf_append(&f, head, strlen(head));
  for (int i = 0; i < 150; i++)
    eddy_buf_append(&f, "{\"k\":", 5);
  eddy_buf_putc(&f, '1');
  for (int i = 0; i < 150; i++)
    eddy_buf_putc(&f, '}');
  eddy_buf_append(&f, "\n\"\xff\"\n{\"id\":8}\n", 14);
  write_file(p, f.data, f.len);
  eddy_buf_free(&f);

  eddy_reader *r = open_r(p, (ropts){0, 0, 0, 0, 0});
  EXPECT(r, "{\"id\":1}");
  EXPECT_ERR(r, EDDY_EFORMAT,
             at(p, ":2: invalid JSON: unexpected token near end of file"));
  EXPECT(r, "{\"id\":3}");
  EXPECT_ERR(r, EDDY_EFORMAT, at(p, ":4: a record cannot be null"));
  EXPECT(r, "{\"id\":5}");
  EXPECT_ERR(r, EDDY_EFORMAT, at(p, ":6: nested deeper than 100 levels"));
  CHECK_EQ_INT(rd(r), EDDY_EFORMAT); /* invalid UTF-8 */
  CHECK(strstr(rerr.msg, ":7: invalid JSON: unable to decode byte 0xff") != NULL);
  EXPECT(r, "{\"id\":8}");
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  CHECK_EQ_INT(eddy_reader_skipped(r), 0);
  CHECK(eddy_reader_first_skipped(r) == NULL);
  eddy_reader_close(r);

  r = open_r(p, (ropts){0, 0, 1, 0, 0});
  EXPECT(r, "{\"id\":1}");
  EXPECT(r, "{\"id\":3}");
  EXPECT(r, "{\"id\":5}");
  EXPECT(r, "{\"id\":8}");
  CHECK_EQ_INT(eddy_reader_line(r), 8);
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  CHECK_EQ_INT(eddy_reader_skipped(r), 4);
  CHECK_EQ_STR(eddy_reader_first_skipped(r),
               at(p, ":2: invalid JSON: unexpected token near end of file"));
  eddy_reader_close(r);

  /* 100000 levels: jansson refuses, nothing crashes, reading goes on */
  tpath(p, sizeof p, "deep.jsonl");
  f = (eddy_buf)EDDY_BUF_INIT;
  for (int i = 0; i < 100000; i++)
    eddy_buf_putc(&f, '[');
  for (int i = 0; i < 100000; i++)
    eddy_buf_putc(&f, ']');
  eddy_buf_append(&f, "\n7\n", 3);
  write_file(p, f.data, f.len);
  eddy_buf_free(&f);
  r = open_r(p, (ropts){0, 0, 0, 0, 0});
  CHECK_EQ_INT(rd(r), EDDY_EFORMAT);
  CHECK(strncmp(rerr.msg + strlen(p), ":1: invalid JSON: ", 18) == 0);
  EXPECT(r, "7");
  eddy_reader_close(r);
}

static void test_bom_crlf(void)
{
  char p[512];
  tpath(p, sizeof p, "bom.jsonl");
  WRITE(p, "\xef\xbb\xbf{\"a\":1}\r\n\xef\xbb\xbf{\"a\":2}\r\n");
  eddy_reader *r = open_r(p, (ropts){0, 0, 0, 0, 0});
  EXPECT(r, "{\"a\":1}");
  CHECK_EQ_INT(eddy_reader_offset(r), 12);
  CHECK_EQ_INT(rd(r), EDDY_EFORMAT); /* only the first BOM is skipped */
  CHECK(strstr(rerr.msg, ":2: invalid JSON") != NULL);
  eddy_reader_close(r);

  tpath(p, sizeof p, "bom.csv");
  WRITE(p, "\xef\xbb\xbfid,name\r\n1,\"a\"\r\n2,b\r\n");
  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 1, 0, 0, 0});
  EXPECT(r, "{\"id\":1,\"name\":\"a\"}");
  EXPECT(r, "{\"id\":2,\"name\":\"b\"}");
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);

  tpath(p, sizeof p, "bom.txt");
  WRITE(p, "\xef\xbb\xbfone\r\ntwo\r\n\r\nfour");
  r = open_r(p, (ropts){EDDY_FORMAT_LINES, 0, 0, 0, 0});
  EXPECT(r, "\"one\"");
  EXPECT(r, "\"two\"");
  EXPECT(r, "\"\"");
  EXPECT(r, "\"four\"");
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);

  /* a file of just a BOM, or shorter than one */
  WRITE(p, "\xef\xbb\xbf");
  r = open_r(p, (ropts){EDDY_FORMAT_LINES, 0, 0, 0, 0});
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);
  WRITE(p, "\xef\xbb");
  r = open_r(p, (ropts){EDDY_FORMAT_LINES, 0, 0, 0, 0});
  CHECK_EQ_INT(rd(r), EDDY_OK);
  CHECK_EQ_STR(text, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
  eddy_reader_close(r);
}

static void test_bytes_pass_through(void)
{
  char p[512];
  tpath(p, sizeof p, "bytes.txt");
  write_file(p, "a\0b\n\xff\xfe\xc3\n", 8);
  eddy_reader *r = open_r(p, (ropts){EDDY_FORMAT_LINES, 0, 0, 0, 0});
  eddy_slice rec;
  eddy_buf want = EDDY_BUF_INIT;
  CHECK_EQ_INT(eddy_reader_next(r, &rec, NULL), EDDY_OK);
  eddy_mp_write_str(&want, "a\0b", 3);
  CHECK_MEM(rec.data, rec.len, want.data, want.len);
  CHECK_EQ_INT(eddy_reader_next(r, &rec, NULL), EDDY_OK);
  eddy_buf_reset(&want);
  eddy_mp_write_str(&want, "\xff\xfe\xc3", 3);
  CHECK_MEM(rec.data, rec.len, want.data, want.len);
  eddy_reader_close(r);

  tpath(p, sizeof p, "bytes.csv");
  write_file(p, "\xff,a\0b\n", 6);
  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 0, 0, 0, 0});
  CHECK_EQ_INT(eddy_reader_next(r, &rec, NULL), EDDY_OK);
  eddy_buf_reset(&want);
  eddy_mp_write_array(&want, 2);
  eddy_mp_write_str(&want, "\xff", 1);
  eddy_mp_write_str(&want, "a\0b", 3);
  CHECK_MEM(rec.data, rec.len, want.data, want.len);
  eddy_reader_close(r);
  eddy_buf_free(&want);
}

static void make_long_file(const char *path, size_t n, const char *before,
                           const char *after, int json)
{
  eddy_buf f = EDDY_BUF_INIT;
  eddy_buf_append(&f, before, strlen(before));
  if (json)
    eddy_buf_append(&f, "{\"s\":\"", 6);
  size_t start = f.len;
  eddy_buf_reserve(&f, n);
  memset(f.data + f.len, 'x', n);
  f.len += n;
  f.data[start] = 'y';
  if (json)
    eddy_buf_append(&f, "\"}", 2);
  eddy_buf_append(&f, after, strlen(after));
  write_file(path, f.data, f.len);
  eddy_buf_free(&f);
}

static void test_long_lines(void)
{
  char p[512];
  eddy_slice rec;
  eddy_mp_reader mr;
  eddy_mp_item it;

  /* 5 MB lines are fine, in every format */
  tpath(p, sizeof p, "long.jsonl");
  make_long_file(p, 5 << 20, "1\n", "\n2\n", 1);
  eddy_reader *r = open_r(p, (ropts){0, 0, 0, 0, 0});
  EXPECT(r, "1");
  CHECK_EQ_INT(eddy_reader_next(r, &rec, NULL), EDDY_OK);
  eddy_mp_reader_init(&mr, rec.data, rec.len);
  CHECK_EQ_INT(eddy_mp_read(&mr, &it), EDDY_OK);
  CHECK_EQ_INT(it.type, EDDY_MP_MAP);
  eddy_mp_read(&mr, &it);
  CHECK_EQ_INT(eddy_mp_read(&mr, &it), EDDY_OK);
  CHECK_EQ_INT(it.v.s.len, 5 << 20);
  CHECK(it.v.s.ptr[0] == 'y' && it.v.s.ptr[(5 << 20) - 1] == 'x');
  EXPECT(r, "2");
  CHECK_EQ_INT(eddy_reader_line(r), 3);
  eddy_reader_close(r);

  tpath(p, sizeof p, "long.txt");
  make_long_file(p, 5 << 20, "", "", 0);
  r = open_r(p, (ropts){EDDY_FORMAT_LINES, 0, 0, 0, 0});
  CHECK_EQ_INT(eddy_reader_next(r, &rec, NULL), EDDY_OK);
  CHECK_EQ_INT(rec.len, (5 << 20) + 5);
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);

  tpath(p, sizeof p, "long.csv");
  make_long_file(p, 5 << 20, "a,b\n1,\"", "\"\n2,3\n", 0);
  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 1, 0, 0, 0});
  CHECK_EQ_INT(eddy_reader_next(r, &rec, NULL), EDDY_OK);
  CHECK(rec.len > (5 << 20));
  EXPECT(r, "{\"a\":2,\"b\":3}");
  eddy_reader_close(r);

  /* over max_line: an error at its own line, and reading goes on */
  tpath(p, sizeof p, "over.jsonl");
  make_long_file(p, 5000, "1\n", "\n3\n", 1);
  r = open_r(p, (ropts){0, 0, 0, 1000, 0});
  EXPECT(r, "1");
  EXPECT_ERR(r, EDDY_EFORMAT, at(p, ":2: line longer than 1000 bytes"));
  EXPECT(r, "3");
  CHECK_EQ_INT(eddy_reader_line(r), 3);
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);
  r = open_r(p, (ropts){0, 0, 1, 1000, 0});
  EXPECT(r, "1");
  EXPECT(r, "3");
  CHECK_EQ_INT(eddy_reader_skipped(r), 1);
  CHECK_EQ_STR(eddy_reader_first_skipped(r), at(p, ":2: line longer than 1000 bytes"));
  eddy_reader_close(r);

  /* exactly max_line is fine; one more is not */
  tpath(p, sizeof p, "edge.txt");
  make_long_file(p, 1000, "", "\n", 0);
  r = open_r(p, (ropts){EDDY_FORMAT_LINES, 0, 0, 1000, 0});
  CHECK_EQ_INT(rd(r), EDDY_OK);
  eddy_reader_close(r);
  make_long_file(p, 1001, "", "\n", 0);
  r = open_r(p, (ropts){EDDY_FORMAT_LINES, 0, 0, 1000, 0});
  CHECK_EQ_INT(rd(r), EDDY_EFORMAT);
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);

  /* a line far longer than the buffer, streamed past in skip mode; and an
   * over-long last line without a newline */
  tpath(p, sizeof p, "huge.txt");
  make_long_file(p, 3 << 20, "a\n", "\nb\n", 0);
  r = open_r(p, (ropts){EDDY_FORMAT_LINES, 0, 1, 100 << 10, 0});
  EXPECT(r, "\"a\"");
  EXPECT(r, "\"b\"");
  CHECK_EQ_INT(eddy_reader_offset(r), 2 + (3 << 20) + 3);
  CHECK_EQ_INT(eddy_reader_line(r), 3);
  CHECK_EQ_STR(eddy_reader_first_skipped(r), at(p, ":2: line longer than 100 KiB"));
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);
  make_long_file(p, 3 << 20, "a\n", "", 0);
  r = open_r(p, (ropts){EDDY_FORMAT_LINES, 0, 0, 2 << 20, 0});
  EXPECT(r, "\"a\"");
  EXPECT_ERR(r, EDDY_EFORMAT, at(p, ":2: line longer than 2 MiB"));
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);

  /* a quoted CSV field that runs on past max_line */
  tpath(p, sizeof p, "open.csv");
  eddy_buf f = EDDY_BUF_INIT;
  eddy_buf_append(&f, "1,\"open\n", 8);
  for (int i = 0; i < 50; i++)
    eddy_buf_append(&f, "0123456789\n", 11);
  eddy_buf_append(&f, "2,x\n", 4);
  write_file(p, f.data, f.len);
  eddy_buf_free(&f);
  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 0, 0, 100, 0});
  EXPECT_ERR(r, EDDY_EFORMAT,
             at(p, ":1: CSV record longer than 100 bytes (a quoted field that is never closed?)"));
  eddy_reader_close(r);
}

static void test_csv(void)
{
  char p[512];
  tpath(p, sizeof p, "orders.csv");
  WRITE(p,
        "id,note,price\r\n"        /* 1 */
        "1,plain,2.5\r\n"          /* 2 */
        "2,\"two\r\n"              /* 3 */
        "lines\",3\r\n"            /* 4 */
        "\r\n"                     /* 5 */
        "3,short\r\n"              /* 6: too few fields */
        "4,\"a,b\",007\r\n"        /* 7 */
        "5,bad\"quote,1\r\n"       /* 8 */
        "6,\"x\",1,extra\r\n"      /* 9: too many */
        "7,\"end\",-1\r\n"         /* 10 */
        "8,\"never\r\n"            /* 11: unterminated */
        "closed,1\r\n");           /* 12 */
  eddy_reader *r = open_r(p, (ropts){EDDY_FORMAT_CSV, 1, 0, 0, 0});
  EXPECT(r, "{\"id\":1,\"note\":\"plain\",\"price\":2.5}");
  EXPECT(r, "{\"id\":2,\"note\":\"two\\r\\nlines\",\"price\":3}");
  CHECK_EQ_INT(eddy_reader_line(r), 4);
  EXPECT_ERR(r, EDDY_EFORMAT, at(p, ":6: expected 3 fields (as in the header), got 2"));
  EXPECT(r, "{\"id\":4,\"note\":\"a,b\",\"price\":\"007\"}");
  CHECK_EQ_INT(rd(r), EDDY_EFORMAT);
  CHECK(strstr(rerr.msg, ":8: malformed CSV: a quote inside an unquoted field") != NULL);
  EXPECT_ERR(r, EDDY_EFORMAT, at(p, ":9: expected 3 fields (as in the header), got 4"));
  EXPECT(r, "{\"id\":7,\"note\":\"end\",\"price\":-1}");
  EXPECT_ERR(r, EDDY_EFORMAT, at(p, ":11: malformed CSV: unterminated quoted field"));
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  CHECK_EQ_INT(eddy_reader_line(r), 10);
  eddy_reader_close(r);

  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 1, 1, 0, 0});
  int n = 0;
  while (rd(r) == EDDY_OK)
    n++;
  CHECK_EQ_INT(n, 4);
  CHECK_EQ_INT(eddy_reader_skipped(r), 4);
  CHECK_EQ_STR(eddy_reader_first_skipped(r),
               at(p, ":6: expected 3 fields (as in the header), got 2"));
  eddy_reader_close(r);

  /* no header: arrays; another delimiter */
  tpath(p, sizeof p, "plain.tsv");
  WRITE(p, "1\tx y\t\n\"q\t\"\t2.0");
  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 0, 0, 0, '\t'});
  EXPECT(r, "[1,\"x y\",\"\"]");
  EXPECT(r, "[\"q\\t\",2.0]");
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);

  /* a bad header stops the reader, skip mode or not */
  tpath(p, sizeof p, "dup.csv");
  WRITE(p, "a,b,a\n1,2,3\n");
  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 1, 1, 0, 0});
  EXPECT_ERR(r, EDDY_EFORMAT, at(p, ":1: duplicate field name \"a\" in the CSV header"));
  EXPECT_ERR(r, EDDY_EFORMAT, at(p, ":1: duplicate field name \"a\" in the CSV header"));
  CHECK_EQ_INT(eddy_reader_skipped(r), 0);
  eddy_reader_close(r);
  WRITE(p, "\n\"a\nb\",,c\n1,2,3\n");
  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 1, 0, 0, 0});
  EXPECT_ERR(r, EDDY_EFORMAT, at(p, ":2: empty field name in the CSV header (field 2)"));
  eddy_reader_close(r);
}

static void test_seek(void)
{
  char p[512];
  tpath(p, sizeof p, "seek.jsonl");
  eddy_buf f = EDDY_BUF_INIT;
  for (int i = 0; i < 10; i++) {
    char line[64];
    int n = i == 6 ? snprintf(line, sizeof line, "{bad\n")
                   : snprintf(line, sizeof line, "{\"i\":%d}\n%s", i, i == 2 ? "\n" : "");
    eddy_buf_append(&f, line, (size_t)n);
  }
  write_file(p, f.data, f.len);
  eddy_buf_free(&f);

  eddy_reader *r = open_r(p, (ropts){0, 0, 0, 0, 0});
  EXPECT(r, "{\"i\":0}");
  EXPECT(r, "{\"i\":1}");
  EXPECT(r, "{\"i\":2}");
  EXPECT(r, "{\"i\":3}");
  uint64_t off = eddy_reader_offset(r), line = eddy_reader_line(r);
  CHECK_EQ_INT(line, 5);
  eddy_reader_close(r);

  /* a new reader resumes there, with the right line numbers */
  r = open_r(p, (ropts){0, 0, 0, 0, 0});
  CHECK_EQ_INT(eddy_reader_seek(r, off, line, NULL), EDDY_OK);
  CHECK_EQ_INT(eddy_reader_offset(r), off);
  CHECK_EQ_INT(eddy_reader_line(r), line);
  EXPECT(r, "{\"i\":4}");
  EXPECT(r, "{\"i\":5}");
  CHECK_EQ_INT(rd(r), EDDY_EFORMAT);
  CHECK(strncmp(rerr.msg + strlen(p), ":8: invalid JSON", 16) == 0);
  EXPECT(r, "{\"i\":7}");
  /* and back to the start */
  CHECK_EQ_INT(eddy_reader_seek(r, 0, 0, NULL), EDDY_OK);
  EXPECT(r, "{\"i\":0}");
  CHECK_EQ_INT(eddy_reader_seek(r, off, line, NULL), EDDY_OK);
  EXPECT(r, "{\"i\":4}");
  eddy_err err;
  CHECK_EQ_INT(eddy_reader_seek(r, 100000, 0, &err), EDDY_EINVAL);
  CHECK(strstr(err.msg, "cannot resume at byte 100000: the file has only") != NULL);
  eddy_reader_close(r);

  /* CSV with header: the header is read again */
  tpath(p, sizeof p, "seek.csv");
  WRITE(p, "\xef\xbb\xbfk,v\n\na,1\nb,\"2\n2\"\nc,3\n");
  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 1, 0, 0, 0});
  EXPECT(r, "{\"k\":\"a\",\"v\":1}");
  EXPECT(r, "{\"k\":\"b\",\"v\":\"2\\n2\"}");
  off = eddy_reader_offset(r);
  line = eddy_reader_line(r);
  CHECK_EQ_INT(line, 5);
  eddy_reader_close(r);
  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 1, 0, 0, 0});
  CHECK_EQ_INT(eddy_reader_seek(r, off, line, NULL), EDDY_OK);
  EXPECT(r, "{\"k\":\"c\",\"v\":3}");
  CHECK_EQ_INT(eddy_reader_line(r), 6);
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  CHECK_EQ_INT(eddy_reader_seek(r, 0, 0, NULL), EDDY_OK);
  EXPECT(r, "{\"k\":\"a\",\"v\":1}");
  CHECK_EQ_INT(eddy_reader_seek(r, 5, 1, &err), EDDY_EINVAL);
  CHECK(strstr(err.msg, "inside the CSV header") != NULL);
  /* right after the header is fine too */
  CHECK_EQ_INT(eddy_reader_seek(r, 7, 1, NULL), EDDY_OK);
  EXPECT(r, "{\"k\":\"a\",\"v\":1}");
  CHECK_EQ_INT(eddy_reader_line(r), 3);
  eddy_reader_close(r);

  /* a bad header found on seek is reported by it and stays */
  tpath(p, sizeof p, "seekdup.csv");
  WRITE(p, "a,a\n1,2\n");
  r = open_r(p, (ropts){EDDY_FORMAT_CSV, 1, 0, 0, 0});
  CHECK_EQ_INT(eddy_reader_seek(r, 4, 1, &err), EDDY_EFORMAT);
  CHECK(strstr(err.msg, ":1: duplicate field name") != NULL);
  CHECK_EQ_INT(rd(r), EDDY_EFORMAT);
  eddy_reader_close(r);
}

static void test_many_lines(void)
{
  /* 200000 lines of varying length: every 64 KiB buffer boundary falls
   * somewhere inside a line */
  char p[512];
  tpath(p, sizeof p, "many.jsonl");
  eddy_buf f = EDDY_BUF_INIT;
  for (int i = 0; i < 200000; i++) {
    char line[128];
    int n = snprintf(line, sizeof line, "{\"i\":%d,\"pad\":\"%.*s\"}%s\n", i,
                     i % 37, "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF",
                     i % 3 ? "" : "\r");
    eddy_buf_append(&f, line, (size_t)n);
  }
  write_file(p, f.data, f.len);
  size_t total = f.len;
  eddy_buf_free(&f);
  eddy_reader *r = open_r(p, (ropts){0, 0, 0, 0, 0});
  eddy_slice rec;
  int i = 0, bad = 0;
  while (eddy_reader_next(r, &rec, NULL) == EDDY_OK) {
    eddy_mp_reader mr;
    eddy_mp_item it;
    eddy_mp_reader_init(&mr, rec.data, rec.len);
    eddy_mp_read(&mr, &it); /* map */
    eddy_mp_read(&mr, &it); /* "i" */
    eddy_mp_read(&mr, &it);
    if (it.type != EDDY_MP_INT || it.v.i != i)
      bad++;
    i++;
  }
  CHECK_EQ_INT(i, 200000);
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(eddy_reader_offset(r), total);
  CHECK_EQ_INT(eddy_reader_line(r), 200000);
  eddy_reader_close(r);
}

static eddy_reader *open_fd(int fd, const char *name, eddy_format_kind k)
{
  eddy_reader_config cfg;
  eddy_reader_config_init(&cfg);
  cfg.fd = fd;
  cfg.name = name;
  cfg.format = k;
  eddy_reader *r = NULL;
  CHECK_EQ_INT(eddy_reader_open(&cfg, &r, NULL), EDDY_OK);
  return r;
}

static void test_pipe(void)
{
  int fds[2];
  CHECK_EQ_INT(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    /* 1 MB through the pipe, in odd-sized writes */
    close(fds[0]);
    char line[64];
    for (int i = 0; i < 50000; i++) {
      int n = snprintf(line, sizeof line, "line %d of the pipe\n", i);
      if (write(fds[1], line, (size_t)n) != n)
        _exit(1);
    }
    if (write(fds[1], "tail", 4) != 4)
      _exit(1);
    _exit(0);
  }
  close(fds[1]);
  eddy_reader *r = open_fd(fds[0], "<stdin>", EDDY_FORMAT_LINES);
  CHECK_EQ_STR(eddy_reader_name(r), "<stdin>");
  int n = 0;
  while (rd(r) == EDDY_OK) {
    char want[64];
    snprintf(want, sizeof want, n < 50000 ? "\"line %d of the pipe\"" : "\"tail\"", n);
    if (strcmp(text, want) != 0) {
      CHECK_EQ_STR(text, want);
      break;
    }
    n++;
  }
  CHECK_EQ_INT(n, 50001);
  CHECK_EQ_INT(rerr.code, EDDY_EEOF);
  eddy_err err;
  CHECK_EQ_INT(eddy_reader_seek(r, 0, 0, &err), EDDY_EUNSUPPORTED);
  CHECK_EQ_STR(err.msg, "<stdin>: cannot resume at an offset: Illegal seek");
  eddy_reader_close(r);
  /* the reader does not close a descriptor it was given */
  CHECK_EQ_INT(fcntl(fds[0], F_GETFD), FD_CLOEXEC & 0);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  /* default names for descriptors */
  CHECK_EQ_INT(pipe(fds), 0);
  r = open_fd(fds[0], NULL, EDDY_FORMAT_JSONL);
  char want[32];
  snprintf(want, sizeof want, "<fd %d>", fds[0]);
  CHECK_EQ_STR(eddy_reader_name(r), want);
  CHECK_EQ_INT(write(fds[1], "{\"a\":\n", 6), 6);
  close(fds[1]);
  CHECK_EQ_INT(rd(r), EDDY_EFORMAT);
  CHECK(strncmp(rerr.msg, want, strlen(want)) == 0);
  CHECK(strstr(rerr.msg, ":1: invalid JSON") != NULL);
  eddy_reader_close(r);
  close(fds[0]);
}

static void on_alarm_interrupt(int sig)
{
  (void)sig;
  eddy_interrupt_request();
}

static void on_alarm_quiet(int sig) { (void)sig; }

static void arm(void (*handler)(int), long usec)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: read(2) returns EINTR */
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it;
  memset(&it, 0, sizeof it);
  it.it_value.tv_usec = usec;
  setitimer(ITIMER_REAL, &it, NULL);
}

static void test_interrupt(void)
{
  int fds[2];
  CHECK_EQ_INT(pipe(fds), 0);
  eddy_reader *r = open_fd(fds[0], "<stdin>", EDDY_FORMAT_JSONL);
  /* Ctrl-C while blocked in read: EDDY_EINTR */
  eddy_interrupt_clear();
  arm(on_alarm_interrupt, 50000);
  CHECK_EQ_INT(rd(r), EDDY_EINTR);
  CHECK_EQ_STR(rerr.msg, "<stdin>: interrupted");
  eddy_interrupt_clear();
  /* after which the reader goes on */
  CHECK_EQ_INT(write(fds[1], "{\"a\":", 5), 5);
  arm(on_alarm_interrupt, 50000);
  CHECK_EQ_INT(rd(r), EDDY_EINTR); /* in the middle of a line */
  eddy_interrupt_clear();
  CHECK_EQ_INT(write(fds[1], "1}\n", 3), 3);
  EXPECT(r, "{\"a\":1}");

  /* a signal that is not an interrupt: read again */
  pid_t pid = fork();
  if (pid == 0) {
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    _exit(write(fds[1], "2\n", 2) == 2 ? 0 : 1);
  }
  arm(on_alarm_quiet, 50000);
  EXPECT(r, "2");
  int status;
  waitpid(pid, &status, 0);
  signal(SIGALRM, SIG_DFL);
  close(fds[1]);
  CHECK_EQ_INT(rd(r), EDDY_EEOF);
  eddy_reader_close(r);
  close(fds[0]);
}

/* ---- the writer ---- */

static eddy_writer *open_w(const char *dir, eddy_format_kind k, int subtask,
                           size_t bufsize)
{
  eddy_writer_config cfg;
  eddy_writer_config_init(&cfg);
  cfg.dir = dir;
  cfg.format = k;
  cfg.subtask = subtask;
  cfg.buffer_size = bufsize;
  eddy_writer *w = NULL;
  eddy_err err = {0, ""};
  int rc = eddy_writer_open(&cfg, &w, &err);
  CHECK_EQ_INT(rc, EDDY_OK);
  if (rc != EDDY_OK)
    fprintf(stderr, "  writer: %s\n", err.msg);
  return w;
}

static int write_json_rec(eddy_writer *w, const char *json, eddy_err *err)
{
  eddy_buf rec = EDDY_BUF_INIT;
  int rc = eddy_format_read_json(json, strlen(json), &rec, err);
  CHECK_EQ_INT(rc, EDDY_OK);
  rc = eddy_writer_write(w, rec.data, rec.len, err);
  eddy_buf_free(&rec);
  return rc;
}

static void check_file(const char *path, const char *want)
{
  size_t len = 0;
  char *got = read_whole(path, &len);
  CHECK(got != NULL);
  if (got != NULL)
    CHECK_EQ_STR(got, want);
  free(got);
}

static void test_writer(void)
{
  char dir[512], p[600];
  eddy_err err;
  tpath(dir, sizeof dir, "out/a/b");
  eddy_writer *w = open_w(dir, EDDY_FORMAT_JSONL, 0, 0);
  CHECK(eddy_writer_path(w) == NULL);
  CHECK_EQ_INT(eddy_writer_close(w, &err), EDDY_OK);
  snprintf(p, sizeof p, "%s/part-0-0", dir);
  CHECK(access(p, F_OK) != 0); /* no record, no file */

  w = open_w(dir, EDDY_FORMAT_JSONL, 0, 0);
  CHECK_EQ_INT(write_json_rec(w, "{\"b\":2,\"a\":1.0}", &err), EDDY_OK);
  CHECK_EQ_STR(eddy_writer_path(w), p);
  CHECK_EQ_INT(eddy_writer_write(w, "\xcb\x7f\xf8\0\0\0\0\0\0", 9, &err), EDDY_EFORMAT);
  CHECK_EQ_STR(err.msg, "cannot write NaN as JSON");
  CHECK_EQ_INT(write_json_rec(w, "[\"s\"]", &err), EDDY_OK);
  CHECK_EQ_INT(eddy_writer_flush(w, &err), EDDY_OK);
  check_file(p, "{\"a\":1.0,\"b\":2}\n[\"s\"]\n");
  CHECK_EQ_INT(eddy_writer_records(w), 2);
  CHECK_EQ_INT(eddy_writer_close(w, &err), EDDY_OK);
  check_file(p, "{\"a\":1.0,\"b\":2}\n[\"s\"]\n");

  /* a second run adds part-0-1; other subtasks count on their own; hidden
   * (uncommitted) names count too */
  w = open_w(dir, EDDY_FORMAT_LINES, 0, 0);
  CHECK_EQ_INT(write_json_rec(w, "\"hello\"", &err), EDDY_OK);
  snprintf(p, sizeof p, "%s/part-0-1", dir);
  CHECK_EQ_STR(eddy_writer_path(w), p);
  CHECK_EQ_INT(eddy_writer_close(w, &err), EDDY_OK);
  check_file(p, "hello\n");
  snprintf(p, sizeof p, "%s/.part-3-7.inprogress", dir);
  write_file(p, "", 0);
  snprintf(p, sizeof p, "%s/part-3-x", dir);
  write_file(p, "", 0);
  w = open_w(dir, EDDY_FORMAT_LINES, 3, 0);
  CHECK_EQ_INT(write_json_rec(w, "1", &err), EDDY_OK);
  snprintf(p, sizeof p, "%s/part-3-8", dir);
  CHECK_EQ_STR(eddy_writer_path(w), p);
  CHECK_EQ_INT(eddy_writer_close(w, &err), EDDY_OK);

  /* CSV: each part file has its header; a small buffer flushes often */
  tpath(dir, sizeof dir, "csvout");
  w = open_w(dir, EDDY_FORMAT_CSV, 1, 16);
  for (int i = 0; i < 1000; i++) {
    char json[64];
    snprintf(json, sizeof json, "{\"n\":%d,\"s\":\"v,%d\"}", i, i);
    CHECK_EQ_INT(write_json_rec(w, json, &err), EDDY_OK);
  }
  CHECK_EQ_INT(eddy_writer_roll(w, &err), EDDY_OK);
  CHECK_EQ_INT(eddy_writer_roll(w, &err), EDDY_OK); /* nothing open: no-op */
  CHECK_EQ_INT(write_json_rec(w, "{\"s\":\"last\"}", &err), EDDY_OK);
  CHECK_EQ_INT(eddy_writer_files(w), 2);
  CHECK_EQ_INT(eddy_writer_close(w, &err), EDDY_OK);
  snprintf(p, sizeof p, "%s/part-1-1", dir);
  check_file(p, "n,s\n,last\n");

  /* and the reader reads it back as the same records */
  snprintf(p, sizeof p, "%s/part-1-0", dir);
  eddy_reader *r = open_r(p, (ropts){EDDY_FORMAT_CSV, 1, 0, 0, 0});
  int n = 0;
  while (rd(r) == EDDY_OK) {
    char want[64];
    snprintf(want, sizeof want, "{\"n\":%d,\"s\":\"v,%d\"}", n, n);
    if (strcmp(text, want) != 0) {
      CHECK_EQ_STR(text, want);
      break;
    }
    n++;
  }
  CHECK_EQ_INT(n, 1000);
  eddy_reader_close(r);

  /* a folder that cannot be one */
  tpath(p, sizeof p, "plainfile");
  write_file(p, "", 0);
  eddy_writer_config cfg;
  eddy_writer_config_init(&cfg);
  cfg.dir = p;
  CHECK_EQ_INT(eddy_writer_open(&cfg, &w, &err), EDDY_EIO);
  CHECK_EQ_STR(err.msg, at(p, ": Not a directory"));
  char sub[700];
  snprintf(sub, sizeof sub, "%s/below", p);
  cfg.dir = sub;
  CHECK_EQ_INT(eddy_writer_open(&cfg, &w, &err), EDDY_EIO);
  CHECK(strstr(err.msg, "Not a directory") != NULL);
  cfg.dir = NULL;
  CHECK_EQ_INT(eddy_writer_open(&cfg, &w, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_writer_close(NULL, &err), EDDY_OK);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void test_teardown(void)
{
  CHECK_EQ_INT(nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
  CHECK(access(tmpdir, F_OK) != 0);
}

TEST_MAIN("reader",
          TEST(test_setup),
          TEST(test_open_errors),
          TEST(test_empty_input),
          TEST(test_jsonl),
          TEST(test_malformed_and_skip),
          TEST(test_bom_crlf),
          TEST(test_bytes_pass_through),
          TEST(test_long_lines),
          TEST(test_csv),
          TEST(test_seek),
          TEST(test_many_lines),
          TEST(test_pipe),
          TEST(test_interrupt),
          TEST(test_writer),
          TEST(test_teardown))
