// The few CPU facts Swift cannot reach itself: the cpuid and xgetbv instructions, and Linux's
// permission request for AMX tile data. Everything else (parsing, policy) is Swift, in
// Sources/SubspaceCore/Tensor/CPU.swift.
#ifndef SUBSPACE_CSUPPORT_H
#define SUBSPACE_CSUPPORT_H

#include <stdint.h>

/// Executes `cpuid` with EAX = leaf, ECX = subleaf and stores EAX, EBX, ECX, EDX in `regs`.
/// Returns 1, or 0 (and zeros) where the instruction does not exist (not x86-64) or the leaf
/// is above the CPU's maximum for its range (basic 0x0..., extended 0x8000_0000...).
int subspace_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t regs[4]);

/// The extended control register XCR`index` (index 0: XCR0, the register states the
/// operating system saves, i.e. enabled), or 0 where the OS has not enabled XSAVE
/// (CPUID.1:ECX.OSXSAVE clear, where `xgetbv` would fault) or on other architectures.
uint64_t subspace_xgetbv(uint32_t index);

/// Asks Linux for permission to use AMX tile data in this process
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, Linux 5.16+). Returns 0 on
/// success, else the errno (or -1 where the platform has no such request).
int subspace_request_amx_permission(void);

#endif
