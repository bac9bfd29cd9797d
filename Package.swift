// swift-tools-version: 6.0
import PackageDescription

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

        // MARK: - Public API: tensors, layers, models, optimizers, training.
        .target(
            name: "Subspace",
            dependencies: [
                "CSupport",
                .target(name: "CBLAS", condition: .when(platforms: [.linux])),
                .target(name: "CLAPACKE", condition: .when(platforms: [.linux])),
            ],
            linkerSettings: [.linkedFramework("Accelerate", .when(platforms: [.macOS]))]),

        // MARK: - Tools
        .executableTarget(
            name: "subspace",
            dependencies: [
                "Subspace",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // MARK: - Unit test bundles
        .testTarget(
            name: "SubspaceTests",
            dependencies: ["Subspace"],
            resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v5]
)
