/*
 * recur.c - the `recur` command: train, predict and eval a text classifier; inspect, diff and
 * rename checkpoints (ckpt_tools.c); version.
 */
#include "blas_env.h"
#include "ckpt_tools.h"
#include "classifier.h"
#include "recur.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(FILE *f)
{
    fprintf(f, "usage: recur <command> [options]\n\n"
               "commands:\n"
               "  train     train a BiLSTM text classifier on label<TAB>text data\n"
               "  predict   print label<TAB>probability for each input sentence\n"
               "  eval      print the accuracy of a model on a labelled file\n"
               CKPT_TOOLS_USAGE_LINES
               "  version   print the library version\n"
               "\nrun 'recur <command> --help' for a command's options\n");
    return f == stderr ? 2 : 0;
}

static int train_usage(FILE *f)
{
    clf_config d = clf_defaults();
    fprintf(f,
            "usage: recur train --train FILE --dev FILE --out DIR [options]\n\n"
            "Trains a bidirectional LSTM (or GRU) classifier on label<TAB>text lines and writes the model\n"
            "(TensorFlow checkpoints, vocab.txt, config.txt) to DIR; resumes from DIR's latest checkpoint.\n"
            "Prints the dev accuracy after every epoch. Lines that are empty or malformed are reported\n"
            "with file and line number and skipped.\n\n"
            "  --epochs N       training epochs (%d)\n"
            "  --embed N        embedding size (%lld)\n"
            "  --hidden N       units per direction (%lld)\n"
            "  --cell lstm|gru  recurrent cell (lstm)\n"
            "  --features max|final  max-pool over time or final states (max)\n"
            "  --batch N        batch size (%d)\n"
            "  --lr X           Adam learning rate (%g), decayed by --lr-decay per epoch (%g)\n"
            "  --keep X         dropout keep probability (%g)\n"
            "  --clip X         clip gradients by global norm (%g; 0: off)\n"
            "  --max-len N      truncate sentences to N words (%lld)\n"
            "  --min-count N    drop words seen fewer than N times (%d)\n"
            "  --seed N         random seed (%lld); same seed and threads: the same model, bit for bit\n"
            "  --threads N      threads (0: all cores)\n"
            "  --save-every N   also save a checkpoint every N steps (0: after each epoch)\n"
            "  --logdir DIR     write TensorBoard event files (loss, dev accuracy)\n",
            d.epochs, (long long)d.embed, (long long)d.hidden, d.batch, d.lr, d.lr_decay, d.keep, d.clip,
            (long long)d.max_len, d.min_count, (long long)d.seed);
    return f == stderr ? 2 : 0;
}

/* Option value after argv[i]; exits with a message when missing. */
static const char *value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "recur: option %s needs a value\n", argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

static long long int_value(int argc, char **argv, int *i, long long lo, long long hi)
{
    const char *opt = argv[*i], *v = value(argc, argv, i);
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*end || end == v || x < lo || x > hi) {
        fprintf(stderr, "recur: %s expects an integer in [%lld, %lld], got '%s'\n", opt, lo, hi, v);
        exit(2);
    }
    return x;
}

static double real_value(int argc, char **argv, int *i, double lo, double hi)
{
    const char *opt = argv[*i], *v = value(argc, argv, i);
    char *end;
    double x = strtod(v, &end);
    if (*end || end == v || !(x >= lo && x <= hi)) {
        fprintf(stderr, "recur: %s expects a number in [%g, %g], got '%s'\n", opt, lo, hi, v);
        exit(2);
    }
    return x;
}

static int cmd_train(int argc, char **argv)
{
    clf_config c = clf_defaults();
    const char *train = NULL, *dev = NULL, *out = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return train_usage(stdout);
        else if (!strcmp(a, "--train")) train = value(argc, argv, &i);
        else if (!strcmp(a, "--dev")) dev = value(argc, argv, &i);
        else if (!strcmp(a, "--out")) out = value(argc, argv, &i);
        else if (!strcmp(a, "--epochs")) c.epochs = (int)int_value(argc, argv, &i, 1, 100000);
        else if (!strcmp(a, "--embed")) c.embed = int_value(argc, argv, &i, 1, 1 << 16);
        else if (!strcmp(a, "--hidden")) c.hidden = int_value(argc, argv, &i, 1, 1 << 16);
        else if (!strcmp(a, "--batch")) c.batch = (int)int_value(argc, argv, &i, 1, 1 << 20);
        else if (!strcmp(a, "--max-len")) c.max_len = int_value(argc, argv, &i, 1, 1 << 20);
        else if (!strcmp(a, "--min-count")) c.min_count = (int)int_value(argc, argv, &i, 1, 1 << 30);
        else if (!strcmp(a, "--seed")) c.seed = int_value(argc, argv, &i, 0, 1LL << 62);
        else if (!strcmp(a, "--threads")) c.threads = (int)int_value(argc, argv, &i, 0, 1024);
        else if (!strcmp(a, "--save-every")) c.checkpoint_every = (int)int_value(argc, argv, &i, 0, 1 << 30);
        else if (!strcmp(a, "--lr")) c.lr = real_value(argc, argv, &i, 0, 1e38);
        else if (!strcmp(a, "--lr-decay")) c.lr_decay = real_value(argc, argv, &i, 0, 1);
        else if (!strcmp(a, "--keep")) c.keep = real_value(argc, argv, &i, 1e-6, 1);
        else if (!strcmp(a, "--clip")) c.clip = real_value(argc, argv, &i, 0, 1e9);
        else if (!strcmp(a, "--logdir")) c.logdir = value(argc, argv, &i);
        else if (!strcmp(a, "--cell")) {
            const char *v = value(argc, argv, &i);
            if (strcmp(v, "lstm") && strcmp(v, "gru")) {
                fprintf(stderr, "recur: --cell expects lstm or gru, got '%s'\n", v);
                return 2;
            }
            c.gru = !strcmp(v, "gru");
        } else if (!strcmp(a, "--features")) {
            const char *v = value(argc, argv, &i);
            if (strcmp(v, "max") && strcmp(v, "final")) {
                fprintf(stderr, "recur: --features expects max or final, got '%s'\n", v);
                return 2;
            }
            c.final_state = !strcmp(v, "final");
        } else {
            fprintf(stderr, "recur train: unknown option '%s'\n", a);
            return train_usage(stderr);
        }
    }
    if (!train || !out) {
        fprintf(stderr, "recur train: --train and --out are required\n");
        return train_usage(stderr);
    }
    return clf_train(&c, train, dev, out, true);
}

static int cmd_predict(int argc, char **argv, bool eval)
{
    const char *model = NULL, *file = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf(eval ? "usage: recur eval --model DIR FILE\n\nPrints 'accuracy: 0.xxxx' for a label<TAB>text file.\n"
                        : "usage: recur predict --model DIR [FILE]\n\nPrints label<TAB>probability for each sentence of FILE "
                          "(one per line; stdin when FILE is omitted).\n");
            return 0;
        } else if (!strcmp(argv[i], "--model")) {
            model = value(argc, argv, &i);
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "recur %s: unknown option '%s'\n", eval ? "eval" : "predict", argv[i]);
            return 2;
        } else {
            file = argv[i];
        }
    }
    if (!model || (eval && !file)) {
        fprintf(stderr, eval ? "usage: recur eval --model DIR FILE\n" : "usage: recur predict --model DIR [FILE]\n");
        return 2;
    }
    return eval ? clf_eval(model, file, NULL) : clf_predict(model, file);
}

int main(int argc, char **argv)
{
    recur_tools_fix_blas(argv);
    if (argc < 2) return usage(stderr);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) return usage(stdout);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("recur %s\n", recur_version());
        return 0;
    }
    if (!strcmp(cmd, "train")) return cmd_train(argc, argv);
    if (!strcmp(cmd, "predict")) return cmd_predict(argc, argv, false);
    if (!strcmp(cmd, "eval")) return cmd_predict(argc, argv, true);
    if (!strcmp(cmd, "inspect")) return ckpt_inspect_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "diff")) return ckpt_diff_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "rename")) return ckpt_rename_main(argc - 1, argv + 1);
    fprintf(stderr, "recur: unknown command '%s'\n", cmd);
    return usage(stderr);
}
