/*
 * rnn_dsl.h - builds the programs of tests/tf/rnn_programs.txt (as recorded in each golden file
 * under tests/golden/rnn/) through recur's C API, so tests can compare names, shapes, outputs,
 * states and gradients with TensorFlow's.
 */
#ifndef RECUR_TEST_RNN_DSL_H
#define RECUR_TEST_RNN_DSL_H

#include "golden.h"
#include "recur.h"

#define RD_MAX 256

typedef struct rd_named {
    char name[160];
    recur_tensor *t;
} rd_named;

typedef struct rd_prog {
    char name[128];
    gt_file *gf;
    recur_graph *g;
    recur_tensor *input;
    rd_named feeds[RD_MAX]; /* placeholders and the golden tensor that feeds them */
    int nfeeds;
    rd_named results[RD_MAX]; /* outputs and final states, by golden name */
    int nresults;
} rd_prog;

/* Load tests/golden/rnn/<file> and build its program. Returns NULL (with a message on stderr)
 * when the golden cannot be read or the build fails. */
rd_prog *rd_build(const char *path);
void rd_free(rd_prog *p);
/* Feeds for a run (golden values); the arrays are owned by the program. */
int rd_feeds(rd_prog *p, recur_feed *out, recur_array **keep);
/* A session with every variable set to the golden's values. */
recur_session *rd_session(rd_prog *p, const recur_session_opts *opts);
/* Names of the golden files (sorted), NULL-terminated; free with rd_list_free. */
char **rd_list(void);
void rd_list_free(char **l);

#endif
