/* hpcopt's C timing core: the timed loop of MPI's own operations.
 *
 * Python (hpcopt/timer/core.py) builds one `struct call` per size and calls
 * hpcopt_time() once; everything between the first warm-up and the last sample runs
 * here, so no interpreter cost lands inside a sample. Built with the MPI library's own
 * compiler wrapper on first use (hpcopt/timer/build.py); see docs/timer.md.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(HPCOPT_NO_PERSISTENT)
#define HAVE_PERSISTENT 0
#elif MPI_VERSION >= 4 || (defined(OMPI_MAJOR_VERSION) && OMPI_MAJOR_VERSION >= 5)
#define HAVE_PERSISTENT 1
#else
#define HAVE_PERSISTENT 0
#endif

enum { MODE_BLOCKING, MODE_NONBLOCKING, MODE_PERSISTENT };
enum { ISSUE_BLOCKING, ISSUE_START, ISSUE_INIT };
/* Results beside MPI's own error codes (which are >= 0). */
enum { ERR_OPERATION = -1, ERR_NO_PERSISTENT = -2, ERR_MODE = -3, ERR_PAIRS = -4, ERR_NOMEM = -5 };
/* Buffer layouts in blocks of `count` elements (NEIGHBORS: one per in-neighbour of a
 * topology communicator); AT_ROOT: needed only where the rank is root. */
enum { NONE = 0, ONE = 1, P_BLOCKS = 2, WINDOW = 3, NEIGHBORS = 4, AT_ROOT = 8 };
enum { TAG_DATA = 1, TAG_ACK = 2 };

/* One timed call; mirrors hpcopt.timer.core._CCall field by field. */
struct call {
    int32_t operation, mode, in_place, root, rotate_root, window, nsets, barrier_each;
    int32_t warmup, tests;
    int64_t count, iters;
    double compute_s;
    void *const *send;
    void *const *recv;
};

struct ctx {
    const struct call *c;
    const struct operation *op;
    MPI_Comm comm;
    MPI_Datatype dt;
    MPI_Op reduce_op;
    int rank, size, partner, first, roots;
    int count;
    MPI_Aint block;        /* bytes of one block of `count` elements */
    MPI_Request *reqs;     /* a pattern's window, or the persistent requests */
    int64_t compute_units; /* dummy compute per iteration (nonblocking mode) */
};

typedef int (*issue_fn)(const struct ctx *x, int how, void *s, void *r, int root, MPI_Request *q);
typedef int (*pattern_fn)(const struct ctx *x, void *s, void *r);
typedef int (*step_fn)(const struct ctx *x, int64_t k);

#define TRY(call)                                                                             \
    do {                                                                                      \
        int rc_ = (call);                                                                     \
        if (rc_ != MPI_SUCCESS)                                                               \
            return rc_;                                                                       \
    } while (0)

#if HAVE_PERSISTENT
#define ISSUE_INIT_CALL(Name, ...) MPI_##Name##_init(__VA_ARGS__, MPI_INFO_NULL, q)
#else
#define ISSUE_INIT_CALL(Name, ...) ERR_NO_PERSISTENT
#endif

/* The blocking call, its nonblocking start, or its persistent init, from one argument list. */
#define ISSUE(Name, IName, ...)                                                               \
    switch (how) {                                                                            \
    case ISSUE_BLOCKING:                                                                      \
        return MPI_##Name(__VA_ARGS__);                                                       \
    case ISSUE_START:                                                                         \
        return MPI_##IName(__VA_ARGS__, q);                                                   \
    default:                                                                                  \
        return ISSUE_INIT_CALL(Name, __VA_ARGS__);                                            \
    }

static const void *source(const struct ctx *x, const void *s)
{
    return x->c->in_place ? MPI_IN_PLACE : s;
}

static const void *source_at_root(const struct ctx *x, const void *s, int root)
{
    return x->c->in_place && x->rank == root ? MPI_IN_PLACE : s;
}

static int allreduce(const struct ctx *x, int how, void *s, void *r, int root, MPI_Request *q)
{
    (void)root;
    ISSUE(Allreduce, Iallreduce, source(x, s), r, x->count, x->dt, x->reduce_op, x->comm)
}

static int allgather(const struct ctx *x, int how, void *s, void *r, int root, MPI_Request *q)
{
    (void)root;
    ISSUE(Allgather, Iallgather, source(x, s), x->count, x->dt, r, x->count, x->dt, x->comm)
}

static int reduce_scatter_block(const struct ctx *x, int how, void *s, void *r, int root,
                                MPI_Request *q)
{
    (void)root;
    ISSUE(Reduce_scatter_block, Ireduce_scatter_block, source(x, s), r, x->count, x->dt,
          x->reduce_op, x->comm)
}

static int reduce(const struct ctx *x, int how, void *s, void *r, int root, MPI_Request *q)
{
    ISSUE(Reduce, Ireduce, source_at_root(x, s, root), r, x->count, x->dt, x->reduce_op, root,
          x->comm)
}

static int bcast(const struct ctx *x, int how, void *s, void *r, int root, MPI_Request *q)
{
    (void)s;
    ISSUE(Bcast, Ibcast, r, x->count, x->dt, root, x->comm)
}

static int alltoall(const struct ctx *x, int how, void *s, void *r, int root, MPI_Request *q)
{
    (void)root;
    ISSUE(Alltoall, Ialltoall, source(x, s), x->count, x->dt, r, x->count, x->dt, x->comm)
}

static int gather(const struct ctx *x, int how, void *s, void *r, int root, MPI_Request *q)
{
    ISSUE(Gather, Igather, source_at_root(x, s, root), x->count, x->dt, r, x->count, x->dt,
          root, x->comm)
}

static int scatter(const struct ctx *x, int how, void *s, void *r, int root, MPI_Request *q)
{
    void *into = x->c->in_place && x->rank == root ? MPI_IN_PLACE : r;
    ISSUE(Scatter, Iscatter, s, x->count, x->dt, into, x->count, x->dt, root, x->comm)
}

static int neighbor_allgather(const struct ctx *x, int how, void *s, void *r, int root,
                              MPI_Request *q)
{
    (void)root;
    ISSUE(Neighbor_allgather, Ineighbor_allgather, s, x->count, x->dt, r, x->count, x->dt,
          x->comm)
}

static int barrier(const struct ctx *x, int how, void *s, void *r, int root, MPI_Request *q)
{
    (void)s, (void)r, (void)root;
    ISSUE(Barrier, Ibarrier, x->comm)
}

static char *slot(void *base, const struct ctx *x, int j)
{
    return (char *)base + (MPI_Aint)j * x->block;
}

/* Ranks r and r + p/2 form a pair; the lower one starts. */
static int pingpong(const struct ctx *x, void *s, void *r)
{
    if (x->first) {
        TRY(MPI_Send(s, x->count, x->dt, x->partner, TAG_DATA, x->comm));
        return MPI_Recv(r, x->count, x->dt, x->partner, TAG_DATA, x->comm, MPI_STATUS_IGNORE);
    }
    TRY(MPI_Recv(r, x->count, x->dt, x->partner, TAG_DATA, x->comm, MPI_STATUS_IGNORE));
    return MPI_Send(s, x->count, x->dt, x->partner, TAG_DATA, x->comm);
}

/* The lower rank keeps a window of sends in flight; the upper one posts the window's
 * receives and acknowledges the whole window with one short message. */
static int stream(const struct ctx *x, void *s, void *r)
{
    int window = x->c->window, ack = 0;
    for (int j = 0; j < window; j++) {
        if (x->first)
            TRY(MPI_Isend(slot(s, x, j), x->count, x->dt, x->partner, TAG_DATA, x->comm,
                          &x->reqs[j]));
        else
            TRY(MPI_Irecv(slot(r, x, j), x->count, x->dt, x->partner, TAG_DATA, x->comm,
                          &x->reqs[j]));
    }
    TRY(MPI_Waitall(window, x->reqs, MPI_STATUSES_IGNORE));
    if (x->first)
        return MPI_Recv(&ack, 1, MPI_INT, x->partner, TAG_ACK, x->comm, MPI_STATUS_IGNORE);
    return MPI_Send(&ack, 1, MPI_INT, x->partner, TAG_ACK, x->comm);
}

/* Both ranks of a pair post a window of receives, then a window of sends. */
static int bibw(const struct ctx *x, void *s, void *r)
{
    int window = x->c->window;
    for (int j = 0; j < window; j++)
        TRY(MPI_Irecv(slot(r, x, j), x->count, x->dt, x->partner, TAG_DATA, x->comm,
                      &x->reqs[j]));
    for (int j = 0; j < window; j++)
        TRY(MPI_Isend(slot(s, x, j), x->count, x->dt, x->partner, TAG_DATA, x->comm,
                      &x->reqs[window + j]));
    return MPI_Waitall(2 * window, x->reqs, MPI_STATUSES_IGNORE);
}

/* messages: what one sample is divided by (0: the window). */
struct operation {
    const char *name;
    issue_fn issue;     /* a collective */
    pattern_fn pattern; /* or a point-to-point pattern over rank pairs */
    int32_t rooted, has_in_place, send, recv, recv_in_place, messages;
};

static const struct operation OPERATIONS[] = {
    {"allreduce", allreduce, NULL, 0, 1, ONE, ONE, ONE, 1},
    {"allgather", allgather, NULL, 0, 1, ONE, P_BLOCKS, P_BLOCKS, 1},
    {"reduce_scatter_block", reduce_scatter_block, NULL, 0, 1, P_BLOCKS, ONE, P_BLOCKS, 1},
    {"reduce", reduce, NULL, 1, 1, ONE, ONE | AT_ROOT, ONE | AT_ROOT, 1},
    {"bcast", bcast, NULL, 1, 0, NONE, ONE, ONE, 1},
    {"alltoall", alltoall, NULL, 0, 1, P_BLOCKS, P_BLOCKS, P_BLOCKS, 1},
    {"gather", gather, NULL, 1, 1, ONE, P_BLOCKS | AT_ROOT, P_BLOCKS | AT_ROOT, 1},
    {"scatter", scatter, NULL, 1, 1, P_BLOCKS | AT_ROOT, ONE, ONE, 1},
    {"barrier", barrier, NULL, 0, 0, NONE, NONE, NONE, 1},
    {"neighbor_allgather", neighbor_allgather, NULL, 0, 0, ONE, NEIGHBORS, NEIGHBORS, 1},
    {"pingpong", NULL, pingpong, 0, 0, ONE, ONE, ONE, 2},
    {"stream", NULL, stream, 0, 0, WINDOW, WINDOW, WINDOW, 0},
    {"bibw", NULL, bibw, 0, 0, WINDOW, WINDOW, WINDOW, 0},
};
#define N_OPERATIONS ((int)(sizeof OPERATIONS / sizeof OPERATIONS[0]))

/* Dummy compute for the overlap method: a fixed amount of dependent arithmetic per unit,
 * calibrated once per call, so that stolen CPU time shows as a longer compute. */
static volatile double compute_sink;

static void spin(int64_t units)
{
    double a = 1.0, b = 0.5;
    for (int64_t u = 0; u < units; u++)
        for (int j = 0; j < 16; j++) {
            a = a * 0.9999999 + 1e-7;
            b = b * 1.0000001 - 1e-7;
        }
    compute_sink = a + b;
}

static double units_per_second(void)
{
    int64_t units = 16;
    double elapsed = 0.0, best = 0.0;
    for (; elapsed < 1e-3; units *= 2) {
        double t0 = MPI_Wtime();
        spin(units);
        elapsed = MPI_Wtime() - t0;
    }
    units /= 2;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = MPI_Wtime();
        spin(units);
        double rate = units / (MPI_Wtime() - t0);
        best = rate > best ? rate : best;
    }
    return best;
}

/* The calibrated compute in tests + 1 equal chunks with one MPI_Test between chunks. */
static int compute(const struct ctx *x, MPI_Request *q)
{
    int chunks = x->c->tests + 1, done;
    for (int j = 0; j < chunks; j++) {
        spin(x->compute_units / chunks + (j < x->compute_units % chunks));
        if (q != NULL && j + 1 < chunks)
            TRY(MPI_Test(q, &done, MPI_STATUS_IGNORE));
    }
    return MPI_SUCCESS;
}

static int set_of(const struct ctx *x, int64_t k)
{
    return (int)(k % x->c->nsets);
}

static int root_of(const struct ctx *x, int64_t k)
{
    return x->c->rotate_root ? (int)(k % x->size) : x->c->root;
}

static int step_blocking(const struct ctx *x, int64_t k)
{
    int set = set_of(x, k);
    return x->op->issue(x, ISSUE_BLOCKING, x->c->send[set], x->c->recv[set], root_of(x, k),
                        NULL);
}

static int step_pattern(const struct ctx *x, int64_t k)
{
    int set = set_of(x, k);
    return x->op->pattern(x, x->c->send[set], x->c->recv[set]);
}

static int step_pure(const struct ctx *x, int64_t k)
{
    MPI_Request q;
    int set = set_of(x, k);
    TRY(x->op->issue(x, ISSUE_START, x->c->send[set], x->c->recv[set], root_of(x, k), &q));
    return MPI_Wait(&q, MPI_STATUS_IGNORE);
}

static int step_overlap(const struct ctx *x, int64_t k)
{
    MPI_Request q;
    int set = set_of(x, k);
    TRY(x->op->issue(x, ISSUE_START, x->c->send[set], x->c->recv[set], root_of(x, k), &q));
    TRY(compute(x, &q));
    return MPI_Wait(&q, MPI_STATUS_IGNORE);
}

static int step_compute(const struct ctx *x, int64_t k)
{
    (void)k;
    return compute(x, NULL);
}

static int step_persistent(const struct ctx *x, int64_t k)
{
    int index = set_of(x, k) * x->roots + (x->c->rotate_root ? (int)(k % x->size) : 0);
    TRY(MPI_Start(&x->reqs[index]));
    return MPI_Wait(&x->reqs[index], MPI_STATUS_IGNORE);
}

/* Warm-ups, one barrier, then one sample per iteration (a barrier before each if asked).
 * Calls are numbered from `first`: call k uses buffer set k % nsets (and root k % p). */
static int timed(const struct ctx *x, step_fn step, double *out, double divisor, int64_t first)
{
    const struct call *c = x->c;
    for (int64_t k = first; k < first + c->warmup; k++)
        TRY(step(x, k));
    TRY(MPI_Barrier(x->comm));
    for (int64_t i = 0; i < c->iters; i++) {
        if (c->barrier_each)
            TRY(MPI_Barrier(x->comm));
        double t0 = MPI_Wtime();
        int rc = step(x, first + c->warmup + i);
        out[i] = (MPI_Wtime() - t0) / divisor;
        if (rc != MPI_SUCCESS)
            return rc;
    }
    return MPI_SUCCESS;
}

static double mean(const double *v, int64_t n)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += v[i];
    return n > 0 ? sum / n : 0.0;
}

/* OSU's method: the operation alone, then with a dummy compute of that length (or
 * compute_s) between start and wait, then the compute alone. The second phase goes on
 * numbering calls where the first stopped, so each call of both phases has its own set
 * when there are enough sets. */
static int time_nonblocking(struct ctx *x, double *total, double *pure, double *alone)
{
    int64_t calls = x->c->warmup + x->c->iters;
    TRY(timed(x, step_pure, pure, 1.0, 0));
    double length = x->c->compute_s > 0 ? x->c->compute_s : mean(pure, x->c->iters);
    x->compute_units = (int64_t)(length * units_per_second() + 0.5);
    TRY(timed(x, step_overlap, total, 1.0, calls));
    return timed(x, step_compute, alone, 1.0, 0);
}

/* One persistent request per (buffer set, root); created and freed outside the timing. */
static int time_persistent(struct ctx *x, double *samples)
{
    int n = x->c->nsets * x->roots, made = 0, rc = MPI_SUCCESS;
    x->reqs = malloc(sizeof(MPI_Request) * (size_t)n);
    if (x->reqs == NULL)
        return ERR_NOMEM;
    for (; made < n && rc == MPI_SUCCESS; made++) {
        int set = made / x->roots, root = x->c->rotate_root ? made % x->roots : x->c->root;
        rc = x->op->issue(x, ISSUE_INIT, x->c->send[set], x->c->recv[set], root,
                          &x->reqs[made]);
    }
    if (rc == MPI_SUCCESS)
        rc = timed(x, step_persistent, samples, 1.0, 0);
    else
        made--; /* the failed init left no request */
    for (int i = 0; i < made; i++)
        MPI_Request_free(&x->reqs[i]);
    free(x->reqs);
    return rc;
}

static int time_pattern(struct ctx *x, double *samples)
{
    int window = x->c->window;
    if (x->size < 2 || x->size % 2 != 0)
        return ERR_PAIRS;
    int half = x->size / 2;
    x->first = x->rank < half;
    x->partner = x->first ? x->rank + half : x->rank - half;
    x->reqs = malloc(sizeof(MPI_Request) * 2 * (size_t)window);
    if (x->reqs == NULL)
        return ERR_NOMEM;
    double divisor = x->op->messages ? x->op->messages : window;
    int rc = timed(x, step_pattern, samples, divisor, 0);
    free(x->reqs);
    return rc;
}

/* Time one operation: `samples` gets c->iters values (seconds; per message for patterns;
 * t_total for the nonblocking mode, which also fills t_pure and t_compute). */
int hpcopt_time(const struct call *c, MPI_Comm comm, MPI_Datatype dt, MPI_Op reduce_op,
                double *samples, double *t_pure, double *t_compute)
{
    MPI_Aint lb, extent;
    struct ctx x = {.c = c, .comm = comm, .dt = dt, .reduce_op = reduce_op};
    if (c->operation < 0 || c->operation >= N_OPERATIONS)
        return ERR_OPERATION;
    x.op = &OPERATIONS[c->operation];
    x.count = (int)c->count;
    TRY(MPI_Comm_rank(comm, &x.rank));
    TRY(MPI_Comm_size(comm, &x.size));
    TRY(MPI_Type_get_extent(dt, &lb, &extent));
    x.block = extent * (MPI_Aint)c->count;
    x.roots = c->rotate_root ? x.size : 1;
    if (x.op->pattern != NULL)
        return c->mode == MODE_BLOCKING ? time_pattern(&x, samples) : ERR_MODE;
    switch (c->mode) {
    case MODE_BLOCKING:
        return timed(&x, step_blocking, samples, 1.0, 0);
    case MODE_NONBLOCKING:
        return time_nonblocking(&x, samples, t_pure, t_compute);
    case MODE_PERSISTENT:
        return HAVE_PERSISTENT ? time_persistent(&x, samples) : ERR_NO_PERSISTENT;
    default:
        return ERR_MODE;
    }
}

/* The operation table for Python: name, and (pattern, rooted, in place, send, recv,
 * recv in place, messages) in info[7]; NULL past the end. */
const char *hpcopt_operation(int i, int32_t *info)
{
    if (i < 0 || i >= N_OPERATIONS)
        return NULL;
    const struct operation *op = &OPERATIONS[i];
    info[0] = op->pattern != NULL;
    info[1] = op->rooted;
    info[2] = op->has_in_place;
    info[3] = op->send;
    info[4] = op->recv;
    info[5] = op->recv_in_place;
    info[6] = op->messages;
    return op->name;
}

int hpcopt_has_persistent(void)
{
    return HAVE_PERSISTENT;
}

/* sizeof MPI_Comm, MPI_Datatype, MPI_Op, and the MPI family of the header compiled with. */
const char *hpcopt_abi(int32_t *sizes)
{
    sizes[0] = (int32_t)sizeof(MPI_Comm);
    sizes[1] = (int32_t)sizeof(MPI_Datatype);
    sizes[2] = (int32_t)sizeof(MPI_Op);
#if defined(OPEN_MPI)
    return "Open MPI";
#elif defined(MPICH_VERSION) || defined(MPICH)
    return "MPICH";
#else
    return "unknown";
#endif
}
