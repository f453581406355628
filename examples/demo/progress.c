#define _POSIX_C_SOURCE 200809L /* clock_gettime, fileno */
/* The progress bar of progress.h. */
#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define BAR 30

double progress_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void progress_start(progress *p, int epoch, int epochs, int64_t total) {
    p->tty = isatty(fileno(stdout));
    p->epoch = epoch;
    p->epochs = epochs;
    p->total = total;
    p->start = progress_now();
    p->drawn = 0;
}

static void draw(const progress *p, int64_t done, double loss, double accuracy, double now, const char *note) {
    char bar[BAR + 1];
    const int fill = p->total > 0 ? (int)(BAR * done / p->total) : BAR;
    for (int i = 0; i < BAR; i++) bar[i] = i < fill ? '#' : '.';
    bar[BAR] = 0;
    const double dt = now - p->start, rate = dt > 0 ? (double)done / dt : 0;
    printf("%sepoch %d/%d [%s] %lld/%lld  %.0f images/s  loss %.4f  accuracy %.2f%%%s%s%s", p->tty ? "\r" : "",
           p->epoch, p->epochs, bar, (long long)done, (long long)p->total, rate, loss, 100 * accuracy,
           note ? "  " : "", note ? note : "", p->tty ? "\033[K" : "");
}

void progress_update(progress *p, int64_t done, double loss, double accuracy) {
    if (!p->tty) return;
    const double now = progress_now();
    if (now - p->drawn < 0.1 && done < p->total) return;
    draw(p, done, loss, accuracy, now, NULL);
    fflush(stdout);
    p->drawn = now;
}

void progress_finish(progress *p, int64_t done, double loss, double accuracy, const char *note) {
    draw(p, done, loss, accuracy, progress_now(), note);
    printf("\n");
    fflush(stdout);
}
