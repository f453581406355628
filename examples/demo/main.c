#define _POSIX_C_SOURCE 200809L /* mkdir */
/* The sparsebox demo: trains a convolutional network on Fashion-MNIST through the Op graph, reports
 * the test accuracy, and writes pictures, a log and the trained parameters (README.md, "The demo").
 * The options and the run are here; idx.c reads the data, net.c builds the graph, figures.c, png.c
 * and font.c draw the pictures, progress.c the progress bar, threads.c picks the thread count. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#include <sparsebox.h>

#include "figures.h"
#include "idx.h"
#include "net.h"
#include "png.h"
#include "progress.h"
#include "threads.h"

static const char *const CLASS_NAMES[NET_CLASSES] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                     "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

#define EVAL_BATCH 500
#define ERR_SIZE 16384

typedef struct options {
    int epochs;
    int64_t train_size; /* 0: the whole training set */
    int64_t test_size;  /* 0: the whole test set */
    int64_t batch;
    int threads; /* 0: auto, 1 or the library's default, whichever is faster */
    uint64_t seed;
    double dropout, lr;
    int cosine;   /* the learning rate along a half cosine from lr down to 0 over all the steps */
    int lr_halve; /* otherwise: halved every lr_halve epochs (0: constant) */
    const char *out, *data;
    int local;
    int print_graph;
    int nclassify;
    char **classify;
} options;

static const options DEFAULTS = {
    .epochs = 10,
    .train_size = 0,
    .test_size = 0,
    .batch = 64,
    .threads = 0,
    .seed = 1,
    .dropout = 0.25,
    .lr = 3e-3,
    .cosine = 1,
    .lr_halve = 0,
    .out = "build/demo-out",
    .data = IDX_DEFAULT_DIR,
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: demo [options]\n"
            "       demo [--out DIR] [--local] --classify FILE.png...\n"
            "Trains conv(1->16, 5x5) -> ReLU -> max_pool 2x2 -> conv(16->32, 5x5) -> ReLU -> max_pool 2x2 -> dropout\n"
            "-> dense(512->10) -> softmax cross-entropy on Fashion-MNIST through sparsebox's Op graph (Adam, float32),\n"
            "reports the test accuracy and writes filters.png, maps.png, confusion.png, log.csv and params/*.npy to DIR.\n"
            "  --epochs N       passes over the training images (default %d)\n"
            "  --train-size N   train on the first N training images (default: all 60000)\n"
            "  --test-size N    evaluate on the first N test images (default: all 10000)\n"
            "  --batch N        images per training step (default %lld; a last partial batch is left out)\n"
            "  --threads N      threads for the library, or auto (the default): 1 or the most (SBX_NUM_THREADS,\n"
            "                   else every core), whichever trains faster at the moment; the results are the same\n"
            "  --seed S         seed of the initial weights, the shuffles and the dropout masks (default %llu)\n"
            "  --dropout R      dropout rate before the dense layer, 0 <= R < 1 (default %g)\n"
            "  --lr R           Adam's learning rate at the first step (default %g)\n"
            "  --lr-schedule S  cosine: lowered along a half cosine to 0 after the last step (the default);\n"
            "                   halve:N: halved every N epochs; constant\n"
            "  --out DIR        where the outputs go (default %s)\n"
            "  --data DIR       the gzipped IDX files (default %s, Debian's %s)\n"
            "  --local          the second convolution replaced by local connections (unshared weights)\n"
            "  --print-graph    print the training step's nodes (sbx_graph_print) before training\n"
            "  --classify FILE.png...  load DIR/params and print the class of each 28x28 image (gray or RGB)\n"
            "  --help           this text\n",
            DEFAULTS.epochs, (long long)DEFAULTS.batch, (unsigned long long)DEFAULTS.seed, DEFAULTS.dropout,
            DEFAULTS.lr, DEFAULTS.out, DEFAULTS.data, IDX_PACKAGE);
}

static int bad_usage(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "demo: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (demo --help lists the options)\n");
    return 2;
}

/* An integer in [lo, hi] or a real in [lo, hi]; 0 on success. */
static int parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_real(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

/* 0, 1 for --help, 2 for bad usage (reported). */
static int parse(int argc, char **argv, options *o) {
    *o = DEFAULTS;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (!strcmp(a, "--local")) {
            o->local = 1;
            continue;
        }
        if (!strcmp(a, "--print-graph")) {
            o->print_graph = 1;
            continue;
        }
        if (!strcmp(a, "--classify")) {
            o->classify = argv + i + 1;
            o->nclassify = argc - i - 1;
            if (o->nclassify == 0) return bad_usage("%s needs at least one PNG file%s", a, "");
            for (int j = i + 1; j < argc; j++)
                if (!strncmp(argv[j], "--", 2))
                    return bad_usage("%s takes PNG files to its end: put %s before it", a, argv[j]);
            break;
        }
        if (strncmp(a, "--", 2)) return bad_usage("unexpected argument '%s'%s", a, "");
        if (i + 1 >= argc) return bad_usage("%s needs a value%s", a, "");
        const char *v = argv[++i];
        long long n;
        double r;
        if (!strcmp(a, "--epochs")) {
            if (parse_int(v, 1, 100000, &n)) return bad_usage("--epochs: '%s' is not an integer in 1..100000%s", v, "");
            o->epochs = (int)n;
        } else if (!strcmp(a, "--train-size")) {
            if (parse_int(v, 1, 1000000000, &n)) return bad_usage("--train-size: '%s' is not a positive integer%s", v, "");
            o->train_size = n;
        } else if (!strcmp(a, "--test-size")) {
            if (parse_int(v, 1, 1000000000, &n)) return bad_usage("--test-size: '%s' is not a positive integer%s", v, "");
            o->test_size = n;
        } else if (!strcmp(a, "--batch")) {
            if (parse_int(v, 1, 100000, &n)) return bad_usage("--batch: '%s' is not an integer in 1..100000%s", v, "");
            o->batch = n;
        } else if (!strcmp(a, "--threads")) {
            if (!strcmp(v, "auto"))
                o->threads = 0;
            else if (parse_int(v, 1, 4096, &n))
                return bad_usage("--threads: '%s' is neither auto nor an integer in 1..4096%s", v, "");
            else
                o->threads = (int)n;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 0);
            if (errno || end == v || *end || *v == '-') return bad_usage("--seed: '%s' is not an unsigned 64-bit integer%s", v, "");
            o->seed = s;
        } else if (!strcmp(a, "--dropout")) {
            if (parse_real(v, 0, 0.99, &r)) return bad_usage("--dropout: '%s' is not a rate in [0, 0.99]%s", v, "");
            o->dropout = r;
        } else if (!strcmp(a, "--lr")) {
            if (parse_real(v, 1e-9, 10, &r)) return bad_usage("--lr: '%s' is not a learning rate in (0, 10]%s", v, "");
            o->lr = r;
        } else if (!strcmp(a, "--lr-schedule")) {
            o->cosine = !strcmp(v, "cosine");
            o->lr_halve = 0;
            if (!strncmp(v, "halve:", 6)) {
                if (parse_int(v + 6, 1, 100000, &n))
                    return bad_usage("--lr-schedule: '%s': halve:N takes N in 1..100000%s", v, "");
                o->lr_halve = (int)n;
            } else if (!o->cosine && strcmp(v, "constant")) {
                return bad_usage("--lr-schedule: '%s' is not cosine, halve:N or constant%s", v, "");
            }
        } else if (!strcmp(a, "--out")) {
            o->out = v;
        } else if (!strcmp(a, "--data")) {
            o->data = v;
        } else {
            return bad_usage("unknown option '%s'%s", a, "");
        }
    }
    return 0;
}

/* mkdir -p */
static int make_dirs(const char *path, char *err, size_t errsize) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) {
        snprintf(err, errsize, "the folder name %.200s... is too long", path);
        return -1;
    }
    strcpy(buf, path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char keep = *p;
            *p = 0;
            struct stat st;
            if (stat(buf, &st) != 0) {
                if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                    snprintf(err, errsize, "cannot make the folder %s: %s", buf, strerror(errno));
                    return -1;
                }
            } else if (!S_ISDIR(st.st_mode)) {
                snprintf(err, errsize, "%s is not a folder", buf);
                return -1;
            }
            *p = keep;
            if (!keep) break;
        }
    }
    return 0;
}

static int lib_error(const char *what, sbx_status st) {
    fprintf(stderr, "demo: %s: %s: %s\n", what, sbx_status_str(st), sbx_last_error());
    return 1;
}

static float PIXEL[256]; /* byte -> [0, 1] */

static void to_float(const uint8_t *px, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = PIXEL[px[i]];
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* An unbiased integer in [0, n) (n >= 1), by rejection. */
static uint64_t below(sbx_rng_cursor *c, uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = sbx_rng_u64(c);
    while (x >= limit);
    return x % n;
}

/* The learning rate of step `step` (from 0) of `steps`, in epoch `epoch` (from 0). */
static double learning_rate(const options *o, int epoch, int64_t step, int64_t steps) {
    if (o->cosine) return o->lr * 0.5 * (1 + cos(M_PI * (double)step / (double)steps));
    return o->lr_halve > 0 ? o->lr * ldexp(1.0, -(epoch / o->lr_halve)) : o->lr;
}

/* Classifies set's images with f (images -> logits), batch by batch; counts[t * 10 + p] gets the
 * confusion matrix (may be NULL). Returns the share classified right, or -1 after reporting. */
static double evaluate(sbx_function *f, const idx_set *set, float *buf, int64_t *counts) {
    int64_t right = 0;
    if (counts) memset(counts, 0, NET_CLASSES * NET_CLASSES * sizeof *counts);
    for (int64_t lo = 0; lo < set->count; lo += EVAL_BATCH) {
        const int64_t n = set->count - lo < EVAL_BATCH ? set->count - lo : EVAL_BATCH;
        to_float(set->pixels + lo * NET_PIXELS, n * NET_PIXELS, buf);
        sbx_array x = {SBX_FLOAT32, 2, {n, NET_PIXELS}, buf};
        sbx_value in = {&x, NULL}, out;
        sbx_status st = sbx_function_call(f, &in, &out);
        if (st != SBX_OK) return lib_error("evaluating", st), -1;
        const float *logits = out.dense->data;
        for (int64_t i = 0; i < n; i++) {
            const int p = argmax(logits + i * NET_CLASSES, NET_CLASSES), t = set->labels[lo + i];
            right += p == t;
            if (counts) counts[t * NET_CLASSES + p]++;
        }
    }
    return set->count ? (double)right / (double)set->count : 0;
}

static int classify(const options *o) {
    char err[ERR_SIZE], dir[4096];
    snprintf(dir, sizeof dir, "%s/params", o->out);
    int local = o->local;
    if (!local) { /* a network trained with --local has no conv2 files but local2 ones */
        char probe[4200];
        struct stat st;
        snprintf(probe, sizeof probe, "%s/conv2_kernels.npy", dir);
        if (stat(probe, &st) != 0) {
            snprintf(probe, sizeof probe, "%s/local2_kernels.npy", dir);
            local = stat(probe, &st) == 0;
        }
    }
    net n;
    if (net_build(&n, local, 0, 1, 1, 0, err, sizeof err) != 0) {
        fprintf(stderr, "demo: %s\n", err);
        return 1;
    }
    int rc = 1;
    sbx_function *f = NULL;
    if (net_load(&n, dir, err, sizeof err) != 0) {
        fprintf(stderr, "demo: %s (train first: demo --out %s)\n", err, o->out);
        goto done;
    }
    sbx_status st = sbx_function_compile(n.g, 1, &n.images, 1, &n.logits, 0, NULL, 0, &f);
    if (st != SBX_OK) {
        lib_error("compiling", st);
        goto done;
    }
    rc = 0;
    for (int i = 0; i < o->nclassify; i++) {
        uint8_t *gray;
        if (png_read_gray(o->classify[i], NET_SIDE, NET_SIDE, &gray, err, sizeof err) != 0) {
            fprintf(stderr, "demo: %s\n", err);
            rc = 1;
            continue;
        }
        float x[NET_PIXELS];
        to_float(gray, NET_PIXELS, x);
        free(gray);
        sbx_array xa = {SBX_FLOAT32, 2, {1, NET_PIXELS}, x};
        sbx_value in = {&xa, NULL}, out;
        if ((st = sbx_function_call(f, &in, &out)) != SBX_OK) {
            rc = lib_error("classifying", st);
            break;
        }
        printf("%s: %s\n", o->classify[i], CLASS_NAMES[argmax(out.dense->data, NET_CLASSES)]);
    }
done:
    sbx_function_free(f);
    net_free(&n);
    return rc;
}

/* The pictures of the trained network. */
static int pictures(const options *o, net *n, sbx_function *maps, sbx_function *eval, const idx_set *test,
                    const int64_t *counts, double accuracy) {
    char err[ERR_SIZE], path[4200], title[256];
    const float *k1 = sbx_var_value(n->params[NET_K1])->dense->data;
    snprintf(path, sizeof path, "%s/filters.png", o->out);
    snprintf(title, sizeof title, "conv1: the %d trained 5x5 filters (red +, blue -)", NET_MAPS1);
    if (figure_filters(path, title, k1, NET_MAPS1, NET_KSIDE, NET_KSIDE, err, sizeof err) != 0) goto fail;

    float x[NET_PIXELS];
    to_float(test->pixels, NET_PIXELS, x);
    sbx_array xa = {SBX_FLOAT32, 2, {1, NET_PIXELS}, x};
    sbx_value in = {&xa, NULL}, out[2];
    sbx_status st = sbx_function_call(eval, &in, out);
    if (st != SBX_OK) return lib_error("classifying the pictured image", st);
    const int predicted = argmax(out[0].dense->data, NET_CLASSES);
    if ((st = sbx_function_call(maps, &in, out)) != SBX_OK) return lib_error("computing the feature maps", st);
    char caption[256], t1[128], t2[128];
    snprintf(caption, sizeof caption, "test image 0: %s, classified as %s", CLASS_NAMES[test->labels[0]],
             CLASS_NAMES[predicted]);
    snprintf(t1, sizeof t1, "conv1 + ReLU: %d maps of %lld x %lld", NET_MAPS1, (long long)n->conv1.out[0],
             (long long)n->conv1.out[1]);
    snprintf(t2, sizeof t2, "%s + ReLU: %d maps of %lld x %lld", n->local ? "local2" : "conv2", NET_MAPS2,
             (long long)n->conv2.out[0], (long long)n->conv2.out[1]);
    const figure_layer layers[2] = {
        {t1, out[0].dense->data, NET_MAPS1, (int)n->conv1.out[0], (int)n->conv1.out[1]},
        {t2, out[1].dense->data, NET_MAPS2, (int)n->conv2.out[0], (int)n->conv2.out[1]},
    };
    snprintf(path, sizeof path, "%s/maps.png", o->out);
    if (figure_maps(path, test->pixels, NET_SIDE, caption, layers, 2, err, sizeof err) != 0) goto fail;

    snprintf(path, sizeof path, "%s/confusion.png", o->out);
    snprintf(title, sizeof title, "%lld test images, %.2f%% classified right", (long long)test->count, 100 * accuracy);
    if (figure_confusion(path, title, counts, NET_CLASSES, CLASS_NAMES, err, sizeof err) != 0) goto fail;
    return 0;
fail:
    fprintf(stderr, "demo: %s\n", err);
    return 1;
}

static int train(const options *o) {
    char err[ERR_SIZE];
    idx_set train = {0}, test = {0};
    net n = {0};
    sbx_function *step = NULL, *eval = NULL, *maps = NULL;
    float *xb = NULL, *xe = NULL;
    int64_t *yb = NULL, *order = NULL;
    FILE *log = NULL;
    int rc = 1;
    sbx_status st;

    if (make_dirs(o->out, err, sizeof err) != 0) goto fail;
    double t0 = progress_now();
    if (idx_load_set(o->data, "train", NET_SIDE, NET_SIDE, NET_CLASSES, &train, err, sizeof err) != 0) goto fail;
    if (idx_load_set(o->data, "t10k", NET_SIDE, NET_SIDE, NET_CLASSES, &test, err, sizeof err) != 0) goto fail;
    const int64_t size = o->train_size && o->train_size < train.count ? o->train_size : train.count;
    const int64_t all_test = test.count;
    if (o->test_size && o->test_size < test.count) test.count = o->test_size;
    printf("Fashion-MNIST from %s: %lld training images (using %lld), %lld test images (using %lld), %lldx%lld "
           "(read in %.1f s)\n",
           o->data, (long long)train.count, (long long)size, (long long)all_test, (long long)test.count,
           (long long)train.rows, (long long)train.cols, progress_now() - t0);
    if (size < o->batch) {
        fprintf(stderr, "demo: %lld training images make no batch of %lld\n", (long long)size, (long long)o->batch);
        goto done;
    }

    const double keep = 1 - o->dropout;
    if (net_build(&n, o->local, 1, o->batch, keep, o->seed, err, sizeof err) != 0) goto fail;
    sbx_var *train_in[2] = {n.images, n.labels}, *train_out[2] = {n.loss, n.train_logits}, *map_out[2] = {n.maps1, n.maps2};
    if ((st = sbx_function_compile(n.g, 2, train_in, 2, train_out, n.nupd, n.updates, o->seed, &step)) != SBX_OK ||
        (st = sbx_function_compile(n.g, 1, &n.images, 1, &n.logits, 0, NULL, o->seed, &eval)) != SBX_OK ||
        (st = sbx_function_compile(n.g, 1, &n.images, 2, map_out, 0, NULL, o->seed, &maps)) != SBX_OK) {
        rc = lib_error("compiling the network", st);
        goto done;
    }
    if (o->print_graph) {
        sbx_var *all[2 + 3 * NET_NPARAMS + 1] = {n.loss, n.train_logits};
        for (int i = 0; i < n.nupd; i++) all[2 + i] = n.updates[i].value;
        printf("the training step's nodes:\n");
        if ((st = sbx_graph_print(n.g, 2 + n.nupd, all, stdout)) != SBX_OK) {
            rc = lib_error("printing the graph", st);
            goto done;
        }
    }
    const int64_t nbatches = size / o->batch, used = nbatches * o->batch;
    printf("network: conv 1->16 5x5 -> ReLU -> max_pool 2x2 -> %s 16->32 5x5 -> ReLU -> max_pool 2x2 -> dropout %g -> "
           "dense 512->10 (%lld parameters)\n",
           o->local ? "local" : "conv", o->dropout, (long long)net_param_count(&n));
    printf("training: Adam, batch %lld (%lld batches an epoch%s), lr %g", (long long)o->batch, (long long)nbatches,
           used < size ? ", the last partial one left out" : "", o->lr);
    if (o->cosine)
        printf(" lowered along a cosine to 0");
    else if (o->lr_halve)
        printf(" halved every %d epoch%s", o->lr_halve, o->lr_halve == 1 ? "" : "s");
    tuner threads;
    const int most = sbx_get_num_threads();
    tuner_init(&threads, o->threads ? o->threads : 1, o->threads ? o->threads : most);
    printf(", %d epoch%s, ", o->epochs, o->epochs == 1 ? "" : "s");
    if (o->threads || most == 1)
        printf("%d thread%s", threads.counts[1], threads.counts[1] == 1 ? "" : "s");
    else
        printf("threads: 1 or %d, whichever is faster", most);
    printf(", seed %llu\n", (unsigned long long)o->seed);
    fflush(stdout);

    xb = malloc((size_t)o->batch * NET_PIXELS * sizeof *xb);
    yb = malloc((size_t)o->batch * sizeof *yb);
    xe = malloc((size_t)EVAL_BATCH * NET_PIXELS * sizeof *xe);
    order = malloc((size_t)size * sizeof *order);
    if (!xb || !yb || !xe || !order) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/log.csv", o->out);
    if (!(log = fopen(path, "w"))) {
        snprintf(err, sizeof err, "cannot write %s: %s", path, strerror(errno));
        goto fail;
    }
    fprintf(log, "epoch,loss,accuracy,seconds\n");

    sbx_rng shuffle;
    sbx_rng_init(&shuffle, o->seed, 2);
    for (int64_t i = 0; i < size; i++) order[i] = i;
    sbx_array xa = {SBX_FLOAT32, 2, {o->batch, NET_PIXELS}, xb}, ya = {SBX_INT64, 1, {o->batch}, yb};
    const sbx_value in[2] = {{&xa, NULL}, {&ya, NULL}};
    int64_t counts[NET_CLASSES * NET_CLASSES];
    double trained = 0, accuracy = 0;
    for (int e = 0; e < o->epochs; e++) {
        sbx_rng_cursor c; /* Fisher-Yates, from position e of the shuffle stream */
        if ((st = sbx_rng_cursor_init(&shuffle, e, &c)) != SBX_OK) {
            rc = lib_error("shuffling", st);
            goto done;
        }
        for (int64_t i = size - 1; i > 0; i--) {
            int64_t j = (int64_t)below(&c, (uint64_t)i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        progress bar;
        progress_start(&bar, e + 1, o->epochs, used);
        double loss_sum = 0;
        int64_t right = 0;
        for (int64_t b = 0; b < nbatches; b++) {
            net_set_lr(&n, learning_rate(o, e, e * nbatches + b, o->epochs * nbatches));
            tuner_step(&threads);
            for (int64_t i = 0; i < o->batch; i++) {
                const int64_t k = order[b * o->batch + i];
                to_float(train.pixels + k * NET_PIXELS, NET_PIXELS, xb + i * NET_PIXELS);
                yb[i] = train.labels[k];
            }
            sbx_value out[2];
            if ((st = sbx_function_call(step, in, out)) != SBX_OK) {
                printf("\n");
                rc = lib_error("training", st);
                goto done;
            }
            loss_sum += *(const float *)out[0].dense->data;
            const float *logits = out[1].dense->data;
            for (int64_t i = 0; i < o->batch; i++) right += argmax(logits + i * NET_CLASSES, NET_CLASSES) == yb[i];
            const int64_t done = (b + 1) * o->batch;
            progress_update(&bar, done, loss_sum / (double)(b + 1), (double)right / (double)done);
        }
        const double seconds = progress_now() - bar.start, loss = loss_sum / (double)nbatches;
        trained += seconds;
        char note[64];
        tuner_report(&threads, note, sizeof note);
        tuner_restart(&threads); /* the evaluation below is not a training step */
        progress_finish(&bar, used, loss, (double)right / (double)used, note);
        if (!isfinite(loss)) {
            fprintf(stderr, "demo: the training loss is %g: the learning rate %g is too high\n", loss, o->lr);
            goto done;
        }
        if ((accuracy = evaluate(eval, &test, xe, counts)) < 0) goto done;
        printf("epoch %d/%d: train loss %.4f, test accuracy %.2f%%, %.1f s\n", e + 1, o->epochs, loss, 100 * accuracy,
               seconds);
        fflush(stdout);
        fprintf(log, "%d,%.6f,%.6f,%.3f\n", e + 1, loss, accuracy, seconds);
        fflush(log);
    }
    printf("test accuracy: %.2f%% (%lld images), trained in %.1f s\n", 100 * accuracy, (long long)test.count, trained);

    snprintf(path, sizeof path, "%s/params", o->out);
    if (make_dirs(path, err, sizeof err) != 0 || net_save(&n, path, err, sizeof err) != 0) goto fail;
    if (pictures(o, &n, maps, eval, &test, counts, accuracy) != 0) goto done;
    printf("wrote %s/: filters.png, maps.png, confusion.png, log.csv, params/ (", o->out);
    for (int i = 0; i < NET_NPARAMS; i++) printf("%s%s.npy", i ? ", " : "", net_param_name(&n, i));
    printf(")\n");
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "demo: %s\n", err);
done:
    if (log) fclose(log);
    free(xb);
    free(yb);
    free(xe);
    free(order);
    sbx_function_free(step);
    sbx_function_free(eval);
    sbx_function_free(maps);
    net_free(&n);
    idx_free_set(&train);
    idx_free_set(&test);
    return rc;
}

int main(int argc, char **argv) {
    options o;
    int p = parse(argc, argv, &o);
    if (p == 1) {
        usage(stdout);
        return 0;
    }
    if (p) return p;
    for (int i = 0; i < 256; i++) PIXEL[i] = (float)i / 255.0f;
    if (o.threads) sbx_set_num_threads(o.threads);
    return o.nclassify ? classify(&o) : train(&o);
}
