/*
 * File system helpers shared by the engine and the binding.
 */
#ifndef EDDY_UTIL_FS_H
#define EDDY_UTIL_FS_H

/* Removes path and everything under it, without following symbolic links;
 * best effort: what cannot be removed is left and the rest goes on. NULL
 * is fine. For throwaway folders (working folders, temporary copies); the
 * checkpoint storage, which must report failures, has its own. */
void eddy_remove_tree(const char *path);

#endif
