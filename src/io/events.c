/*
 * events.c - TensorBoard event files (recur_summary_*): LOGDIR/events.out.tfevents.<time>.<host>
 * holding TFRecords (uint64 length, masked CRC32C of the length bytes, the data, masked
 * CRC32C of the data), each an Event proto. The first event carries file_version
 * "brain.Event:2"; scalars go in simple_value; histograms use TensorFlow's default buckets
 * (limits growing by 1.1 from 1e-12 up to 1e20, mirrored to negatives, 0 and +-DBL_MAX) and
 * are encoded as its HistogramProto, runs of empty buckets collapsed.
 */
#include "io/io.h"
#include "io/event.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

struct recur_summary_writer {
    FILE *f;
    char *path;
    double *limits; /* TensorFlow's default histogram bucket limits, increasing */
    size_t nlimits;
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static recur_code write_event(recur_summary_writer *w, Recur__Event *ev, recur_status *st)
{
    rc_strbuf rec, data;
    rc_sb_init(&rec);
    rc_sb_init(&data);
    rc_pb_pack(&ev->base, &data);
    rc_put_fixed64(&rec, data.len);
    if (!rec.oom) rc_put_fixed32(&rec, rc_crc32c_mask(rc_crc32c_extend(0, rec.s, 8)));
    rc_sb_putn(&rec, data.s ? data.s : "", data.len);
    if (!rec.oom) rc_put_fixed32(&rec, rc_crc32c_mask(rc_crc32c_extend(0, data.s, data.len)));
    recur_code code = RECUR_OK;
    if (rec.oom || data.oom) code = rc_oom(st);
    else if (fwrite(rec.s, 1, rec.len, w->f) != rec.len)
        code = rc_err(st, RECUR_DATA_LOSS, "Cannot write %s: %s", w->path, strerror(errno));
    rc_sb_free(&rec);
    rc_sb_free(&data);
    return code;
}

/* Create the file under a fresh name (a numeric suffix when two writers start in the same
 * second on one host). */
static recur_code create_file(recur_summary_writer *w, const char *logdir, recur_status *st)
{
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    long long t = (long long)time(NULL);
    for (int k = 0; k < 100; k++) {
        rc_strbuf b;
        rc_sb_init(&b);
        rc_sb_printf(&b, "%s/events.out.tfevents.%010lld.%s", logdir, t, host);
        if (k) rc_sb_printf(&b, ".%d", k);
        if (!(w->path = rc_sb_take(&b))) return rc_oom(st);
        int fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0 && (w->f = fdopen(fd, "wb"))) return RECUR_OK;
        if (fd >= 0 || errno != EEXIST) {
            recur_code code = rc_err(st, RECUR_PERMISSION_DENIED, "Cannot create %s: %s", w->path, strerror(errno));
            if (fd >= 0) close(fd);
            return code;
        }
        rc_free(w->path);
        w->path = NULL;
    }
    return rc_err(st, RECUR_ALREADY_EXISTS, "Too many event files for this second in %s", logdir);
}

recur_summary_writer *recur_summary_writer_new(const char *logdir, recur_status *st)
{
    recur_status_clear(st);
    if (!logdir || !logdir[0]) {
        rc_err(st, RECUR_INVALID_ARGUMENT, "recur_summary_writer_new: empty logdir");
        return NULL;
    }
    recur_summary_writer *w = rc_calloc(1, sizeof *w);
    size_t n = 0;
    for (double v = 1.0e-12; v < 1.0e20; v *= 1.1) n++;
    if (!w || !(w->limits = rc_malloc((2 * n + 3) * sizeof *w->limits))) {
        rc_oom(st);
        recur_summary_writer_free(w);
        return NULL;
    }
    /* -DBL_MAX, -v(n-1) .. -v0, 0, v0 .. v(n-1), DBL_MAX */
    double *l = w->limits;
    l[0] = -DBL_MAX;
    l[n + 1] = 0.0;
    l[2 * n + 2] = DBL_MAX;
    size_t i = 0;
    for (double v = 1.0e-12; v < 1.0e20; v *= 1.1, i++) {
        l[n + 2 + i] = v;
        l[n - i] = -v;
    }
    w->nlimits = 2 * n + 3;
    Recur__Event ev = RECUR__EVENT__INIT;
    ev.wall_time = now_seconds();
    ev.what_case = RECUR__EVENT__WHAT_FILE_VERSION;
    ev.file_version = "brain.Event:2";
    if (rc_mkdirs(logdir, st) != RECUR_OK || create_file(w, logdir, st) != RECUR_OK ||
        write_event(w, &ev, st) != RECUR_OK || recur_summary_flush(w, st) != RECUR_OK) {
        recur_summary_writer_free(w);
        return NULL;
    }
    return w;
}

/* Write one summary value as an Event at `step`. */
static recur_code write_value(recur_summary_writer *w, Recur__Summary__Value *v, int64_t step, recur_status *st)
{
    Recur__Summary sum = RECUR__SUMMARY__INIT;
    Recur__Event ev = RECUR__EVENT__INIT;
    sum.n_value = 1;
    sum.value = &v;
    ev.wall_time = now_seconds();
    ev.step = step;
    ev.what_case = RECUR__EVENT__WHAT_SUMMARY;
    ev.summary = &sum;
    return write_event(w, &ev, st);
}

static recur_code check_args(const recur_summary_writer *w, const char *tag, recur_status *st)
{
    recur_status_clear(st);
    if (!w || !tag) return rc_err(st, RECUR_INVALID_ARGUMENT, "recur_summary: NULL writer or tag");
    return RECUR_OK;
}

recur_code recur_summary_scalar(recur_summary_writer *w, const char *tag, double value, int64_t step,
                                recur_status *st)
{
    if (check_args(w, tag, st) != RECUR_OK) return recur_status_code(st);
    Recur__Summary__Value v = RECUR__SUMMARY__VALUE__INIT;
    v.tag = (char *)tag;
    v.value_case = RECUR__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
    v.simple_value = (float)value;
    return write_value(w, &v, step, st);
}

recur_code recur_summary_histogram(recur_summary_writer *w, const char *tag, const recur_array *values,
                                   int64_t step, recur_status *st)
{
    if (check_args(w, tag, st) != RECUR_OK) return recur_status_code(st);
    if (!values || !rc_dtype_valid(values->dtype))
        return rc_err(st, RECUR_INVALID_ARGUMENT, "recur_summary_histogram: values must be a numeric array");
    size_t nl = w->nlimits;
    double *counts = rc_calloc(nl, sizeof *counts), *lim = rc_malloc(nl * sizeof *lim),
           *cnt = rc_malloc(nl * sizeof *cnt);
    recur_code code = counts && lim && cnt ? RECUR_OK : rc_oom(st);
    Recur__HistogramProto h = RECUR__HISTOGRAM_PROTO__INIT;
    h.min = DBL_MAX;
    h.max = -DBL_MAX;
    for (int64_t i = 0; code == RECUR_OK && i < values->size; i++) {
        double x = rc_array_get(values, i);
        if (!isfinite(x)) {
            code = rc_err(st, RECUR_INVALID_ARGUMENT, "%s in summary histogram for: %s", isnan(x) ? "Nan" : "Infinity", tag);
            break;
        }
        size_t lo = 0, hi = nl; /* upper_bound: the first limit above x */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (w->limits[mid] > x) hi = mid;
            else lo = mid + 1;
        }
        counts[RC_MIN(lo, nl - 1)] += 1.0;
        h.min = RC_MIN(h.min, x);
        h.max = RC_MAX(h.max, x);
        h.num += 1.0;
        h.sum += x;
        h.sum_squares += x * x;
    }
    for (size_t i = 0; code == RECUR_OK && i < nl;) {
        double end = w->limits[i], count = counts[i++];
        if (count <= 0.0)
            for (; i < nl && counts[i] <= 0.0; i++) end = w->limits[i];
        lim[h.n_bucket_limit++] = end;
        cnt[h.n_bucket++] = count;
    }
    if (code == RECUR_OK) {
        h.bucket_limit = lim;
        h.bucket = cnt;
        Recur__Summary__Value v = RECUR__SUMMARY__VALUE__INIT;
        v.tag = (char *)tag;
        v.value_case = RECUR__SUMMARY__VALUE__VALUE_HISTO;
        v.histo = &h;
        code = write_value(w, &v, step, st);
    }
    rc_free(counts);
    rc_free(lim);
    rc_free(cnt);
    return code;
}

recur_code recur_summary_flush(recur_summary_writer *w, recur_status *st)
{
    recur_status_clear(st);
    if (!w) return rc_err(st, RECUR_INVALID_ARGUMENT, "recur_summary_flush: NULL writer");
    if (fflush(w->f) != 0) return rc_err(st, RECUR_DATA_LOSS, "Cannot write %s: %s", w->path, strerror(errno));
    return RECUR_OK;
}

void recur_summary_writer_free(recur_summary_writer *w)
{
    if (!w) return;
    if (w->f) fclose(w->f);
    rc_free(w->path);
    rc_free(w->limits);
    rc_free(w);
}
