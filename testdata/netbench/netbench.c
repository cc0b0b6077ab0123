/*
 * netbench: the client side of the egress benchmark (sandbox/bench_test.go).
 * The same binary runs inside a sandbox (through the relay) and on the host
 * (straight to the server), so the two differ only in the path.
 *
 *   netbench latency HOST PORT N      N x (connect, send 1 byte, read the
 *                                     echo, close); prints ns per round
 *   netbench throughput HOST PORT MB  send MB MiB, half-close, wait for the
 *                                     server's 8-byte count; prints ns total
 */
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int dial(const struct addrinfo *ai)
{
	int s = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
	if (s < 0 || connect(s, ai->ai_addr, ai->ai_addrlen) < 0) {
		perror("connect");
		exit(1);
	}
	return s;
}

int main(int argc, char **argv)
{
	struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
	int64_t t0;
	long n;

	if (argc != 5) {
		fprintf(stderr, "usage: netbench latency|throughput HOST PORT N\n");
		return 2;
	}
	if (getaddrinfo(argv[2], argv[3], &hints, &ai) != 0) {
		fprintf(stderr, "cannot resolve %s\n", argv[2]);
		return 1;
	}
	n = atol(argv[4]);
	if (strcmp(argv[1], "latency") == 0) {
		t0 = now();
		for (long i = 0; i < n; i++) {
			char c = 0; /* binary, like the throughput data */
			int s = dial(ai);
			if (write(s, &c, 1) != 1 || read(s, &c, 1) != 1) {
				perror("echo");
				return 1;
			}
			close(s);
		}
		printf("%lld\n", (long long)((now() - t0) / n));
		return 0;
	}
	if (strcmp(argv[1], "throughput") == 0) {
		static char buf[1 << 18];
		uint64_t got = 0, want = (uint64_t)n << 20;
		int s;
		memset(buf, 0, sizeof buf); /* binary: the relay passes it on unparsed */
		t0 = now();
		s = dial(ai);
		for (uint64_t sent = 0; sent < want;) {
			ssize_t w = write(s, buf, sizeof buf);
			if (w <= 0) {
				perror("write");
				return 1;
			}
			sent += (uint64_t)w;
		}
		shutdown(s, SHUT_WR);
		if (read(s, &got, sizeof got) != sizeof got || got != want) {
			fprintf(stderr, "server counted %llu of %llu\n", (unsigned long long)got, (unsigned long long)want);
			return 1;
		}
		printf("%lld\n", (long long)(now() - t0));
		return 0;
	}
	fprintf(stderr, "unknown mode %s\n", argv[1]);
	return 2;
}
