#include "CSupport.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#if defined(__linux__)
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

int subspace_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t regs[4]) {
    regs[0] = regs[1] = regs[2] = regs[3] = 0;
    // The highest leaf of this range (0 or 0x8000_0000); asking above it returns garbage.
    unsigned int max = __get_cpuid_max(leaf & 0x80000000u, 0);
    if (max == 0 || leaf > max) return 0;
    unsigned int a, b, c, d;
    __cpuid_count(leaf, subleaf, a, b, c, d);
    regs[0] = a; regs[1] = b; regs[2] = c; regs[3] = d;
    return 1;
}

uint64_t subspace_xgetbv(uint32_t index) {
    uint32_t r[4];
    if (!subspace_cpuid(1, 0, r) || !(r[2] & (1u << 27))) return 0;  // OSXSAVE
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(index));
    return ((uint64_t)hi << 32) | lo;
}

int subspace_request_amx_permission(void) {
#if defined(__linux__)
    // ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 (arch/x86/include/uapi/asm/prctl.h).
    if (syscall(SYS_arch_prctl, 0x1023, 18) == 0) return 0;
    return errno ? errno : -1;
#else
    return -1;
#endif
}

#else

int subspace_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t regs[4]) {
    (void)leaf; (void)subleaf;
    regs[0] = regs[1] = regs[2] = regs[3] = 0;
    return 0;
}

uint64_t subspace_xgetbv(uint32_t index) { (void)index; return 0; }

int subspace_request_amx_permission(void) { return -1; }

#endif
