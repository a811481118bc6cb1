/* New TCP connections per second, for bench/bench_rules.py (built with gcc at run time).
 *
 *   connload server ADDR PORT              accept and close, forever
 *   connload client ADDR PORT CONC SECS    keep CONC connects in flight for SECS seconds;
 *                                          prints "<completed connections> <seconds>"
 *
 * Each connection is completed (SYN, SYN-ACK, ACK) and then reset (SO_LINGER 0), so the
 * client never runs out of ports in TIME_WAIT; a new SYN on a port whose old flow conntrack
 * still holds starts a new conntrack entry, so every connection is a new flow for NetPath.
 * IPv4 only. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct sockaddr_in address(const char *ip, const char *port) {
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons(atoi(port));
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", ip);
		exit(2);
	}
	return sa;
}

static int serve(struct sockaddr_in sa) {
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 4096)) {
		perror("bind/listen");
		return 1;
	}
	printf("READY\n");
	fflush(stdout);
	for (;;) {
		int c = accept(fd, NULL, NULL);
		if (c >= 0)
			close(c);
	}
}

static int start(int ep, struct sockaddr_in *sa) {
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct linger lg = {1, 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	if (connect(fd, (struct sockaddr *)sa, sizeof *sa) && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
	epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	return fd;
}

static int load(struct sockaddr_in sa, int conc, double secs) {
	int ep = epoll_create1(0);
	long done = 0, failed = 0;
	for (int i = 0; i < conc; i++)
		start(ep, &sa);
	double begin = now(), end = begin + secs;
	struct epoll_event evs[256];
	while (now() < end) {
		int n = epoll_wait(ep, evs, 256, 100);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd, err = 0;
			socklen_t len = sizeof err;
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
			if (err == 0)
				done++;
			else
				failed++;
			close(fd); /* SO_LINGER 0: RST */
			start(ep, &sa);
		}
	}
	printf("%ld %.6f %ld\n", done, now() - begin, failed);
	return 0;
}

int main(int argc, char **argv) {
	if (argc == 4 && !strcmp(argv[1], "server"))
		return serve(address(argv[2], argv[3]));
	if (argc == 6 && !strcmp(argv[1], "client"))
		return load(address(argv[2], argv[3]), atoi(argv[4]), atof(argv[5]));
	fprintf(stderr, "usage: connload server ADDR PORT | client ADDR PORT CONC SECS\n");
	return 2;
}
