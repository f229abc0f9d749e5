/*
 * Native checkpoints of the RocksDB backend (incremental checkpoints,
 * SEMANTICS.md section 10): a checkpoint folder that stays as it was while
 * the backend goes on; restoring it as a whole database (the same key
 * groups), into RocksDB backends of smaller ranges (rescaled: only their
 * key groups' rows), and into a heap backend row by row; every state kind,
 * namespaces, and what a restored backend does next (writes, map rows
 * replaced). Then the errors: another backend, a folder that is not a
 * checkpoint, rows of a state nobody registered.
 */
#include "test.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state/backend.h"
#include "util/buf.h"
#include "util/msgpack.h"

#define MAXP 128

static eddy_backend *rocks(const char *dir, int first, int last)
{
  eddy_backend_config cfg = {MAXP, first, last};
  eddy_rocksdb_config rc;
  eddy_rocksdb_config_init(&rc);
  rc.dir = dir;
  eddy_backend *b = NULL;
  eddy_err err;
  int r = eddy_rocksdb_backend_new(&cfg, &rc, &b, &err);
  CHECK_EQ_INT(r, EDDY_OK);
  if (r != EDDY_OK)
    fprintf(stderr, "rocksdb: %s\n", err.msg);
  return b;
}

static eddy_backend *heap(int first, int last)
{
  eddy_backend_config cfg = {MAXP, first, last};
  eddy_backend *b = NULL;
  eddy_err err;
  CHECK_EQ_INT(eddy_heap_backend_new(&cfg, &b, &err), EDDY_OK);
  return b;
}

/* ---- state: every kind, keys over every key group ---- */

typedef struct enc {
  unsigned char data[64];
  size_t len;
} enc;

static enc mp_int(int64_t v)
{
  eddy_buf b = EDDY_BUF_INIT;
  eddy_mp_write_int(&b, v);
  enc e;
  memcpy(e.data, b.data, b.len);
  e.len = b.len;
  eddy_buf_free(&b);
  return e;
}

enum { VALUE, LIST, MAP, NSTATES };
static const char *const names[NSTATES] = {"v", "l", "m"};
static const eddy_state_kind kinds[NSTATES] = {EDDY_STATE_VALUE, EDDY_STATE_LIST,
                                               EDDY_STATE_MAP};

static void register_all(eddy_backend *b)
{
  for (int s = 0; s < NSTATES; s++) {
    uint32_t id;
    CHECK_EQ_INT(eddy_backend_register(b, names[s], kinds[s], &id), EDDY_OK);
  }
}

static uint32_t id_of(eddy_backend *b, const char *name)
{
  for (uint32_t i = 0; i < eddy_backend_state_count(b); i++)
    if (strcmp(eddy_backend_state_name(b, i), name) == 0)
      return i;
  return UINT32_MAX;
}

/* Key k's row of state s (key group k % MAXP), with namespace ns (< 0:
 * none); the encodings live in the statics. */
static eddy_row row_of(eddy_backend *b, int s, int k, int ns)
{
  static enc key, nsv;
  key = mp_int(k);
  nsv = mp_int(ns);
  eddy_row r = {id_of(b, names[s]), k % MAXP, key.data, key.len, nsv.data,
                ns < 0 ? 0 : nsv.len};
  return r;
}

/* Fills b's key groups with keys 0..n-1 of version ver. */
static void fill(eddy_backend *b, int n, int ver)
{
  int first, last, maxp;
  eddy_backend_key_groups(b, &maxp, &first, &last);
  for (int k = 0; k < n; k++) {
    if (k % MAXP < first || k % MAXP > last)
      continue;
    enc v = mp_int(k * 1000 + ver);
    eddy_row r = row_of(b, VALUE, k, k % 3 == 0 ? 7 : -1);
    CHECK_EQ_INT(eddy_backend_put(b, &r, v.data, v.len), EDDY_OK);
    r = row_of(b, LIST, k, -1);
    CHECK_EQ_INT(eddy_backend_list_append(b, &r, v.data, v.len), EDDY_OK);
    r = row_of(b, MAP, k, -1);
    enc uk = mp_int(ver), uk2 = mp_int(k % 5);
    CHECK_EQ_INT(eddy_backend_map_put(b, &r, uk.data, uk.len, v.data, v.len), EDDY_OK);
    CHECK_EQ_INT(eddy_backend_map_put(b, &r, uk2.data, uk2.len, v.data, v.len), EDDY_OK);
  }
}

/* Every row of b, in key-group range first..last, as text lines. */
static char *dump(eddy_backend *b, int first, int last)
{
  eddy_buf out = EDDY_BUF_INIT;
  for (int s = 0; s < NSTATES; s++) {
    uint32_t id = id_of(b, names[s]);
    if (id == UINT32_MAX)
      continue;
    eddy_backend_cursor *c;
    CHECK_EQ_INT(eddy_backend_cursor_open(b, id, &c), EDDY_OK);
    eddy_row r;
    eddy_slice v;
    while (eddy_backend_cursor_next(c, &r, &v) == EDDY_OK) {
      if (r.key_group < first || r.key_group > last)
        continue;
      char line[64];
      snprintf(line, sizeof line, "%s kg%d k%zu ns%zu:", names[s], r.key_group, r.key_len,
               r.ns_len);
      eddy_buf_append(&out, line, strlen(line));
      for (size_t i = 0; i < r.key_len + r.ns_len; i++) {
        snprintf(line, sizeof line, "%02x",
                 i < r.key_len ? ((const unsigned char *)r.key)[i]
                               : ((const unsigned char *)r.ns)[i - r.key_len]);
        eddy_buf_append(&out, line, 2);
      }
      eddy_buf_append(&out, "=", 1);
      for (size_t i = 0; i < v.len; i++) {
        snprintf(line, sizeof line, "%02x", ((const unsigned char *)v.data)[i]);
        eddy_buf_append(&out, line, 2);
      }
      eddy_buf_append(&out, "\n", 1);
    }
    eddy_backend_cursor_close(c);
  }
  eddy_buf_append(&out, "", 1);
  return (char *)out.data;
}

static int count_sst(const char *dir)
{
  int n = 0;
  DIR *d = opendir(dir);
  struct dirent *de;
  while (d != NULL && (de = readdir(d)) != NULL) {
    size_t l = strlen(de->d_name);
    n += l > 4 && strcmp(de->d_name + l - 4, ".sst") == 0;
  }
  if (d != NULL)
    closedir(d);
  return n;
}

/* A copy of the folder (the runtime would put the files elsewhere first). */
static char *copy_folder(const char *from, const char *to)
{
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", from, to);
  CHECK(system(cmd) == 0);
  return strdup(to);
}

/* ---- tests ---- */

static void test_checkpoint_and_restore(void)
{
  char *dir = test_tmpdir();
  eddy_err err;
  eddy_backend *b = rocks(dir, 0, MAXP - 1);
  register_all(b);
  fill(b, 2000, 1);
  char *want = dump(b, 0, MAXP - 1);
  char *chk = NULL;
  CHECK_EQ_INT(eddy_rocksdb_checkpoint(b, 7, &chk, &err), EDDY_OK);
  CHECK(chk != NULL && strstr(chk, "/chk-7") != NULL);
  CHECK(count_sst(chk) >= 1);
  char cur[4200];
  snprintf(cur, sizeof cur, "%s/CURRENT", chk);
  CHECK(access(cur, F_OK) == 0);
  /* the folder stays as it was while the backend goes on */
  fill(b, 2000, 2);
  char *save = NULL;
  char keep[4200];
  snprintf(keep, sizeof keep, "%s/kept", dir);
  save = copy_folder(chk, keep);

  /* the same key groups: the folder becomes the database */
  char *dir2 = test_tmpdir();
  eddy_backend *r = rocks(dir2, 0, MAXP - 1);
  char moved[4200];
  snprintf(moved, sizeof moved, "%s/restore-0", eddy_rocksdb_backend_path(r));
  char *src = copy_folder(keep, moved);
  eddy_rocksdb_native one = {src, 0, MAXP - 1};
  int adopted = 9;
  CHECK_EQ_INT(eddy_rocksdb_restore_native(r, &one, 1, NULL, &adopted, &err), EDDY_OK);
  CHECK_EQ_INT(adopted, 0);
  CHECK(access(src, F_OK) != 0); /* moved */
  register_all(r);
  char *got = dump(r, 0, MAXP - 1);
  CHECK_EQ_STR(got, want);
  free(got);
  /* it goes on like any backend: a map row replaced by a restore drops its
   * old entries (they were there before the restore_row) */
  eddy_row mr = row_of(r, MAP, 5, -1);
  enc uk = mp_int(42), v = mp_int(1);
  CHECK_EQ_INT(eddy_backend_restore_row(r, &mr, "\x2a\x01", 2), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_restore_done(r), EDDY_OK);
  eddy_slice entries;
  CHECK_EQ_INT(eddy_backend_map_entries(r, &mr, &entries), EDDY_OK);
  CHECK_MEM(entries.data, entries.len, "\x2a\x01", 2);
  CHECK_EQ_INT(eddy_backend_map_put(r, &mr, uk.data, uk.len, v.data, v.len), EDDY_OK);
  eddy_row lr = row_of(r, LIST, 5, -1);
  CHECK_EQ_INT(eddy_backend_list_append(r, &lr, v.data, v.len), EDDY_OK);
  eddy_slice elems;
  CHECK_EQ_INT(eddy_backend_list_get(r, &lr, &elems), EDDY_OK);
  CHECK(elems.len > v.len);
  /* and takes native checkpoints of its own */
  char *chk2 = NULL;
  CHECK_EQ_INT(eddy_rocksdb_checkpoint(r, 8, &chk2, &err), EDDY_OK);
  free(chk2);
  free(src);
  eddy_backend_destroy(r);

  /* a state registered before the restore keeps its id */
  r = rocks(dir2, 0, MAXP - 1);
  uint32_t lid;
  CHECK_EQ_INT(eddy_backend_register(r, "l", EDDY_STATE_LIST, &lid), EDDY_OK);
  snprintf(moved, sizeof moved, "%s/restore-0", eddy_rocksdb_backend_path(r));
  src = copy_folder(keep, moved);
  one.dir = src;
  CHECK_EQ_INT(eddy_rocksdb_restore_native(r, &one, 1, NULL, &adopted, &err), EDDY_OK);
  register_all(r);
  CHECK_EQ_INT(id_of(r, "l"), lid);
  got = dump(r, 0, MAXP - 1);
  CHECK_EQ_STR(got, want);
  free(got);
  free(src);
  eddy_backend_destroy(r);

  /* rescaled: two backends of half the key groups each take the whole
   * database as their base and delete the other half's rows */
  for (int half = 0; half < 2; half++) {
    int first = half ? MAXP / 2 : 0, last = half ? MAXP - 1 : MAXP / 2 - 1;
    r = rocks(dir2, first, last);
    char to[4200];
    snprintf(to, sizeof to, "%s/base-%d", dir, half);
    char *base = copy_folder(keep, to);
    eddy_rocksdb_native src1 = {base, 0, MAXP - 1};
    CHECK_EQ_INT(eddy_rocksdb_restore_native(r, &src1, 1, NULL, &adopted, &err), EDDY_OK);
    CHECK_EQ_INT(adopted, 0);
    CHECK(access(base, F_OK) != 0); /* moved: it is the database now */
    free(base);
    register_all(r);
    got = dump(r, first, last);
    char *want_half = dump(r, 0, MAXP - 1); /* nothing outside */
    CHECK_EQ_STR(got, want_half);
    free(want_half);
    /* the rows of its range, exactly */
    eddy_backend *h = heap(first, last);
    register_all(h);
    CHECK_EQ_INT(eddy_rocksdb_native_rows(keep, h, NULL, &err), EDDY_OK);
    char *from_heap = dump(h, first, last);
    CHECK_EQ_STR(got, from_heap);
    CHECK(strlen(got) > 100);
    free(from_heap);
    free(got);
    eddy_backend_destroy(h);
    eddy_backend_destroy(r);
  }

  /* two halves merged back into one of every key group */
  char *halves[2];
  for (int half = 0; half < 2; half++) {
    int first = half ? MAXP / 2 : 0, last = half ? MAXP - 1 : MAXP / 2 - 1;
    eddy_backend *hb = rocks(dir2, first, last);
    register_all(hb);
    fill(hb, 2000, 1);
    CHECK_EQ_INT(eddy_rocksdb_checkpoint(hb, 3, &halves[half], &err), EDDY_OK);
    char to[4200];
    snprintf(to, sizeof to, "%s/half-%d", dir, half);
    char *c = copy_folder(halves[half], to);
    free(halves[half]);
    halves[half] = c;
    eddy_backend_destroy(hb);
  }
  r = rocks(dir2, 0, MAXP - 1);
  eddy_rocksdb_native two[2] = {{halves[0], 0, MAXP / 2 - 1}, {halves[1], MAXP / 2, MAXP - 1}};
  CHECK_EQ_INT(eddy_rocksdb_restore_native(r, two, 2, NULL, &adopted, &err), EDDY_OK);
  CHECK_EQ_INT(adopted, 0); /* the first half is the base, the second copied in */
  CHECK(access(halves[0], F_OK) != 0);
  CHECK(access(halves[1], F_OK) == 0);
  register_all(r);
  got = dump(r, 0, MAXP - 1);
  CHECK_EQ_STR(got, want);
  free(got);
  eddy_backend_destroy(r);

  /* into a heap backend of every key group */
  eddy_backend *h = heap(0, MAXP - 1);
  register_all(h);
  CHECK_EQ_INT(eddy_rocksdb_native_rows(keep, h, NULL, &err), EDDY_OK);
  got = dump(h, 0, MAXP - 1);
  CHECK_EQ_STR(got, want);
  free(got);
  eddy_backend_destroy(h);

  /* errors: another backend; rows of a state nobody registered; a folder
   * that is not a checkpoint */
  h = heap(0, MAXP - 1);
  char *nothing = NULL;
  CHECK_EQ_INT(eddy_rocksdb_checkpoint(h, 1, &nothing, &err), EDDY_EINVAL);
  CHECK(nothing == NULL);
  CHECK_EQ_INT(eddy_rocksdb_restore_native(h, &one, 1, NULL, &adopted, &err), EDDY_EINVAL);
  uint32_t id;
  CHECK_EQ_INT(eddy_backend_register(h, "v", EDDY_STATE_VALUE, &id), EDDY_OK);
  CHECK_EQ_INT(eddy_rocksdb_native_rows(keep, h, NULL, &err), EDDY_ECORRUPT);
  CHECK(strstr(err.msg, "holds rows of state 'l', which its canonical part does not "
                        "register") != NULL);
  eddy_backend_destroy(h);
  h = heap(0, MAXP - 1);
  CHECK_EQ_INT(eddy_rocksdb_native_rows(dir2, h, NULL, &err), EDDY_ECORRUPT);
  CHECK(strstr(err.msg, "cannot be read") != NULL);
  eddy_backend_destroy(h);

  for (int i = 0; i < 2; i++)
    free(halves[i]);
  free(save);
  free(want);
  free(chk);
  eddy_backend_destroy(b);
  test_rmdir(dir2);
  test_rmdir(dir);
}

/* Checkpoints taken while writing on: each folder holds the state as it
 * was, and later ones share the SST files of earlier ones (the same file
 * name, the same bytes). */
static void test_checkpoints_share_files(void)
{
  char *dir = test_tmpdir();
  eddy_err err;
  eddy_backend *b = rocks(dir, 0, MAXP - 1);
  register_all(b);
  char *wants[3], *chks[3];
  for (int i = 0; i < 3; i++) {
    fill(b, 500 + 100 * i, i);
    wants[i] = dump(b, 0, MAXP - 1);
    CHECK_EQ_INT(eddy_rocksdb_checkpoint(b, i + 1, &chks[i], &err), EDDY_OK);
  }
  /* the files of the first are in the third too (no compaction yet) */
  DIR *d = opendir(chks[0]);
  struct dirent *de;
  int shared = 0;
  while (d != NULL && (de = readdir(d)) != NULL) {
    size_t l = strlen(de->d_name);
    if (l < 5 || strcmp(de->d_name + l - 4, ".sst") != 0)
      continue;
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", chks[2], de->d_name);
    shared += access(p, F_OK) == 0;
  }
  if (d != NULL)
    closedir(d);
  CHECK(shared >= 1);
  for (int i = 0; i < 3; i++) {
    eddy_backend *h = heap(0, MAXP - 1);
    register_all(h);
    CHECK_EQ_INT(eddy_rocksdb_native_rows(chks[i], h, NULL, &err), EDDY_OK);
    char *got = dump(h, 0, MAXP - 1);
    CHECK_EQ_STR(got, wants[i]);
    free(got);
    eddy_backend_destroy(h);
    free(wants[i]);
    free(chks[i]);
  }
  eddy_backend_destroy(b);
  test_rmdir(dir);
}

TEST_MAIN("native", TEST(test_checkpoint_and_restore), TEST(test_checkpoints_share_files))
