/*
 * A record reader over a file or a file descriptor: what from_file and
 * from_stdin run on.
 *
 * It owns the I/O (large read(2) calls, no system call per line), splits
 * lines, counts them for messages ("orders.jsonl:17: invalid JSON: ..."),
 * enforces the line length limit without buffering a runaway line, and
 * knows the byte offset after each record so that a source can put it in a
 * checkpoint and seek back to it on restore. Turning lines into records is
 * format.h's job.
 *
 * With skip_errors (a source's on_error = "skip") a malformed record is
 * counted and passed over; the count and the first message stay available
 * for the runner's end-of-job report.
 */
#ifndef EDDY_RUNTIME_READER_H
#define EDDY_RUNTIME_READER_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/format.h"
#include "util/buf.h"
#include "util/err.h"

#define EDDY_READER_MAX_LINE ((size_t)64 << 20)

typedef struct eddy_reader_config {
  const char *path;        /* the file to read; used when fd < 0 */
  int fd;                  /* >= 0: read this descriptor instead; the reader
                              does not close it */
  const char *name;        /* for messages; NULL: path, or "<stdin>" for
                              fd 0 and "<fd N>" otherwise */
  eddy_format_kind format;
  eddy_csv_options csv;    /* for EDDY_FORMAT_CSV */
  size_t max_line;         /* longest line in bytes (without its newline);
                              0: EDDY_READER_MAX_LINE */
  int skip_errors;         /* skip and count malformed records */
  int nonblocking;         /* with nothing to read yet, next returns
                              EDDY_EAGAIN instead of waiting */
} eddy_reader_config;

/* fd -1, no path, jsonl, CSV defaults, max_line 64 MiB, errors stop. */
void eddy_reader_config_init(eddy_reader_config *cfg);

typedef struct eddy_reader eddy_reader;

/* Opens the file (or takes the descriptor) and gives a reader the caller
 * frees with eddy_reader_close. EDDY_EIO "<path>: <strerror>" if the file
 * cannot be opened or is a directory; EDDY_EINVAL for a bad config. Nothing
 * is read yet. */
int eddy_reader_open(const eddy_reader_config *cfg, eddy_reader **out,
                     eddy_err *err);

/* Closes the file if the reader opened it and frees everything; NULL is
 * fine. */
void eddy_reader_close(eddy_reader *r);

/*
 * The next record. EDDY_OK: *record holds its canonical MessagePack bytes,
 * owned by the reader and valid until the next call on it. EDDY_EEOF at the
 * end (again on every later call). EDDY_EFORMAT "<name>:<line>: <what>" for
 * a malformed record (line: where it starts); the reader has moved past it,
 * so calling again goes on with the next one. Without skip_errors a line
 * over max_line is such an error too. EDDY_EIO "<name>: <strerror>" for a
 * read error; EDDY_EINTR when a read was interrupted and
 * eddy_interrupt_pending() is set (calling again resumes where it stopped).
 * A bad CSV header is an error even with skip_errors, and stays one.
 */
int eddy_reader_next(eddy_reader *r, eddy_slice *record, eddy_err *err);

/* The byte offset just after the last record returned (where a resumed
 * reader goes on) and how many lines lie before it; 0 and 0 at first. */
uint64_t eddy_reader_offset(const eddy_reader *r);
uint64_t eddy_reader_line(const eddy_reader *r);

/*
 * Goes to offset, which must come from eddy_reader_offset (the start of a
 * line), with line the matching eddy_reader_line, so that messages keep
 * their line numbers. For CSV with header the header is read again from the
 * start of the file first. EDDY_EUNSUPPORTED for a descriptor that cannot
 * seek (a pipe), EDDY_EINVAL for an offset past the end of the file or
 * inside the header, EDDY_EIO and EDDY_EFORMAT as for reading the header.
 */
int eddy_reader_seek(eddy_reader *r, uint64_t offset, uint64_t line,
                     eddy_err *err);

/* Malformed records skipped so far, and the message of the first one
 * (owned by the reader, valid until it is closed; NULL if none). */
uint64_t eddy_reader_skipped(const eddy_reader *r);
const char *eddy_reader_first_skipped(const eddy_reader *r);

/* The name used in messages; owned by the reader. */
const char *eddy_reader_name(const eddy_reader *r);

#endif
