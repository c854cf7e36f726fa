/* A minimal OSU-style reference for hpcopt's C timing core, written apart from it.
 *
 *   mpi_reference OPERATION MINBYTES MAXBYTES ITERS WARMUP
 *
 * OPERATION: pingpong, stream (point-to-point, ranks 0 and 1; other ranks wait),
 * allreduce (in place), allreduce-oop, allgather, reduce_scatter_block, bcast (root 0),
 * alltoall. Sizes double from MINBYTES to MAXBYTES; for the collectives a size is the
 * MPI count argument times 4 (float32 sum), for the patterns the message in bytes.
 *
 * Method: MPI_Init_thread(MPI_THREAD_MULTIPLE); separate send and receive buffers,
 * 64-byte aligned with huge pages asked for from 4 MiB (as NumPy allocates). Collectives:
 * warm-ups, then an MPI_Barrier (not timed) before each timed call. Patterns (osu_latency,
 * osu_bw): warm-ups, one barrier, then iterations back to back; ping-pong gives half a
 * round trip, stream the time of a window of messages (64, fewer when they would pass
 * 64 MiB, each in its own slot) plus its 4-byte acknowledgement, divided by the window.
 * Above 1 MiB per call the iterations shrink in proportion (at least 10, warm-ups at
 * least 2). Printed: size and the mean over ranks of each rank's mean, in microseconds.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SCALE_ABOVE (1L << 20)
#define WINDOW_MAX 64
#define WINDOW_BYTES (64L << 20)

static int rank, nranks;

static void *buffer(size_t bytes, unsigned char fill)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        MPI_Abort(MPI_COMM_WORLD, 1);
    if (bytes >= (4u << 20)) {
        uintptr_t page = 4096, lo = ((uintptr_t)p + page - 1) & ~(page - 1);
        uintptr_t hi = ((uintptr_t)p + bytes) & ~(page - 1);
        madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
    }
    memset(p, fill, bytes);
    return p;
}

static long scaled(long n, long floor, long call_bytes)
{
    if (call_bytes <= SCALE_ABOVE)
        return n;
    long shrunk = (long)((double)n * SCALE_ABOVE / call_bytes + 0.999999);
    long least = n < floor ? n : floor;
    return shrunk > least ? shrunk : least;
}

static int window_for(long bytes)
{
    long w = bytes > 0 ? WINDOW_BYTES / bytes : WINDOW_MAX;
    return (int)(w < 1 ? 1 : w > WINDOW_MAX ? WINDOW_MAX : w);
}

/* One ping-pong or one window; returns the messages it stands for. */
static int p2p_once(const char *op, char *s, char *r, long bytes, MPI_Request *reqs)
{
    int ack = 0, peer = 1 - rank;
    if (rank > 1)
        return 1;
    if (strcmp(op, "pingpong") == 0) {
        if (rank == 0) {
            MPI_Send(s, (int)bytes, MPI_CHAR, peer, 1, MPI_COMM_WORLD);
            MPI_Recv(r, (int)bytes, MPI_CHAR, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            MPI_Recv(r, (int)bytes, MPI_CHAR, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(s, (int)bytes, MPI_CHAR, peer, 1, MPI_COMM_WORLD);
        }
        return 2;
    }
    int w = window_for(bytes);
    for (int j = 0; j < w; j++) {
        if (rank == 0)
            MPI_Isend(s + (long)j * bytes, (int)bytes, MPI_CHAR, peer, 1, MPI_COMM_WORLD, &reqs[j]);
        else
            MPI_Irecv(r + (long)j * bytes, (int)bytes, MPI_CHAR, peer, 1, MPI_COMM_WORLD, &reqs[j]);
    }
    MPI_Waitall(w, reqs, MPI_STATUSES_IGNORE);
    if (rank == 0)
        MPI_Recv(&ack, 1, MPI_INT, peer, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    else
        MPI_Send(&ack, 1, MPI_INT, peer, 2, MPI_COMM_WORLD);
    return w;
}

static double p2p(const char *op, long bytes, long iters, long warmup)
{
    int stream = strcmp(op, "stream") == 0, w = stream ? window_for(bytes) : 1;
    long call_bytes = bytes * w;
    char *s = buffer((size_t)call_bytes, 'a' + rank), *r = buffer((size_t)call_bytes, 0);
    MPI_Request reqs[WINDOW_MAX];
    long n = scaled(iters, 10, call_bytes), skip = scaled(warmup, 2, call_bytes);
    for (long i = 0; i < skip; i++)
        p2p_once(op, s, r, bytes, reqs);
    MPI_Barrier(MPI_COMM_WORLD);
    int messages = 1;
    double t0 = MPI_Wtime();
    for (long i = 0; i < n; i++)
        messages = p2p_once(op, s, r, bytes, reqs);
    double mine = (MPI_Wtime() - t0) / n / messages;
    free(s);
    free(r);
    return mine;
}

static void collective(const char *op, float *s, float *r, int count)
{
    MPI_Comm w = MPI_COMM_WORLD;
    if (strcmp(op, "allreduce") == 0)
        MPI_Allreduce(MPI_IN_PLACE, r, count, MPI_FLOAT, MPI_SUM, w);
    else if (strcmp(op, "allreduce-oop") == 0)
        MPI_Allreduce(s, r, count, MPI_FLOAT, MPI_SUM, w);
    else if (strcmp(op, "allgather") == 0)
        MPI_Allgather(s, count, MPI_FLOAT, r, count, MPI_FLOAT, w);
    else if (strcmp(op, "reduce_scatter_block") == 0)
        MPI_Reduce_scatter_block(s, r, count, MPI_FLOAT, MPI_SUM, w);
    else if (strcmp(op, "bcast") == 0)
        MPI_Bcast(r, count, MPI_FLOAT, 0, w);
    else if (strcmp(op, "alltoall") == 0)
        MPI_Alltoall(s, count, MPI_FLOAT, r, count, MPI_FLOAT, w);
}

static double collectives(const char *op, long bytes, long iters, long warmup)
{
    int count = (int)(bytes / 4);
    int many_in = !strcmp(op, "reduce_scatter_block") || !strcmp(op, "alltoall");
    int many_out = !strcmp(op, "allgather") || !strcmp(op, "alltoall");
    size_t block = (size_t)count * 4;
    float *s = buffer(block * (many_in ? nranks : 1), 0);
    float *r = buffer(block * (many_out ? nranks : 1), 0);
    long n = scaled(iters, 10, bytes), skip = scaled(warmup, 2, bytes);
    for (long i = 0; i < skip; i++)
        collective(op, s, r, count);
    MPI_Barrier(MPI_COMM_WORLD);
    double total = 0.0;
    for (long i = 0; i < n; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        collective(op, s, r, count);
        total += MPI_Wtime() - t0;
    }
    free(s);
    free(r);
    return total / n;
}

int main(int argc, char **argv)
{
    static const char *known[] = {"pingpong",  "stream",    "allreduce",
                                  "allreduce-oop", "allgather", "reduce_scatter_block",
                                  "bcast",     "alltoall"};
    int provided, ok = argc == 6;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    const char *op = ok ? argv[1] : "";
    int known_op = 0;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        known_op |= strcmp(op, known[i]) == 0;
    int p2p_op = !strcmp(op, "pingpong") || !strcmp(op, "stream");
    if (!ok || !known_op || (p2p_op && nranks < 2)) {
        if (rank == 0)
            fprintf(stderr, "usage: %s OPERATION MINBYTES MAXBYTES ITERS WARMUP "
                            "(pingpong and stream on >= 2 ranks)\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    long lo = atol(argv[2]), hi = atol(argv[3]), iters = atol(argv[4]), warmup = atol(argv[5]);
    if (rank == 0)
        printf("# %s, %d ranks, thread level %d: size_bytes t_us\n", op, nranks, provided);
    for (long bytes = lo; bytes <= hi; bytes = bytes ? bytes * 2 : 1) {
        double mine = p2p_op ? p2p(op, bytes, iters, warmup)
                             : collectives(op, bytes, iters, warmup);
        double sum = 0.0;
        int active = p2p_op ? 2 : nranks;
        if (p2p_op && rank > 1)
            mine = 0.0;
        MPI_Reduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        if (rank == 0)
            printf("%ld %.4f\n", bytes, sum / active * 1e6);
    }
    MPI_Finalize();
    return 0;
}
