/* The thread-count chooser of threads.h. */
#include "threads.h"

#include <stdio.h>

#include <sparsebox.h>

#include "progress.h"

#define WINDOW 16          /* timed steps per window at the count in use */
#define PROBE 4            /* timed steps per probe of the other count */
#define FIRST_INTERVAL 0.5 /* seconds between probes after a probe won; doubled after each that lost */
#define MAX_INTERVAL 30.0

void tuner_init(tuner *t, int lo, int hi) {
    t->counts[0] = lo;
    t->counts[1] = hi > lo ? hi : lo;
    t->cur = 0; /* the fewer threads first: cheap to measure whatever the machine is doing */
    t->probing = 0;
    t->warming = 1; /* the first step plans the function: not timed */
    t->per_step[0] = t->per_step[1] = 0;
    t->lost[0] = t->lost[1] = 0;
    t->interval = FIRST_INTERVAL;
    t->window_t0 = t->next_probe = progress_now();
    t->window_steps = 0;
    t->steps_at[0] = t->steps_at[1] = 0;
    sbx_set_num_threads(t->counts[t->cur]);
}

static void use(tuner *t, int index) {
    if (index != t->cur) {
        t->cur = index;
        t->warming = 1; /* the first step after a switch wakes the threads: not timed */
        sbx_set_num_threads(t->counts[index]);
    }
}

/* A window is over: per seconds a step at the count in use. */
static void decide(tuner *t, double per, double now) {
    const int cur = t->cur, other = 1 - cur;
    t->per_step[cur] = per;
    if (t->probing) { /* keep the probed count if it won; else go back and wait longer */
        t->probing = 0;
        if (per < t->per_step[other]) {
            t->interval = FIRST_INTERVAL;
        } else {
            use(t, other);
            /* a first probe may have paid for starting the threads: no longer wait for the next */
            if (++t->lost[cur] > 1) t->interval = t->interval * 2 < MAX_INTERVAL ? t->interval * 2 : MAX_INTERVAL;
        }
        t->next_probe = now + t->interval;
    } else if (t->per_step[other] == 0 || per > t->per_step[other] || now >= t->next_probe) {
        /* never measured, slower now than the other count was, or time for a look */
        t->probing = 1;
        use(t, other);
    }
    t->window_t0 = now;
    t->window_steps = 0;
}

void tuner_step(tuner *t) {
    if (t->counts[0] != t->counts[1]) {
        const double now = progress_now();
        if (t->warming) { /* the step just run was a warm-up: the window starts now */
            t->warming = 0;
            t->window_t0 = now;
            t->window_steps = 0;
        } else if (t->window_steps == (t->probing ? PROBE : WINDOW)) {
            decide(t, (now - t->window_t0) / (double)t->window_steps, now);
        }
        if (!t->warming) t->window_steps++;
    }
    t->steps_at[t->cur]++;
}

void tuner_restart(tuner *t) { t->warming = 1; }

void tuner_report(tuner *t, char *buf, int size) {
    const int64_t a = t->steps_at[1], b = t->steps_at[0], all = a + b;
    const int hi = t->counts[1], lo = t->counts[0];
    if (b == 0 || lo == hi)
        snprintf(buf, (size_t)size, "%d thread%s", hi, hi == 1 ? "" : "s");
    else if (a == 0)
        snprintf(buf, (size_t)size, "%d thread%s", lo, lo == 1 ? "" : "s");
    else
        snprintf(buf, (size_t)size, "%d threads %.0f%%, %d %.0f%%", hi, 100.0 * (double)a / (double)all, lo,
                 100.0 * (double)b / (double)all);
    t->steps_at[0] = t->steps_at[1] = 0;
}
