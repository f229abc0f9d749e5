/*
 * The RocksDB backend: the whole backend suite of test_heap.c (included
 * below), then what is RocksDB's own: the row-key encoding and its order,
 * the working folder (made, locked, cleaned, removed), the options and
 * predefined profiles as RocksDB sees them in its OPTIONS file, and the
 * errors a user can cause (a folder that cannot be written, one another
 * backend holds, a disk that fills up, keys that cannot be stored), each a
 * one-line message that says what and where.
 */
#define SUITE_ROCKSDB 1
#define SUITE_EXTRA_TESTS                                                       \
  , TEST(test_rowkey_layout), TEST(test_rowkey_order), TEST(test_rowkey_parse), \
      TEST(test_folders), TEST(test_named_folder), TEST(test_unwritable),         \
      TEST(test_options_file), TEST(test_bounded_memory), TEST(test_bad_keys),       \
      TEST(test_state_named_default), TEST(test_out_of_space)

static void test_rowkey_layout(void);
static void test_rowkey_order(void);
static void test_rowkey_parse(void);
static void test_folders(void);
static void test_named_folder(void);
static void test_unwritable(void);
static void test_options_file(void);
static void test_bounded_memory(void);
static void test_bad_keys(void);
static void test_state_named_default(void);
static void test_out_of_space(void);

#include "test_heap.c"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state/rowkey.h"

/* ---- the row key ---- */

static void test_rowkey_layout(void)
{
  eddy_buf rk = EDDY_BUF_INIT;
  enc key = mp_str("ab"), ns = mp_window(1, 2);
  CHECK_EQ_INT(eddy_rowkey_prefix(&rk, 0x1234, key.data, key.len, NULL, 0), EDDY_OK);
  CHECK_MEM(rk.data, rk.len, "\x12\x34\xa2" "ab\x00", 6);
  CHECK_EQ_INT(eddy_rowkey_prefix(&rk, 5, key.data, key.len, ns.data, ns.len), EDDY_OK);
  CHECK_MEM(rk.data, rk.len, "\x00\x05\xa2" "ab\x01\x92\x01\x02", 9);
  /* the largest key group, 2^15 - 1 */
  enc one = mp_int(1);
  CHECK_EQ_INT(eddy_rowkey_prefix(&rk, 32767, one.data, one.len, NULL, 0), EDDY_OK);
  CHECK_MEM(rk.data, rk.len, "\x7f\xff\x01\x00", 4);

  /* successors bound prefix seeks */
  unsigned char p[4] = {0x00, 0x05, 0xa1, 0xff};
  CHECK_EQ_INT(eddy_rowkey_successor(p, 4), 3);
  CHECK_MEM(p, 3, "\x00\x05\xa2", 3);
  unsigned char q[2] = {0xff, 0xff};
  CHECK_EQ_INT(eddy_rowkey_successor(q, 2), 0);

  CHECK(eddy_rowkey_is_value(key.data, key.len));
  CHECK(!eddy_rowkey_is_value(key.data, key.len - 1)); /* cut */
  CHECK(!eddy_rowkey_is_value("\x01\x02", 2));         /* two values */
  CHECK(!eddy_rowkey_is_value("", 0));
  CHECK(!eddy_rowkey_is_value("\xc1", 1)); /* never used in MessagePack */
  eddy_buf_free(&rk);
}

static int cmp_bytes(const void *x, const void *y)
{
  const eddy_buf *a = x, *b = y;
  return eddy_mp_compare(a->data, a->len, b->data, b->len);
}

/* Row keys sort as (key group, key, namespace, user key), each bytewise,
 * with no namespace first: the order the heap backend's cursors give. */
static void test_rowkey_order(void)
{
  enum { NG = 3, NK = 6, NN = 4, NU = 3 };
  static const int groups[NG] = {0, 1, 300};
  enc keys[NK] = {mp_int(0), mp_int(1), mp_int(-1), mp_int(300), mp_str(""), mp_str("a")};
  enc nss[NN] = {{{0}, 0}, mp_int(0), mp_window(0, 10), mp_str("w")};
  enc uks[NU] = {mp_int(2), mp_str("k"), mp_int(-100)};
  enum { N = NG * NK * NN * NU };
  static eddy_buf rks[N];
  static want_row rows[N];
  int n = 0;
  for (int g = 0; g < NG; g++)
    for (int k = 0; k < NK; k++)
      for (int w = 0; w < NN; w++)
        for (int u = 0; u < NU; u++) {
          eddy_buf_init(&rks[n]);
          CHECK_EQ_INT(eddy_rowkey_prefix(&rks[n], groups[g], keys[k].data, keys[k].len,
                                          nss[w].data, nss[w].len), EDDY_OK);
          CHECK_EQ_INT(eddy_buf_append(&rks[n], uks[u].data, uks[u].len), EDDY_OK);
          /* the address in the heap's order: the user key as the value */
          rows[n] = (want_row){groups[g], keys[k], nss[w], uks[u]};
          n++;
        }
  /* sort both ways: the same permutation */
  int idx[N];
  for (int i = 0; i < N; i++)
    idx[i] = i;
  for (int i = 1; i < N; i++)
    for (int j = i; j > 0; j--) {
      const eddy_buf *a = &rks[idx[j - 1]], *b = &rks[idx[j]];
      if (cmp_bytes(a, b) <= 0)
        break;
      int t = idx[j];
      idx[j] = idx[j - 1];
      idx[j - 1] = t;
    }
  int disorder = 0;
  for (int i = 1; i < N; i++) {
    const want_row *a = &rows[idx[i - 1]], *b = &rows[idx[i]];
    int c = cmp_want(a, b);
    if (c == 0)
      c = eddy_mp_compare(a->value.data, a->value.len, b->value.data, b->value.len);
    disorder += c >= 0;
  }
  CHECK_EQ_INT(disorder, 0);
  for (int i = 0; i < N; i++)
    eddy_buf_free(&rks[i]);
}

static void test_rowkey_parse(void)
{
  eddy_buf rk = EDDY_BUF_INIT;
  enc key = mp_str("user"), ns = mp_window(5, 6), uk = mp_int(-7);
  eddy_rowkey p;
  CHECK_EQ_INT(eddy_rowkey_prefix(&rk, 77, key.data, key.len, ns.data, ns.len), EDDY_OK);
  size_t plen = rk.len;
  CHECK_EQ_INT(eddy_rowkey_parse(rk.data, rk.len, 0, &p), EDDY_OK);
  CHECK_EQ_INT(p.key_group, 77);
  CHECK_MEM(p.key.data, p.key.len, key.data, key.len);
  CHECK_MEM(p.ns.data, p.ns.len, ns.data, ns.len);
  CHECK_EQ_INT(p.prefix_len, plen);
  CHECK_EQ_INT(p.ukey.len, 0);
  /* a value row's key is not a map entry's, and the other way round */
  CHECK_EQ_INT(eddy_rowkey_parse(rk.data, rk.len, 1, &p), EDDY_ECORRUPT);
  CHECK_EQ_INT(eddy_buf_append(&rk, uk.data, uk.len), EDDY_OK);
  CHECK_EQ_INT(eddy_rowkey_parse(rk.data, rk.len, 1, &p), EDDY_OK);
  CHECK_MEM(p.ukey.data, p.ukey.len, uk.data, uk.len);
  CHECK_EQ_INT(p.prefix_len, plen);
  CHECK_EQ_INT(eddy_rowkey_parse(rk.data, rk.len, 0, &p), EDDY_ECORRUPT);
  /* no namespace */
  CHECK_EQ_INT(eddy_rowkey_prefix(&rk, 0, key.data, key.len, NULL, 0), EDDY_OK);
  CHECK_EQ_INT(eddy_rowkey_parse(rk.data, rk.len, 0, &p), EDDY_OK);
  CHECK_EQ_INT(p.ns.len, 0);
  CHECK(p.ns.data != NULL); /* an empty slice, but one that memcmp may take */
  /* what eddy never writes */
  CHECK_EQ_INT(eddy_rowkey_parse("\x00\x01", 2, 0, &p), EDDY_ECORRUPT);
  CHECK_EQ_INT(eddy_rowkey_parse("\x00\x01\x05\x02", 4, 0, &p), EDDY_ECORRUPT); /* marker */
  CHECK_EQ_INT(eddy_rowkey_parse("\x00\x01\xa5" "ab\x00", 6, 0, &p), EDDY_ECORRUPT);
  CHECK_EQ_INT(eddy_rowkey_parse("\x00\x01\x05\x00\x07", 5, 0, &p), EDDY_ECORRUPT);
  CHECK_EQ_INT(eddy_rowkey_parse("\x00\x01\x05\x01", 4, 0, &p), EDDY_ECORRUPT);
  CHECK_EQ_INT(eddy_rowkey_parse("\x00\x01\x05\x00", 4, 1, &p), EDDY_ECORRUPT);
  eddy_buf_free(&rk);
}

/* ---- the working folder ---- */

static char test_dir[] = "/tmp/eddy-test-rocksdb-XXXXXX";

static const char *scratch(void)
{
  static int made;
  if (!made) {
    CHECK(mkdtemp(test_dir) != NULL);
    made = 1;
  }
  return test_dir;
}

static int exists(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0;
}

static int entries_in(const char *dir)
{
  DIR *d = opendir(dir);
  if (d == NULL)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  closedir(d);
  return n;
}

static eddy_backend *open_in(const char *dir, const char *name, eddy_err *err)
{
  eddy_backend_config cfg = {MAXP, 0, MAXP - 1};
  eddy_rocksdb_config rc;
  eddy_rocksdb_config_init(&rc);
  rc.dir = dir;
  rc.name = name;
  eddy_backend *b = NULL;
  if (eddy_rocksdb_backend_new(&cfg, &rc, &b, err) != EDDY_OK)
    return NULL;
  return b;
}

static void test_folders(void)
{
  char dir[512];
  snprintf(dir, sizeof dir, "%s/made/on/demand", scratch());
  eddy_err err = {0, ""};
  eddy_backend *a = open_in(dir, NULL, &err), *b = open_in(dir, NULL, &err);
  CHECK(a != NULL && b != NULL);
  if (a == NULL || b == NULL)
    return;
  const char *pa = eddy_rocksdb_backend_path(a), *pb = eddy_rocksdb_backend_path(b);
  CHECK(strncmp(pa, dir, strlen(dir)) == 0);
  CHECK(strcmp(pa, pb) != 0);
  CHECK(exists(pa));
  char db[600];
  snprintf(db, sizeof db, "%s/db/CURRENT", pa);
  CHECK(exists(db));
  CHECK_EQ_INT(entries_in(dir), 2);
  CHECK(eddy_rocksdb_backend_path(NULL) == NULL);
  eddy_backend_config cfg = {MAXP, 0, 3};
  eddy_backend *heap = NULL;
  CHECK_EQ_INT(eddy_heap_backend_new(&cfg, &heap, &err), EDDY_OK);
  CHECK(eddy_rocksdb_backend_path(heap) == NULL);
  eddy_backend_destroy(heap);

  /* rows go to disk: many of them, past a flush */
  uint32_t s = reg(a, "v", EDDY_STATE_VALUE);
  for (int i = 0; i < 2000; i++) {
    enc key = mp_int(i), v = stress_value(i, 1);
    eddy_row r = row_of(s, i % MAXP, &key, NULL);
    CHECK_EQ_INT(eddy_backend_put(a, &r, v.data, v.len), EDDY_OK);
  }
  char keep[600];
  snprintf(keep, sizeof keep, "%s", pa);
  eddy_backend_destroy(a);
  CHECK(!exists(keep)); /* removed with the backend */
  CHECK_EQ_INT(entries_in(dir), 1);
  eddy_backend_destroy(b);
  CHECK_EQ_INT(entries_in(dir), 0);
  /* the folders made on demand stay, as a configured dir would */
  rmdir(dir);
  snprintf(dir, sizeof dir, "%s/made/on", scratch());
  rmdir(dir);
  snprintf(dir, sizeof dir, "%s/made", scratch());
  rmdir(dir);
}

/* A named folder: locked while its backend lives, cleaned of what a
 * crashed run left, removed with the backend. */
static void test_named_folder(void)
{
  eddy_err err = {0, ""};
  const char *dir = scratch();
  char path[600], junk[700];
  snprintf(path, sizeof path, "%s/job_1_op_count_0", dir);
  /* a crashed run's leftovers */
  CHECK_EQ_INT(mkdir(path, 0755), 0);
  snprintf(junk, sizeof junk, "%s/db", path);
  CHECK_EQ_INT(mkdir(junk, 0755), 0);
  snprintf(junk, sizeof junk, "%s/db/000042.sst", path);
  FILE *f = fopen(junk, "w");
  CHECK(f != NULL);
  if (f != NULL)
    fclose(f);

  eddy_backend *a = open_in(dir, "job_1_op_count_0", &err);
  CHECK(a != NULL);
  if (a == NULL)
    return;
  CHECK_EQ_STR(eddy_rocksdb_backend_path(a), path);
  CHECK(!exists(junk));
  uint32_t s = reg(a, "v", EDDY_STATE_VALUE);
  enc key = mp_int(1);
  eddy_row r = row_of(s, 3, &key, NULL);
  CHECK_EQ_INT(eddy_backend_put(a, &r, key.data, key.len), EDDY_OK);

  /* a second backend on the same folder (another process, or this one) */
  eddy_backend *b = open_in(dir, "job_1_op_count_0", &err);
  CHECK(b == NULL);
  CHECK_EQ_INT(err.code, EDDY_EAGAIN);
  CHECK(contains(err.msg, "the working folder"));
  CHECK(contains(err.msg, path));
  CHECK(contains(err.msg, "is locked by another backend"));
  CHECK(strchr(err.msg, '\n') == NULL);
  check_value(a, &r, &key); /* the first one is untouched */

  /* names that would leave dir */
  CHECK(open_in(dir, "../x", &err) == NULL);
  CHECK_EQ_INT(err.code, EDDY_EINVAL);
  CHECK(contains(err.msg, "bad working folder name '../x'"));
  CHECK(open_in(dir, "..", &err) == NULL);
  CHECK(open_in(dir, "", &err) == NULL);

  eddy_backend_destroy(a);
  CHECK(!exists(path));
  /* now free: a new backend starts empty */
  b = open_in(dir, "job_1_op_count_0", &err);
  CHECK(b != NULL);
  if (b != NULL) {
    uint32_t s2 = reg(b, "v", EDDY_STATE_VALUE);
    eddy_row r2 = row_of(s2, 3, &key, NULL);
    check_absent(b, &r2);
    eddy_backend_destroy(b);
  }
}

static void test_unwritable(void)
{
  eddy_err err = {0, ""};
  char file[600], under[700];
  snprintf(file, sizeof file, "%s/a-file", scratch());
  FILE *f = fopen(file, "w");
  CHECK(f != NULL);
  if (f != NULL)
    fclose(f);
  /* a folder whose parent is a file */
  snprintf(under, sizeof under, "%s/state", file);
  CHECK(open_in(under, NULL, &err) == NULL);
  CHECK_EQ_INT(err.code, EDDY_EIO);
  CHECK(contains(err.msg, "rocksdb backend: cannot create the folder"));
  CHECK(contains(err.msg, under));
  CHECK(contains(err.msg, "Not a directory"));
  CHECK(open_in(under, "named", &err) == NULL);
  CHECK(contains(err.msg, "Not a directory"));
  /* a folder without write permission (root may write anywhere) */
  if (geteuid() != 0) {
    char ro[600];
    snprintf(ro, sizeof ro, "%s/read-only", scratch());
    CHECK_EQ_INT(mkdir(ro, 0555), 0);
    CHECK(open_in(ro, NULL, &err) == NULL);
    CHECK(contains(err.msg, "cannot create a working folder in"));
    CHECK(contains(err.msg, "Permission denied"));
    CHECK(open_in(ro, "named", &err) == NULL);
    CHECK(contains(err.msg, "Permission denied"));
    rmdir(ro);
  }
  /* a file system nobody may write */
  CHECK(open_in("/proc/eddy-state", NULL, &err) == NULL);
  CHECK_EQ_INT(err.code, EDDY_EIO);
  CHECK(contains(err.msg, "/proc/eddy-state"));
  unlink(file);
}

/* What RocksDB says it runs with, from the OPTIONS file it wrote. */
static int options_say(eddy_backend *b, const char *line)
{
  char db[600];
  snprintf(db, sizeof db, "%s/db", eddy_rocksdb_backend_path(b));
  DIR *d = opendir(db);
  if (d == NULL)
    return 0;
  char path[900] = "";
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, "OPTIONS-", 8) == 0 && strcmp(e->d_name, path + strlen(db) + 1) > 0)
      snprintf(path, sizeof path, "%s/%s", db, e->d_name); /* the newest */
  closedir(d);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return 0;
  char buf[512];
  int found = 0;
  while (!found && fgets(buf, sizeof buf, f) != NULL) {
    char *p = buf;
    while (*p == ' ')
      p++;
    p[strcspn(p, "\n")] = '\0';
    found = strcmp(p, line) == 0;
  }
  fclose(f);
  return found;
}

static eddy_backend *open_with(const eddy_rocksdb_config *rc)
{
  eddy_backend_config cfg = {MAXP, 0, MAXP - 1};
  eddy_backend *b = NULL;
  eddy_err err = {0, ""};
  CHECK_EQ_INT(eddy_rocksdb_backend_new(&cfg, rc, &b, &err), EDDY_OK);
  if (b != NULL) {
    uint32_t id;
    /* a state's column family, so its options are written too */
    CHECK_EQ_INT(eddy_backend_register(b, "s", EDDY_STATE_VALUE, &id), EDDY_OK);
  }
  return b;
}

static void test_options_file(void)
{
  eddy_rocksdb_config rc;
  eddy_rocksdb_config_init(&rc);
  rc.dir = scratch();
  /* eddy's defaults: Flink's (RocksDB's), with zstd */
  eddy_backend *b = open_with(&rc);
  if (b == NULL)
    return;
  CHECK(options_say(b, "compression=kZSTD"));
  CHECK(options_say(b, "write_buffer_size=67108864"));
  CHECK(options_say(b, "max_write_buffer_number=2"));
  CHECK(options_say(b, "target_file_size_base=67108864"));
  CHECK(options_say(b, "block_size=4096"));
  CHECK(options_say(b, "filter_policy=nullptr"));
  CHECK(options_say(b, "avoid_flush_during_shutdown=true"));
  CHECK(options_say(b, "merge_operator=eddy.list-concat"));
  eddy_backend_destroy(b);

  /* SPINNING_DISK_OPTIMIZED_HIGH_MEM, with Flink's settings */
  rc.predefined = EDDY_ROCKSDB_SPINNING_DISK_OPTIMIZED_HIGH_MEM;
  b = open_with(&rc);
  if (b == NULL)
    return;
  CHECK(options_say(b, "block_size=131072"));
  CHECK(options_say(b, "level_compaction_dynamic_level_bytes=true"));
  CHECK(options_say(b, "max_background_jobs=4"));
  CHECK(options_say(b, "max_bytes_for_level_base=1073741824"));
  CHECK(options_say(b, "max_open_files=-1"));
  CHECK(options_say(b, "max_write_buffer_number=4"));
  CHECK(options_say(b, "min_write_buffer_number_to_merge=3"));
  CHECK(options_say(b, "target_file_size_base=268435456"));
  CHECK(options_say(b, "write_buffer_size=67108864"));
  CHECK(options_say(b, "filter_policy=bloomfilter")); /* the C API hides the bits */
  eddy_backend_destroy(b);

  rc.predefined = EDDY_ROCKSDB_SPINNING_DISK_OPTIMIZED;
  b = open_with(&rc);
  if (b == NULL)
    return;
  CHECK(options_say(b, "level_compaction_dynamic_level_bytes=true"));
  CHECK(options_say(b, "max_background_jobs=4"));
  CHECK(options_say(b, "block_size=4096"));
  eddy_backend_destroy(b);

  rc.predefined = EDDY_ROCKSDB_FLASH_SSD_OPTIMIZED;
  b = open_with(&rc);
  if (b == NULL)
    return;
  CHECK(options_say(b, "max_background_jobs=4"));
  CHECK(options_say(b, "level_compaction_dynamic_level_bytes=false"));
  eddy_backend_destroy(b);

  /* options the user sets win over the profile */
  rc.predefined = EDDY_ROCKSDB_SPINNING_DISK_OPTIMIZED_HIGH_MEM;
  rc.write_buffer_size = 1 << 20;
  rc.max_write_buffer_number = 3;
  rc.target_file_size_base = 8 << 20;
  rc.block_size = 16 << 10;
  rc.block_cache_size = 0;
  rc.bloom_filter_bits = 0;
  rc.max_background_jobs = 2;
  rc.compression = EDDY_ROCKSDB_LZ4;
  b = open_with(&rc);
  if (b == NULL)
    return;
  CHECK(options_say(b, "write_buffer_size=1048576"));
  CHECK(options_say(b, "max_write_buffer_number=3"));
  CHECK(options_say(b, "target_file_size_base=8388608"));
  CHECK(options_say(b, "block_size=16384"));
  CHECK(options_say(b, "no_block_cache=true"));
  CHECK(options_say(b, "filter_policy=nullptr"));
  CHECK(options_say(b, "max_background_jobs=2"));
  CHECK(options_say(b, "compression=kLZ4Compression"));
  eddy_backend_destroy(b);
  rc.compression = EDDY_ROCKSDB_NO_COMPRESSION;
  rc.bloom_filter_bits = 12.5;
  b = open_with(&rc);
  if (b != NULL) {
    CHECK(options_say(b, "compression=kNoCompression"));
    CHECK(options_say(b, "filter_policy=bloomfilter"));
    eddy_backend_destroy(b);
  }
  rc.compression = EDDY_ROCKSDB_SNAPPY;
  b = open_with(&rc);
  if (b != NULL) {
    CHECK(options_say(b, "compression=kSnappyCompression"));
    eddy_backend_destroy(b);
  }

  /* what cannot be a profile or a compression */
  eddy_backend_config cfg = {MAXP, 0, MAXP - 1};
  eddy_err err = {0, ""};
  eddy_backend *none = NULL;
  rc.predefined = (eddy_rocksdb_profile)42;
  CHECK_EQ_INT(eddy_rocksdb_backend_new(&cfg, &rc, &none, &err), EDDY_EINVAL);
  CHECK(contains(err.msg, "unknown predefined options 42"));
  rc.predefined = EDDY_ROCKSDB_DEFAULT;
  rc.compression = (eddy_rocksdb_compression)9;
  CHECK_EQ_INT(eddy_rocksdb_backend_new(&cfg, &rc, &none, &err), EDDY_EINVAL);
  CHECK(none == NULL);
  CHECK_EQ_INT(entries_in(scratch()), 0);
}

/* Keys, namespaces and user keys are read back by splitting the row key
 * at value boundaries, so bytes that are not one MessagePack value are
 * refused on the way in. */
/* Flink's bounded memory: backends sharing one budget share one block
 * cache (index and filter blocks in it too) and split the write buffers. */
static void test_bounded_memory(void)
{
  eddy_err err = {0, ""};
  eddy_rocksdb_memory *m = NULL;
  CHECK_EQ_INT(eddy_rocksdb_memory_new(0, 0.5, 1, &m, &err), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_rocksdb_memory_new(30 << 20, 1.0, 1, &m, &err), EDDY_EINVAL);
  CHECK(m == NULL);
  /* 30 MiB, half for write buffers: 10 MiB of memtables for 2 backends */
  CHECK_EQ_INT(eddy_rocksdb_memory_new(30 << 20, 0.5, 2, &m, &err), EDDY_OK);
  if (m == NULL)
    return;
  eddy_rocksdb_config rc;
  eddy_rocksdb_config_init(&rc);
  rc.dir = scratch();
  rc.memory = m;
  rc.block_cache_size = 1 << 20; /* a budget overrides the backend's own */
  eddy_backend *a = open_with(&rc), *b = open_with(&rc);
  eddy_rocksdb_memory_release(m); /* the backends hold it now */
  if (a == NULL || b == NULL)
    return;
  CHECK(options_say(a, "db_write_buffer_size=5242880"));
  CHECK(options_say(a, "write_buffer_size=2621440"));
  CHECK(options_say(a, "cache_index_and_filter_blocks=true"));
  CHECK(options_say(a, "cache_index_and_filter_blocks_with_high_priority=true"));
  CHECK(options_say(a, "pin_l0_filter_and_index_blocks_in_cache=true"));
  CHECK(options_say(b, "db_write_buffer_size=5242880"));
  /* one cache: both backends see the same usage */
  eddy_state_metrics ma, mb;
  CHECK_EQ_INT(eddy_backend_state_metrics(a, 0, &ma), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_state_metrics(b, 0, &mb), EDDY_OK);
  CHECK_EQ_INT(ma.block_cache_bytes, mb.block_cache_bytes);
  eddy_backend_destroy(a);
  eddy_backend_destroy(b); /* the last reference frees the cache */
  rmdir(scratch());
}

static void test_bad_keys(void)
{
  eddy_backend *b = new_backend(0, MAXP - 1);
  uint32_t v = reg(b, "v", EDDY_STATE_VALUE), m = reg(b, "m", EDDY_STATE_MAP);
  uint32_t l = reg(b, "l", EDDY_STATE_LIST);
  enc val = mp_int(1), key = mp_int(5);
  eddy_row two = {v, 1, "\x01\x02", 2, NULL, 0};
  CHECK_EQ_INT(eddy_backend_put(b, &two, val.data, val.len), EDDY_EINVAL);
  CHECK_EQ_STR(eddy_backend_errmsg(b), "rocksdb backend: state 'v': a key or namespace that is "
                                       "not one MessagePack value cannot be stored");
  eddy_row cut = {l, 1, "\xa3" "ab", 3, NULL, 0};
  CHECK_EQ_INT(eddy_backend_list_append(b, &cut, val.data, val.len), EDDY_EINVAL);
  eddy_row badns = row_of(v, 1, &key, NULL);
  badns.ns = "\xc1";
  badns.ns_len = 1;
  CHECK_EQ_INT(eddy_backend_put(b, &badns, val.data, val.len), EDDY_EINVAL);
  CHECK_EQ_INT(eddy_backend_restore_row(b, &badns, val.data, val.len), EDDY_EINVAL);
  eddy_row rm = row_of(m, 1, &key, NULL);
  CHECK_EQ_INT(eddy_backend_map_put(b, &rm, "\x01\x01", 2, val.data, val.len), EDDY_EINVAL);
  CHECK(contains(eddy_backend_errmsg(b), "a map key that is not one MessagePack value"));
  /* reading such keys just finds nothing */
  eddy_slice got;
  CHECK_EQ_INT(eddy_backend_get(b, &two, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_backend_map_get(b, &rm, "\x01\x01", 2, &got), EDDY_ENOTFOUND);
  CHECK_EQ_INT(eddy_backend_map_remove(b, &rm, "\x01\x01", 2), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_restore_done(b), EDDY_OK);
  count_rows(b, v, 0);
  count_rows(b, m, 0);
  eddy_backend_destroy(b);
}

/* RocksDB has a column family called "default" already: a state of that
 * name uses it, and behaves as any other. */
static void test_state_named_default(void)
{
  eddy_backend *b = new_backend(0, MAXP - 1);
  uint32_t d = reg(b, "default", EDDY_STATE_MAP), other = reg(b, "other", EDDY_STATE_MAP);
  enc key = mp_int(1), uk = mp_str("x"), val = mp_int(2);
  eddy_row r = row_of(d, 9, &key, NULL), ro = row_of(other, 9, &key, NULL);
  CHECK_EQ_INT(eddy_backend_map_put(b, &r, uk.data, uk.len, val.data, val.len), EDDY_OK);
  eddy_slice got;
  CHECK_EQ_INT(eddy_backend_map_get(b, &r, uk.data, uk.len, &got), EDDY_OK);
  CHECK_EQ_INT(eddy_backend_map_get(b, &ro, uk.data, uk.len, &got), EDDY_ENOTFOUND);
  count_rows(b, d, 1);
  count_rows(b, other, 0);
  eddy_backend_snapshot *s;
  CHECK_EQ_INT(eddy_backend_snapshot_open(b, &s), EDDY_OK);
  eddy_row sr;
  CHECK_EQ_INT(eddy_backend_snapshot_next(s, &sr, &got), EDDY_OK);
  CHECK_EQ_INT(sr.state, d);
  CHECK_EQ_INT(eddy_backend_snapshot_next(s, &sr, &got), EDDY_EEOF);
  eddy_backend_snapshot_close(s);
  eddy_backend_destroy(b);
}

/* A disk that fills up while RocksDB flushes its memtables, made here with
 * a file-size limit (SIGXFSZ ignored, so writes fail with EFBIG as they
 * would with ENOSPC): the writes that follow fail with a message naming
 * the folder and RocksDB's error, and nothing crashes. */
static void test_out_of_space(void)
{
  eddy_backend_config cfg = {MAXP, 0, MAXP - 1};
  eddy_rocksdb_config rc;
  eddy_rocksdb_config_init(&rc);
  rc.dir = scratch();
  rc.write_buffer_size = 256 << 10;
  rc.compression = EDDY_ROCKSDB_NO_COMPRESSION;
  eddy_backend *b = NULL;
  eddy_err err = {0, ""};
  CHECK_EQ_INT(eddy_rocksdb_backend_new(&cfg, &rc, &b, &err), EDDY_OK);
  if (b == NULL)
    return;
  uint32_t s = reg(b, "v", EDDY_STATE_VALUE);
  struct rlimit old, small = {128 << 10, 128 << 10};
  CHECK_EQ_INT(getrlimit(RLIMIT_FSIZE, &old), 0);
  void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
  small.rlim_max = old.rlim_max;
  CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &small), 0);
  unsigned char big[1000];
  int rc_put = EDDY_OK, i;
  /* at most 200 MiB: RocksDB stops taking writes long before */
  for (i = 0; i < 200000 && rc_put == EDDY_OK; i++) {
    enc key = mp_int(i);
    size_t n = thread_value(i, 1, big);
    for (size_t j = n; j < sizeof big; j++)
      big[j] = (unsigned char)(rnd() % 128); /* fixints: does not compress */
    big[0] = 0xc5; /* bin 16 of 997 bytes */
    big[1] = 0x03;
    big[2] = 0xe5;
    eddy_row r = row_of(s, i % MAXP, &key, NULL);
    rc_put = eddy_backend_put(b, &r, big, sizeof big);
  }
  CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, was);
  CHECK_EQ_INT(rc_put, EDDY_EIO);
  const char *msg = eddy_backend_errmsg(b);
  CHECK(contains(msg, "rocksdb backend ("));
  CHECK(contains(msg, eddy_rocksdb_backend_path(b)));
  CHECK(contains(msg, "a write failed"));
  CHECK(contains(msg, "File too large"));
  CHECK(strchr(msg, '\n') == NULL);
  if (rc_put != EDDY_EIO)
    fprintf(stderr, "out of space: %d puts, last %d: %s\n", i, rc_put, msg);
  eddy_backend_destroy(b);
  CHECK_EQ_INT(entries_in(scratch()), 0);
  rmdir(scratch());
}
