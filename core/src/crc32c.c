/* crc32c.c - CRC32C (Castagnoli), reflected: table-driven, or on x86-64
 * hosts the CPU's crc32 instruction. */
#include "tcpota/crc32c.h"

#ifdef TCPOTA_SMALL
/* Small builds (-DTCPOTA_SMALL): a 16-entry table, two lookups per byte;
 * 64 bytes instead of 1 KiB of flash, about half the speed. */
static const uint32_t crc32c_nibble[16] = {
    0x00000000u, 0x105ec76fu, 0x20bd8edeu, 0x30e349b1u, 0x417b1dbcu, 0x5125dad3u,
    0x61c69362u, 0x7198540du, 0x82f63b78u, 0x92a8fc17u, 0xa24bb5a6u, 0xb21572c9u,
    0xc38d26c4u, 0xd3d3e1abu, 0xe330a81au, 0xf36e6f75u,
};

uint32_t tcpota_crc32c_update(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        crc = crc32c_nibble[crc & 0x0fu] ^ (crc >> 4);
        crc = crc32c_nibble[crc & 0x0fu] ^ (crc >> 4);
    }
    return ~crc;
}
#else
/* Table for polynomial 0x82F63B78 (reflected 0x1EDC6F41); 1 KiB of
 * read-only data, which on a microcontroller stays in flash. */
static const uint32_t crc32c_table[256] = {
    0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u, 0xc79a971fu, 0x35f1141cu,
    0x26a1e7e8u, 0xd4ca64ebu, 0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
    0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u, 0x105ec76fu, 0xe235446cu,
    0xf165b798u, 0x030e349bu, 0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
    0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u, 0x5d1d08bfu, 0xaf768bbcu,
    0xbc267848u, 0x4e4dfb4bu, 0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
    0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u, 0xaa64d611u, 0x580f5512u,
    0x4b5fa6e6u, 0xb93425e5u, 0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
    0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u, 0xf779deaeu, 0x05125dadu,
    0x1642ae59u, 0xe4292d5au, 0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
    0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u, 0x417b1dbcu, 0xb3109ebfu,
    0xa0406d4bu, 0x522bee48u, 0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
    0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u, 0x0c38d26cu, 0xfe53516fu,
    0xed03a29bu, 0x1f682198u, 0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
    0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u, 0xdbfc821cu, 0x2997011fu,
    0x3ac7f2ebu, 0xc8ac71e8u, 0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
    0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u, 0xa65c047du, 0x5437877eu,
    0x4767748au, 0xb50cf789u, 0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
    0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u, 0x7198540du, 0x83f3d70eu,
    0x90a324fau, 0x62c8a7f9u, 0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
    0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u, 0x3cdb9bddu, 0xceb018deu,
    0xdde0eb2au, 0x2f8b6829u, 0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
    0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u, 0x082f63b7u, 0xfa44e0b4u,
    0xe9141340u, 0x1b7f9043u, 0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
    0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u, 0x55326b08u, 0xa759e80bu,
    0xb4091bffu, 0x466298fcu, 0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
    0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u, 0xa24bb5a6u, 0x502036a5u,
    0x4370c551u, 0xb11b4652u, 0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
    0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du, 0xef087a76u, 0x1d63f975u,
    0x0e330a81u, 0xfc588982u, 0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
    0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u, 0x38cc2a06u, 0xcaa7a905u,
    0xd9f75af1u, 0x2b9cd9f2u, 0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
    0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u, 0x0417b1dbu, 0xf67c32d8u,
    0xe52cc12cu, 0x1747422fu, 0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
    0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u, 0xd3d3e1abu, 0x21b862a8u,
    0x32e8915cu, 0xc083125fu, 0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
    0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u, 0x9e902e7bu, 0x6cfbad78u,
    0x7fab5e8cu, 0x8dc0dd8fu, 0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
    0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u, 0x69e9f0d5u, 0x9b8273d6u,
    0x88d28022u, 0x7ab90321u, 0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
    0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u, 0x34f4f86au, 0xc69f7b69u,
    0xd5cf889du, 0x27a40b9eu, 0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
    0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

#ifdef TCPOTA_FAST_CRC
/* Host builds (server, load generator): eight bytes per step, several
 * times faster than one lookup per byte, for 7 KiB more of tables. */
#include "crc32c_slice8.h"
#define T(k, b) ((k) ? crc32c_slice[(k) - 1][b] : crc32c_table[b])
#endif

/* The portable path; crc is already inverted. */
static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
#ifdef TCPOTA_FAST_CRC
    while (len >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = T(7, lo & 0xffu) ^ T(6, (lo >> 8) & 0xffu) ^ T(5, (lo >> 16) & 0xffu) ^
              T(4, lo >> 24) ^ T(3, p[4]) ^ T(2, p[5]) ^ T(1, p[6]) ^ T(0, p[7]);
        p += 8;
        len -= 8;
    }
#endif
    while (len--) {
        crc = crc32c_table[(crc ^ *p++) & 0xffu] ^ (crc >> 8);
    }
    return crc;
}

#if defined(TCPOTA_FAST_CRC) && !defined(TCPOTA_NO_HW_CRC) && defined(__x86_64__) && \
    defined(__GNUC__)
/* x86-64 with SSE4.2 has CRC32C as an instruction (crc32): 8 bytes per
 * instruction, several times the slicing tables' speed. Which path runs is
 * decided once, before main(), from CPUID. */
#include <cpuid.h>
#define CRC32C_HW 1

static int crc32c_have_hw;

/* The crc32 instruction takes 3 cycles and can start one each cycle: one
 * chain of them runs at a third of its speed. A buffer of 3 x CRC32C_BLOCK
 * bytes or more goes as three chains over three blocks side by side, joined
 * after each round: crc(A B C) = shift(shift(crc(A), |B|) ^ crc(B), |C|) ^
 * crc(C), where shift() multiplies by x^(8 x CRC32C_BLOCK) modulo the
 * polynomial (a CRC register is linear in its bits): four lookups in
 * crc32c_shift, made at start-up. A device's 4 KiB DATA frame goes in
 * five rounds and a tail. */
#define CRC32C_BLOCK 256u
#define CRC32C_POLY 0x82f63b78u
static uint32_t crc32c_shift[4][256];

/* a x b modulo the polynomial, both reflected (bit 31 is x^0). */
static uint32_t crc32c_mulmod(uint32_t a, uint32_t b)
{
    uint32_t m = (uint32_t)1 << 31, prod = 0;

    for (; m; m >>= 1) {
        if (a & m) {
            prod ^= b;
        }
        b = b & 1u ? (b >> 1) ^ CRC32C_POLY : b >> 1;
    }
    return prod;
}

__attribute__((constructor)) static void crc32c_detect(void)
{
    unsigned a, b, c, d, k, v;
    uint32_t xn = (uint32_t)1 << 31; /* x^0 */

    crc32c_have_hw = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2) != 0;
    for (k = 0; k < 8u * CRC32C_BLOCK; k++) {
        xn = crc32c_mulmod(xn, (uint32_t)1 << 30); /* times x */
    }
    for (k = 0; k < 4; k++) {
        for (v = 0; v < 256; v++) {
            crc32c_shift[k][v] = crc32c_mulmod(xn, (uint32_t)v << (8 * k));
        }
    }
}

/* crc advanced over CRC32C_BLOCK zero bytes. */
static uint32_t crc32c_skip(uint32_t crc)
{
    return crc32c_shift[0][crc & 0xffu] ^ crc32c_shift[1][(crc >> 8) & 0xffu] ^
           crc32c_shift[2][(crc >> 16) & 0xffu] ^ crc32c_shift[3][crc >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                             size_t len)
{
    uint64_t c = crc;
    uint32_t w4;
    uint16_t w2;

    for (; len >= 3 * CRC32C_BLOCK; len -= 3 * CRC32C_BLOCK, p += 3 * CRC32C_BLOCK) {
        uint64_t c1 = 0, c2 = 0;
        size_t i;
        for (i = 0; i < CRC32C_BLOCK; i += 8) {
            uint64_t w0, w1, w2w;
            __builtin_memcpy(&w0, p + i, sizeof(w0));
            __builtin_memcpy(&w1, p + CRC32C_BLOCK + i, sizeof(w1));
            __builtin_memcpy(&w2w, p + 2 * CRC32C_BLOCK + i, sizeof(w2w));
            c = __builtin_ia32_crc32di(c, w0);
            c1 = __builtin_ia32_crc32di(c1, w1);
            c2 = __builtin_ia32_crc32di(c2, w2w);
        }
        c = crc32c_skip((uint32_t)c) ^ (uint32_t)c1;
        c = crc32c_skip((uint32_t)c) ^ (uint32_t)c2;
    }
    /* x86 loads unaligned words at full speed: no head to align. */
    for (; len >= 8; len -= 8, p += 8) {
        uint64_t w;
        __builtin_memcpy(&w, p, sizeof(w));
        c = __builtin_ia32_crc32di(c, w);
    }
    if (len & 4u) {
        __builtin_memcpy(&w4, p, sizeof(w4));
        c = __builtin_ia32_crc32si((uint32_t)c, w4);
        p += 4;
    }
    if (len & 2u) {
        __builtin_memcpy(&w2, p, sizeof(w2));
        c = __builtin_ia32_crc32hi((uint32_t)c, w2);
        p += 2;
    }
    if (len & 1u) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p);
    }
    return (uint32_t)c;
}
#endif

uint32_t tcpota_crc32c_update(uint32_t crc, const void *data, size_t len)
{
#ifdef CRC32C_HW
    if (crc32c_have_hw) {
        return ~crc32c_hw(~crc, data, len);
    }
#endif
    return ~crc32c_sw(~crc, data, len);
}
#endif

uint32_t tcpota_crc32c(const void *data, size_t len)
{
    return tcpota_crc32c_update(0, data, len);
}
