/* sbx: the sparsebox command-line tool. One subcommand per file; this file only dispatches. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

extern const cli_command cli_plan;

static const cli_command *const commands[] = {&cli_convert,  &cli_info,  &cli_indices, &cli_convolve,
                                              &cli_local,    &cli_maxpool, &cli_sample, &cli_plan};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "usage: sbx <subcommand> [options]   (sbx <subcommand> --help for its options)\n\nsubcommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(argv[1], commands[i]->name) == 0) {
            if (cli_wants_help(argc - 1, argv + 1)) {
                printf("%s", commands[i]->usage);
                return CLI_OK;
            }
            return commands[i]->run(argc - 1, argv + 1);
        }
    fprintf(stderr, "sbx: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
