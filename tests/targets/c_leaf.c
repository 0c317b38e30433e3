/*
 * A target of the profile's leaf fix-up test, built by the tests with gcc -O2
 * -fno-omit-frame-pointer: `c_leaf SECS` spins for SECS seconds in `leaf`, called by `middle`,
 * called by `handle`, called by `main`. gcc leaves `leaf` frameless (no push rbp), so a
 * frame-pointer walk from it skips `middle`. It waits for a line on stdin first, so a tool can
 * attach to it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noinline, noipa)) static unsigned long leaf(unsigned long n)
{
	unsigned long x = 0;

	for (unsigned long i = 0; i < n; i++)
		x = x * 31 + i;
	return x;
}

__attribute__((noinline, noipa)) static unsigned long middle(unsigned long n)
{
	return leaf(n) + 1;
}

__attribute__((noinline, noipa)) static unsigned long handle(unsigned long n)
{
	return middle(n) * 3;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	char line[16];
	volatile unsigned long sink = 0;
	double end;

	if (argc != 2) {
		fprintf(stderr, "usage: c_leaf SECS\n");
		return 2;
	}
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	end = now() + atof(argv[1]);
	while (now() < end)
		sink += handle(1000000);
	printf("spun %lu\n", sink);
	return 0;
}
