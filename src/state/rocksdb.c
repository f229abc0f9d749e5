/*
 * The RocksDB backend: keyed state in an embedded RocksDB, the way Flink's
 * EmbeddedRocksDBStateBackend keeps it, through RocksDB's C API only.
 *
 * Layout. Each registered state is one column family (named after the
 * state; a state called "default" uses RocksDB's default family), so that
 * a state can be iterated, sized and tuned on its own. A row is one RocksDB
 * entry whose key is the row key of rowkey.h (key group, key, namespace),
 * except map rows: each map entry is an entry of its own, its key the row's
 * key followed by the user key, so a map row is a key prefix, read by a
 * prefix seek, and map_get/map_put touch one entry. A value, reducing or
 * aggregating row's entry holds the encoded value. A list row's entry holds
 * the elements back to back; list_append is a RocksDB merge with a
 * concatenating merge operator (Flink uses RocksDB's StringAppendOperator
 * the same way), so an append never reads the list.
 *
 * Durability comes from checkpoints, not from RocksDB: every write has the
 * WAL off, and the working folder is thrown away when the backend is
 * destroyed (without the flush RocksDB would otherwise do at close). The
 * folder lives under the configured dir; a named one is locked with an
 * open-file-description lock, which conflicts with another process and
 * with another backend of this process, before anything in it is touched.
 *
 * Hot path: the read and write options, the row-key buffer and the
 * iterator bounds live in the backend and are reused; get reads through
 * rocksdb_get_pinned_cf, whose value is handed out without a copy and
 * released at the next call (backend.h: a slice lives until the next call
 * on the backend); a write releases it only after the write has copied its
 * input, which may be that slice.
 *
 * Snapshots (checkpoints). Opening one takes a RocksDB snapshot and makes
 * one iterator per state on it; the writer thread then merges the states'
 * iterators by key group, which is the order snapshot.c writes. A RocksDB
 * snapshot costs nothing to take and the main thread's later writes never
 * show in it, so there is no copy-on-write to do here. This gives full
 * snapshots in the canonical format, byte for byte what the heap backend
 * gives for the same state (rows in another order within a key group).
 * Incremental checkpoints are native instead (eddy_rocksdb_checkpoint,
 * "native checkpoints" below): RocksDB's own checkpoint of the live SST
 * files, hard links in a chk-<n> folder of the working folder, which the
 * runtime uploads what the last completed checkpoint does not have from;
 * a restore opens such files as the database, or copies its key groups'
 * entries out of them.
 *
 * Restores put whole rows in through one write batch, written every few
 * MiB and at restore_done. Rows outside the key-group range never reach
 * the backend (snapshot.c skips them), which is how a rescaled subtask
 * takes its part.
 */
#include "state/backend_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <rocksdb/c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state/rocksdb_timers.h"
#include "state/rowkey.h"
#include "util/fs.h"
#include "util/msgpack.h"

/* A restore's write batch is written once it holds this much (Flink's
 * state.backend.rocksdb.write-batch-size is 2 MiB). */
#define RESTORE_BATCH_BYTES (4u << 20)

/* RocksDB keeps key and value lengths in 32 bits. */
#define MAX_PART ((size_t)UINT32_MAX - 64)

typedef struct rdb_state {
  rocksdb_column_family_handle_t *cf;
  eddy_state_kind kind;
  int own_cf;   /* 0 for the default family, which the db owns */
  int restored; /* rows came in since the last restore_done */
  /* Map states, per key group of the range: whether map rows may be
   * there already (so a restored map row must delete the old entries
   * first), and whether a restore under way put rows there. Per key group,
   * because a rescaled subtask restores the files of several old subtasks
   * one after the other, each into key groups the others never touch: no
   * deletes are needed there, and range deletions would slow reads. */
  unsigned char *dirty;
  unsigned char *restoring;
} rdb_state;

struct eddy_rocksdb_memory {
  int refs;
  rocksdb_cache_t *cache;
  uint64_t write_buffer_bytes; /* per backend */
};

int eddy_rocksdb_memory_new(uint64_t total, double write_buffer_ratio, int sharers,
                            eddy_rocksdb_memory **out, eddy_err *err)
{
  *out = NULL;
  if (total == 0 || !(write_buffer_ratio > 0 && write_buffer_ratio < 1) || sharers < 1)
    return eddy_seterr(err, EDDY_EINVAL,
                       "rocksdb memory: needs a budget above 0, a write buffer ratio between "
                       "0 and 1 and at least one backend");
  eddy_rocksdb_memory *m = calloc(1, sizeof *m);
  if (m == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "rocksdb memory: out of memory");
  /* Flink's RocksDBMemoryControllerUtils: the cache gets (3 - r) / 3 of
   * the budget, the write buffer manager 2r / 3 (charged to the cache) */
  m->cache = rocksdb_cache_create_lru((size_t)((3 - write_buffer_ratio) * (double)total / 3));
  uint64_t write_total = (uint64_t)(2 * (double)total * write_buffer_ratio / 3);
  m->write_buffer_bytes = write_total / (uint64_t)sharers;
  if (m->write_buffer_bytes < (1u << 20))
    m->write_buffer_bytes = 1u << 20; /* RocksDB needs room for a memtable */
  m->refs = 1;
  *out = m;
  return EDDY_OK;
}

void eddy_rocksdb_memory_release(eddy_rocksdb_memory *m)
{
  if (m == NULL || --m->refs > 0)
    return;
  rocksdb_cache_destroy(m->cache);
  free(m);
}

typedef struct rdb_backend {
  eddy_backend base;
  rocksdb_t *db;
  rocksdb_options_t *opts; /* db and column-family options */
  rocksdb_block_based_table_options_t *table;
  rocksdb_cache_t *cache;         /* the backend's own block cache */
  eddy_rocksdb_memory *memory;    /* or the job's shared budget */
  rocksdb_column_family_handle_t *default_cf;
  rocksdb_readoptions_t *ro;      /* point reads */
  rocksdb_readoptions_t *ro_scan; /* prefix seeks: bounds set per call */
  rocksdb_writeoptions_t *wo;     /* WAL off */
  rocksdb_writebatch_t *batch;    /* clears and restores */
  size_t batch_bytes;
  rocksdb_pinnableslice_t *pinned; /* the value handed out last */
  uint32_t nstates;
  uint32_t states_cap;
  rdb_state *states;
  eddy_buf rk;    /* the row key being built */
  eddy_buf upper; /* a prefix seek's upper bound (RocksDB keeps a pointer) */
  eddy_buf out;   /* what map_entries hands out */
  char *path;     /* the working folder */
  int own_folder; /* made or locked by this backend: removed with it */
  int lock_fd;
  /* column families of a restored native checkpoint that no registered
   * state has taken yet (rdb_add_state takes them by name) */
  rocksdb_column_family_handle_t **found;
  char **found_names;
  int nfound;
  int native; /* the database came from a native checkpoint */
  /* timers in RocksDB (NULL when they are kept in memory) and their
   * column families, by eddy_timer_kind */
  eddy_timers *timers;
  rocksdb_column_family_handle_t *timer_cf[2];
} rdb_backend;

/* ---- errors ---- */

/* A failed RocksDB call: what was done, where, and RocksDB's words (rerr
 * is freed). */
static int rdb_fail(rdb_backend *h, char *rerr, const char *what)
{
  eddy_seterr(&h->base.err, EDDY_EIO, "rocksdb backend (%s): %s failed: %s", h->path, what,
              rerr != NULL ? rerr : "unknown error");
  rocksdb_free(rerr);
  return EDDY_EIO;
}

static int out_of_memory(rdb_backend *h)
{
  return eddy_seterr(&h->base.err, EDDY_ENOMEM, "rocksdb backend (%s): out of memory", h->path);
}

static int absent(rdb_backend *h, const eddy_row *row)
{
  return eddy_seterr(&h->base.err, EDDY_ENOTFOUND,
                     "state '%s' has nothing for this key and namespace",
                     h->base.states[row->state].name);
}

static void release_pinned(rdb_backend *h)
{
  if (h->pinned != NULL) {
    rocksdb_pinnableslice_destroy(h->pinned);
    h->pinned = NULL;
  }
}

/* ---- row keys ---- */

/* Builds the prefix of row into h->rk. Writes (check set) refuse keys and
 * namespaces that are not one whole MessagePack value, because reading the
 * row back splits its key at the value boundaries. */
static int row_prefix(rdb_backend *h, const eddy_row *row, int check)
{
  if (row->key_len > MAX_PART || row->ns_len > MAX_PART - row->key_len)
    return eddy_seterr(&h->base.err, EDDY_ELIMIT,
                       "rocksdb backend: state '%s': key and namespace of 4 GiB or more",
                       h->base.states[row->state].name);
  if (check && (!eddy_rowkey_is_value(row->key, row->key_len) ||
                (row->ns_len > 0 && !eddy_rowkey_is_value(row->ns, row->ns_len))))
    return eddy_seterr(&h->base.err, EDDY_EINVAL,
                       "rocksdb backend: state '%s': a key or namespace that is not one "
                       "MessagePack value cannot be stored",
                       h->base.states[row->state].name);
  if (eddy_rowkey_prefix(&h->rk, row->key_group, row->key, row->key_len, row->ns,
                         row->ns_len) != EDDY_OK)
    return out_of_memory(h);
  return EDDY_OK;
}

/* Appends a map entry's user key to the prefix in h->rk. */
static int add_ukey(rdb_backend *h, const eddy_row *row, const void *uk, size_t ukn, int check)
{
  if (ukn > MAX_PART - h->rk.len)
    return eddy_seterr(&h->base.err, EDDY_ELIMIT,
                       "rocksdb backend: state '%s': a map key of 4 GiB or more",
                       h->base.states[row->state].name);
  if (check && !eddy_rowkey_is_value(uk, ukn))
    return eddy_seterr(&h->base.err, EDDY_EINVAL,
                       "rocksdb backend: state '%s': a map key that is not one MessagePack "
                       "value cannot be stored",
                       h->base.states[row->state].name);
  return eddy_buf_append(&h->rk, uk, ukn) == EDDY_OK ? EDDY_OK : out_of_memory(h);
}

static int check_value_len(rdb_backend *h, const eddy_row *row, size_t n)
{
  if (n > MAX_PART)
    return eddy_seterr(&h->base.err, EDDY_ELIMIT,
                       "rocksdb backend: state '%s': a value of 4 GiB or more cannot be stored",
                       h->base.states[row->state].name);
  return EDDY_OK;
}

/* Sets h->ro_scan's bounds to the entries that start with the prefix in
 * h->rk. */
static int scan_bounds(rdb_backend *h)
{
  eddy_buf_reset(&h->upper);
  if (eddy_buf_append(&h->upper, h->rk.data, h->rk.len) != EDDY_OK)
    return out_of_memory(h);
  /* a prefix ends in a MessagePack value, never in all 0xff bytes back to
   * the key group, so the successor exists */
  h->upper.len = eddy_rowkey_successor(h->upper.data, h->upper.len);
  rocksdb_readoptions_set_iterate_upper_bound(h->ro_scan, (const char *)h->upper.data,
                                              h->upper.len);
  return EDDY_OK;
}

/* ---- the list merge operator: concatenation ---- */

static char *concat(const char *first, size_t first_len, const char *const *ops,
                    const size_t *lens, int n, unsigned char *success, size_t *out_len)
{
  size_t total = first_len;
  for (int i = 0; i < n; i++)
    total += lens[i];
  char *out = malloc(total > 0 ? total : 1);
  if (out == NULL) {
    *success = 0;
    return NULL;
  }
  if (first_len > 0)
    memcpy(out, first, first_len);
  size_t at = first_len;
  for (int i = 0; i < n; i++) {
    memcpy(out + at, ops[i], lens[i]);
    at += lens[i];
  }
  *success = 1;
  *out_len = total;
  return out;
}

static char *list_full_merge(void *state, const char *key, size_t key_len,
                             const char *existing, size_t existing_len,
                             const char *const *ops, const size_t *lens, int n,
                             unsigned char *success, size_t *out_len)
{
  (void)state;
  (void)key;
  (void)key_len;
  return concat(existing, existing != NULL ? existing_len : 0, ops, lens, n, success, out_len);
}

static char *list_partial_merge(void *state, const char *key, size_t key_len,
                                const char *const *ops, const size_t *lens, int n,
                                unsigned char *success, size_t *out_len)
{
  (void)state;
  (void)key;
  (void)key_len;
  return concat(NULL, 0, ops, lens, n, success, out_len);
}

static void list_merge_free(void *state, const char *value, size_t len)
{
  (void)state;
  (void)len;
  free((char *)value);
}

static const char *list_merge_name(void *state)
{
  (void)state;
  return "eddy.list-concat";
}

static void no_destructor(void *state) { (void)state; }

/* ---- the working folder ---- */


/* mkdir -p; errno is the failing mkdir's. */
static int make_dirs(char *path)
{
  for (char *p = path + 1; *p != '\0'; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    int rc = mkdir(path, 0755);
    *p = '/';
    if (rc != 0 && errno != EEXIST)
      return -1;
  }
  return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static char *join(const char *a, const char *b)
{
  size_t n = strlen(a) + 1 + strlen(b) + 1;
  char *s = malloc(n);
  if (s != NULL)
    snprintf(s, n, "%s/%s", a, b);
  return s;
}

/* Locks the working folder h->path with an open-file-description lock on
 * its eddy.lock, which conflicts with every other open of the file, in this
 * process too, and goes with the process however it ends. */
static int lock_folder(rdb_backend *h, eddy_err *err)
{
  char *lock = join(h->path, "eddy.lock");
  if (lock == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory");
  h->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  int e = errno;
  free(lock);
  if (h->lock_fd < 0)
    return eddy_seterr(err, EDDY_EIO, "rocksdb backend: cannot write in the working folder %s: %s",
                       h->path, strerror(e));
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
  if (fcntl(h->lock_fd, F_OFD_SETLK, &fl) == 0)
    return EDDY_OK;
  e = errno;
  close(h->lock_fd);
  h->lock_fd = -1;
  if (e == EAGAIN || e == EACCES)
    return eddy_seterr(err, EDDY_EAGAIN,
                       "rocksdb backend: the working folder %s is locked by another backend "
                       "(is the same job running twice?)",
                       h->path);
  return eddy_seterr(err, EDDY_EIO, "rocksdb backend: cannot lock the working folder %s: %s",
                     h->path, strerror(e));
}

/* Makes the working folder (h->path) and locks it. A named one may be a
 * crashed run's: once locked, what that run left in it is removed. */
static int open_folder(rdb_backend *h, const eddy_rocksdb_config *rc, eddy_err *err)
{
  char fallback[PATH_MAX];
  const char *dir = rc->dir;
  if (dir == NULL || dir[0] == '\0') {
    const char *tmp = getenv("TMPDIR");
    snprintf(fallback, sizeof fallback, "%s/eddy-rocksdb",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    dir = fallback;
  }
  if (rc->name != NULL && (rc->name[0] == '\0' || strchr(rc->name, '/') != NULL ||
                           strcmp(rc->name, ".") == 0 || strcmp(rc->name, "..") == 0))
    return eddy_seterr(err, EDDY_EINVAL, "rocksdb backend: bad working folder name '%s'",
                       rc->name);
  char *parent = strdup(dir);
  if (parent == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory");
  if (make_dirs(parent) != 0) {
    int e = errno;
    eddy_seterr(err, EDDY_EIO, "rocksdb backend: cannot create the folder %s: %s", parent,
                strerror(e));
    free(parent);
    return EDDY_EIO;
  }
  h->path = join(parent, rc->name != NULL ? rc->name : "eddy-XXXXXX");
  free(parent);
  if (h->path == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory");
  if (rc->name == NULL ? mkdtemp(h->path) == NULL
                       : mkdir(h->path, 0755) != 0 && errno != EEXIST) {
    int e = errno;
    if (rc->name == NULL)
      return eddy_seterr(err, EDDY_EIO, "rocksdb backend: cannot create a working folder in %s: %s",
                         dir, strerror(e));
    return eddy_seterr(err, EDDY_EIO, "rocksdb backend: cannot create the working folder %s: %s",
                       h->path, strerror(e));
  }
  int rc2 = lock_folder(h, err);
  if (rc2 != EDDY_OK)
    return rc2; /* not ours to remove: another backend may live in it */
  h->own_folder = 1;
  if (rc->name != NULL) {
    /* a crashed run's database, native checkpoints and restores; nobody
     * else holds the lock */
    DIR *d = opendir(h->path);
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
      if (strcmp(de->d_name, "db") != 0 && strncmp(de->d_name, "chk-", 4) != 0 &&
          strncmp(de->d_name, "restore-", 8) != 0)
        continue;
      char *p = join(h->path, de->d_name);
      if (p == NULL) {
        closedir(d);
        return eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory");
      }
      eddy_remove_tree(p);
      free(p);
    }
    if (d != NULL)
      closedir(d);
  }
  return EDDY_OK;
}

/* ---- options ---- */

static int build_options(rdb_backend *h, const eddy_rocksdb_config *rc, eddy_err *err)
{
  /* The profile first (Flink's PredefinedOptions), then the options the
   * user set, which win, as in Flink. Unset values are RocksDB's defaults, which Flink's
   * documentation quotes: 64 MiB write buffers, 2 of them, 64 MiB target
   * files, 4 KiB blocks, an 8 MiB block cache, no bloom filter. */
  uint64_t write_buffer = 64u << 20, target_file = 64u << 20, block_size = 4u << 10;
  uint64_t level_base = 0; /* RocksDB's 256 MiB */
  int64_t cache_size = 8 << 20;
  int write_buffers = 2, merge_min = 0, jobs = 0, dynamic_level = 0;
  double bloom = 0;
  switch (rc->predefined) {
  case EDDY_ROCKSDB_DEFAULT:
    break;
  case EDDY_ROCKSDB_SPINNING_DISK_OPTIMIZED:
    dynamic_level = 1;
    jobs = 4;
    break;
  case EDDY_ROCKSDB_SPINNING_DISK_OPTIMIZED_HIGH_MEM:
    cache_size = 256 << 20;
    block_size = 128u << 10;
    dynamic_level = 1;
    jobs = 4;
    level_base = 1u << 30;
    write_buffers = 4;
    merge_min = 3;
    target_file = 256u << 20;
    write_buffer = 64u << 20;
    bloom = 10; /* USE_BLOOM_FILTER with Flink's 10 bits per key */
    break;
  case EDDY_ROCKSDB_FLASH_SSD_OPTIMIZED:
    jobs = 4;
    break;
  default:
    return eddy_seterr(err, EDDY_EINVAL, "rocksdb backend: unknown predefined options %d",
                       (int)rc->predefined);
  }
  if (rc->write_buffer_size > 0)
    write_buffer = rc->write_buffer_size;
  if (rc->max_write_buffer_number > 0)
    write_buffers = rc->max_write_buffer_number;
  if (rc->target_file_size_base > 0)
    target_file = rc->target_file_size_base;
  if (rc->block_size > 0)
    block_size = rc->block_size;
  if (rc->block_cache_size >= 0)
    cache_size = rc->block_cache_size;
  if (rc->bloom_filter_bits >= 0)
    bloom = rc->bloom_filter_bits;
  if (rc->max_background_jobs > 0)
    jobs = rc->max_background_jobs;
  int compression;
  switch (rc->compression) {
  case EDDY_ROCKSDB_COMPRESSION_UNSET:
  case EDDY_ROCKSDB_ZSTD: compression = rocksdb_zstd_compression; break;
  case EDDY_ROCKSDB_LZ4: compression = rocksdb_lz4_compression; break;
  case EDDY_ROCKSDB_SNAPPY: compression = rocksdb_snappy_compression; break;
  case EDDY_ROCKSDB_NO_COMPRESSION: compression = rocksdb_no_compression; break;
  default:
    return eddy_seterr(err, EDDY_EINVAL, "rocksdb backend: unknown compression %d",
                       (int)rc->compression);
  }

  /* The working folder is thrown away at close: flushing the memtables
   * into it first would be wasted time. Only settable by name in this
   * version of the C API. */
  rocksdb_options_t *base = rocksdb_options_create();
  h->opts = rocksdb_options_create();
  char *rerr = NULL;
  rocksdb_get_options_from_string(base, "avoid_flush_during_shutdown=true", h->opts, &rerr);
  rocksdb_options_destroy(base);
  if (rerr != NULL) {
    eddy_seterr(err, EDDY_EINVAL, "rocksdb backend: %s", rerr);
    rocksdb_free(rerr);
    return EDDY_EINVAL;
  }
  rocksdb_options_t *o = h->opts;
  rocksdb_options_set_create_if_missing(o, 1);
  rocksdb_options_set_use_fsync(o, 0);
  rocksdb_options_set_info_log_level(o, 5); /* HEADER_LEVEL, as Flink */
  rocksdb_options_set_keep_log_file_num(o, 1);
  rocksdb_options_set_stats_dump_period_sec(o, 0);
  rocksdb_options_set_max_open_files(o, -1);
  if (jobs > 0)
    rocksdb_options_set_max_background_jobs(o, jobs);
  rocksdb_options_set_compaction_style(o, rocksdb_level_compaction);
  rocksdb_options_set_level_compaction_dynamic_level_bytes(o, (unsigned char)dynamic_level);
  rocksdb_options_set_write_buffer_size(o, (size_t)write_buffer);
  rocksdb_options_set_max_write_buffer_number(o, write_buffers);
  if (merge_min > 0)
    rocksdb_options_set_min_write_buffer_number_to_merge(o, merge_min);
  rocksdb_options_set_target_file_size_base(o, target_file);
  if (level_base > 0)
    rocksdb_options_set_max_bytes_for_level_base(o, level_base);
  rocksdb_options_set_compression(o, compression);
  rocksdb_options_set_merge_operator(
      o, rocksdb_mergeoperator_create(NULL, no_destructor, list_full_merge, list_partial_merge,
                                      list_merge_free, list_merge_name));
  h->table = rocksdb_block_based_options_create();
  rocksdb_block_based_options_set_block_size(h->table, (size_t)block_size);
  if (rc->memory != NULL) {
    /* bounded memory, as Flink sets it up: the shared cache holds index
     * and filter blocks too, and the memtables stay within their share */
    h->memory = rc->memory;
    h->memory->refs++;
    rocksdb_block_based_options_set_block_cache(h->table, h->memory->cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(h->table, 1);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(h->table, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(h->table, 1);
    rocksdb_options_set_db_write_buffer_size(o, (size_t)h->memory->write_buffer_bytes);
    if (write_buffer > h->memory->write_buffer_bytes / 2)
      rocksdb_options_set_write_buffer_size(o, (size_t)(h->memory->write_buffer_bytes / 2));
  } else if (cache_size > 0) {
    h->cache = rocksdb_cache_create_lru((size_t)cache_size);
    rocksdb_block_based_options_set_block_cache(h->table, h->cache);
  } else {
    rocksdb_block_based_options_set_no_block_cache(h->table, 1);
  }
  if (bloom > 0)
    rocksdb_block_based_options_set_filter_policy(h->table,
                                                  rocksdb_filterpolicy_create_bloom_full(bloom));
  rocksdb_options_set_block_based_table_factory(o, h->table);
  return EDDY_OK;
}

/* ---- lifetime ---- */

static void drop_found(rdb_backend *h);

static void release_timer_families(rdb_backend *h);

static void rdb_destroy(eddy_backend *b)
{
  rdb_backend *h = (rdb_backend *)b;
  release_pinned(h);
  release_timer_families(h);
  eddy_timers_free(h->timers);
  for (uint32_t i = 0; i < h->nstates; i++) {
    if (h->states[i].own_cf)
      rocksdb_column_family_handle_destroy(h->states[i].cf);
    free(h->states[i].dirty);
    free(h->states[i].restoring);
  }
  if (h->default_cf != NULL)
    rocksdb_column_family_handle_destroy(h->default_cf);
  drop_found(h);
  if (h->db != NULL)
    rocksdb_close(h->db);
  if (h->batch != NULL)
    rocksdb_writebatch_destroy(h->batch);
  if (h->ro != NULL)
    rocksdb_readoptions_destroy(h->ro);
  if (h->ro_scan != NULL)
    rocksdb_readoptions_destroy(h->ro_scan);
  if (h->wo != NULL)
    rocksdb_writeoptions_destroy(h->wo);
  if (h->opts != NULL)
    rocksdb_options_destroy(h->opts);
  if (h->table != NULL)
    rocksdb_block_based_options_destroy(h->table);
  if (h->cache != NULL)
    rocksdb_cache_destroy(h->cache);
  eddy_rocksdb_memory_release(h->memory);
  if (h->own_folder)
    eddy_remove_tree(h->path);
  if (h->lock_fd >= 0)
    close(h->lock_fd); /* after the removal: nobody may take the folder meanwhile */
  free(h->path);
  free(h->states);
  eddy_buf_free(&h->rk);
  eddy_buf_free(&h->upper);
  eddy_buf_free(&h->out);
  eddy_backend_base_free(b);
  free(h);
}

const char *eddy_rocksdb_backend_path(const eddy_backend *b)
{
  return b != NULL && b->ops->destroy == rdb_destroy ? ((const rdb_backend *)b)->path : NULL;
}

/* ---- states ---- */

static rocksdb_column_family_handle_t *take_found(rdb_backend *h, const char *name);

static int rdb_add_state(eddy_backend *b, uint32_t id, const char *name, eddy_state_kind kind)
{
  rdb_backend *h = (rdb_backend *)b;
  if (id == h->states_cap) {
    uint32_t cap = h->states_cap ? 2 * h->states_cap : 8;
    rdb_state *s = realloc(h->states, cap * sizeof *s);
    if (s == NULL)
      return out_of_memory(h);
    h->states = s;
    h->states_cap = cap;
  }
  rdb_state *st = &h->states[id];
  memset(st, 0, sizeof *st);
  st->kind = kind;
  if (kind == EDDY_STATE_MAP) {
    size_t ngroups = (size_t)(b->last_key_group - b->first_key_group + 1);
    st->dirty = calloc(ngroups, 1);
    st->restoring = calloc(ngroups, 1);
    if (st->dirty == NULL || st->restoring == NULL) {
      free(st->dirty);
      free(st->restoring);
      return out_of_memory(h);
    }
  }
  if (strcmp(name, "default") == 0) {
    st->cf = h->default_cf;
    if (h->native && st->dirty != NULL)
      memset(st->dirty, 1, (size_t)(b->last_key_group - b->first_key_group + 1));
  } else if ((st->cf = take_found(h, name)) != NULL) {
    /* restored from a native checkpoint: its map rows are there already */
    st->own_cf = 1;
    if (st->dirty != NULL)
      memset(st->dirty, 1, (size_t)(b->last_key_group - b->first_key_group + 1));
  } else {
    char *rerr = NULL;
    st->cf = rocksdb_create_column_family(h->db, h->opts, name, &rerr);
    if (rerr != NULL) {
      eddy_seterr(&b->err, EDDY_EIO,
                  "rocksdb backend (%s): cannot create the column family of state '%s': %s",
                  h->path, name, rerr);
      rocksdb_free(rerr);
      free(st->dirty);
      free(st->restoring);
      return EDDY_EIO;
    }
    st->own_cf = 1;
  }
  h->nstates = id + 1;
  return EDDY_OK;
}

/* ---- value-like and list rows ---- */

/* Reads the entry whose key is in h->rk into the pinned slice. */
static int read_entry(rdb_backend *h, const eddy_row *row, eddy_slice *value)
{
  char *rerr = NULL;
  rocksdb_pinnableslice_t *v = rocksdb_get_pinned_cf(
      h->db, h->ro, h->states[row->state].cf, (const char *)h->rk.data, h->rk.len, &rerr);
  if (rerr != NULL)
    return rdb_fail(h, rerr, "a read");
  release_pinned(h);
  if (v == NULL)
    return absent(h, row);
  h->pinned = v;
  size_t n;
  value->data = rocksdb_pinnableslice_value(v, &n);
  value->len = n;
  return EDDY_OK;
}

/* A list row's entry is its elements back to back, so this is list_get
 * too. */
static int rdb_get(eddy_backend *b, const eddy_row *row, eddy_slice *value)
{
  rdb_backend *h = (rdb_backend *)b;
  int rc = row_prefix(h, row, 0);
  return rc != EDDY_OK ? rc : read_entry(h, row, value);
}

static int rdb_put(eddy_backend *b, const eddy_row *row, const void *v, size_t n)
{
  rdb_backend *h = (rdb_backend *)b;
  int rc = row_prefix(h, row, 1);
  if (rc != EDDY_OK || (rc = check_value_len(h, row, n)) != EDDY_OK)
    return rc;
  char *rerr = NULL;
  rocksdb_put_cf(h->db, h->wo, h->states[row->state].cf, (const char *)h->rk.data, h->rk.len,
                 v, n, &rerr);
  release_pinned(h); /* v may have been the pinned value */
  return rerr == NULL ? EDDY_OK : rdb_fail(h, rerr, "a write");
}

static int rdb_list_append(eddy_backend *b, const eddy_row *row, const void *v, size_t n)
{
  rdb_backend *h = (rdb_backend *)b;
  int rc = row_prefix(h, row, 1);
  if (rc != EDDY_OK || (rc = check_value_len(h, row, n)) != EDDY_OK)
    return rc;
  char *rerr = NULL;
  rocksdb_merge_cf(h->db, h->wo, h->states[row->state].cf, (const char *)h->rk.data, h->rk.len,
                   v, n, &rerr);
  release_pinned(h);
  return rerr == NULL ? EDDY_OK : rdb_fail(h, rerr, "a write");
}

/* Deletes every entry that starts with the prefix in h->rk (a map row). */
static int delete_prefix(rdb_backend *h, const eddy_row *row)
{
  int rc = scan_bounds(h);
  if (rc != EDDY_OK)
    return rc;
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(h->db, h->ro_scan, h->states[row->state].cf);
  rocksdb_writebatch_clear(h->batch);
  int n = 0;
  for (rocksdb_iter_seek(it, (const char *)h->rk.data, h->rk.len); rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t klen;
    const char *k = rocksdb_iter_key(it, &klen);
    rocksdb_writebatch_delete_cf(h->batch, h->states[row->state].cf, k, klen);
    n++;
  }
  char *rerr = NULL;
  rocksdb_iter_get_error(it, &rerr);
  rocksdb_iter_destroy(it);
  if (rerr == NULL && n > 0)
    rocksdb_write(h->db, h->wo, h->batch, &rerr);
  rocksdb_writebatch_clear(h->batch);
  return rerr == NULL ? EDDY_OK : rdb_fail(h, rerr, "a clear");
}

static int rdb_clear(eddy_backend *b, const eddy_row *row)
{
  rdb_backend *h = (rdb_backend *)b;
  int rc = row_prefix(h, row, 0);
  if (rc != EDDY_OK)
    return rc;
  if (h->states[row->state].kind == EDDY_STATE_MAP) {
    rc = delete_prefix(h, row);
  } else {
    char *rerr = NULL;
    rocksdb_delete_cf(h->db, h->wo, h->states[row->state].cf, (const char *)h->rk.data,
                      h->rk.len, &rerr);
    rc = rerr == NULL ? EDDY_OK : rdb_fail(h, rerr, "a clear");
  }
  release_pinned(h);
  return rc;
}

static int rdb_list_set(eddy_backend *b, const eddy_row *row, const void *v, size_t n)
{
  return n == 0 ? rdb_clear(b, row) : rdb_put(b, row, v, n);
}

/* ---- map rows ---- */

static int rdb_map_get(eddy_backend *b, const eddy_row *row, const void *uk, size_t ukn,
                       eddy_slice *value)
{
  rdb_backend *h = (rdb_backend *)b;
  int rc = row_prefix(h, row, 0);
  if (rc != EDDY_OK || (rc = add_ukey(h, row, uk, ukn, 0)) != EDDY_OK)
    return rc;
  return read_entry(h, row, value);
}

static int rdb_map_put(eddy_backend *b, const eddy_row *row, const void *uk, size_t ukn,
                       const void *v, size_t n)
{
  rdb_backend *h = (rdb_backend *)b;
  int rc = row_prefix(h, row, 1);
  if (rc != EDDY_OK || (rc = add_ukey(h, row, uk, ukn, 1)) != EDDY_OK ||
      (rc = check_value_len(h, row, n)) != EDDY_OK)
    return rc;
  h->states[row->state].dirty[row->key_group - b->first_key_group] = 1;
  char *rerr = NULL;
  rocksdb_put_cf(h->db, h->wo, h->states[row->state].cf, (const char *)h->rk.data, h->rk.len,
                 v, n, &rerr);
  release_pinned(h);
  return rerr == NULL ? EDDY_OK : rdb_fail(h, rerr, "a write");
}

static int rdb_map_remove(eddy_backend *b, const eddy_row *row, const void *uk, size_t ukn)
{
  rdb_backend *h = (rdb_backend *)b;
  int rc = row_prefix(h, row, 0);
  if (rc != EDDY_OK || (rc = add_ukey(h, row, uk, ukn, 0)) != EDDY_OK)
    return rc;
  char *rerr = NULL;
  rocksdb_delete_cf(h->db, h->wo, h->states[row->state].cf, (const char *)h->rk.data,
                    h->rk.len, &rerr);
  release_pinned(h);
  return rerr == NULL ? EDDY_OK : rdb_fail(h, rerr, "a write");
}

/* All entries of a map row by a prefix seek: RocksDB's order is the order
 * of the user keys. */
static int rdb_map_entries(eddy_backend *b, const eddy_row *row, eddy_slice *entries)
{
  rdb_backend *h = (rdb_backend *)b;
  int rc = row_prefix(h, row, 0);
  if (rc != EDDY_OK || (rc = scan_bounds(h)) != EDDY_OK)
    return rc;
  eddy_buf_reset(&h->out);
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(h->db, h->ro_scan, h->states[row->state].cf);
  for (rocksdb_iter_seek(it, (const char *)h->rk.data, h->rk.len);
       rc == EDDY_OK && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
    size_t klen, vlen;
    const char *k = rocksdb_iter_key(it, &klen);
    const char *v = rocksdb_iter_value(it, &vlen);
    if (eddy_buf_append(&h->out, k + h->rk.len, klen - h->rk.len) != EDDY_OK ||
        eddy_buf_append(&h->out, v, vlen) != EDDY_OK)
      rc = out_of_memory(h);
  }
  char *rerr = NULL;
  rocksdb_iter_get_error(it, &rerr);
  rocksdb_iter_destroy(it);
  release_pinned(h);
  if (rerr != NULL)
    return rdb_fail(h, rerr, "a map read");
  if (rc != EDDY_OK)
    return rc;
  if (h->out.len == 0)
    return absent(h, row);
  entries->data = h->out.data;
  entries->len = h->out.len;
  return EDDY_OK;
}

/* ---- reading rows off an iterator (cursors and snapshots) ---- */

typedef struct rowreader {
  rocksdb_iterator_t *it;
  const char *lower; /* where reading starts (lower_len 0: the first row) */
  size_t lower_len;
  const char *state_name; /* for messages; the backend's registry keeps it */
  uint32_t state;
  int is_map;
  int started;
  int pending; /* the row handed out last is the current entry: step past it */
  eddy_buf buf; /* a map row's prefix, then its entries */
} rowreader;

static int reader_failed(rowreader *rr, char *rerr, eddy_err *err)
{
  eddy_seterr(err, EDDY_EIO, "rocksdb backend: reading state '%s' failed: %s", rr->state_name,
              rerr);
  rocksdb_free(rerr);
  return EDDY_EIO;
}

static int reader_corrupt(rowreader *rr, size_t klen, eddy_err *err)
{
  return eddy_seterr(err, EDDY_ECORRUPT,
                     "rocksdb backend: state '%s' holds a row key of %zu bytes that is not "
                     "eddy's",
                     rr->state_name, klen);
}

/* Positions the reader on its next entry; *valid says whether there is
 * one. */
static int reader_step(rowreader *rr, int *valid, eddy_err *err)
{
  if (!rr->started) {
    if (rr->lower_len > 0)
      rocksdb_iter_seek(rr->it, rr->lower, rr->lower_len);
    else
      rocksdb_iter_seek_to_first(rr->it);
    rr->started = 1;
  } else if (rr->pending) {
    rocksdb_iter_next(rr->it);
  }
  rr->pending = 0;
  *valid = rocksdb_iter_valid(rr->it);
  if (!*valid) {
    char *rerr = NULL;
    rocksdb_iter_get_error(rr->it, &rerr);
    if (rerr != NULL)
      return reader_failed(rr, rerr, err);
  }
  return EDDY_OK;
}

/* The key group of the next row, -1 after the last. */
static int reader_peek(rowreader *rr, int *kg, eddy_err *err)
{
  int valid, rc = reader_step(rr, &valid, err);
  if (rc != EDDY_OK)
    return rc;
  *kg = -1;
  if (valid) {
    size_t klen;
    const unsigned char *k = (const unsigned char *)rocksdb_iter_key(rr->it, &klen);
    if (klen < 2)
      return reader_corrupt(rr, klen, err);
    *kg = k[0] << 8 | k[1];
  }
  return EDDY_OK;
}

/* The next row, as get, list_get or map_entries would give it; its slices
 * stay valid until the next call on rr. EDDY_EEOF after the last. */
static int reader_next(rowreader *rr, eddy_row *row, eddy_slice *value, eddy_err *err)
{
  int valid, rc = reader_step(rr, &valid, err);
  if (rc != EDDY_OK)
    return rc;
  if (!valid)
    return EDDY_EEOF;
  size_t klen, vlen;
  const char *k = rocksdb_iter_key(rr->it, &klen);
  const char *v = rocksdb_iter_value(rr->it, &vlen);
  eddy_rowkey rk;
  if (eddy_rowkey_parse(k, klen, rr->is_map, &rk) != EDDY_OK)
    return reader_corrupt(rr, klen, err);
  row->state = rr->state;
  row->key_group = rk.key_group;
  if (!rr->is_map) {
    /* straight from the iterator, which moves at the next call */
    row->key = rk.key.data;
    row->key_len = rk.key.len;
    row->ns = rk.ns.data;
    row->ns_len = rk.ns.len;
    value->data = v;
    value->len = vlen;
    rr->pending = 1;
    return EDDY_OK;
  }
  /* a map row: its entries are the run of entries with its prefix */
  size_t plen = rk.prefix_len, key_off = (size_t)((const char *)rk.key.data - k);
  size_t ns_off = rk.ns.len > 0 ? (size_t)((const char *)rk.ns.data - k) : 0;
  size_t key_len = rk.key.len, ns_len = rk.ns.len;
  eddy_buf_reset(&rr->buf);
  if (eddy_buf_append(&rr->buf, k, plen) != EDDY_OK)
    goto oom;
  for (;;) {
    if (eddy_buf_append(&rr->buf, k + plen, klen - plen) != EDDY_OK ||
        eddy_buf_append(&rr->buf, v, vlen) != EDDY_OK)
      goto oom;
    rocksdb_iter_next(rr->it);
    if (!rocksdb_iter_valid(rr->it)) {
      char *rerr = NULL;
      rocksdb_iter_get_error(rr->it, &rerr);
      if (rerr != NULL)
        return reader_failed(rr, rerr, err);
      break;
    }
    k = rocksdb_iter_key(rr->it, &klen);
    if (klen <= plen || memcmp(k, rr->buf.data, plen) != 0)
      break;
    v = rocksdb_iter_value(rr->it, &vlen);
  }
  row->key = rr->buf.data + key_off;
  row->key_len = key_len;
  row->ns = rr->buf.data + (ns_len > 0 ? ns_off : key_off + key_len);
  row->ns_len = ns_len;
  value->data = rr->buf.data + plen;
  value->len = rr->buf.len - plen;
  return EDDY_OK;
oom:
  return eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory reading state '%s'",
                     rr->state_name);
}

static void reader_free(rowreader *rr)
{
  if (rr->it != NULL)
    rocksdb_iter_destroy(rr->it);
  eddy_buf_free(&rr->buf);
}

/* ---- cursors ---- */

typedef struct rdb_cursor {
  eddy_backend_cursor base;
  rowreader rr;
} rdb_cursor;

/* An iterator is a consistent view of the state as it was when it was
 * made, which is what a cursor promises. */
static int rdb_cursor_open(eddy_backend *b, uint32_t state, eddy_backend_cursor **out)
{
  rdb_backend *h = (rdb_backend *)b;
  rdb_cursor *c = calloc(1, sizeof *c);
  if (c == NULL)
    return out_of_memory(h);
  c->base.backend = b;
  c->rr.state = state;
  c->rr.state_name = b->states[state].name;
  c->rr.is_map = h->states[state].kind == EDDY_STATE_MAP;
  eddy_buf_init(&c->rr.buf);
  c->rr.it = rocksdb_create_iterator_cf(h->db, h->ro, h->states[state].cf);
  *out = &c->base;
  return EDDY_OK;
}

static int rdb_cursor_next(eddy_backend_cursor *bc, eddy_row *row, eddy_slice *value)
{
  rdb_cursor *c = (rdb_cursor *)bc;
  return reader_next(&c->rr, row, value, &bc->backend->err);
}

static void rdb_cursor_close(eddy_backend_cursor *bc)
{
  rdb_cursor *c = (rdb_cursor *)bc;
  reader_free(&c->rr);
  free(c);
}

/* ---- snapshots ---- */

typedef struct rdb_snapshot {
  eddy_backend_snapshot base;
  rocksdb_t *db;
  const rocksdb_snapshot_t *snap;
  rocksdb_readoptions_t *ro;
  uint32_t nstates;
  rowreader *readers; /* one per state, made at the open */
  int kg;             /* the key group being written, -1 before the first */
  uint32_t at;        /* the state being read in it */
} rdb_snapshot;

static void snapshot_free(rdb_snapshot *s)
{
  for (uint32_t i = 0; s->readers != NULL && i < s->nstates; i++)
    reader_free(&s->readers[i]);
  free(s->readers);
  if (s->ro != NULL)
    rocksdb_readoptions_destroy(s->ro);
  if (s->snap != NULL)
    rocksdb_release_snapshot(s->db, s->snap);
  free(s);
}

/* The synchronous part of a full checkpoint: a RocksDB snapshot and an
 * iterator per state on it (no seek yet: that is the writer thread's
 * work). An incremental checkpoint takes eddy_rocksdb_checkpoint instead. */
static int rdb_snapshot_open(eddy_backend *b, eddy_backend_snapshot **out)
{
  rdb_backend *h = (rdb_backend *)b;
  rdb_snapshot *s = calloc(1, sizeof *s);
  if (s == NULL)
    return out_of_memory(h);
  s->base.backend = b;
  s->db = h->db;
  s->kg = -1;
  s->nstates = h->nstates;
  if (s->nstates > 0 && (s->readers = calloc(s->nstates, sizeof *s->readers)) == NULL) {
    free(s);
    return out_of_memory(h);
  }
  s->snap = rocksdb_create_snapshot(h->db);
  s->ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_snapshot(s->ro, s->snap);
  rocksdb_readoptions_set_fill_cache(s->ro, 0); /* a checkpoint reads everything once */
  for (uint32_t i = 0; i < s->nstates; i++) {
    rowreader *rr = &s->readers[i];
    rr->state = i;
    rr->state_name = b->states[i].name;
    rr->is_map = h->states[i].kind == EDDY_STATE_MAP;
    eddy_buf_init(&rr->buf);
    rr->it = rocksdb_create_iterator_cf(h->db, s->ro, h->states[i].cf);
  }
  *out = &s->base;
  return EDDY_OK;
}

/* The writer thread: key group by key group, and in each, state by state.
 * Each state's iterator moves forward only, so this is one pass over every
 * state. Only the snapshot's own iterators are touched. */
static int rdb_snapshot_next(eddy_backend_snapshot *bs, eddy_row *row, eddy_slice *value)
{
  rdb_snapshot *s = (rdb_snapshot *)bs;
  int rc, kg;
  for (;;) {
    if (s->kg >= 0)
      for (; s->at < s->nstates; s->at++) {
        if ((rc = reader_peek(&s->readers[s->at], &kg, &bs->err)) != EDDY_OK)
          return rc;
        if (kg == s->kg)
          return reader_next(&s->readers[s->at], row, value, &bs->err);
      }
    /* the next key group that any state has rows in */
    int next = -1;
    for (uint32_t i = 0; i < s->nstates; i++) {
      if ((rc = reader_peek(&s->readers[i], &kg, &bs->err)) != EDDY_OK)
        return rc;
      if (kg >= 0 && (next < 0 || kg < next))
        next = kg;
    }
    if (next < 0)
      return EDDY_EEOF;
    s->kg = next;
    s->at = 0;
  }
}

static void rdb_snapshot_close(eddy_backend_snapshot *bs)
{
  snapshot_free((rdb_snapshot *)bs);
}

/* ---- restoring ---- */

static int write_batch(rdb_backend *h)
{
  char *rerr = NULL;
  if (h->batch_bytes > 0)
    rocksdb_write(h->db, h->wo, h->batch, &rerr);
  rocksdb_writebatch_clear(h->batch);
  h->batch_bytes = 0;
  return rerr == NULL ? EDDY_OK : rdb_fail(h, rerr, "writing restored rows");
}

static int rdb_restore_row(eddy_backend *b, const eddy_row *row, const void *v, size_t n)
{
  rdb_backend *h = (rdb_backend *)b;
  rdb_state *st = &h->states[row->state];
  int rc = row_prefix(h, row, 1);
  if (rc != EDDY_OK || (rc = check_value_len(h, row, n)) != EDDY_OK)
    return rc;
  if (st->kind != EDDY_STATE_MAP) {
    rocksdb_writebatch_put_cf(h->batch, st->cf, (const char *)h->rk.data, h->rk.len, v, n);
    h->batch_bytes += h->rk.len + n;
  } else {
    size_t plen = h->rk.len, g = (size_t)(row->key_group - b->first_key_group);
    st->restoring[g] = 1;
    if (st->dirty[g]) {
      /* the row replaces what the map held: its old entries go first */
      if ((rc = scan_bounds(h)) != EDDY_OK)
        return rc;
      rocksdb_writebatch_delete_range_cf(h->batch, st->cf, (const char *)h->rk.data, plen,
                                         (const char *)h->upper.data, h->upper.len);
    }
    const unsigned char *p = v;
    for (size_t done = 0, kl, vl; done < n; done += kl + vl) {
      /* whole entries: backend.c checked */
      eddy_mp_value_len(p + done, n - done, &kl);
      eddy_mp_value_len(p + done + kl, n - done - kl, &vl);
      h->rk.len = plen;
      if ((rc = add_ukey(h, row, p + done, kl, 0)) != EDDY_OK)
        return rc;
      rocksdb_writebatch_put_cf(h->batch, st->cf, (const char *)h->rk.data, h->rk.len,
                                (const char *)p + done + kl, vl);
      h->batch_bytes += h->rk.len + vl;
    }
  }
  st->restored = 1;
  return h->batch_bytes >= RESTORE_BATCH_BYTES ? write_batch(h) : EDDY_OK;
}

static int rdb_restore_done(eddy_backend *b)
{
  rdb_backend *h = (rdb_backend *)b;
  int rc = write_batch(h);
  size_t ngroups = (size_t)(b->last_key_group - b->first_key_group + 1);
  for (uint32_t i = 0; i < h->nstates; i++) {
    rdb_state *st = &h->states[i];
    if (st->restored && st->kind == EDDY_STATE_MAP)
      for (size_t g = 0; g < ngroups; g++) {
        st->dirty[g] |= st->restoring[g];
        st->restoring[g] = 0;
      }
    st->restored = 0;
  }
  return rc;
}

/* ---- native checkpoints (incremental checkpoints) ----
 *
 * A native checkpoint is RocksDB's own: after the memtables are flushed,
 * rocksdb_checkpoint_create hard-links the live SST files into a folder
 * and copies MANIFEST, CURRENT and OPTIONS beside them. The runtime
 * uploads what earlier checkpoints do not hold (runtime/checkpoint.c).
 * Restoring one folder of the same key groups opens it as the database;
 * otherwise the rows of this backend's key groups are copied, entry by
 * entry, out of each folder opened read-only: the entries are the same
 * bytes in both databases, so nothing is decoded. */

static void drop_found(rdb_backend *h)
{
  for (int i = 0; i < h->nfound; i++) {
    rocksdb_column_family_handle_destroy(h->found[i]);
    free(h->found_names[i]);
  }
  free(h->found);
  free(h->found_names);
  h->found = NULL;
  h->found_names = NULL;
  h->nfound = 0;
}

/* The found column family called name, taken out of the list; NULL if
 * there is none. */
static rocksdb_column_family_handle_t *take_found(rdb_backend *h, const char *name)
{
  for (int i = 0; i < h->nfound; i++) {
    if (strcmp(h->found_names[i], name) != 0)
      continue;
    rocksdb_column_family_handle_t *cf = h->found[i];
    free(h->found_names[i]);
    h->nfound--;
    h->found[i] = h->found[h->nfound];
    h->found_names[i] = h->found_names[h->nfound];
    return cf;
  }
  return NULL;
}

static int add_found(rdb_backend *h, const char *name, rocksdb_column_family_handle_t *cf)
{
  rocksdb_column_family_handle_t **f = realloc(h->found, (size_t)(h->nfound + 1) * sizeof *f);
  if (f != NULL)
    h->found = f;
  char **n = realloc(h->found_names, (size_t)(h->nfound + 1) * sizeof *n);
  if (n != NULL)
    h->found_names = n;
  char *copy = strdup(name);
  if (f == NULL || n == NULL || copy == NULL) {
    free(copy);
    rocksdb_column_family_handle_destroy(cf);
    return EDDY_ENOMEM;
  }
  h->found[h->nfound] = cf;
  h->found_names[h->nfound++] = copy;
  return EDDY_OK;
}

/* The 2-byte big-endian key-group prefix of kg. */
static void kg_prefix(int kg, char out[2])
{
  out[0] = (char)(kg >> 8 & 0xff);
  out[1] = (char)(kg & 0xff);
}

int eddy_rocksdb_checkpoint(eddy_backend *b, int64_t id, char **dir, eddy_err *err)
{
  if (b == NULL || dir == NULL || b->ops->destroy != rdb_destroy)
    return eddy_seterr(err, EDDY_EINVAL, "a native checkpoint needs a RocksDB backend");
  rdb_backend *h = (rdb_backend *)b;
  *dir = NULL;
  char name[40];
  snprintf(name, sizeof name, "chk-%lld", (long long)id);
  char *path = join(h->path, name);
  if (path == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory");
  eddy_remove_tree(path); /* an earlier attempt's, given up */
  char *rerr = NULL;
  /* WAL off: what is only in the memtables must be in SST files first */
  rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
  rocksdb_flushoptions_set_wait(fo, 1);
  for (uint32_t i = 0; i < h->nstates && rerr == NULL; i++)
    rocksdb_flush_cf(h->db, fo, h->states[i].cf, &rerr);
  for (int k = 0; k < 2 && rerr == NULL; k++)
    if (h->timer_cf[k] != NULL)
      rocksdb_flush_cf(h->db, fo, h->timer_cf[k], &rerr);
  rocksdb_flushoptions_destroy(fo);
  rocksdb_checkpoint_t *cp = NULL;
  if (rerr == NULL)
    cp = rocksdb_checkpoint_object_create(h->db, &rerr);
  if (rerr == NULL)
    rocksdb_checkpoint_create(cp, path, 0, &rerr);
  if (cp != NULL)
    rocksdb_checkpoint_object_destroy(cp);
  if (rerr != NULL) {
    eddy_seterr(err, EDDY_EIO, "rocksdb backend (%s): a native checkpoint failed: %s", h->path,
                rerr);
    rocksdb_free(rerr);
    eddy_remove_tree(path);
    free(path);
    return EDDY_EIO;
  }
  *dir = path;
  return EDDY_OK;
}

/* Opens the database in <working folder>/db with every column family it
 * has (the default one into default_cf, the others found), creating an
 * empty one when fresh. */
static int open_db(rdb_backend *h, int fresh, eddy_err *err)
{
  char *dbpath = join(h->path, "db");
  if (dbpath == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory");
  char *rerr = NULL;
  size_t n = 1;
  char **names = NULL;
  static const char *const only_default[1] = {"default"};
  if (!fresh) {
    names = rocksdb_list_column_families(h->opts, dbpath, &n, &rerr);
    if (names == NULL || rerr != NULL || n == 0) {
      eddy_seterr(err, EDDY_EIO, "rocksdb backend: cannot read the restored database in %s: %s",
                  h->path, rerr != NULL ? rerr : "no column families");
      rocksdb_free(rerr);
      if (names != NULL) /* an empty list, even on failure */
        rocksdb_list_column_families_destroy(names, n);
      free(dbpath);
      return EDDY_EIO;
    }
  }
  const rocksdb_options_t **opts = malloc(n * sizeof *opts);
  rocksdb_column_family_handle_t **handles = calloc(n, sizeof *handles);
  int rc = EDDY_OK;
  if (opts == NULL || handles == NULL) {
    rc = eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory");
  } else {
    for (size_t i = 0; i < n; i++)
      opts[i] = h->opts;
    h->db = rocksdb_open_column_families(h->opts, dbpath, (int)n,
                                         names != NULL ? (const char *const *)names
                                                       : only_default,
                                         opts, handles, &rerr);
    if (rerr != NULL) {
      rc = eddy_seterr(err, EDDY_EIO, "rocksdb backend: cannot open the restored database in "
                       "%s: %s", h->path, rerr);
      rocksdb_free(rerr);
      h->db = NULL;
    }
    for (size_t i = 0; rc == EDDY_OK && i < n; i++) {
      const char *name = names != NULL ? names[i] : only_default[i];
      if (strcmp(name, "default") == 0)
        h->default_cf = handles[i];
      else if (add_found(h, name, handles[i]) != EDDY_OK)
        rc = eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory");
      handles[i] = NULL;
    }
  }
  if (names != NULL)
    rocksdb_list_column_families_destroy(names, n);
  free(opts);
  free(handles);
  free(dbpath);
  return rc;
}

/* The column family for restored entries of state `name`: a registered
 * state's, a found one, or a new one (found from now on). */
static rocksdb_column_family_handle_t *cf_named(rdb_backend *h, const char *name, eddy_err *err)
{
  if (strcmp(name, "default") == 0)
    return h->default_cf;
  for (uint32_t i = 0; i < h->nstates; i++)
    if (strcmp(h->base.states[i].name, name) == 0)
      return h->states[i].cf;
  for (int i = 0; i < h->nfound; i++)
    if (strcmp(h->found_names[i], name) == 0)
      return h->found[i];
  char *rerr = NULL;
  rocksdb_column_family_handle_t *cf = rocksdb_create_column_family(h->db, h->opts, name, &rerr);
  if (rerr != NULL) {
    eddy_seterr(err, EDDY_EIO, "rocksdb backend (%s): cannot create the column family of "
                "state '%s': %s", h->path, name, rerr);
    rocksdb_free(rerr);
    return NULL;
  }
  if (add_found(h, name, cf) != EDDY_OK) {
    eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory");
    return NULL;
  }
  return h->found[h->nfound - 1];
}

/* A native checkpoint's folder opened read-only with every column family
 * (list-merge operator included, for the lists' unmerged appends). */
typedef struct native_db {
  rocksdb_t *db;
  char **names;
  size_t n;
  rocksdb_column_family_handle_t **cfs;
} native_db;

static void native_close(native_db *nd)
{
  for (size_t i = 0; nd->cfs != NULL && i < nd->n; i++)
    if (nd->cfs[i] != NULL)
      rocksdb_column_family_handle_destroy(nd->cfs[i]);
  free(nd->cfs);
  if (nd->db != NULL)
    rocksdb_close(nd->db);
  if (nd->names != NULL)
    rocksdb_list_column_families_destroy(nd->names, nd->n);
  memset(nd, 0, sizeof *nd);
}

static int native_open(native_db *nd, const rocksdb_options_t *o, const char *dir, eddy_err *err)
{
  memset(nd, 0, sizeof *nd);
  char *rerr = NULL;
  nd->names = rocksdb_list_column_families(o, dir, &nd->n, &rerr);
  if (nd->names == NULL || rerr != NULL || nd->n == 0) {
    eddy_seterr(err, EDDY_ECORRUPT, "native checkpoint in %s: cannot be read: %s", dir,
                rerr != NULL ? rerr : "no column families");
    rocksdb_free(rerr);
    if (nd->names != NULL) /* an empty list, even on failure */
      rocksdb_list_column_families_destroy(nd->names, nd->n);
    nd->names = NULL;
    nd->n = 0;
    return EDDY_ECORRUPT;
  }
  const rocksdb_options_t **opts = malloc(nd->n * sizeof *opts);
  nd->cfs = calloc(nd->n, sizeof *nd->cfs);
  if (opts == NULL || nd->cfs == NULL) {
    free(opts);
    native_close(nd);
    return eddy_seterr(err, EDDY_ENOMEM, "out of memory opening a native checkpoint");
  }
  for (size_t i = 0; i < nd->n; i++)
    opts[i] = o;
  nd->db = rocksdb_open_for_read_only_column_families(o, dir, (int)nd->n,
                                                      (const char *const *)nd->names, opts,
                                                      nd->cfs, 0, &rerr);
  free(opts);
  if (rerr != NULL) {
    eddy_seterr(err, EDDY_ECORRUPT, "native checkpoint in %s: cannot be opened: %s", dir, rerr);
    rocksdb_free(rerr);
    nd->db = NULL;
    for (size_t i = 0; i < nd->n; i++)
      nd->cfs[i] = NULL;
    native_close(nd);
    return EDDY_ECORRUPT;
  }
  return EDDY_OK;
}

/* Copies the entries of h's key groups out of the native checkpoint in
 * dir into h's database. */
static int copy_native(rdb_backend *h, const char *dir, eddy_err *err)
{
  native_db nd;
  int rc = native_open(&nd, h->opts, dir, err);
  if (rc != EDDY_OK)
    return rc;
  char lower[2], upper[2];
  kg_prefix(h->base.first_key_group, lower);
  kg_prefix(h->base.last_key_group + 1, upper);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_fill_cache(ro, 0);
  rocksdb_readoptions_set_iterate_upper_bound(ro, upper, sizeof upper);
  for (size_t i = 0; i < nd.n && rc == EDDY_OK; i++) {
    rocksdb_column_family_handle_t *to = cf_named(h, nd.names[i], err);
    if (to == NULL) {
      rc = err != NULL ? err->code : EDDY_EIO;
      break;
    }
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(nd.db, ro, nd.cfs[i]);
    for (rocksdb_iter_seek(it, lower, sizeof lower); rc == EDDY_OK && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
      size_t kl, vl;
      const char *k = rocksdb_iter_key(it, &kl);
      const char *v = rocksdb_iter_value(it, &vl);
      rocksdb_writebatch_put_cf(h->batch, to, k, kl, v, vl);
      h->batch_bytes += kl + vl;
      if (h->batch_bytes >= RESTORE_BATCH_BYTES && (rc = write_batch(h)) != EDDY_OK && err)
        eddy_err_copy(err, &h->base.err);
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    if (rerr != NULL && rc == EDDY_OK) {
      rc = eddy_seterr(err, EDDY_ECORRUPT, "native checkpoint in %s: state '%s': %s", dir,
                       nd.names[i], rerr);
    }
    rocksdb_free(rerr);
  }
  if (rc == EDDY_OK && (rc = write_batch(h)) != EDDY_OK && err)
    eddy_err_copy(err, &h->base.err);
  rocksdb_readoptions_destroy(ro);
  native_close(&nd);
  return rc;
}

/* The base database of a rescaled restore held key groups [first, last]:
 * those outside b's range go, in every column family, by range deletions
 * (a few tombstones, however many rows), as Flink does. */
static int delete_other_groups(rdb_backend *h, int first, int last, eddy_err *err)
{
  char lo[2], hi[2], end[2] = {(char)0x80, 0}; /* every key group is below 0x8000 */
  kg_prefix(h->base.first_key_group, lo);
  kg_prefix(h->base.last_key_group + 1, hi);
  int before = first < h->base.first_key_group, after = last > h->base.last_key_group;
  char *rerr = NULL;
  for (int i = -1; i < h->nfound && rerr == NULL && (before || after); i++) {
    rocksdb_column_family_handle_t *cf = i < 0 ? h->default_cf : h->found[i];
    if (before)
      rocksdb_delete_range_cf(h->db, h->wo, cf, "\0\0", 2, lo, sizeof lo, &rerr);
    if (after && rerr == NULL)
      rocksdb_delete_range_cf(h->db, h->wo, cf, hi, sizeof hi, end, sizeof end, &rerr);
  }
  if (rerr == NULL)
    return EDDY_OK;
  eddy_seterr(err, EDDY_EIO, "rocksdb backend (%s): dropping the key groups of other subtasks "
              "failed: %s", h->path, rerr);
  rocksdb_free(rerr);
  return EDDY_EIO;
}

/* ---- timers in RocksDB ----
 *
 * The timer service of rocksdb_timers.c keeps its rows in two column
 * families of this database, which the backend owns and hands over again
 * whenever the database is replaced by a restored one. */

static const char *const timer_family[2] = {EDDY_RDB_TIMER_CF_EVENT,
                                            EDDY_RDB_TIMER_CF_PROCESSING};

static eddy_timers *rdb_timers(eddy_backend *b) { return ((rdb_backend *)b)->timers; }

/* The timers forget the database, and the families' handles go (the
 * families stay in the database). */
static void release_timer_families(rdb_backend *h)
{
  if (h->timers != NULL)
    eddy_rdb_timers_detach(h->timers);
  for (int k = 0; k < 2; k++) {
    if (h->timer_cf[k] != NULL)
      rocksdb_column_family_handle_destroy(h->timer_cf[k]);
    h->timer_cf[k] = NULL;
  }
}

/* The timers take their families (found in a restored database, or new)
 * and read their first timers. */
static int take_timer_families(rdb_backend *h, eddy_err *err)
{
  for (int k = 0; k < 2; k++) {
    if ((h->timer_cf[k] = take_found(h, timer_family[k])) != NULL)
      continue;
    char *rerr = NULL;
    h->timer_cf[k] = rocksdb_create_column_family(h->db, h->opts, timer_family[k], &rerr);
    if (rerr != NULL) {
      eddy_seterr(err, EDDY_EIO, "rocksdb backend (%s): cannot create the column family of "
                  "the timers: %s", h->path, rerr);
      rocksdb_free(rerr);
      h->timer_cf[k] = NULL;
      return EDDY_EIO;
    }
  }
  int rc = eddy_rdb_timers_attach(h->timers, h->db, h->wo, h->timer_cf);
  if (rc != EDDY_OK)
    eddy_seterr(err, rc, "%s", eddy_timers_errmsg(h->timers));
  return rc;
}

/* Registers into `into` the timers of family cf of db (a timer family of
 * kind `kind`) whose key groups are in [first, last]; where names the
 * database in messages. */
static int timer_rows_into(rocksdb_t *db, rocksdb_column_family_handle_t *cf,
                           eddy_timer_kind kind, int first, int last, eddy_timers *into,
                           const char *where, eddy_err *err)
{
  char lower[2], upper[2];
  kg_prefix(first, lower);
  kg_prefix(last + 1, upper);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_fill_cache(ro, 0);
  rocksdb_readoptions_set_iterate_upper_bound(ro, upper, sizeof upper);
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, ro, cf);
  int rc = EDDY_OK;
  for (rocksdb_iter_seek(it, lower, sizeof lower); rc == EDDY_OK && rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t n;
    const char *row = rocksdb_iter_key(it, &n);
    eddy_timer t;
    if (eddy_rdb_timer_parse(row, n, &t) != EDDY_OK)
      rc = eddy_seterr(err, EDDY_ECORRUPT, "%s: a damaged timer row in %s", where,
                       timer_family[kind]);
    else if (into == NULL)
      rc = eddy_seterr(err, EDDY_EINVAL, "%s: timers to restore, but no timer service", where);
    else if ((rc = eddy_timers_register(into, kind, &t, NULL)) != EDDY_OK)
      eddy_seterr(err, rc, "%s: restoring a timer: %s", where, eddy_timers_errmsg(into));
  }
  char *rerr = NULL;
  rocksdb_iter_get_error(it, &rerr);
  if (rerr != NULL && rc == EDDY_OK)
    rc = eddy_seterr(err, EDDY_ECORRUPT, "%s: reading the timers: %s", where, rerr);
  rocksdb_free(rerr);
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  return rc;
}

/* A restored database whose timers are to live in memory: its timer rows
 * go into `into`, and their families are dropped, or the next native
 * checkpoint would carry them beside the in-memory ones. */
static int move_found_timers(rdb_backend *h, eddy_timers *into, eddy_err *err)
{
  int rc = EDDY_OK;
  for (int k = 0; k < 2; k++) {
    rocksdb_column_family_handle_t *cf = take_found(h, timer_family[k]);
    if (cf == NULL)
      continue;
    if (rc == EDDY_OK)
      rc = timer_rows_into(h->db, cf, (eddy_timer_kind)k, h->base.first_key_group,
                           h->base.last_key_group, into, h->path, err);
    char *rerr = NULL;
    if (rc == EDDY_OK)
      rocksdb_drop_column_family(h->db, cf, &rerr);
    if (rerr != NULL) {
      rc = eddy_seterr(err, EDDY_EIO, "rocksdb backend (%s): dropping the restored timers' "
                       "column family failed: %s", h->path, rerr);
      rocksdb_free(rerr);
    }
    rocksdb_column_family_handle_destroy(cf);
  }
  return rc;
}

int eddy_rocksdb_restore_native(eddy_backend *b, const eddy_rocksdb_native *srcs, int n,
                                eddy_timers *timers, int *adopted, eddy_err *err)
{
  if (b == NULL || adopted == NULL || (n > 0 && srcs == NULL) || b->ops->destroy != rdb_destroy)
    return eddy_seterr(err, EDDY_EINVAL, "a native restore needs a RocksDB backend");
  rdb_backend *h = (rdb_backend *)b;
  *adopted = -1;
  /* the empty database goes; registered states get their families back
   * from the new one */
  release_pinned(h);
  release_timer_families(h);
  for (uint32_t i = 0; i < h->nstates; i++) {
    if (h->states[i].own_cf)
      rocksdb_column_family_handle_destroy(h->states[i].cf);
    h->states[i].cf = NULL;
    h->states[i].own_cf = 0;
  }
  if (h->default_cf != NULL)
    rocksdb_column_family_handle_destroy(h->default_cf);
  h->default_cf = NULL;
  drop_found(h);
  rocksdb_close(h->db);
  h->db = NULL;
  char *dbpath = join(h->path, "db");
  if (dbpath == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory");
  eddy_remove_tree(dbpath);
  /* Flink's restore: the old subtask sharing the most key groups with b
   * is the base, opened as it is; the others' rows are copied in */
  int base = -1, most = 0;
  for (int i = 0; i < n; i++) {
    int from = srcs[i].first_key_group > b->first_key_group ? srcs[i].first_key_group
                                                             : b->first_key_group;
    int to = srcs[i].last_key_group < b->last_key_group ? srcs[i].last_key_group
                                                         : b->last_key_group;
    if (to - from + 1 > most) {
      most = to - from + 1;
      base = i;
    }
  }
  if (base >= 0 && rename(srcs[base].dir, dbpath) != 0)
    base = -1; /* another file system: copied instead */
  free(dbpath);
  int rc = open_db(h, base < 0, err);
  if (rc == EDDY_OK && base >= 0)
    rc = delete_other_groups(h, srcs[base].first_key_group, srcs[base].last_key_group, err);
  for (int i = 0; i < n && rc == EDDY_OK; i++)
    if (i != base)
      rc = copy_native(h, srcs[i].dir, err);
  /* registered states take their families (or new ones) again */
  for (uint32_t i = 0; i < h->nstates && rc == EDDY_OK; i++) {
    const char *name = b->states[i].name;
    rdb_state *st = &h->states[i];
    if (strcmp(name, "default") == 0) {
      st->cf = h->default_cf;
    } else if ((st->cf = take_found(h, name)) == NULL) {
      char *rerr = NULL;
      st->cf = rocksdb_create_column_family(h->db, h->opts, name, &rerr);
      if (rerr != NULL) {
        rc = eddy_seterr(err, EDDY_EIO, "rocksdb backend (%s): cannot create the column "
                         "family of state '%s': %s", h->path, name, rerr);
        rocksdb_free(rerr);
        st->cf = NULL;
        break;
      }
    }
    st->own_cf = st->cf != h->default_cf;
    if (st->dirty != NULL)
      memset(st->dirty, 1, (size_t)(b->last_key_group - b->first_key_group + 1));
  }
  if (rc == EDDY_OK)
    rc = h->timers != NULL ? take_timer_families(h, err) : move_found_timers(h, timers, err);
  h->native = 1;
  if (rc == EDDY_OK)
    *adopted = base;
  return rc;
}

int eddy_rocksdb_native_rows(const char *dir, eddy_backend *b, eddy_timers *timers,
                             eddy_err *err)
{
  if (dir == NULL || b == NULL)
    return eddy_seterr(err, EDDY_EINVAL, "no native checkpoint folder or no backend");
  rocksdb_options_t *o = rocksdb_options_create();
  rocksdb_mergeoperator_t *merge = rocksdb_mergeoperator_create(
      NULL, no_destructor, list_full_merge, list_partial_merge, list_merge_free, list_merge_name);
  rocksdb_options_set_merge_operator(o, merge);
  rocksdb_options_set_info_log_level(o, 5);
  native_db nd;
  int rc = native_open(&nd, o, dir, err);
  int maxp, first, last;
  eddy_backend_key_groups(b, &maxp, &first, &last);
  char lower[2], upper[2];
  kg_prefix(first, lower);
  kg_prefix(last + 1, upper);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_fill_cache(ro, 0);
  rocksdb_readoptions_set_iterate_upper_bound(ro, upper, sizeof upper);
  for (size_t i = 0; rc == EDDY_OK && i < nd.n; i++) {
    eddy_timer_kind kind;
    if (eddy_rdb_timer_family(nd.names[i], &kind)) {
      rc = timer_rows_into(nd.db, nd.cfs[i], kind, first, last, timers, dir, err);
      continue;
    }
    uint32_t id = 0, count = eddy_backend_state_count(b);
    while (id < count && strcmp(eddy_backend_state_name(b, id), nd.names[i]) != 0)
      id++;
    rowreader rr;
    memset(&rr, 0, sizeof rr);
    eddy_buf_init(&rr.buf);
    rr.it = rocksdb_create_iterator_cf(nd.db, ro, nd.cfs[i]);
    rr.lower = lower;
    rr.lower_len = sizeof lower;
    rr.state = id;
    rr.state_name = nd.names[i];
    rr.is_map = id < count && eddy_backend_state_kind(b, id) == EDDY_STATE_MAP;
    eddy_row row;
    eddy_slice v;
    while (rc == EDDY_OK && (rc = reader_next(&rr, &row, &v, err)) == EDDY_OK) {
      if (id == count) {
        /* the default family is always there, and empty unless a state
         * is called "default" */
        rc = eddy_seterr(err, EDDY_ECORRUPT,
                         "native checkpoint in %s holds rows of state '%s', which its "
                         "canonical part does not register",
                         dir, nd.names[i]);
        break;
      }
      if ((rc = eddy_backend_restore_row(b, &row, v.data, v.len)) != EDDY_OK)
        eddy_seterr(err, rc, "%s", eddy_backend_errmsg(b));
    }
    if (rc == EDDY_EEOF)
      rc = EDDY_OK;
    reader_free(&rr);
  }
  int drc = eddy_backend_restore_done(b);
  if (rc == EDDY_OK && drc != EDDY_OK)
    rc = eddy_seterr(err, drc, "%s", eddy_backend_errmsg(b));
  rocksdb_readoptions_destroy(ro);
  native_close(&nd);
  rocksdb_options_destroy(o);
  return rc;
}

/* A RocksDB integer property of a column family, or -1. */
static int64_t int_property(rdb_backend *h, rocksdb_column_family_handle_t *cf, const char *name)
{
  uint64_t v;
  return rocksdb_property_int_cf(h->db, cf, name, &v) == 0 ? (int64_t)v : -1;
}

static int rdb_state_metrics(eddy_backend *b, uint32_t state, eddy_state_metrics *m)
{
  rdb_backend *h = (rdb_backend *)b;
  rocksdb_column_family_handle_t *cf = h->states[state].cf;
  m->estimated_keys = int_property(h, cf, "rocksdb.estimate-num-keys");
  m->live_sst_bytes = int_property(h, cf, "rocksdb.live-sst-files-size");
  m->memtable_bytes = int_property(h, cf, "rocksdb.cur-size-all-mem-tables");
  rocksdb_cache_t *cache = h->memory != NULL ? h->memory->cache : h->cache;
  m->block_cache_bytes = cache != NULL ? (int64_t)rocksdb_cache_get_usage(cache) : 0;
  return EDDY_OK;
}

static const eddy_backend_ops rdb_ops = {
  .version = EDDY_BACKEND_OPS_VERSION,
  .name = "rocksdb",
  .add_state = rdb_add_state,
  .get = rdb_get,
  .put = rdb_put,
  .clear = rdb_clear,
  .list_append = rdb_list_append,
  .list_get = rdb_get,
  .list_set = rdb_list_set,
  .map_get = rdb_map_get,
  .map_put = rdb_map_put,
  .map_remove = rdb_map_remove,
  .map_entries = rdb_map_entries,
  .cursor_open = rdb_cursor_open,
  .cursor_next = rdb_cursor_next,
  .cursor_close = rdb_cursor_close,
  .snapshot_open = rdb_snapshot_open,
  .snapshot_next = rdb_snapshot_next,
  .snapshot_close = rdb_snapshot_close,
  .restore_row = rdb_restore_row,
  .restore_done = rdb_restore_done,
  .state_metrics = rdb_state_metrics,
  .timers = rdb_timers,
  .destroy = rdb_destroy,
};

void eddy_rocksdb_config_init(eddy_rocksdb_config *rcfg)
{
  memset(rcfg, 0, sizeof *rcfg);
  rcfg->predefined = EDDY_ROCKSDB_DEFAULT;
  rcfg->block_cache_size = -1;
  rcfg->bloom_filter_bits = -1;
  rcfg->compression = EDDY_ROCKSDB_COMPRESSION_UNSET;
}

int eddy_rocksdb_backend_new(const eddy_backend_config *cfg, const eddy_rocksdb_config *rcfg,
                             eddy_backend **out, eddy_err *err)
{
  if (cfg == NULL || out == NULL)
    return eddy_seterr(err, EDDY_EINVAL,
                       "rocksdb backend: no configuration or no result pointer");
  eddy_rocksdb_config defaults;
  if (rcfg == NULL) {
    eddy_rocksdb_config_init(&defaults);
    rcfg = &defaults;
  }
  rdb_backend *h = calloc(1, sizeof *h);
  if (h == NULL)
    return eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory");
  h->lock_fd = -1;
  eddy_buf_init(&h->rk);
  eddy_buf_init(&h->upper);
  eddy_buf_init(&h->out);
  int rc = eddy_backend_base_init(&h->base, &rdb_ops, cfg, err);
  if (rc != EDDY_OK) {
    free(h);
    return rc;
  }
  if ((rc = build_options(h, rcfg, err)) != EDDY_OK ||
      (rc = open_folder(h, rcfg, err)) != EDDY_OK)
    goto fail;
  char *dbpath = join(h->path, "db");
  if (dbpath == NULL) {
    rc = eddy_seterr(err, EDDY_ENOMEM, "rocksdb backend: out of memory");
    goto fail;
  }
  const char *names[1] = {"default"};
  const rocksdb_options_t *cf_opts[1] = {h->opts};
  char *rerr = NULL;
  h->db = rocksdb_open_column_families(h->opts, dbpath, 1, names, cf_opts, &h->default_cf,
                                       &rerr);
  free(dbpath);
  if (rerr != NULL) {
    rc = eddy_seterr(err, EDDY_EIO, "rocksdb backend: cannot open RocksDB in %s: %s", h->path,
                     rerr);
    rocksdb_free(rerr);
    h->db = NULL;
    h->default_cf = NULL;
    goto fail;
  }
  h->ro = rocksdb_readoptions_create();
  h->ro_scan = rocksdb_readoptions_create();
  h->wo = rocksdb_writeoptions_create();
  rocksdb_writeoptions_disable_WAL(h->wo, 1);
  h->batch = rocksdb_writebatch_create();
  if (!rcfg->timers_in_memory &&
      ((rc = eddy_rdb_timers_new(cfg->max_parallelism, cfg->first_key_group,
                                 cfg->last_key_group, h->path, &h->timers, err)) != EDDY_OK ||
       (rc = take_timer_families(h, err)) != EDDY_OK))
    goto fail;
  *out = &h->base;
  return EDDY_OK;
fail:
  rdb_destroy(&h->base);
  return rc;
}
