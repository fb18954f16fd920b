#ifndef TERN_SHIMS_H
#define TERN_SHIMS_H

/*
 * What Swift's Glibc module does not show: struct mmsghdr and recvmmsg/sendmmsg (both behind _GNU_SOURCE),
 * the CMSG_* macros, struct in_pktinfo, UDP_SEGMENT. Kept as small as possible; the layout mirror is
 * checked against the real struct with _Static_assert in tern_shims.c.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <netinet/in.h>

/* Mirror of glibc's struct mmsghdr (checked in tern_shims.c). */
struct tern_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

/* recvmmsg(2)/sendmmsg(2). Return what the syscall returns; errno is left as the syscall set it. */
int tern_recvmmsg(int fd, struct tern_mmsghdr *msgs, unsigned int vlen, int flags);
int tern_sendmmsg(int fd, struct tern_mmsghdr *msgs, unsigned int vlen, int flags);

/* Control buffer space a received or sent packet-info cmsg needs (IPv4 or IPv6). */
size_t tern_pktinfo_space(void);

/* Turns on IP_PKTINFO (IPv4 socket) or IPV6_RECVPKTINFO (IPv6 socket). Returns 0 or -1 with errno. */
int tern_enable_pktinfo(int fd, int ipv6);

/*
 * Finds an IP_PKTINFO / IPV6_PKTINFO cmsg in a received message and writes the datagram's destination
 * address (this host's local address it was sent to) into *out with the given port. Returns 1 if found.
 */
int tern_read_pktinfo(const struct msghdr *msg, struct sockaddr_storage *out, uint16_t port_network_order);

/*
 * Writes one IP_PKTINFO (if src is AF_INET) or IPV6_PKTINFO (AF_INET6) cmsg into control (capacity
 * bytes) so that sendmsg uses src's address as the source address. Returns the control length used, or 0.
 */
size_t tern_write_pktinfo(void *control, size_t capacity, const struct sockaddr_storage *src);

/* Socket option constants that Swift cannot import as macros or that need _GNU_SOURCE. */
int tern_ip_pktinfo(void);
int tern_ipv6_recvpktinfo(void);
int tern_so_reuseport(void);
int tern_msg_trunc(void);
int tern_msg_nosignal(void);
int tern_sock_nonblock(void);
int tern_sock_cloexec(void);

/* accept4(2) with SOCK_NONBLOCK|SOCK_CLOEXEC. */
int tern_accept_nonblocking(int fd, struct sockaddr *addr, socklen_t *len);



/*
 * A worker-private epoll set (the `epoll` event loop): level-triggered EPOLLIN registrations keyed by
 * descriptor, and a wait with a microsecond timeout (epoll_pwait2, Linux 5.11+; falls back to
 * epoll_wait with the timeout rounded up to a millisecond). Ready descriptors are written to fds[].
 */
int tern_epoll_create(void);
int tern_epoll_add(int epfd, int fd);
int tern_epoll_del(int epfd, int fd);
int tern_epoll_wait_us(int epfd, int *fds, int max, long timeout_us);

/*
 * UDP GSO (UDP_SEGMENT, Linux 4.18+): sends iovcnt buffers, each segment_size bytes except the last,
 * as one sendmsg that the kernel splits into datagrams of segment_size to `to`. Returns what sendmsg
 * returns (-1 with errno EIO/EINVAL/ENOPROTOOPT where the kernel or device cannot segment).
 */
long tern_send_gso(int fd, const struct iovec *iov, int iovcnt, const struct sockaddr *to, socklen_t tolen,
                   uint16_t segment_size);

/*
 * Appends one UDP_SEGMENT cmsg (segment_size) after `used` bytes of earlier control messages in control
 * (capacity bytes), so that one message of a sendmmsg is split by the kernel into datagrams of
 * segment_size (UDP GSO, per message). Returns the new control length, or 0 when it does not fit.
 * tern_segment_space() is the room it needs.
 */
size_t tern_append_segment(void *control, size_t used, size_t capacity, uint16_t segment_size);
size_t tern_segment_space(void);

/* SO_RCVBUF/SO_SNDBUF, trying the *FORCE variants first (they pass rmem_max/wmem_max with CAP_NET_ADMIN). */
int tern_set_buffer_sizes(int fd, int receive, int send);

/* Don't-fragment on a UDP socket (RFC 8656 DONT-FRAGMENT): IP_MTU_DISCOVER=IP_PMTUDISC_DO or IPV6_DONTFRAG. */
int tern_set_dont_fragment(int fd, int ipv6);
/// Gives freed heap memory back to the system (glibc malloc_trim(0)); after mass expiry.
int tern_malloc_trim(void);

#endif
