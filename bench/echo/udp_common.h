/*
 * What udp_echo and udp_forward share: a loopback UDP socket with big buffers, and the
 * recvmmsg and sendmmsg loops with their headers. Static functions in a header, so each
 * tool still builds with one cc line.
 */
#ifndef UDP_COMMON_H
#define UDP_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Datagrams per recvmmsg/sendmmsg batch, and the bytes kept for each. */
#define BATCH 64
#define BUFSZ 1500

/* A UDP socket bound to 127.0.0.1:port (port 0: a kernel-chosen port) with 4 MiB buffers,
   shared with other sockets on the same port when reuseport is set. Exits on failure. */
static int open_socket(uint16_t port, int reuseport) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); exit(1); }
    if (reuseport) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    }
    int rb = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &rb, sizeof rb);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* 127.0.0.1 only */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); exit(1); }
    return fd;
}

/* Points each of the BATCH receive headers at its buffer, taking up to cap bytes into it
   (and at its sender address slot, when from is not NULL). */
static void prepare(struct mmsghdr *in, struct iovec *iov, unsigned char (*bufs)[BUFSZ],
                    struct sockaddr_in *from, size_t cap) {
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = cap;
        memset(&in[i].msg_hdr, 0, sizeof in[i].msg_hdr);
        in[i].msg_hdr.msg_iov = &iov[i];
        in[i].msg_hdr.msg_iovlen = 1;
        if (from) {
            in[i].msg_hdr.msg_name = &from[i];
            in[i].msg_hdr.msg_namelen = sizeof from[i];
        }
    }
}

/* Waits for at least one datagram and reads up to BATCH; exits on an error other than
   EINTR. */
static int recv_batch(int fd, struct mmsghdr *in) {
    for (;;) {
        int n = recvmmsg(fd, in, BATCH, MSG_WAITFORONE, NULL);
        if (n >= 0) return n;
        if (errno != EINTR) { perror("recvmmsg"); exit(1); }
    }
}

/* Sends the n messages, retrying after EINTR and partial sends. */
static void send_all(int fd, struct mmsghdr *msgs, int n) {
    int off = 0;
    while (off < n) {
        int s = sendmmsg(fd, msgs + off, (unsigned)(n - off), 0);
        if (s < 0) {
            if (errno == EINTR) continue;
            return; /* drop the rest of the batch (e.g. ENOBUFS) */
        }
        off += s;
    }
}

#endif
