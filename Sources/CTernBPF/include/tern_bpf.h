/* The loader for Tern's kernel fast path, over libbpf: open and load the embedded object, attach
 * it at a device's ingress, and the map calls the control plane makes. Every function returns a
 * negative errno on failure (libbpf's convention) and never exits or prints. */
#ifndef TERN_BPF_H
#define TERN_BPF_H

#include <stddef.h>
#include <stdint.h>
#include "tern_offload.h"

struct tern_bpf;

enum tern_bpf_map {
    TERN_MAP_TO_PEER = 0,
    TERN_MAP_TO_CLIENT = 1,
    TERN_MAP_BUDGETS = 2,
    TERN_MAP_STATS = 3,
};

/* Opens and loads (verifies) the object in memory. On failure returns NULL, sets *error to a
 * negative errno, and leaves libbpf's last messages (the verifier's among them) in `log`. */
struct tern_bpf *tern_bpf_load(const void *object, size_t length, int *error, char *log, size_t log_length);

/* The descriptor of one of the program's maps. */
int tern_bpf_map_fd(const struct tern_bpf *bpf, enum tern_bpf_map map);

/* Attaches the program at `ifindex`'s ingress through a TCX link (Linux 6.6 and later). Returns the
 * link's descriptor: the kernel detaches the program when it is closed, or when the process dies. */
int tern_bpf_attach_tcx(const struct tern_bpf *bpf, int ifindex);

/* The older way (before 6.6): a clsact qdisc and a cls_bpf filter with Tern's own handle and
 * priority. It outlives the process, so `tern_bpf_detach_tc` runs at start and at stop. */
int tern_bpf_attach_tc(const struct tern_bpf *bpf, int ifindex);
int tern_bpf_detach_tc(int ifindex);

/* Unloads the program and its maps (links must be closed first). */
void tern_bpf_close(struct tern_bpf *bpf);

int tern_bpf_update(int map_fd, const void *key, const void *value);
int tern_bpf_delete(int map_fd, const void *key);
int tern_bpf_lookup(int map_fd, const void *key, void *value);
/* The key after `key` (the first with NULL); -ENOENT past the last. */
int tern_bpf_next_key(int map_fd, const void *key, void *next);
/* How many BPF programs named `name` the kernel has loaded now (tests, and bpftool's view). */
int tern_bpf_program_ids_named(const char *name);
/* Sums a per-CPU u64 array slot over every possible CPU. */
int tern_bpf_percpu_sum(int map_fd, uint32_t index, uint64_t *sum);

#endif
