/*
 * recur.c - the `recur` command. Subcommands: version (more arrive with training and
 * checkpoints).
 */
#include "recur.h"

#include <stdio.h>
#include <string.h>

static int usage(FILE *f)
{
    fprintf(f, "usage: recur <command> [options]\n\n"
               "commands:\n"
               "  version     print the library version\n"
               "\nrun 'recur <command> --help' for a command's options\n");
    return f == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage(stderr);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) return usage(stdout);
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("recur %s\n", recur_version());
        return 0;
    }
    fprintf(stderr, "recur: unknown command '%s'\n", argv[1]);
    return usage(stderr);
}
