/* --threads auto (the default): the training runs at 1 thread or at the most threads, whichever is
 * faster at the moment, measured as it goes. The library's results do not depend on the thread
 * count, so switching changes the time only, never the bytes.
 *
 * Why: on a machine whose cores are all in use by others, a team of threads that must meet at every
 * parallel loop waits, at each loop, for the member the scheduler put aside (a 2-core machine with
 * one busy process made an epoch 30 times slower at 2 threads than at 2 free cores), while one
 * thread keeps its pace. The chooser times windows of steps at the count in use and now and then a
 * short probe at the other count, keeps the faster one, probes less often while the probes lose, and
 * probes at once when the count in use has become slower than the other count was. It starts at the
 * fewer threads. */
#ifndef DEMO_THREADS_H
#define DEMO_THREADS_H

#include <stdint.h>

typedef struct tuner {
    int counts[2];      /* the fewer and the more threads */
    int cur;            /* the index of the count in use */
    int probing;        /* the window running is a probe of counts[cur] */
    int warming;        /* the next step is the first at a new count: left out of the timing */
    double per_step[2]; /* the last seconds per step measured at each count (0: not yet) */
    int lost[2];        /* probes of each count that lost */
    double window_t0, next_probe, interval;
    int64_t window_steps, steps_at[2];
} tuner;

/* Chooses between lo and hi threads (--threads auto: 1 and the library's default); lo == hi: a fixed
 * count. */
void tuner_init(tuner *t, int lo, int hi);
/* Called before each training step: at the end of a window, measures and picks the count for the
 * next one (sbx_set_num_threads). */
void tuner_step(tuner *t);
/* After other work between steps (an evaluation): the window in progress starts again. */
void tuner_restart(tuner *t);
/* The steps run at each count since the last call: "1 thread", "2 threads", "2 threads 93%, 1 7%". */
void tuner_report(tuner *t, char *buf, int size);

#endif
