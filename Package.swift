// swift-tools-version: 6.0
import PackageDescription

// The targets are the layers of the engine, each depending only on those above it in this
// list (no cycles; SwiftPM refuses them):
//
//   SubspaceCore      tensors, BLAS/LAPACK, random streams, errors, durable files, safetensors
//   SubspaceModels    layers with forward/backward, linear-slot operators, the LLaMA model
//   SubspaceData      tokenizers, corpora, token files, batches
//   SubspaceOptim     the per-parameter optimizer interface and every method's rule and settings
//   SubspaceTraining  memory planning, checkpoints, the step rules, the training run, metrics
//   SubspaceBench     the method-comparison suite and its figures (used by the tool only)
//   SubspaceExperimental  methods on probation, apart from the mainline
//   Subspace          the library users import: re-exports the mainline layers
let package = Package(
    name: "Subspace",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Subspace", targets: ["Subspace"]),
        .executable(name: "subspace", targets: ["subspace"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // MARK: - Implementation details: the only C libraries we link (BLAS and LAPACK), and our C.
        .systemLibrary(
            name: "CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CLAPACKE", pkgConfig: "lapacke",
            providers: [.apt(["liblapacke-dev"])]),
        // cpuid / xgetbv and Linux's AMX permission request: what Swift cannot say itself.
        .target(name: "CSupport"),
        // Open MPI (libopenmpi-dev) for data parallelism: its handles are macros, so a C shim
        // names them (Sources/CMPI/include/cmpi.h). Linked always; MPI_Init runs only under mpirun.
        .target(name: "CMPI", linkerSettings: [.linkedLibrary("mpi")]),

        // MARK: - The layers
        .target(
            name: "SubspaceCore",
            dependencies: [
                "CSupport",
                .target(name: "CBLAS", condition: .when(platforms: [.linux])),
                .target(name: "CLAPACKE", condition: .when(platforms: [.linux])),
            ],
            linkerSettings: [.linkedFramework("Accelerate", .when(platforms: [.macOS]))]),
        .target(name: "SubspaceModels", dependencies: ["SubspaceCore"]),
        .target(name: "SubspaceData", dependencies: ["SubspaceCore", "SubspaceModels"]),
        .target(name: "SubspaceOptim", dependencies: ["SubspaceCore", "SubspaceModels"]),
        .target(name: "SubspaceTraining", dependencies: ["SubspaceCore", "SubspaceModels", "SubspaceData", "SubspaceOptim", "CMPI"]),
        .target(name: "SubspaceBench", dependencies: ["SubspaceCore", "SubspaceModels", "SubspaceData", "SubspaceOptim", "SubspaceTraining"]),
        .target(name: "SubspaceExperimental", dependencies: ["SubspaceCore", "SubspaceModels", "SubspaceData", "SubspaceOptim", "SubspaceTraining"]),

        // MARK: - Public API: the mainline layers under one import.
        .target(
            name: "Subspace",
            dependencies: ["SubspaceCore", "SubspaceModels", "SubspaceData", "SubspaceOptim", "SubspaceTraining"]),

        // MARK: - Tools
        .executableTarget(
            name: "subspace",
            dependencies: [
                "Subspace", "SubspaceBench", "SubspaceExperimental",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // MARK: - Unit test bundles
        .testTarget(
            name: "SubspaceTests",
            dependencies: ["Subspace", "SubspaceBench", "SubspaceExperimental"],
            resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v5]
)
