/*
 * saver.c - tf.compat.v1.train.Saver (recur_saver_*) and init_from_checkpoint.
 *
 * Save writes every variable under its key, in key order as TensorFlow's Saver does (so the
 * data file matches TensorFlow's byte for byte), at `prefix-<step>`, atomically; then the
 * directory's `checkpoint` file is replaced and checkpoints beyond max_to_keep are deleted
 * (oldest first, after the state file no longer lists them). A saver's list of checkpoints
 * starts from the state file it finds on its first save, as tf.train.CheckpointManager's does.
 * Restore and init_from_checkpoint check every key, dtype and shape first and report every
 * problem in one message; they read every tensor before assigning any, so a failure assigns
 * nothing. Variables are reached through the public session API only.
 */
#include "io/io.h"
#include "exec/exec.h"

#include <dirent.h>
#include <unistd.h>

struct recur_saver {
    recur_graph *g;
    size_t n;
    recur_tensor **vars;
    char **keys;
    size_t *order;        /* variable indexes in key order (the save order) */
    rc_map by_key;        /* key -> variable index */
    int max_to_keep;      /* -1: keep all */
    rc_ckpt_state last;   /* checkpoints written (oldest first) */
    bool recovered;       /* `last` was seeded from the state file */
};

typedef struct keyed {
    const char *key;
    size_t index;
} keyed;

static int keyed_cmp(const void *a, const void *b) { return strcmp(((const keyed *)a)->key, ((const keyed *)b)->key); }

void recur_saver_free(recur_saver *sv)
{
    if (!sv) return;
    for (size_t i = 0; sv->keys && i < sv->n; i++) rc_free(sv->keys[i]);
    rc_free(sv->keys);
    rc_free(sv->vars);
    rc_free(sv->order);
    rc_map_free(&sv->by_key);
    rc_state_free(&sv->last);
    rc_free(sv);
}

__attribute__((format(printf, 4, 5))) static recur_saver *saver_fail(recur_saver *sv, recur_graph *g,
                                                                     recur_code code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    recur_saver_free(sv);
    recur_graph_set_error(g, code, "%s", msg);
    return NULL;
}

recur_saver *recur_saver_new(recur_graph *g, const recur_saver_opts *opts)
{
    if (!g || !recur_graph_ok(g)) return NULL;
    recur_saver_opts o = opts ? *opts : (recur_saver_opts){0};
    recur_saver *sv = rc_calloc(1, sizeof *sv);
    if (!sv) return saver_fail(sv, g, RECUR_OUT_OF_MEMORY, "Out of memory");
    sv->g = g;
    sv->max_to_keep = o.max_to_keep == 0 ? 5 : o.max_to_keep < 0 ? -1 : o.max_to_keep;
    long n = o.var_list ? o.num_vars : recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, NULL, 0);
    if (n <= 0) return saver_fail(sv, g, RECUR_INVALID_ARGUMENT, "No variables to save");
    if (o.keys && !o.var_list && n != o.num_vars)
        return saver_fail(sv, g, RECUR_INVALID_ARGUMENT,
                          "Saver: keys need one entry per global variable (num_vars)");
    sv->n = (size_t)n;
    sv->vars = rc_calloc(sv->n, sizeof *sv->vars);
    sv->keys = rc_calloc(sv->n, sizeof *sv->keys);
    sv->order = rc_calloc(sv->n, sizeof *sv->order);
    if (!sv->vars || !sv->keys || !sv->order) return saver_fail(sv, g, RECUR_OUT_OF_MEMORY, "Out of memory");
    if (o.var_list) memcpy(sv->vars, o.var_list, sv->n * sizeof *sv->vars);
    else recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, sv->vars, sv->n);
    for (size_t i = 0; i < sv->n; i++) {
        if (!recur_is_variable(sv->vars[i]))
            return saver_fail(sv, g, RECUR_INVALID_ARGUMENT, "Saver: %s is not a variable",
                              sv->vars[i] ? recur_tensor_name(sv->vars[i]) : "a NULL tensor");
        const char *key = o.keys ? o.keys[i] : recur_variable_name(sv->vars[i]);
        if (!key || !key[0]) return saver_fail(sv, g, RECUR_INVALID_ARGUMENT, "Saver: empty key for %s",
                                               recur_variable_name(sv->vars[i]));
        if (rc_map_get(&sv->by_key, key))
            return saver_fail(sv, g, RECUR_INVALID_ARGUMENT, "At least two variables have the same name: %s", key);
        if (!(sv->keys[i] = rc_strdup(key)) || !rc_map_set(&sv->by_key, key, (intptr_t)i))
            return saver_fail(sv, g, RECUR_OUT_OF_MEMORY, "Out of memory");
    }
    keyed *sorted = rc_calloc(sv->n, sizeof *sorted);
    if (!sorted) return saver_fail(sv, g, RECUR_OUT_OF_MEMORY, "Out of memory");
    for (size_t i = 0; i < sv->n; i++) sorted[i] = (keyed){sv->keys[i], i};
    qsort(sorted, sv->n, sizeof *sorted, keyed_cmp);
    for (size_t i = 0; i < sv->n; i++) sv->order[i] = sorted[i].index;
    rc_free(sorted);
    return sv;
}

/* ---------------------------------------------------------------- save */
/* Remove PREFIX.index and its PREFIX.data-NNNNN-of-NNNNN files (index first). */
static void delete_checkpoint(const char *prefix)
{
    rc_strbuf b;
    rc_sb_init(&b);
    rc_sb_printf(&b, "%s.index", prefix);
    char *dir = rc_path_dir(prefix);
    if (!b.oom) unlink(b.s);
    DIR *d = dir ? opendir(dir) : NULL;
    const char *base = rc_path_base(prefix);
    size_t blen = strlen(base);
    for (struct dirent *de; d && (de = readdir(d));) {
        const char *nm = de->d_name, *tail = nm + blen + 6; /* "NNNNN-of-NNNNN" */
        bool match = !strncmp(nm, base, blen) && !strncmp(nm + blen, ".data-", 6) && strlen(tail) == 14 &&
                     !strncmp(tail + 5, "-of-", 4);
        for (int i = 0; match && i < 14; i++) match = (i >= 5 && i < 9) || (tail[i] >= '0' && tail[i] <= '9');
        if (!match) continue;
        char *path = rc_path_join(dir, nm);
        if (path) unlink(path);
        rc_free(path);
    }
    if (d) closedir(d);
    rc_free(dir);
    rc_sb_free(&b);
}

/* Record `path` as the newest checkpoint, write the state file of `dir`, then delete the
 * checkpoints that fall beyond max_to_keep. */
static recur_code update_state(recur_saver *sv, const char *dir, const char *path, recur_status *st)
{
    rc_ckpt_state *l = &sv->last;
    if (!sv->recovered) { /* an unreadable state file is replaced, as TensorFlow does */
        rc_ckpt_state old;
        recur_code code = rc_state_read(dir, &old, st);
        if (code == RECUR_OUT_OF_MEMORY) return code;
        recur_status_clear(st);
        if (code == RECUR_OK) {
            rc_state_free(l);
            *l = old;
        }
        sv->recovered = true;
    }
    size_t cap = l->nall; /* the list's true capacity is not kept; growing from its count is safe */
    for (size_t i = 0; i < l->nall; i++)
        if (!strcmp(l->all_paths[i], path)) {
            rc_free(l->all_paths[i]);
            memmove(&l->all_paths[i], &l->all_paths[i + 1], (--l->nall - i) * sizeof *l->all_paths);
            break;
        }
    char *copy = rc_strdup(path), *model = rc_strdup(path);
    if (!copy || !model || !RC_GROW(l->all_paths, cap, l->nall + 1)) {
        rc_free(copy);
        rc_free(model);
        return rc_oom(st);
    }
    l->all_paths[l->nall++] = copy;
    rc_free(l->model_path);
    l->model_path = model;
    size_t drop = sv->max_to_keep > 0 && l->nall > (size_t)sv->max_to_keep ? l->nall - (size_t)sv->max_to_keep : 0;
    rc_ckpt_state keep = {l->model_path, l->all_paths + drop, l->nall - drop};
    recur_code code = rc_state_write(dir, &keep, st);
    if (code != RECUR_OK) return code;
    for (size_t i = 0; i < drop; i++) {
        delete_checkpoint(l->all_paths[i]);
        rc_free(l->all_paths[i]);
    }
    memmove(l->all_paths, l->all_paths + drop, (l->nall - drop) * sizeof *l->all_paths);
    l->nall -= drop;
    return RECUR_OK;
}

recur_code recur_saver_save(recur_saver *sv, recur_session *s, const char *prefix, int64_t global_step,
                            char *path_out, size_t cap, recur_status *st)
{
    recur_status_clear(st);
    if (!sv || !s || !prefix || !prefix[0])
        return rc_err(st, RECUR_INVALID_ARGUMENT, "recur_saver_save: NULL saver, session or prefix");
    /* A closed session holds no values; refuse before touching the file system. */
    if (s->closed) return rc_err(st, RECUR_FAILED_PRECONDITION, "Attempted to use a closed Session.");
    rc_strbuf pb;
    rc_sb_init(&pb);
    if (global_step >= 0) rc_sb_printf(&pb, "%s-%lld", prefix, (long long)global_step);
    else rc_sb_puts(&pb, prefix);
    char *path = rc_sb_take(&pb), *dir = path ? rc_path_dir(path) : NULL;
    recur_checkpoint_writer *w = NULL;
    recur_code code = RECUR_OK;
    if (!path || !dir) {
        code = rc_oom(st);
        goto done;
    }
    if (path_out && strlen(path) >= cap) {
        code = rc_err(st, RECUR_INVALID_ARGUMENT, "recur_saver_save: path_out needs %zu bytes, has %zu",
                      strlen(path) + 1, cap);
        goto done;
    }
    if (!(w = recur_checkpoint_writer_new(path, st))) {
        code = recur_status_code(st);
        goto done;
    }
    for (size_t k = 0; k < sv->n && code == RECUR_OK; k++) {
        size_t i = sv->order[k];
        recur_array *v = recur_session_get_variable(s, sv->vars[i], st);
        code = v ? recur_checkpoint_writer_add(w, sv->keys[i], v, st) : recur_status_code(st);
        recur_array_free(v);
    }
    if (code == RECUR_OK) code = recur_checkpoint_writer_finish(w, st);
    if (code == RECUR_OK) code = update_state(sv, dir, path, st);
    if (code == RECUR_OK && path_out) strcpy(path_out, path);
done:
    recur_checkpoint_writer_free(w);
    rc_free(path);
    rc_free(dir);
    return code;
}

/* ---------------------------------------------------------------- restore */
typedef struct binding {
    recur_tensor *var;
    const char *key;  /* checkpoint key */
} binding;

typedef enum { STYLE_SAVER, STYLE_INIT } msg_style;

/* Check each binding's key, dtype and shape against the checkpoint, appending one line per
 * problem (at most `limit` lines; a count of the rest after) in TensorFlow's words. Returns
 * the number of problems; *missing counts the absent keys. */
static size_t check_bindings(const recur_checkpoint *c, const char *prefix, const binding *b, size_t n,
                             msg_style style, size_t limit, rc_strbuf *msg, size_t *missing)
{
    size_t problems = 0;
    *missing = 0;
    for (size_t i = 0; i < n; i++) {
        recur_dtype dt;
        recur_shape shape, vshape = recur_tensor_shape(b[i].var);
        const char *name = recur_variable_name(b[i].var);
        char s1[160], s2[160];
        rc_strbuf line;
        rc_sb_init(&line);
        if (!recur_checkpoint_info(c, b[i].key, &dt, &shape)) {
            (*missing)++;
            if (style == STYLE_SAVER) rc_sb_printf(&line, "Key %s not found in checkpoint", b[i].key);
            else rc_sb_printf(&line, "Tensor %s is not found in %s checkpoint (for variable %s)", b[i].key, prefix, name);
        } else if (dt != recur_tensor_dtype(b[i].var)) {
            rc_sb_printf(&line, "tensor_name = %s; expected dtype %s does not equal original dtype %s", b[i].key,
                         recur_dtype_name(recur_tensor_dtype(b[i].var)), rc_tf_dtype_name((int)dt));
        } else if (!rc_shape_equal(shape, vshape)) {
            if (style == STYLE_SAVER)
                rc_sb_printf(&line, "Assign requires shapes of both tensors to match. lhs shape= %s rhs shape= %s "
                             "(variable %s)", rc_shape_debug(vshape, s1, sizeof s1), rc_shape_debug(shape, s2, sizeof s2), name);
            else
                rc_sb_printf(&line, "Shape of variable %s (%s) doesn't match with shape of tensor %s (%s) from "
                             "checkpoint reader.", name, recur_shape_str(vshape, s1, sizeof s1), b[i].key,
                             recur_shape_str(shape, s2, sizeof s2));
        }
        if (line.len) {
            if (problems < limit) rc_sb_printf(msg, "%s\n", line.s);
            problems++;
        }
        rc_sb_free(&line);
    }
    if (problems > limit) rc_sb_printf(msg, "... and %zu more\n", problems - limit);
    return problems;
}

/* Read every binding's tensor (checksums verified), then assign them all. */
static recur_code load_bindings(recur_session *s, recur_checkpoint *c, const binding *b, size_t n, recur_status *st)
{
    recur_array **vals = rc_calloc(n + 1, sizeof *vals);
    recur_code code = vals ? RECUR_OK : rc_oom(st);
    for (size_t i = 0; code == RECUR_OK && i < n; i++)
        if (!(vals[i] = recur_checkpoint_read(c, b[i].key, st))) code = recur_status_code(st);
    for (size_t i = 0; code == RECUR_OK && i < n; i++) code = recur_session_set_variable(s, b[i].var, vals[i], st);
    for (size_t i = 0; vals && i < n; i++) recur_array_free(vals[i]);
    rc_free(vals);
    return code;
}

enum { MAX_PROBLEM_LINES = 40, MAX_UNUSED_SHOWN = 20, MAX_NEAREST_SHOWN = 10 };

/* Append the three keys of `have` nearest to `name` by edit distance. */
static void nearest_keys(const char *name, const rc_name_info *have, size_t nk, rc_strbuf *msg)
{
    size_t best[3] = {SIZE_MAX, SIZE_MAX, SIZE_MAX}, bestd[3] = {SIZE_MAX, SIZE_MAX, SIZE_MAX};
    for (size_t k = 0; k < nk; k++) {
        size_t d = rc_edit_distance(name, have[k].name, 1024);
        for (int j = 0; j < 3; j++)
            if (d < bestd[j]) {
                memmove(&best[j + 1], &best[j], (size_t)(2 - j) * sizeof *best);
                memmove(&bestd[j + 1], &bestd[j], (size_t)(2 - j) * sizeof *bestd);
                best[j] = k;
                bestd[j] = d;
                break;
            }
    }
    rc_sb_printf(msg, "  %s:", name);
    for (int j = 0; j < 3 && best[j] != SIZE_MAX; j++) {
        char sh[160];
        const rc_name_info *h = &have[best[j]];
        rc_sb_printf(msg, "%s %s (%s %s)", j ? "," : "", h->name, rc_tf_dtype_name((int)h->dtype),
                     rc_shape_debug(h->shape, sh, sizeof sh));
    }
    rc_sb_puts(msg, "\n");
}

/* The diagnostics after the problem lines: unused keys, nearest keys, a suggested map. */
static void explain(const recur_saver *sv, const recur_checkpoint *c, rc_strbuf *msg)
{
    size_t nk = recur_checkpoint_num_tensors(c), shown = 0;
    rc_name_info *want = rc_calloc(sv->n + 1, sizeof *want), *have = rc_calloc(nk + 1, sizeof *have);
    rc_name_map map = {0};
    if (!want || !have) goto oom;
    for (size_t i = 0; i < nk; i++) {
        have[i].name = recur_checkpoint_key(c, i);
        recur_checkpoint_info(c, have[i].name, &have[i].dtype, &have[i].shape);
        if (rc_map_get(&sv->by_key, have[i].name) || shown > MAX_UNUSED_SHOWN) continue;
        rc_sb_puts(msg, shown++ ? ", " : "\nCheckpoint keys this saver does not use: ");
        rc_sb_puts(msg, shown > MAX_UNUSED_SHOWN ? "..." : have[i].name);
    }
    rc_sb_puts(msg, shown ? "\n" : "");
    shown = 0;
    for (size_t i = 0; i < sv->n; i++) {
        want[i] = (rc_name_info){sv->keys[i], recur_tensor_dtype(sv->vars[i]), recur_tensor_shape(sv->vars[i])};
        if (!nk || recur_checkpoint_info(c, sv->keys[i], NULL, NULL) || shown >= MAX_NEAREST_SHOWN) continue;
        rc_sb_puts(msg, shown++ ? "" : "\nNearest checkpoint keys:\n");
        nearest_keys(sv->keys[i], have, nk, msg);
    }
    if (!rc_suggest_name_map(want, sv->n, have, nk, &map)) goto oom;
    if (!map.n) rc_sb_puts(msg, "\nNo renaming of checkpoint keys matches the missing variables.\n");
    else rc_sb_puts(msg, "\nSuggested name map (checkpoint key -> variable; pass it to recur_init_from_checkpoint, "
                         "or give recur_saver_opts.keys the checkpoint keys it yields):\n");
    for (size_t i = 0; i < map.n; i++) rc_sb_printf(msg, "  \"%s\" -> \"%s\"\n", map.e[i].from, map.e[i].to);
    goto done;
oom:
    msg->oom = true;
done:
    rc_name_map_free(&map);
    rc_free(want);
    rc_free(have);
}

recur_code recur_saver_restore(recur_saver *sv, recur_session *s, const char *prefix, recur_status *st)
{
    recur_status_clear(st);
    if (!sv || !s || !prefix) return rc_err(st, RECUR_INVALID_ARGUMENT, "recur_saver_restore: NULL argument");
    if (s->closed) return rc_err(st, RECUR_FAILED_PRECONDITION, "Attempted to use a closed Session.");
    recur_checkpoint *c = recur_checkpoint_open(prefix, st);
    if (!c) return recur_status_code(st);
    binding *b = rc_calloc(sv->n, sizeof *b);
    if (!b) {
        recur_checkpoint_close(c);
        return rc_oom(st);
    }
    for (size_t i = 0; i < sv->n; i++) b[i] = (binding){sv->vars[i], sv->keys[i]};
    rc_strbuf msg;
    rc_sb_init(&msg);
    size_t missing, problems = check_bindings(c, prefix, b, sv->n, STYLE_SAVER, MAX_PROBLEM_LINES, &msg, &missing);
    recur_code code;
    if (problems) {
        rc_strbuf full;
        rc_sb_init(&full);
        rc_sb_printf(&full, "Restoring from checkpoint failed. This is most likely due to %s. Please ensure that "
                     "you have not altered the graph expected based on the checkpoint. Original error:\n\n%s",
                     missing ? "a Variable name or other graph key that is missing from the checkpoint"
                             : "a mismatch between the current graph and the graph from the checkpoint",
                     msg.s);
        explain(sv, c, &full);
        code = full.oom ? rc_oom(st)
                        : rc_err(st, missing ? RECUR_NOT_FOUND : RECUR_INVALID_ARGUMENT, "%s", full.s);
        rc_sb_free(&full);
    } else {
        code = msg.oom ? rc_oom(st) : load_bindings(s, c, b, sv->n, st);
    }
    rc_sb_free(&msg);
    rc_free(b);
    recur_checkpoint_close(c);
    return code;
}

/* ---------------------------------------------------------------- init_from_checkpoint */
recur_code recur_init_from_checkpoint(recur_session *s, const char *prefix, const char *const *from,
                                      const char *const *to, int n, recur_status *st)
{
    recur_status_clear(st);
    if (!s || !prefix || n < 0 || (n > 0 && (!from || !to)))
        return rc_err(st, RECUR_INVALID_ARGUMENT, "recur_init_from_checkpoint: NULL argument");
    if (s->closed) return rc_err(st, RECUR_FAILED_PRECONDITION, "Attempted to use a closed Session.");
    /* The session's graph: recur.h has no accessor for it yet (see recur_session_graph). */
    recur_graph *g = s->g;
    long nv = recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, NULL, 0);
    recur_tensor **vars = rc_calloc((size_t)(nv > 0 ? nv : 0) + 1, sizeof *vars);
    binding *b = rc_calloc((size_t)(nv > 0 ? nv : 0) + 1, sizeof *b);
    rc_name_map map = {0};
    rc_map names, keys; /* variable name -> index; interned checkpoint keys */
    rc_map_init(&names);
    rc_map_init(&keys);
    recur_checkpoint *c = NULL;
    size_t nb = 0;
    recur_code code = vars && b ? RECUR_OK : rc_oom(st);
    if (code == RECUR_OK) recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, vars, (size_t)nv);
    for (long i = 0; code == RECUR_OK && i < nv; i++)
        if (!rc_map_set(&names, recur_variable_name(vars[i]), (intptr_t)i)) code = rc_oom(st);
    for (int i = 0; code == RECUR_OK && i < n; i++) {
        bool to_scope = to[i] && to[i][0] && to[i][strlen(to[i]) - 1] == '/';
        if (!from[i] || !to[i] || !from[i][0] || !to[i][0])
            code = rc_err(st, RECUR_INVALID_ARGUMENT, "Assignment map entry %d is empty", i);
        else if (to_scope && from[i][strlen(from[i]) - 1] != '/')
            code = rc_err(st, RECUR_INVALID_ARGUMENT, "Assignment map with scope only name %s should map to scope "
                          "only %s. Should be 'scope/': 'other_scope/'.", to[i], from[i]);
        else if (!to_scope && !rc_map_get(&names, to[i]))
            code = rc_err(st, RECUR_INVALID_ARGUMENT, "Assignment map entry '%s' -> '%s': the graph has no "
                          "variable %s (a scope must end in '/')", from[i], to[i], to[i]);
        else if (!rc_name_map_add(&map, from[i], to[i]))
            code = rc_oom(st);
    }
    for (long i = 0; code == RECUR_OK && i < nv; i++) {
        bool oom;
        char *key = rc_name_map_apply(&map, recur_variable_name(vars[i]), &oom);
        if (oom) code = rc_oom(st);
        else if (key && !rc_map_intern(&keys, key)) code = rc_oom(st);
        else if (key) b[nb++] = (binding){vars[i], rc_map_intern(&keys, key)};
        rc_free(key);
    }
    /* Opened even when no variable maps to it, as TensorFlow does: a wrong prefix is an error,
     * not a silent no-op. */
    if (code == RECUR_OK && !(c = recur_checkpoint_open(prefix, st))) code = recur_status_code(st);
    if (c) {
        rc_strbuf msg;
        rc_sb_init(&msg);
        size_t missing;
        if (check_bindings(c, prefix, b, nb, STYLE_INIT, MAX_PROBLEM_LINES, &msg, &missing))
            code = msg.oom ? rc_oom(st) : rc_err(st, RECUR_INVALID_ARGUMENT, "%s", msg.s);
        else
            code = load_bindings(s, c, b, nb, st);
        rc_sb_free(&msg);
    }
    recur_checkpoint_close(c);
    rc_map_free(&names);
    rc_map_free(&keys);
    rc_name_map_free(&map);
    rc_free(vars);
    rc_free(b);
    return code;
}
