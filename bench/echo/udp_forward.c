/*
 * udp_forward: the "physical limit" reference for the cache-miss path, as udp_echo is for
 * cache hits. It forwards every query to the upstream and relays the reply, and does
 * nothing else: no cache, no parsing beyond the 2-byte ID, no allocation, no checks of the
 * reply beyond "its ID is one we sent". Whatever CPU a real forwarder spends per miss on
 * top of this program's is its own; what this program spends is the kernel's loopback UDP
 * path, which every forwarder on this machine pays.
 *
 * Two threads, as dnsdist has (a listener and a responder per backend):
 *   - "up" reads queries from clients in recvmmsg batches, gives each a fresh ID (the slot
 *     that remembers the client's address and ID), and sends them to the upstream;
 *   - "down" reads the upstream's replies, puts the client's ID back, and sends them to the
 *     clients in sendmmsg batches.
 *
 * SOCKETS (default 1) upstream sockets:
 *   - 1: one connected socket, queries sent in one sendmmsg per batch and replies read in
 *     recvmmsg batches (dnsdist's default: one socket per backend);
 *   - N > 1: each query goes out on a socket drawn at random from N (each on its own
 *     kernel-chosen port, as RFC 5452 asks and rind's contract requires), one send() per
 *     query; "down" waits on all N with epoll and drains each ready socket with recvmmsg.
 *
 * Binds to and forwards to 127.0.0.1 only.
 *
 * build: cc -O2 -pthread -o udp_forward udp_forward.c
 * usage: udp_forward PORT UPSTREAM_PORT [SOCKETS]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "udp_common.h"

#define MAX_SOCKETS 4096

struct slot {
    struct sockaddr_in client;
    uint16_t id; /* the client's ID, network order */
};

static int g_client_fd;
static int g_up_fds[MAX_SOCKETS];
static int g_nsockets = 1;
static struct slot g_slots[65536];

static void *up(void *arg) {
    (void)arg;
    static unsigned char bufs[BATCH][BUFSZ];
    struct mmsghdr in[BATCH], out[BATCH];
    struct iovec iov[BATCH], oiov[BATCH];
    struct sockaddr_in from[BATCH];
    uint16_t next_id = 0;
    unsigned seed = 1;
    for (;;) {
        prepare(in, iov, bufs, from, BUFSZ);
        int n = recv_batch(g_client_fd, in);
        int m = 0;
        for (int i = 0; i < n; i++) {
            unsigned len = in[i].msg_len;
            if (len < 12 || (bufs[i][2] & 0x80)) continue; /* short, or not a query */
            uint16_t id = next_id++;
            g_slots[id].client = from[i];
            memcpy(&g_slots[id].id, bufs[i], 2);
            bufs[i][0] = (unsigned char)(id >> 8);
            bufs[i][1] = (unsigned char)id;
            if (g_nsockets > 1) {
                int fd = g_up_fds[rand_r(&seed) % g_nsockets];
                while (send(fd, bufs[i], len, 0) < 0 && errno == EINTR) {}
                continue;
            }
            oiov[m].iov_base = bufs[i];
            oiov[m].iov_len = len;
            memset(&out[m].msg_hdr, 0, sizeof out[m].msg_hdr);
            out[m].msg_hdr.msg_iov = &oiov[m];
            out[m].msg_hdr.msg_iovlen = 1;
            m++;
        }
        if (m > 0) send_all(g_up_fds[0], out, m);
    }
    return NULL;
}

/* Reads what is queued on upstream socket fd (blocking for the first reply when wait is
   set) and relays it to the clients. */
static int relay(int fd, int wait) {
    static unsigned char bufs[BATCH][BUFSZ];
    struct mmsghdr in[BATCH], out[BATCH];
    struct iovec iov[BATCH], oiov[BATCH];
    prepare(in, iov, bufs, NULL, BUFSZ);
    int n = recvmmsg(fd, in, BATCH, wait ? MSG_WAITFORONE : MSG_DONTWAIT, NULL);
    if (n <= 0) return n;
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (in[i].msg_len < 12) continue;
        uint16_t id = (uint16_t)((bufs[i][0] << 8) | bufs[i][1]);
        struct slot *s = &g_slots[id];
        memcpy(bufs[i], &s->id, 2);
        oiov[m].iov_base = bufs[i];
        oiov[m].iov_len = in[i].msg_len;
        memset(&out[m].msg_hdr, 0, sizeof out[m].msg_hdr);
        out[m].msg_hdr.msg_iov = &oiov[m];
        out[m].msg_hdr.msg_iovlen = 1;
        out[m].msg_hdr.msg_name = &s->client;
        out[m].msg_hdr.msg_namelen = sizeof s->client;
        m++;
    }
    send_all(g_client_fd, out, m);
    return n;
}

static void *down(void *arg) {
    (void)arg;
    if (g_nsockets == 1) {
        for (;;) relay(g_up_fds[0], 1);
    }
    int ep = epoll_create1(0);
    if (ep < 0) { perror("epoll_create1"); exit(1); }
    for (int i = 0; i < g_nsockets; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = g_up_fds[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, g_up_fds[i], &ev) < 0) { perror("epoll_ctl"); exit(1); }
    }
    struct epoll_event evs[BATCH];
    for (;;) {
        int n = epoll_wait(ep, evs, BATCH, -1);
        for (int i = 0; i < n; i++) relay(evs[i].data.fd, 0);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s PORT UPSTREAM_PORT [SOCKETS]\n", argv[0]); return 2; }
    int port = atoi(argv[1]), upstream_port = atoi(argv[2]);
    g_nsockets = argc > 3 ? atoi(argv[3]) : 1;
    if (g_nsockets < 1 || g_nsockets > MAX_SOCKETS) g_nsockets = 1;
    signal(SIGPIPE, SIG_IGN);
    g_client_fd = open_socket((uint16_t)port, 0);
    struct sockaddr_in upstream = {0};
    upstream.sin_family = AF_INET;
    upstream.sin_port = htons((uint16_t)upstream_port);
    upstream.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < g_nsockets; i++) {
        g_up_fds[i] = open_socket(0, 0);
        if (connect(g_up_fds[i], (struct sockaddr *)&upstream, sizeof upstream) < 0) {
            perror("connect");
            return 1;
        }
    }
    pthread_t th;
    pthread_create(&th, NULL, down, NULL);
    up(NULL);
    return 0;
}
