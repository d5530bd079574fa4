/*
 * test_events.c - TensorBoard event files: the file name, the TFRecord framing (lengths and
 * masked CRC32Cs, checked by a reader written here), the first file_version event, scalar
 * summaries, and a histogram equal field for field to the one TensorFlow's own op makes from
 * the same values (tests/golden/events_histogram.golden, from tests/tf/check_events.py).
 *
 * RECUR_EVENTS_OUT=<dir> makes scalars_and_histogram_read_back leave its event file there for
 * tests/tf/check_events.py (TensorBoard's own loader).
 */
#include "runner.h"
#include "golden.h"
#include "io/io.h"
#include "io/event.pb-c.h"

#include <dirent.h>
#include <float.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

static recur_status *st;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

/* The single file in dir (its path in a static buffer). */
static const char *only_file(const char *dir)
{
    static char path[1024];
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.') n++, snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (d) closedir(d);
    ASSERT_EQ_INT(n, 1);
    return path;
}

/* Read every record of an event file, checking the framing; returns the events (NULL ends). */
static Recur__Event **read_events(const char *path, int *n)
{
    FILE *f = fopen(path, "rb");
    ASSERT_TRUE(f != NULL);
    Recur__Event **ev = calloc(64, sizeof *ev);
    *n = 0;
    uint8_t head[12];
    size_t got;
    while ((got = fread(head, 1, 12, f)) == 12) {
        uint64_t len = rc_get_fixed64(head);
        ASSERT_EQ_INT(rc_get_fixed32(head + 8), rc_crc32c_mask(rc_crc32c_extend(0, head, 8)));
        uint8_t *data = malloc(len + 4);
        ASSERT_EQ_INT(fread(data, 1, len + 4, f), len + 4);
        ASSERT_EQ_INT(rc_get_fixed32(data + len), rc_crc32c_mask(rc_crc32c_extend(0, data, len)));
        ASSERT_TRUE(*n < 63);
        ev[(*n)++] = recur__event__unpack(NULL, len, data);
        ASSERT_TRUE(ev[*n - 1] != NULL);
        free(data);
    }
    ASSERT_EQ_INT(got, 0); /* no partial record */
    fclose(f);
    return ev;
}

/* The values of tests/tf/check_events.py hist_values(), computed the same way. */
static recur_array *histogram_values(void)
{
    const double scale[5] = {1e-2, 1e-1, 1.0, 10.0, 100.0}, extra[8] = {0.0, 0.0, 1e-13, -1e-13, 1e25, -1e25, 1e-12, 1.0};
    recur_array *a = recur_array_new(RECUR_F64, RECUR_SHAPE(1008), NULL);
    double *v = recur_array_f64(a);
    for (int i = 0; i < 1000; i++) v[i] = (double)((i * 37 % 1001) - 500) / 7.0 * scale[i % 5];
    memcpy(v + 1000, extra, sizeof extra);
    return a;
}

TEST(scalars_and_histogram_read_back)
{
    st = recur_status_new();
    const char *out = getenv("RECUR_EVENTS_OUT");
    char dir[256] = "/tmp/recur_events_XXXXXX";
    if (out && *out) snprintf(dir, sizeof dir, "%s", out);
    else ASSERT_TRUE(mkdtemp(dir) != NULL);
    char logdir[300];
    snprintf(logdir, sizeof logdir, "%s/run1", dir); /* created by the writer */
    recur_summary_writer *w = recur_summary_writer_new(logdir, st);
    ASSERT_OK(st);
    /* The scalars of check_events.py SCALARS, then the histogram. */
    ASSERT_EQ_INT(recur_summary_scalar(w, "loss", 2.5, 0, st), RECUR_OK);
    ASSERT_EQ_INT(recur_summary_scalar(w, "loss", 1.25, 1, st), RECUR_OK);
    ASSERT_EQ_INT(recur_summary_scalar(w, "loss", 0.0, 2, st), RECUR_OK);
    ASSERT_EQ_INT(recur_summary_scalar(w, "accuracy/train", 0.75, 2, st), RECUR_OK);
    recur_array *vals = histogram_values();
    ASSERT_EQ_INT(recur_summary_histogram(w, "weights", vals, 2, st), RECUR_OK);
    ASSERT_EQ_INT(recur_summary_flush(w, st), RECUR_OK);
    const char *path = only_file(logdir);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char want[512];
    snprintf(want, sizeof want, "%s/events.out.tfevents.", logdir);
    ASSERT_STR_STARTS(path, want);
    const char *t = path + strlen(want);
    for (int i = 0; i < 10; i++) ASSERT_TRUE(t[i] >= '0' && t[i] <= '9');
    ASSERT_EQ_STR(t + 10 + 1, host);

    int n;
    Recur__Event **ev = read_events(path, &n);
    ASSERT_EQ_INT(n, 6);
    ASSERT_EQ_INT(ev[0]->what_case, RECUR__EVENT__WHAT_FILE_VERSION);
    ASSERT_EQ_STR(ev[0]->file_version, "brain.Event:2");
    ASSERT_TRUE(ev[0]->wall_time > 1.6e9);
    const struct {
        const char *tag;
        int64_t step;
        float v;
    } sc[] = {{"loss", 0, 2.5f}, {"loss", 1, 1.25f}, {"loss", 2, 0.0f}, {"accuracy/train", 2, 0.75f}};
    for (int i = 0; i < 4; i++) {
        Recur__Event *e = ev[i + 1];
        ASSERT_EQ_INT(e->what_case, RECUR__EVENT__WHAT_SUMMARY);
        ASSERT_EQ_INT(e->step, sc[i].step);
        ASSERT_EQ_INT(e->summary->n_value, 1);
        ASSERT_EQ_STR(e->summary->value[0]->tag, sc[i].tag);
        ASSERT_EQ_INT(e->summary->value[0]->value_case, RECUR__SUMMARY__VALUE__VALUE_SIMPLE_VALUE);
        ASSERT_TRUE(e->summary->value[0]->simple_value == sc[i].v);
        ASSERT_TRUE(e->wall_time >= ev[i]->wall_time);
    }
    /* The histogram equals TensorFlow's exactly. */
    Recur__Summary__Value *hv = ev[5]->summary->value[0];
    ASSERT_EQ_STR(hv->tag, "weights");
    ASSERT_EQ_INT(hv->value_case, RECUR__SUMMARY__VALUE__VALUE_HISTO);
    const Recur__HistogramProto *h = hv->histo;
    gt_file *g = gt_load(rt_path("tests/golden/events_histogram.golden"));
    ASSERT_TRUE(g != NULL);
    ASSERT_TRUE(h->min == strtod(gt_meta(g, "min"), NULL) && h->max == strtod(gt_meta(g, "max"), NULL));
    ASSERT_TRUE(h->num == strtod(gt_meta(g, "num"), NULL) && h->sum == strtod(gt_meta(g, "sum"), NULL));
    ASSERT_TRUE(h->sum_squares == strtod(gt_meta(g, "sum_squares"), NULL));
    const gt_tensor *lim = gt_find(g, "bucket_limit"), *cnt = gt_find(g, "bucket");
    ASSERT_EQ_INT(h->n_bucket_limit, lim->size);
    ASSERT_EQ_INT(h->n_bucket, cnt->size);
    for (size_t i = 0; i < h->n_bucket; i++) {
        ASSERT_TRUE(h->bucket_limit[i] == lim->v[i]);
        ASSERT_TRUE(h->bucket[i] == cnt->v[i]);
    }
    gt_free(g);
    for (int i = 0; i < n; i++) recur__event__free_unpacked(ev[i], NULL);
    free(ev);
    recur_array_free(vals);
    recur_summary_writer_free(w);
    if (!out || !*out) nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TEST(histogram_edge_cases_and_errors)
{
    st = recur_status_new();
    char dir[] = "/tmp/recur_events_XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    recur_summary_writer *w = recur_summary_writer_new(dir, st), *w2 = recur_summary_writer_new(dir, st);
    ASSERT_OK(st); /* a second writer in the same second gets its own file */
    recur_array *empty = recur_array_new(RECUR_F32, RECUR_SHAPE(0), NULL);
    recur_array *ints = recur_array_from(RECUR_I32, RECUR_SHAPE(3), (int32_t[]){-3, 0, 5}, NULL);
    recur_array *bad = recur_array_from(RECUR_F32, RECUR_SHAPE(2), (float[]){1, NAN}, NULL);
    recur_array *inf = recur_array_from(RECUR_F64, RECUR_SHAPE(1), (double[]){-INFINITY}, NULL);
    ASSERT_EQ_INT(recur_summary_histogram(w, "empty", empty, 0, st), RECUR_OK);
    ASSERT_EQ_INT(recur_summary_histogram(w, "ints", ints, 1, st), RECUR_OK);
    ASSERT_EQ_INT(recur_summary_histogram(w, "nan", bad, 2, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_STR(recur_status_message(st), "Nan in summary histogram for: nan");
    ASSERT_EQ_INT(recur_summary_histogram(w, "inf", inf, 2, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_STR(recur_status_message(st), "Infinity in summary histogram for: inf");
    ASSERT_EQ_INT(recur_summary_histogram(w, "x", NULL, 2, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_summary_scalar(NULL, "x", 1, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_summary_scalar(w, NULL, 1, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_summary_flush(NULL, st), RECUR_INVALID_ARGUMENT);
    char path[1024];
    recur_summary_flush(w, st);
    int files = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        files++;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int n;
        Recur__Event **ev = read_events(path, &n);
        if (n == 3) { /* w's file: the empty histogram is TensorFlow's one DBL_MAX bucket */
            const Recur__HistogramProto *h = ev[1]->summary->value[0]->histo;
            ASSERT_TRUE(h->min == DBL_MAX && h->max == -DBL_MAX && h->num == 0);
            ASSERT_TRUE(h->n_bucket == 1 && h->bucket_limit[0] == DBL_MAX && h->bucket[0] == 0);
            h = ev[2]->summary->value[0]->histo;
            ASSERT_TRUE(h->min == -3 && h->max == 5 && h->num == 3 && h->sum == 2 && h->sum_squares == 34);
            double total = 0;
            for (size_t i = 0; i < h->n_bucket; i++) total += h->bucket[i];
            ASSERT_TRUE(total == 3);
        } else {
            ASSERT_EQ_INT(n, 1);
        }
        for (int i = 0; i < n; i++) recur__event__free_unpacked(ev[i], NULL);
        free(ev);
    }
    closedir(d);
    ASSERT_EQ_INT(files, 2);
    ASSERT_TRUE(recur_summary_writer_new("", st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_TRUE(recur_summary_writer_new("/proc/no/such", st) == NULL);
    ASSERT_CODE(st, RECUR_PERMISSION_DENIED);
    recur_summary_writer_free(w);
    recur_summary_writer_free(w2);
    recur_summary_writer_free(NULL);
    recur_array_free(empty), recur_array_free(ints), recur_array_free(bad), recur_array_free(inf);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TEST(every_allocation_failure_is_reported)
{
    st = recur_status_new();
    char dir[] = "/tmp/recur_events_XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    recur_array *vals = histogram_values();
    int failures = 0;
    for (long n = 1;; n++) {
        recur_alloc_fail_after(n);
        recur_summary_writer *w = recur_summary_writer_new(dir, st);
        recur_code code = w ? recur_summary_scalar(w, "a", 1, 0, st) : recur_status_code(st);
        if (code == RECUR_OK) code = recur_summary_histogram(w, "h", vals, 0, st);
        recur_alloc_fail_after(0);
        recur_summary_writer_free(w);
        nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        mkdir(dir, 0700);
        if (code == RECUR_OK) break;
        ASSERT_EQ_INT(code, RECUR_OUT_OF_MEMORY);
        failures++;
    }
    ASSERT_TRUE(failures >= 5);
    recur_array_free(vals);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

RUN_TESTS(T(scalars_and_histogram_read_back), T(histogram_edge_cases_and_errors), T(every_allocation_failure_is_reported))
