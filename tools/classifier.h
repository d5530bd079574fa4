/*
 * classifier.h - the text classifier behind `recur train`, `recur predict` and `recur eval`:
 * a bidirectional LSTM (or GRU) over word embeddings with max-pooling over time, built with
 * the same scopes and variable names as the tf.compat.v1 program it mirrors.
 */
#ifndef RECUR_TOOLS_CLASSIFIER_H
#define RECUR_TOOLS_CLASSIFIER_H

#include "recur.h"

#include <stdbool.h>
#include <stdio.h>

typedef struct clf_config {
    int64_t embed, hidden, classes, vocab, max_len;
    bool gru;              /* GRU cells instead of LSTM */
    bool final_state;      /* features: final states instead of max-pooling over time */
    double keep;           /* dropout keep probability (embeddings and features) */
    double lr, lr_decay;   /* Adam learning rate; decay per epoch (1: none) */
    double clip;           /* clip_by_global_norm (0: none) */
    int epochs, batch, min_count, threads;
    int64_t seed;
    int checkpoint_every;  /* save every N steps (0: at the end of each epoch) */
    const char *logdir;    /* TensorBoard event files (NULL: none) */
} clf_config;

/* The defaults that reach the accuracy bar on rt-polarity. */
clf_config clf_defaults(void);

/* A labelled text file (label<TAB>text per line; a first line "label<TAB>text" is a header).
 * Bad lines are reported with file and line number and skipped; returns NULL when the file
 * cannot be read or holds no usable line. */
typedef struct clf_data clf_data;
clf_data *clf_load(const char *path, bool labelled, FILE *log);
void clf_data_free(clf_data *d);
int64_t clf_data_size(const clf_data *d);
/* Build the vocabulary `recur train` builds from d (ids 0 and 1 are <pad> and <unk>, then the
 * words seen at least min_count times) and look every word of d up in it: the vocabulary size,
 * or -1 when a lookup disagrees with the word list. A self-check for tests and fuzzing. */
int64_t clf_vocab_check(const clf_data *d, int min_count);

/* Train on `train`, report accuracy on `dev` (may be NULL) per epoch, write the model to dir.
 * Returns 0 on success, non-zero with a message on stderr. */
int clf_train(const clf_config *cfg, const char *train_path, const char *dev_path, const char *dir, bool progress);
/* Print "label<TAB>probability" per line of `path` (NULL: stdin). */
int clf_predict(const char *dir, const char *path);
/* Print "accuracy: 0.xxxx" for a labelled file; *accuracy gets the value when non-NULL. */
int clf_eval(const char *dir, const char *path, double *accuracy);

#endif
