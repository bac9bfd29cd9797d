// SubspaceCore: Tensors and the dense linear algebra behind one small BLAS/LAPACK wrapper, seeded random streams, the errors every layer throws (`ConfigurationError`, `DataError`), the one durable-write path (`DurableFile`) and safetensors files. Everything above builds on it; it knows nothing of models, data or optimizers.
//
// May depend on: nothing but the C libraries (OpenBLAS, LAPACKE, CSupport) and Foundation. Nothing here may import a layer listed after it in Package.swift.
