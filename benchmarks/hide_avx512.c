// LD_PRELOAD library that makes a process see an AVX2-only x86 CPU (no AVX-512, no VNNI) on a
// machine that has them, so that onnxruntime's MLAS (and anything else that dispatches on CPUID)
// takes the code path it would take on an AVX2 + FMA CPU such as AMD Zen 3.
//
// How: the kernel's CPUID faulting (arch_prctl ARCH_SET_CPUID, "cpuid_fault" in /proc/cpuinfo)
// turns every CPUID instruction of this process into a SIGSEGV; the handler executes the real
// CPUID with faulting briefly off, clears the AVX-512 and VNNI feature bits and steps over the
// instruction. CPUID runs only at start-up and library loads, so timed code is not affected.
// The setting is per thread and inherited by threads created later; execve() clears it.
// Libraries that install their own SIGSEGV handler (TVM's backtrace printer does) are kept
// behind this one: sigaction() and signal() are wrapped so that their handler is remembered
// and called for real faults, never installed over the CPUID handler.
//
// Build: gcc -O2 -shared -fPIC -o hide_avx512.so hide_avx512.c
// Use:   LD_PRELOAD=$PWD/hide_avx512.so python -c 'import onnxruntime'
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

// Leaf 7 subleaf 0, EBX: AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL.
static const uint32_t kLeaf7Ebx = (1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) |
                                  (1u << 28) | (1u << 30) | (1u << 31);
// Leaf 7 subleaf 0, ECX: AVX512 VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ.
static const uint32_t kLeaf7Ecx = (1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14);
// Leaf 7 subleaf 0, EDX: AVX512 4VNNIW, 4FMAPS, VP2INTERSECT, FP16.
static const uint32_t kLeaf7Edx = (1u << 2) | (1u << 3) | (1u << 8) | (1u << 23);
// Leaf 7 subleaf 1, EAX: AVX-VNNI (the VEX form), AVX512 BF16.
static const uint32_t kLeaf7Sub1Eax = (1u << 4) | (1u << 5);

static void real_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t out[4]) {
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
  __cpuid_count(leaf, subleaf, out[0], out[1], out[2], out[3]);
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
static sigaction_fn libc_sigaction;
// The SIGSEGV disposition the process asked for (default until it asks).
static struct sigaction app_action;

static void on_sigsegv(int signo, siginfo_t *info, void *context) {
  ucontext_t *uc = (ucontext_t *)context;
  greg_t *regs = uc->uc_mcontext.gregs;
  const unsigned char *ip = (const unsigned char *)regs[REG_RIP];
  if (ip[0] != 0x0f || ip[1] != 0xa2) {
    // A real segmentation fault: what the process would have done without this library.
    if (app_action.sa_flags & SA_SIGINFO) {
      app_action.sa_sigaction(signo, info, context);
    } else if (app_action.sa_handler != SIG_DFL && app_action.sa_handler != SIG_IGN) {
      app_action.sa_handler(signo);
    } else {
      struct sigaction fallback;
      memset(&fallback, 0, sizeof fallback);
      fallback.sa_handler = SIG_DFL;
      libc_sigaction(signo, &fallback, NULL);  // the fault repeats on return and kills
    }
    return;
  }
  uint32_t leaf = (uint32_t)regs[REG_RAX], subleaf = (uint32_t)regs[REG_RCX];
  uint32_t r[4];
  real_cpuid(leaf, subleaf, r);
  if (leaf == 7 && subleaf == 0) {
    r[1] &= ~kLeaf7Ebx;
    r[2] &= ~kLeaf7Ecx;
    r[3] &= ~kLeaf7Edx;
  } else if (leaf == 7 && subleaf == 1) {
    r[0] &= ~kLeaf7Sub1Eax;
  }
  regs[REG_RAX] = r[0];
  regs[REG_RBX] = r[1];
  regs[REG_RCX] = r[2];
  regs[REG_RDX] = r[3];
  regs[REG_RIP] += 2;
  (void)info;
}

int sigaction(int signo, const struct sigaction *action, struct sigaction *old) {
  if (signo != SIGSEGV) return libc_sigaction(signo, action, old);
  if (old) *old = app_action;
  if (action) app_action = *action;
  return 0;
}

sighandler_t signal(int signo, sighandler_t handler) {
  struct sigaction action, old;
  memset(&action, 0, sizeof action);
  action.sa_handler = handler;
  action.sa_flags = SA_RESTART;
  if (sigaction(signo, &action, &old) != 0) return SIG_ERR;
  return old.sa_handler;
}

__attribute__((constructor)) static void hide_avx512(void) {
  libc_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
  app_action.sa_handler = SIG_DFL;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_sigaction = on_sigsegv;
  action.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  if (libc_sigaction(SIGSEGV, &action, NULL) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
    fprintf(stderr, "hide_avx512: this CPU or kernel has no CPUID faulting; AVX-512 stays visible\n");
    exit(3);
  }
}
