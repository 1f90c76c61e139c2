/*
 * pause — kinit's stand-in for registry.k8s.io/pause (the pod sandbox "infra" container).
 *
 * It holds a pod's namespaces open: it sleeps until it is told to stop, reaps any zombie
 * that ends up parented to it (it is PID 1 of the pod when the PID namespace is shared),
 * and exits 0 on SIGINT or SIGTERM. Built static (gcc -static -Os) so the image needs
 * nothing but this file. `pause -v` prints the version it was built as.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "unknown"
#endif

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        printf("pause.c %s (kinit)\n", VERSION);
        return 0;
    }
    if (getpid() != 1) {
        /* Not an error: upstream warns the same way when run outside a fresh PID namespace. */
        fprintf(stderr, "Warning: pause should be the first process\n");
    }

    struct sigaction stop = {0};
    stop.sa_handler = on_stop;
    sigemptyset(&stop.sa_mask);
    if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0) {
        perror("sigaction");
        return 1;
    }

    struct sigaction child = {0};
    child.sa_handler = on_child;
    sigemptyset(&child.sa_mask);
    child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    if (sigaction(SIGCHLD, &child, NULL) < 0) {
        perror("sigaction");
        return 1;
    }

    for (;;) {
        pause();
    }
    return 42; /* not reached */
}
