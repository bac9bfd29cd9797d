// GFLOP/s of fp32 sgemm and the bf16 product (oneDNN through Sources/CSupport/bf16.c) at
// 1024^3 and at the shapes of tiny and llama60m training steps, on 2 threads: sgemm and bf16
// split by rows over 2 pthreads (as BLAS.gemm splits), bf16 on 2 OpenMP threads in one call,
// bf16 on one thread. Built and run by bench/bf16_figures.sh.
#include "CSupport.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <math.h>
#include <pthread.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
typedef struct {int ta,tb,m,n,k,lda,ldb; uint16_t*a,*b; float*c;int ldc;} job;
static void* work(void*p){job*j=p; subspace_bf16_gemm(j->ta,j->tb,j->m,j->n,j->k,1,j->a,j->lda,j->b,j->ldb,0,j->c,j->ldc,1);return 0;}
static void* works(void*p){job*j=p; cblas_sgemm(CblasRowMajor,j->ta?CblasTrans:CblasNoTrans,j->tb?CblasTrans:CblasNoTrans,j->m,j->n,j->k,1,(float*)j->a,j->lda,(float*)j->b,j->ldb,0,j->c,j->ldc);return 0;}
int main(){
  printf("bf16 available %d; GFLOP/s, 2 threads unless said\n", subspace_bf16_gemm_available());
  openblas_set_num_threads(1);
  int shapes[][5]={{1024,1024,1024,0,0},{2048,256,256,0,1},{2048,688,256,0,1},{2048,256,688,0,0},{256,688,2048,1,0},{2048,4096,256,0,1},{1024,512,512,0,1},{1024,1376,512,0,1},{512,1376,1024,1,0}};
  for(int s=0;s<9;s++){
    int M=shapes[s][0],N=shapes[s][1],K=shapes[s][2],ta=shapes[s][3],tb=shapes[s][4];
    int lda=ta?M:K, ldb=tb?K:N;
    float*A=malloc(4L*M*K),*B=malloc(4L*K*N),*C=malloc(4L*M*N),*C2=malloc(4L*M*N);
    uint16_t*Ah=malloc(2L*M*K),*Bh=malloc(2L*K*N);
    for(long i=0;i<(long)M*K;i++)A[i]=rand()/(float)RAND_MAX-.5f; for(long i=0;i<(long)K*N;i++)B[i]=rand()/(float)RAND_MAX-.5f;
    double t=now(); for(int r=0;r<10;r++) subspace_f32_to_bf16(A,Ah,(long)M*K,1); double tc=(now()-t)/10;
    subspace_f32_to_bf16(B,Bh,(long)K*N,1);
    double fl=2.0*M*N*K; int reps=(int)(1e10/fl)+1;
    // fp32 2 threads split rows of C (m)
    pthread_t th[2]; job j[2];
    int h=M/2;
    for(int w=0;w<2;w++){ j[w]=(job){ta,tb,h,N,K,lda,ldb,(uint16_t*)(ta?A+w*h:A+(long)w*h*lda),(uint16_t*)B,C+(long)w*h*N,N}; }
    t=now(); for(int r=0;r<reps;r++){for(int w=0;w<2;w++)pthread_create(th+w,0,works,j+w);for(int w=0;w<2;w++)pthread_join(th[w],0);} double ts=(now()-t)/reps;
    for(int w=0;w<2;w++){ j[w]=(job){ta,tb,h,N,K,lda,ldb,ta?Ah+w*h:Ah+(long)w*h*lda,Bh,C2+(long)w*h*N,N}; }
    work(j);work(j+1);
    t=now(); for(int r=0;r<reps;r++){for(int w=0;w<2;w++)pthread_create(th+w,0,work,j+w);for(int w=0;w<2;w++)pthread_join(th[w],0);} double tsplit=(now()-t)/reps;
    subspace_bf16_gemm(ta,tb,M,N,K,1,Ah,lda,Bh,ldb,0,C2,N,2);
    t=now(); for(int r=0;r<reps;r++) subspace_bf16_gemm(ta,tb,M,N,K,1,Ah,lda,Bh,ldb,0,C2,N,2); double tomp=(now()-t)/reps;
    t=now(); for(int r=0;r<reps;r++) subspace_bf16_gemm(ta,tb,M,N,K,1,Ah,lda,Bh,ldb,0,C2,N,1); double t1=(now()-t)/reps;
    double md=0,mx=0; for(long i=0;i<(long)M*N;i++){md=fmax(md,fabs(C[i]-C2[i]));mx=fmax(mx,fabs(C[i]));}
    printf("%dx%dx%d t%d%d: sgemm2 %.0f | bf16 split2 %.0f omp2 %.0f 1thr %.0f GF/s | cvt %.2f ms (%.1f GB/s) | relerr %.1e %s\n",M,N,K,ta,tb,fl/ts*1e-9,fl/tsplit*1e-9,fl/tomp*1e-9,fl/t1*1e-9,tc*1e3,M*K*6.0/tc*1e-9,md/mx,subspace_bf16_gemm_implementation());
  }
}
