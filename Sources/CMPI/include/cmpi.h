// A C face for Open MPI that Swift can import: Open MPI's handles (MPI_COMM_WORLD), datatypes
// (MPI_FLOAT) and operations (MPI_SUM) are macros over addresses of its globals, which Swift
// does not import, so this shim names them inside C and exports plain functions. mpi.h itself
// stays out of this header (only cmpi.c includes it), so importing CMPI needs no MPI headers.
// Every call works on MPI_COMM_WORLD and returns MPI's error code (0 = MPI_SUCCESS).
#ifndef CMPI_H
#define CMPI_H

#include <stddef.h>

/// An outstanding non-blocking operation (an MPI_Request); wait on it exactly once.
typedef void *cmpi_request;

/// MPI_Init_thread(MPI_THREAD_FUNNELED): every MPI call comes from the thread that called it.
int cmpi_init(void);
/// Whether MPI_Init has run and MPI_Finalize has not.
int cmpi_is_active(void);
int cmpi_finalize(void);
int cmpi_rank(void);
int cmpi_size(void);
/// In-place sum over ranks of `count` floats (split into calls of at most 2^30 elements).
int cmpi_allreduce_sum_float(float *data, size_t count);
/// In-place maximum over ranks of `count` doubles.
int cmpi_allreduce_max_double(double *data, size_t count);
/// Non-blocking in-place sum (MPI_Iallreduce); `count` must be below 2^31.
int cmpi_iallreduce_sum_float(float *data, size_t count, cmpi_request *request);
/// Waits for `request` and releases it.
int cmpi_wait(cmpi_request *request);
/// Lets MPI progress `request` (MPI_Test); sets `done` when it has finished (then released).
int cmpi_test(cmpi_request *request, int *done);
/// Root's `count` bytes to every rank.
int cmpi_broadcast_bytes(void *data, size_t count, int root);
int cmpi_barrier(void);
/// Ends every process of the job with `code` (MPI_Abort); does not return.
void cmpi_abort(int code);

#endif
