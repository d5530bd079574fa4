/*
 * crc32c.c - CRC32C (Castagnoli: reflected polynomial 0x82F63B78, init and final xor
 * 0xFFFFFFFF) and the masking TensorFlow and LevelDB apply to stored CRCs. Uses the SSE4.2
 * crc32 instruction when the CPU has it (checked at run time), otherwise a nibble table.
 */
#include "io/io.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RC_CRC_HW 1
#include <nmmintrin.h>
#endif

/* crc32c over one 4-bit step for each nibble value. */
static const uint32_t nibble_table[16] = {
    0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3, 0x61c69362, 0x7198540d,
    0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9, 0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75,
};

uint32_t rc_crc32c_extend_portable(uint32_t crc, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    uint32_t c = ~crc;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        c = (c >> 4) ^ nibble_table[c & 15];
        c = (c >> 4) ^ nibble_table[c & 15];
    }
    return ~c;
}

#ifdef RC_CRC_HW
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    uint64_t c = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    uint32_t c32 = (uint32_t)c;
    for (; n; n--, p++) c32 = _mm_crc32_u8(c32, *p);
    return ~c32;
}
#endif

uint32_t rc_crc32c_extend(uint32_t crc, const void *buf, size_t n)
{
#ifdef RC_CRC_HW
    if (__builtin_cpu_supports("sse4.2")) return crc32c_sse42(crc, buf, n);
#endif
    return rc_crc32c_extend_portable(crc, buf, n);
}

#define MASK_DELTA 0xa282ead8u

uint32_t rc_crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + MASK_DELTA; }

uint32_t rc_crc32c_unmask(uint32_t masked)
{
    uint32_t rot = masked - MASK_DELTA;
    return (rot >> 17) | (rot << 15);
}
