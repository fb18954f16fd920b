#define _GNU_SOURCE
#include <malloc.h>
#include "tern_shims.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/udp.h>

_Static_assert(sizeof(struct tern_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr size");
_Static_assert(offsetof(struct tern_mmsghdr, msg_hdr) == offsetof(struct mmsghdr, msg_hdr), "msg_hdr offset");
_Static_assert(offsetof(struct tern_mmsghdr, msg_len) == offsetof(struct mmsghdr, msg_len), "msg_len offset");

int tern_recvmmsg(int fd, struct tern_mmsghdr *msgs, unsigned int vlen, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)msgs, vlen, flags, NULL);
}

int tern_sendmmsg(int fd, struct tern_mmsghdr *msgs, unsigned int vlen, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)msgs, vlen, flags);
}

size_t tern_pktinfo_space(void) {
    size_t a = CMSG_SPACE(sizeof(struct in_pktinfo));
    size_t b = CMSG_SPACE(sizeof(struct in6_pktinfo));
    return a > b ? a : b;
}

int tern_enable_pktinfo(int fd, int ipv6) {
    int on = 1;
    if (ipv6) return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on));
    return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on));
}

int tern_read_pktinfo(const struct msghdr *msg, struct sockaddr_storage *out, uint16_t port_network_order) {
    if (msg->msg_control == NULL || msg->msg_controllen < sizeof(struct cmsghdr)) return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c != NULL; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof(info));
            struct sockaddr_in *sin = (struct sockaddr_in *)out;
            memset(out, 0, sizeof(*out));
            sin->sin_family = AF_INET;
            sin->sin_port = port_network_order;
            sin->sin_addr = info.ipi_addr;
            return 1;
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
            struct in6_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof(info));
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
            memset(out, 0, sizeof(*out));
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = port_network_order;
            sin6->sin6_addr = info.ipi6_addr;
            return 1;
        }
    }
    return 0;
}

size_t tern_write_pktinfo(void *control, size_t capacity, const struct sockaddr_storage *src) {
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    m.msg_control = control;
    if (src->ss_family == AF_INET) {
        size_t need = CMSG_SPACE(sizeof(struct in_pktinfo));
        if (capacity < need) return 0;
        memset(control, 0, need);
        m.msg_controllen = need;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
        struct in_pktinfo info;
        memset(&info, 0, sizeof(info));
        info.ipi_spec_dst = ((const struct sockaddr_in *)src)->sin_addr;
        memcpy(CMSG_DATA(c), &info, sizeof(info));
        return need;
    }
    if (src->ss_family == AF_INET6) {
        size_t need = CMSG_SPACE(sizeof(struct in6_pktinfo));
        if (capacity < need) return 0;
        memset(control, 0, need);
        m.msg_controllen = need;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
        struct in6_pktinfo info;
        memset(&info, 0, sizeof(info));
        info.ipi6_addr = ((const struct sockaddr_in6 *)src)->sin6_addr;
        memcpy(CMSG_DATA(c), &info, sizeof(info));
        return need;
    }
    return 0;
}

int tern_ip_pktinfo(void) { return IP_PKTINFO; }
int tern_ipv6_recvpktinfo(void) { return IPV6_RECVPKTINFO; }
int tern_so_reuseport(void) { return SO_REUSEPORT; }
int tern_msg_trunc(void) { return MSG_TRUNC; }
int tern_msg_nosignal(void) { return MSG_NOSIGNAL; }
int tern_sock_nonblock(void) { return SOCK_NONBLOCK; }
int tern_sock_cloexec(void) { return SOCK_CLOEXEC; }

int tern_accept_nonblocking(int fd, struct sockaddr *addr, socklen_t *len) {
    return accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int tern_set_dont_fragment(int fd, int ipv6) {
    int on = 1;
    if (ipv6) return setsockopt(fd, IPPROTO_IPV6, IPV6_DONTFRAG, &on, sizeof(on));
    int mode = IP_PMTUDISC_DO;
    return setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &mode, sizeof(mode));
}

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int tern_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int tern_epoll_add(int epfd, int fd) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int tern_epoll_del(int epfd, int fd) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev);
}

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441
#endif

int tern_epoll_wait_us(int epfd, int *fds, int max, long timeout_us) {
    struct epoll_event events[64];
    if (max > 64) max = 64;
    int n;
    static int no_pwait2 = 0;
    if (timeout_us > 0 && !no_pwait2) {
        struct timespec ts = {.tv_sec = timeout_us / 1000000, .tv_nsec = (timeout_us % 1000000) * 1000};
        n = (int)syscall(SYS_epoll_pwait2, epfd, events, max, &ts, NULL, 0);
        if (n < 0 && errno == ENOSYS) {
            no_pwait2 = 1;
            n = epoll_wait(epfd, events, max, (int)((timeout_us + 999) / 1000));
        }
    } else {
        n = epoll_wait(epfd, events, max, timeout_us > 0 ? (int)((timeout_us + 999) / 1000) : 0);
    }
    for (int i = 0; i < n; i++) fds[i] = events[i].data.fd;
    return n;
}

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

long tern_send_gso(int fd, const struct iovec *iov, int iovcnt, const struct sockaddr *to, socklen_t tolen,
                   uint16_t segment_size) {
    char control[CMSG_SPACE(sizeof(uint16_t))];
    memset(control, 0, sizeof control);
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = (void *)to;
    msg.msg_namelen = tolen;
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)iovcnt;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(cm), &segment_size, sizeof segment_size);
    return (long)sendmsg(fd, &msg, MSG_NOSIGNAL);
}

size_t tern_segment_space(void) { return CMSG_SPACE(sizeof(uint16_t)); }

size_t tern_append_segment(void *control, size_t used, size_t capacity, uint16_t segment_size) {
    size_t need = CMSG_SPACE(sizeof(uint16_t));
    if (used + need > capacity) return 0;
    /* `used` is a sum of CMSG_SPACE values, so the new header is aligned. */
    struct cmsghdr *c = (struct cmsghdr *)((char *)control + used);
    memset(c, 0, need);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(c), &segment_size, sizeof segment_size);
    return used + need;
}

int tern_set_buffer_sizes(int fd, int receive, int send) {
    int r = 0;
    if (receive > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &receive, sizeof receive) != 0)
        r |= setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive, sizeof receive);
    if (send > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &send, sizeof send) != 0)
        r |= setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &send, sizeof send);
    return r;
}

int tern_malloc_trim(void) {
    return malloc_trim(0);
}
