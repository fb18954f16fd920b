#include "tern_bpf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

/* Tern's own cls_bpf handle and priority on the clsact ingress hook (the pre-6.6 path). */
#define TERN_TC_HANDLE 0x7e4e
#define TERN_TC_PRIORITY 0x7e4e
/* Linux 6.6's BPF_TCX_INGRESS, which Debian 12's linux-libc-dev (6.1) does not name yet. */
#define TERN_BPF_TCX_INGRESS 46

struct tern_bpf {
    struct bpf_object *object;
    int prog_fd;
    int map_fds[4];
};

static char *capture;
static size_t capture_length;

/* libbpf's messages go into the caller's buffer (the last ones kept) instead of stderr. */
static int capture_print(enum libbpf_print_level level, const char *format, va_list args)
{
    if (!capture || capture_length == 0 || level == LIBBPF_DEBUG)
        return 0;
    char line[512];
    int n = vsnprintf(line, sizeof line, format, args);
    if (n <= 0)
        return 0;
    size_t used = strlen(capture);
    size_t add = strlen(line);
    if (add >= capture_length)
        add = capture_length - 1;
    if (used + add >= capture_length) {
        size_t keep = capture_length - 1 - add;
        memmove(capture, capture + used - keep, keep);
        used = keep;
    }
    memcpy(capture + used, line + strlen(line) - add, add);
    capture[used + add] = 0;
    return 0;
}

struct tern_bpf *tern_bpf_load(const void *object, size_t length, int *error, char *log, size_t log_length)
{
    static const char *names[4] = {"tern_to_peer", "tern_to_client", "tern_budgets", "tern_stats"};
    if (log && log_length)
        log[0] = 0;
    capture = log;
    capture_length = log_length;
    /* From here on libbpf never writes to stderr: its messages go to `log` during the load and
     * nowhere after (a missing clsact qdisc at start-up clean-up is expected, not news). */
    libbpf_set_print(capture_print);
    struct tern_bpf *bpf = calloc(1, sizeof *bpf);
    int err = 0;
    if (!bpf) {
        err = -ENOMEM;
        goto out;
    }
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "tern_relay");
    bpf->object = bpf_object__open_mem(object, length, &opts);
    if (!bpf->object) {
        err = -errno;
        goto out;
    }
    err = bpf_object__load(bpf->object);
    if (err)
        goto out;
    struct bpf_program *prog = bpf_object__find_program_by_name(bpf->object, "tern_relay");
    if (!prog) {
        err = -ENOENT;
        goto out;
    }
    bpf->prog_fd = bpf_program__fd(prog);
    for (int i = 0; i < 4; i++) {
        struct bpf_map *map = bpf_object__find_map_by_name(bpf->object, names[i]);
        bpf->map_fds[i] = map ? bpf_map__fd(map) : -1;
        if (bpf->map_fds[i] < 0) {
            err = -ENOENT;
            goto out;
        }
    }
out:
    capture = NULL;
    if (err && bpf) {
        if (bpf->object)
            bpf_object__close(bpf->object);
        free(bpf);
        bpf = NULL;
    }
    if (error)
        *error = err;
    return bpf;
}

int tern_bpf_map_fd(const struct tern_bpf *bpf, enum tern_bpf_map map)
{
    if ((unsigned)map >= 4)
        return -EINVAL;
    return bpf->map_fds[map];
}

int tern_bpf_attach_tcx(const struct tern_bpf *bpf, int ifindex)
{
    int fd = bpf_link_create(bpf->prog_fd, ifindex, (enum bpf_attach_type)TERN_BPF_TCX_INGRESS, NULL);
    return fd < 0 ? -errno : fd;
}

int tern_bpf_attach_tc(const struct tern_bpf *bpf, int ifindex)
{
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    int err = bpf_tc_hook_create(&hook);
    if (err && err != -EEXIST)
        return err;
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = bpf->prog_fd, .handle = TERN_TC_HANDLE,
                .priority = TERN_TC_PRIORITY, .flags = BPF_TC_F_REPLACE);
    return bpf_tc_attach(&hook, &opts);
}

int tern_bpf_detach_tc(int ifindex)
{
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = TERN_TC_HANDLE, .priority = TERN_TC_PRIORITY);
    return bpf_tc_detach(&hook, &opts);
}

void tern_bpf_close(struct tern_bpf *bpf)
{
    if (!bpf)
        return;
    bpf_object__close(bpf->object);
    free(bpf);
}

int tern_bpf_update(int map_fd, const void *key, const void *value)
{
    return bpf_map_update_elem(map_fd, key, value, BPF_ANY) ? -errno : 0;
}

int tern_bpf_delete(int map_fd, const void *key)
{
    return bpf_map_delete_elem(map_fd, key) ? -errno : 0;
}

int tern_bpf_lookup(int map_fd, const void *key, void *value)
{
    return bpf_map_lookup_elem(map_fd, key, value) ? -errno : 0;
}

int tern_bpf_next_key(int map_fd, const void *key, void *next)
{
    return bpf_map_get_next_key(map_fd, key, next) ? -errno : 0;
}

int tern_bpf_program_ids_named(const char *name)
{
    __u32 id = 0;
    int count = 0;
    while (bpf_prog_get_next_id(id, &id) == 0) {
        int fd = bpf_prog_get_fd_by_id(id);
        if (fd < 0)
            continue;
        struct bpf_prog_info info;
        __u32 length = sizeof info;
        memset(&info, 0, sizeof info);
        if (bpf_obj_get_info_by_fd(fd, &info, &length) == 0 && strncmp(info.name, name, sizeof info.name) == 0)
            count++;
        close(fd);
    }
    return count;
}

int tern_bpf_percpu_sum(int map_fd, uint32_t index, uint64_t *sum)
{
    int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0)
        return cpus < 0 ? cpus : -EINVAL;
    uint64_t *values = calloc((size_t)cpus, sizeof *values);
    if (!values)
        return -ENOMEM;
    int err = bpf_map_lookup_elem(map_fd, &index, values) ? -errno : 0;
    uint64_t total = 0;
    for (int i = 0; i < cpus && !err; i++)
        total += values[i];
    free(values);
    *sum = total;
    return err;
}
