/* A QEMU TCG plugin (qemu-user, plugin API v1): guest instructions executed between two marker
 * syscalls, write(-1, "mnv3-mark", 9), which the measured program makes around its timed loop.
 * Deterministic, unlike emulated time: the arm64 cost proxy of 'tune --measure instructions'
 * (schedules/tuning/instructions.py) and benchmarks/arm64_instructions.py.
 *
 * With the argument pcs=FILE it also writes, per translated block that ran between the markers,
 * "start-address executions instructions-per-execution" lines (the benchmark maps them to kernels
 * by symbol and estimates their cycles with llvm-mca), followed by " t<k>=<executions>" for each
 * guest thread k that ran it.
 *
 * qemu-user runs each guest thread as a vCPU of its own (the main thread is vCPU 0): the counts are
 * kept per thread too ("mnv3-thread K N" lines at exit), so a multi-threaded inference shows the
 * instructions of its busiest thread, the parallel run's critical path, beside the total.
 *
 * Build: gcc -shared -fPIC -O2 -I<dir of QEMU's qemu-plugin.h> count_insns.c -o count_insns.so
 * Run:   qemu-aarch64 -plugin ./count_insns.so[,pcs=FILE] program ...   (prints "mnv3-insns N") */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum { kWriteSyscall = 64 }; /* aarch64 */

enum { kThreads = 16 }; /* threads counted apart; later vCPUs share the last slot */

typedef struct block {
  uint64_t vaddr, insns;
  uint64_t executed[kThreads]; /* per thread: each vCPU adds to its own slot only */
} block;

static uint64_t per_thread[kThreads]; /* instructions while counting, per vCPU */
static int counting, marks;
static block **blocks;
static size_t n_blocks, capacity;
static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;
static char *pcs_path;

static void on_block(unsigned int vcpu, void *data) {
  if (!counting) return;
  block *b = data;
  unsigned slot = vcpu < kThreads ? vcpu : kThreads - 1;
  if (slot == kThreads - 1) { /* shared by several vCPUs: they run at once */
    __atomic_fetch_add(&b->executed[slot], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&per_thread[slot], b->insns, __ATOMIC_RELAXED);
  } else {
    b->executed[slot]++;
    per_thread[slot] += b->insns;
  }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  block *b = calloc(1, sizeof(block)); /* translations run on any vCPU: the list takes a lock */
  b->vaddr = qemu_plugin_tb_vaddr(tb);
  b->insns = qemu_plugin_tb_n_insns(tb);
  pthread_mutex_lock(&blocks_lock);
  if (n_blocks == capacity) {
    capacity = capacity ? 2 * capacity : 4096;
    blocks = realloc(blocks, capacity * sizeof(block *));
  }
  blocks[n_blocks++] = b;
  pthread_mutex_unlock(&blocks_lock);
  qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2, uint64_t a3,
                       uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8) {
  (void)id; (void)vcpu; (void)a2; (void)a4; (void)a5; (void)a6; (void)a7; (void)a8;
  if (num == kWriteSyscall && a1 == (uint64_t)-1 && a3 == 9) {
    counting = ++marks == 1;
  }
}

static void at_exit(qemu_plugin_id_t id, void *data) {
  (void)id; (void)data;
  char line[64];
  uint64_t total = 0;
  for (int k = 0; k < kThreads; ++k) total += per_thread[k];
  snprintf(line, sizeof(line), "mnv3-insns %" PRIu64 " marks %d\n", total, marks);
  qemu_plugin_outs(line);
  for (int k = 0; k < kThreads; ++k) {
    if (!per_thread[k]) continue;
    snprintf(line, sizeof(line), "mnv3-thread %d %" PRIu64 "\n", k, per_thread[k]);
    qemu_plugin_outs(line);
  }
  if (pcs_path) {
    FILE *out = fopen(pcs_path, "w");
    for (size_t i = 0; out && i < n_blocks; ++i) {
      uint64_t executed = 0;
      for (int k = 0; k < kThreads; ++k) executed += blocks[i]->executed[k];
      if (!executed) continue;
      fprintf(out, "%" PRIx64 " %" PRIu64 " %" PRIu64, blocks[i]->vaddr, executed, blocks[i]->insns);
      for (int k = 0; k < kThreads; ++k) {
        if (blocks[i]->executed[k]) fprintf(out, " t%d=%" PRIu64, k, blocks[i]->executed[k]);
      }
      fputc('\n', out);
    }
    if (out) fclose(out);
  }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    if (!strncmp(argv[i], "pcs=", 4)) pcs_path = strdup(argv[i] + 4);
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
  qemu_plugin_register_atexit_cb(id, at_exit, NULL);
  return 0;
}
