/*
 * op_table.c - every op type once: the table from op enum to descriptor. The descriptors live
 * beside their kernels in the family files.
 */
#include "ops/ops.h"

#define RC_OP_EXTERN_(e, tf, sym) extern const rc_op_def rc_def_##sym;
RC_OP_LIST(RC_OP_EXTERN_)
#undef RC_OP_EXTERN_

const rc_op_def *const rc_op_table[RC_OP_COUNT] = {
#define RC_OP_ENTRY_(e, tf, sym) [RC_OP_##e] = &rc_def_##sym,
    RC_OP_LIST(RC_OP_ENTRY_)
#undef RC_OP_ENTRY_
};

_Static_assert(sizeof rc_op_table / sizeof rc_op_table[0] == RC_OP_COUNT, "op table size");
