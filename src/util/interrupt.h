/*
 * Ctrl-C for long-running engine loops. A signal handler may only set a
 * flag, and it cannot know which job is running, so the flag is process-wide
 * (the one global in the engine): executors and blocking readers check it
 * and stop with EDDY_EINTR. Whoever installs the handler clears the flag
 * before starting new work.
 */
#ifndef EDDY_UTIL_INTERRUPT_H
#define EDDY_UTIL_INTERRUPT_H

/* Async-signal-safe. */
void eddy_interrupt_request(void);
int eddy_interrupt_pending(void);
void eddy_interrupt_clear(void);

#endif
