/*
 * status.c - status objects (code + message) and the code names from RECUR_CODES.
 */
#include "recur_impl.h"

const char *recur_version(void) { return "0.1.0"; }

const char *recur_code_name(recur_code code)
{
    switch (code) {
#define RC_CODE_CASE_(name, value, text)                                                       \
    case RECUR_##name:                                                                         \
        return #name;
        RECUR_CODES(RC_CODE_CASE_)
#undef RC_CODE_CASE_
    }
    return "UNKNOWN_CODE";
}

recur_status *recur_status_new(void)
{
    recur_status *st = rc_malloc(sizeof *st);
    if (st) recur_status_clear(st);
    return st;
}

void recur_status_free(recur_status *st) { rc_free(st); }

recur_code recur_status_code(const recur_status *st) { return st ? st->code : RECUR_OK; }

bool recur_status_ok(const recur_status *st) { return !st || st->code == RECUR_OK; }

const char *recur_status_message(const recur_status *st) { return st ? st->msg : ""; }

void recur_status_clear(recur_status *st)
{
    if (!st) return;
    st->code = RECUR_OK;
    st->msg[0] = 0;
}

void rc_status_vset(recur_status *st, recur_code code, const char *fmt, va_list ap)
{
    if (!st) return;
    st->code = code;
    vsnprintf(st->msg, sizeof st->msg, fmt, ap);
}

void recur_status_set(recur_status *st, recur_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc_status_vset(st, code, fmt ? fmt : "", ap);
    va_end(ap);
}

recur_code rc_err(recur_status *st, recur_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc_status_vset(st, code, fmt, ap);
    va_end(ap);
    return code;
}

recur_code rc_oom(recur_status *st) { return rc_err(st, RECUR_OUT_OF_MEMORY, "Out of memory"); }

void rc_status_copy(recur_status *dst, const recur_status *src)
{
    if (!dst || !src || dst == src) return;
    dst->code = src->code;
    memcpy(dst->msg, src->msg, sizeof dst->msg);
}
