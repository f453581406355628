/* sbx plan: the planner's candidates for a layer, their times on this machine, and the choice. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define SUB "plan"

static const char usage[] =
    "usage: sbx plan --inshp C,H,W --kshp KH,KW [--nkern N] [--stride SY,SX | --step DX,DY] [--mode valid|full]\n"
    "                [--batch B] [--dtype float32|float64] [--local | --pool] [--wisdom FILE]\n"
    "\n"
    "Makes a SBX_PLAN_MEASURE plan for a convolution (default), local connections (--local) or max\n"
    "pooling (--pool, --kshp the window; without --stride the windows do not overlap) and prints each\n"
    "candidate path of its forward pass with its time on --batch images (default 1; the median of\n"
    "several runs after a warm-up), then the choice, and the rules' (SBX_PLAN_ESTIMATE) choice.\n"
    "Convolutions have up to four candidates (direct, gather, csr, csc: see conv.h); local connections\n"
    "and pooling have one each today. --nkern defaults to 1; --dtype to float32. The times are taken\n"
    "on the library's threads (SBX_NUM_THREADS, else OpenMP's count), as the choice is made for them.\n"
    "  --wisdom FILE  imports FILE first when it exists (a choice held there is taken without timing,\n"
    "                 and its recorded times are printed), then exports the wisdom to FILE.\n";

/* One positive integer option, or a usage error. */
static int positive(const char *flag, const char *text, int64_t *out) {
    if (text && (cli_ints(text, out, 1) != 1 || *out < 1))
        return cli_usage_error(SUB, "%s '%s' must be a positive integer", flag, text);
    return CLI_OK;
}

static int run(int argc, char **argv) {
    cli_geometry g = {"--inshp", "--kshp", NULL, NULL, NULL, NULL, NULL};
    const char *nkern_t = NULL, *batch_t = NULL, *dtype_t = NULL, *wisdom = NULL;
    int local = 0, pool = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if (strcmp(argv[i], "--local") == 0) {
            local = 1;
        } else if (strcmp(argv[i], "--pool") == 0) {
            pool = 1;
        } else if ((r = cli_geometry_opt(argc, argv, &i, &g)) || (r = cli_opt(argc, argv, &i, "--nkern", &nkern_t)) ||
                   (r = cli_opt(argc, argv, &i, "--batch", &batch_t)) ||
                   (r = cli_opt(argc, argv, &i, "--dtype", &dtype_t)) ||
                   (r = cli_opt(argc, argv, &i, "--wisdom", &wisdom))) {
            if (r < 0) return cli_usage_error(SUB, "option %s needs a value", argv[i]);
        } else {
            return cli_usage_error(SUB, "unexpected argument '%s'", argv[i]);
        }
    }
    if (local && pool) return cli_usage_error(SUB, "give --local or --pool, not both");
    if (pool && nkern_t) return cli_usage_error(SUB, "--pool takes no --nkern");
    if (pool && !g.stride && !g.step) g.stride = g.kernel; /* non-overlapping windows */
    int64_t nkern = 1, batch = 1;
    sbx_dtype dtype = SBX_FLOAT32;
    sbx_conv_shape s;
    int rc = positive("--nkern", nkern_t, &nkern);
    if (rc == CLI_OK) rc = positive("--batch", batch_t, &batch);
    if (rc == CLI_OK && dtype_t && (sbx_dtype_parse(dtype_t, &dtype) != SBX_OK ||
                                    (dtype != SBX_FLOAT32 && dtype != SBX_FLOAT64)))
        rc = cli_usage_error(SUB, "--dtype '%s' must be float32 or float64", dtype_t);
    if (rc == CLI_OK) rc = cli_geometry_shape(SUB, &g, &s);
    if (rc != CLI_OK) return rc;
    sbx_status st = SBX_OK;
    if (wisdom && access(wisdom, F_OK) == 0) st = sbx_wisdom_import(wisdom);
    sbx_conv_plan *measured = NULL, *estimated = NULL;
    if (st == SBX_OK)
        st = pool    ? sbx_pool_plan_create_flags(&s, dtype, SBX_PLAN_MEASURE, batch, &measured)
             : local ? sbx_local_plan_create_flags(&s, nkern, dtype, SBX_PLAN_MEASURE, batch, &measured)
                     : sbx_conv_plan_create_flags(&s, nkern, dtype, SBX_PLAN_MEASURE, batch, &measured);
    if (st == SBX_OK)
        st = pool    ? sbx_pool_plan_create(&s, dtype, &estimated)
             : local ? sbx_local_plan_create(&s, nkern, dtype, &estimated)
                     : sbx_conv_plan_create(&s, nkern, dtype, &estimated);
    sbx_plan_info m, e;
    if (st == SBX_OK) st = sbx_conv_plan_info(measured, &m);
    if (st == SBX_OK) st = sbx_conv_plan_info(estimated, &e);
    if (st == SBX_OK) {
        char kernels[48] = "";
        if (!pool) snprintf(kernels, sizeof kernels, ", %lld kernel%s", (long long)nkern, nkern == 1 ? "" : "s");
        printf("%s plan, %s, batch %lld%s: forward pass per candidate%s\n",
               pool ? "pooling" : local ? "local-connections" : "convolution", sbx_dtype_name(dtype), (long long)batch,
               kernels, m.from_wisdom ? " (from the wisdom, not timed now)" : "");
        printf("  %-8s %12s\n", "path", "ms (median)");
        for (int i = 0; i < m.ncandidates; i++)
            printf("  %-8s %12.4f%s\n", sbx_algo_name(m.candidates[i]), 1e3 * m.seconds[i],
                   m.candidates[i] == m.algo ? "  <- chosen" : "");
        printf("choice: %s (SBX_PLAN_MEASURE); rules: %s (SBX_PLAN_ESTIMATE)\n", sbx_algo_name(m.algo),
               sbx_algo_name(e.algo));
    }
    if (st == SBX_OK && wisdom) {
        st = sbx_wisdom_export(wisdom);
        if (st == SBX_OK) printf("wisdom: %lld entr%s written to %s\n", (long long)sbx_wisdom_count(),
                                 sbx_wisdom_count() == 1 ? "y" : "ies", wisdom);
    }
    sbx_conv_plan_free(measured);
    sbx_conv_plan_free(estimated);
    return st == SBX_OK ? CLI_OK : cli_fail(SUB, st);
}

const cli_command cli_plan = {SUB, "time a layer's candidate paths and show the planner's choice", usage, run};
