/*
 * A target of the lock tools' tests, built by the tests with frame pointers and debug
 * information: `c_locks mutex N MS` makes a thread wait N times in pthread_mutex_lock for a
 * mutex the main thread holds for MS ms; `c_locks rwlock N MS` makes a reader wait N times in
 * pthread_rwlock_rdlock while the main thread holds the write lock for MS ms. Each prints the
 * time the waiter waited (`waited_us`) and waits for a line on stdin first, so a tool can
 * attach to it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rwlock = PTHREAD_RWLOCK_INITIALIZER;
static atomic_uint round_no; /* 3r+1: held in round r, 3r+2: the waiter is at the lock, 3r+3: done */
static unsigned rounds, hold_ms;
static int use_rwlock;

static long long now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

static void await_round(unsigned want)
{
	while (atomic_load(&round_no) != want)
		sched_yield();
}

__attribute__((noinline)) static long long mutex_waiter(void)
{
	long long waited = 0;

	for (unsigned r = 0; r < rounds; r++) {
		await_round(3 * r + 1);
		atomic_store(&round_no, 3 * r + 2);
		long long t = now_us();
		pthread_mutex_lock(&mutex);
		waited += now_us() - t;
		pthread_mutex_unlock(&mutex);
		atomic_store(&round_no, 3 * r + 3);
	}
	return waited;
}

__attribute__((noinline)) static long long rwlock_reader(void)
{
	long long waited = 0;

	for (unsigned r = 0; r < rounds; r++) {
		await_round(3 * r + 1);
		atomic_store(&round_no, 3 * r + 2);
		long long t = now_us();
		pthread_rwlock_rdlock(&rwlock);
		waited += now_us() - t;
		pthread_rwlock_unlock(&rwlock);
		atomic_store(&round_no, 3 * r + 3);
	}
	return waited;
}

static void *waiter(void *out)
{
	*(long long *)out = use_rwlock ? rwlock_reader() : mutex_waiter();
	return NULL;
}

__attribute__((noinline)) static void holder(void)
{
	for (unsigned r = 0; r < rounds; r++) {
		if (use_rwlock)
			pthread_rwlock_wrlock(&rwlock);
		else
			pthread_mutex_lock(&mutex);
		atomic_store(&round_no, 3 * r + 1);
		/* Held until the waiter is at the lock: each round it waits the whole hold. */
		await_round(3 * r + 2);
		usleep(hold_ms * 1000);
		if (use_rwlock)
			pthread_rwlock_unlock(&rwlock);
		else
			pthread_mutex_unlock(&mutex);
		await_round(3 * r + 3);
	}
}

int main(int argc, char **argv)
{
	char line[16];
	pthread_t t;
	long long waited = 0;

	if (argc != 4 || (strcmp(argv[1], "mutex") && strcmp(argv[1], "rwlock"))) {
		fprintf(stderr, "usage: c_locks mutex|rwlock N MS\n");
		return 2;
	}
	use_rwlock = !strcmp(argv[1], "rwlock");
	rounds = strtoul(argv[2], NULL, 10);
	hold_ms = strtoul(argv[3], NULL, 10);
	if (!fgets(line, sizeof(line), stdin))
		line[0] = 0;
	pthread_create(&t, NULL, waiter, &waited);
	holder();
	pthread_join(t, NULL);
	printf("waited_us %lld\n", waited);
	return 0;
}
