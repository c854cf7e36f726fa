/* Independent C measurement of MPI_Allreduce (in place, float32, sum), for comparing
 * with hpcopt's harness on the same MPI library and thread level.
 *
 * Method (the same as hpcopt's default): MPI_Init_thread(MPI_THREAD_MULTIPLE);
 * per size: warm-up calls, then for each iteration an MPI_Barrier (not timed) and one
 * timed MPI_Allreduce; a rank's time is the mean over iterations; the printed time is
 * the mean over ranks. Each size gets its own buffer, allocated as hpcopt allocates
 * (64-byte aligned; transparent huge pages asked for from 4 MiB on, as NumPy does), so
 * that both programs hand MPI the same kind of memory: MPICH's shared-memory copies run
 * tens of percent slower at some sizes when a buffer starts on a page boundary.
 * Usage: allreduce_loop MINBYTES MAXBYTES ITERS WARMUP
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <sys/mman.h>

/* A buffer as hpcopt makes one: 64-byte aligned, and madvise(MADV_HUGEPAGE) on its
 * page-aligned interior from 4 MiB on, as NumPy does. Filled with ones. */
static float *numpy_like_buffer(size_t bytes)
{
    float *buf = NULL;
    if (posix_memalign((void **)&buf, 64, bytes > 4 ? bytes : 4) != 0)
        MPI_Abort(MPI_COMM_WORLD, 1);
    if (bytes >= (1u << 22)) {
        uintptr_t page = 4096, start = ((uintptr_t)buf + page - 1) & ~(page - 1);
        uintptr_t end = ((uintptr_t)buf + bytes) & ~(page - 1);
        madvise((void *)start, end - start, MADV_HUGEPAGE);
    }
    for (size_t i = 0; i < bytes / 4; i++)
        buf[i] = 1.0f;
    return buf;
}

static int iters_for(size_t bytes, int iters)
{
    const size_t scale_above = 1u << 20;
    if (bytes <= scale_above)
        return iters;
    int scaled = (int)((iters * (double)scale_above + bytes - 1) / bytes);
    int floor = iters < 10 ? iters : 10;
    return scaled > floor ? scaled : floor;
}

int main(int argc, char **argv)
{
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc != 5) {
        if (rank == 0)
            fprintf(stderr, "usage: %s MINBYTES MAXBYTES ITERS WARMUP\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    size_t minb = strtoull(argv[1], NULL, 10), maxb = strtoull(argv[2], NULL, 10);
    int iters = atoi(argv[3]), warmup = atoi(argv[4]);
    if (rank == 0)
        printf("# size_bytes t_avg_us (thread level %d)\n", provided);
    for (size_t bytes = minb; bytes <= maxb; bytes *= 2) {
        int count = (int)(bytes / 4), n = iters_for(bytes, iters);
        float *buf = numpy_like_buffer(bytes);
        for (int i = 0; i < warmup; i++)
            MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        MPI_Barrier(MPI_COMM_WORLD);
        double total = 0.0;
        for (int i = 0; i < n; i++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            total += MPI_Wtime() - t0;
        }
        double mine = total / n, sum = 0.0;
        MPI_Reduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        if (rank == 0)
            printf("%zu %.3f\n", bytes, sum / size * 1e6);
        free(buf);
        if (bytes == 0)
            break;
    }
    MPI_Finalize();
    return 0;
}
