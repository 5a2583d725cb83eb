// Subnormal floats flushed to zero inside the CPU kernels, whatever the caller's settings.
//
// A gradient that enters a recurrence at one end (a loss on the final LSTM states) decays
// step by step through the forget gates into subnormal floats, and x86 arithmetic that reads
// or produces subnormals takes a microcode assist, one to two orders of magnitude slower per
// instruction. With flush-to-zero (FTZ: subnormal results become 0) and denormals-are-zero
// (DAZ: subnormal inputs read as 0) set, those steps run at full speed. The numerical effect:
// float32 magnitudes below about 1.18e-38 (float64: 2.2e-308) become zero inside our kernels;
// normal values are computed exactly as before.
//
// The floating-point mode is per thread, so the guard goes at the top of every at::parallel_for
// body: each thread that computes (the calling thread runs a share, or all of it when
// parallel_for runs inline) sets it and restores its own previous mode on scope exit,
// exceptions included. Serial arithmetic on the calling thread outside parallel_for takes its
// own guard, scoped so that it never spans a parallel_for call: the OpenMP pool may start its
// threads inside that call, a new thread inherits the mode of the thread that starts it, and
// it would keep the flush after the call (the suite caught exactly that with a guard around
// the whole op).
//
// x86/x86-64: MXCSR bits FTZ (0x8000) and DAZ (0x0040). AArch64: FPCR.FZ (bit 24), which does
// both for single and double precision. Other targets: a no-op (IEEE subnormals, no speed-up).
// ATen ops that a kernel calls outside its own parallel regions (a final reduction such as
// Tensor::sum) may run on ATen's threads at the caller's settings: they are elementwise
// passes, not the recurrences where subnormals pile up.
#pragma once

#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <xmmintrin.h>
#define SUBLOCAL_FP_MODE_X86 1
#elif defined(__aarch64__)
#define SUBLOCAL_FP_MODE_AARCH64 1
#endif

namespace sublocal {

class FlushDenormalGuard {
 public:
  FlushDenormalGuard() {
#if defined(SUBLOCAL_FP_MODE_X86)
    saved_ = _mm_getcsr();
    if ((saved_ & kBits) != kBits) _mm_setcsr(saved_ | kBits);
#elif defined(SUBLOCAL_FP_MODE_AARCH64)
    uint64_t v;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(v));
    saved_ = v;
    if ((v & kBits) != kBits) __asm__ __volatile__("msr fpcr, %0" : : "r"(v | kBits));
#endif
  }

  // Only the two mode bits go back: exception flags raised inside the kernel stay raised, as
  // they would without the guard.
  ~FlushDenormalGuard() {
#if defined(SUBLOCAL_FP_MODE_X86)
    const unsigned now = _mm_getcsr();
    if ((now & kBits) != (saved_ & kBits)) _mm_setcsr((now & ~kBits) | (saved_ & kBits));
#elif defined(SUBLOCAL_FP_MODE_AARCH64)
    uint64_t now;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(now));
    if ((now & kBits) != (saved_ & kBits)) __asm__ __volatile__("msr fpcr, %0" : : "r"((now & ~kBits) | (saved_ & kBits)));
#endif
  }

  FlushDenormalGuard(const FlushDenormalGuard&) = delete;
  FlushDenormalGuard& operator=(const FlushDenormalGuard&) = delete;

 private:
#if defined(SUBLOCAL_FP_MODE_X86)
  static constexpr unsigned kBits = 0x8040;  // FTZ | DAZ
  unsigned saved_ = 0;
#elif defined(SUBLOCAL_FP_MODE_AARCH64)
  static constexpr uint64_t kBits = uint64_t{1} << 24;  // FPCR.FZ
  uint64_t saved_ = 0;
#endif
};

}  // namespace sublocal
