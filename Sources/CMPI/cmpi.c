#include "cmpi.h"
#if __has_include(<mpi.h>)
#include <mpi.h>
#else
#include <mpi/mpi.h>  // Debian's multiarch location (/usr/include/x86_64-linux-gnu/mpi)
#endif

static const size_t chunk = (size_t)1 << 30;

int cmpi_init(void) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc == MPI_SUCCESS) MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return rc;
}

int cmpi_is_active(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

int cmpi_finalize(void) { return MPI_Finalize(); }

int cmpi_rank(void) { int r = 0; MPI_Comm_rank(MPI_COMM_WORLD, &r); return r; }

int cmpi_size(void) { int s = 1; MPI_Comm_size(MPI_COMM_WORLD, &s); return s; }

int cmpi_allreduce_sum_float(float *data, size_t count) {
    for (size_t off = 0; off < count; off += chunk) {
        size_t n = count - off < chunk ? count - off : chunk;
        int rc = MPI_Allreduce(MPI_IN_PLACE, data + off, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}

int cmpi_allreduce_max_double(double *data, size_t count) {
    return MPI_Allreduce(MPI_IN_PLACE, data, (int)count, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
}

int cmpi_iallreduce_sum_float(float *data, size_t count, cmpi_request *request) {
    if (count >= ((size_t)1 << 31)) return MPI_ERR_COUNT;
    MPI_Request r = MPI_REQUEST_NULL;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, data, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r);
    *request = (cmpi_request)r;
    return rc;
}

int cmpi_wait(cmpi_request *request) {
    MPI_Request r = (MPI_Request)*request;
    int rc = MPI_Wait(&r, MPI_STATUS_IGNORE);
    *request = (cmpi_request)r;
    return rc;
}

int cmpi_test(cmpi_request *request, int *done) {
    MPI_Request r = (MPI_Request)*request;
    int rc = MPI_Test(&r, done, MPI_STATUS_IGNORE);
    *request = (cmpi_request)r;
    return rc;
}

int cmpi_broadcast_bytes(void *data, size_t count, int root) {
    char *p = (char *)data;
    for (size_t off = 0; off < count; off += chunk) {
        size_t n = count - off < chunk ? count - off : chunk;
        int rc = MPI_Bcast(p + off, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}

int cmpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

void cmpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
