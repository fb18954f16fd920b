/*
 * The ceiling: a bare UDP forwarder that does no TURN work. Every datagram received on
 * 127.0.0.1:<listen> is sent unchanged to 127.0.0.1:<to>, with recvmmsg(64) (blocking, MSG_WAITFORONE:
 * each call drains what is queued) and one sendmmsg per batch. The benchmark drives it with the same
 * generator as the TURN servers (`tern-load --mode raw`).
 *
 *   bare-forwarder <listen-port> <to-port>
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define SLOT 2048

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: bare-forwarder <listen-port> <to-port>\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int size = 16 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&local, sizeof local) != 0) {
        perror("bind");
        return 1;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    static char buffers[BATCH][SLOT];
    struct iovec iov[BATCH];
    struct mmsghdr in[BATCH], out[BATCH];
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = buffers[i];
        iov[i].iov_len = SLOT;
        in[i].msg_hdr.msg_iov = &iov[i];
        in[i].msg_hdr.msg_iovlen = 1;
        out[i].msg_hdr.msg_name = &to;
        out[i].msg_hdr.msg_namelen = sizeof to;
    }
    struct iovec sendIov[BATCH];
    fprintf(stderr, "bare-forwarder: %s -> %s ready\n", argv[1], argv[2]);
    for (;;) {
        int n = recvmmsg(fd, in, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        for (int i = 0; i < n; i++) {
            sendIov[i].iov_base = buffers[i];
            sendIov[i].iov_len = in[i].msg_len;
            out[i].msg_hdr.msg_iov = &sendIov[i];
            out[i].msg_hdr.msg_iovlen = 1;
        }
        int sent = 0;
        while (sent < n) {
            int r = sendmmsg(fd, out + sent, n - sent, 0);
            if (r <= 0) break;
            sent += r;
        }
    }
}
