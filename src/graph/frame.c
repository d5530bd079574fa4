/*
 * frame.c - loop frames: which ops belong to a loop body and which outer tensors the body
 * captures. A tensor made inside a loop body cannot be used outside it.
 */
#include "recur_impl.h"

bool rc_frame_within(const rc_frame *inner, const rc_frame *outer)
{
    for (const rc_frame *f = inner; f; f = f->parent)
        if (f == outer) return true;
    return outer == NULL;
}

static bool add_unique(recur_graph *g, recur_tensor ***list, size_t *n, size_t *cap, recur_tensor *t)
{
    for (size_t i = 0; i < *n; i++)
        if ((*list)[i] == t) return true;
    if (!rc_grow((void **)list, cap, *n + 1, sizeof **list)) {
        rc_goom(g);
        return false;
    }
    (*list)[(*n)++] = t;
    return true;
}

bool rc_frame_note_op(recur_graph *g, recur_op *op)
{
    for (int i = 0; i < op->ninputs; i++) {
        recur_tensor *t = op->inputs[i];
        rc_frame *tf = t->op->frame;
        if (tf == op->frame) continue;
        if (op->frame && tf && op->frame->forward == tf) {
            /* a gradient body reading its forward body: saved per step */
            if (!add_unique(g, &op->frame->saved, &op->frame->nsaved, &op->frame->capsaved, t)) return false;
            continue;
        }
        if (!rc_frame_within(op->frame, tf)) {
            rc_gerr(g, RECUR_INVALID_ARGUMENT,
                    "Cannot use '%s' as input to '%s' because '%s' is in a loop body (%s). "
                    "Tensors computed inside an RNN step can only be used through the RNN's "
                    "outputs and final state.",
                    t->name, op->name, t->name, tf->name ? tf->name : "?");
            return false;
        }
        /* Capture in every frame between the op's and the tensor's. */
        for (rc_frame *f = op->frame; f && f != tf; f = f->parent)
            if (!add_unique(g, &f->captures, &f->ncaptures, &f->capcaptures, t)) return false;
    }
    return true;
}
