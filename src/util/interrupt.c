/* The interrupt flag: see interrupt.h. */
#include "util/interrupt.h"

#include <signal.h>

static volatile sig_atomic_t interrupt_flag;

void eddy_interrupt_request(void) { interrupt_flag = 1; }

int eddy_interrupt_pending(void) { return interrupt_flag != 0; }

void eddy_interrupt_clear(void) { interrupt_flag = 0; }
