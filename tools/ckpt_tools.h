/*
 * ckpt_tools.h - the checkpoint subcommands of the `recur` command: inspect, diff and rename
 * TensorFlow V2 checkpoints (PREFIX.index + PREFIX.data-*), through the public API only.
 *
 * Each takes the arguments after `recur` (argv[0] is the subcommand's name) and returns the
 * process exit status:
 *   inspect, rename   0 done, 1 error, 2 bad usage
 *   diff              0 same, 1 different, 2 error or bad usage (as diff(1))
 * Output goes to stdout; messages to stderr, prefixed "recur <command>: ".
 */
#ifndef RECUR_TOOLS_CKPT_TOOLS_H
#define RECUR_TOOLS_CKPT_TOOLS_H

int ckpt_inspect_main(int argc, char **argv);
int ckpt_diff_main(int argc, char **argv);
int ckpt_rename_main(int argc, char **argv);

/* One line per command, for `recur --help`. */
#define CKPT_TOOLS_USAGE_LINES                                                                 \
    "  inspect   list a checkpoint's tensors (names, dtypes, shapes, stats, values)\n"          \
    "  diff      compare two checkpoints: keys, dtypes, shapes, values, a rename map\n"         \
    "  rename    write a copy of a checkpoint with keys renamed by scope or name\n"

#endif
