#include "util/fs.h"

#include <ftw.h>
#include <stdio.h>
#include <unistd.h>

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)ftw;
  if (flag == FTW_DP)
    rmdir(path);
  else
    unlink(path);
  return 0; /* go on with the rest */
}

void eddy_remove_tree(const char *path)
{
  if (path != NULL)
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
