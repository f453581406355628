/* The per-epoch progress bar: images per second, the running loss and accuracy. On a terminal it is
 * redrawn in place (at most ten times a second); otherwise it is written once, as one line, when the
 * epoch ends. */
#ifndef DEMO_PROGRESS_H
#define DEMO_PROGRESS_H

#include <stdint.h>

typedef struct progress {
    int tty;
    int epoch, epochs;
    int64_t total;
    double start, drawn;
} progress;

/* Seconds on a monotonic clock. */
double progress_now(void);
void progress_start(progress *p, int epoch, int epochs, int64_t total);
/* done images so far, their mean loss and the share classified right. */
void progress_update(progress *p, int64_t done, double loss, double accuracy);
/* The bar's last state, note (may be NULL) after it, and a newline. */
void progress_finish(progress *p, int64_t done, double loss, double accuracy, const char *note);

#endif
