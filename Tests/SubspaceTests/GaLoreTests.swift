import Foundation
import Testing
@testable import Subspace
@testable import SubspaceCore
@testable import SubspaceModels
@testable import SubspaceData
@testable import SubspaceOptim
@testable import SubspaceTraining
@testable import SubspaceBench

/// The fixtures written by `scripts/make_galore_fixtures.py`: galore-torch 1.0 and fira 1.0.2
/// run on fixed gradient sequences (rank 8, gap 3, scale 0.25, lr 0.01, weight decay 0.1,
/// 8 steps), with torch's SVD signs normalized to `Projector`'s convention.
enum ProjectionFixtures {
    static let shapes = ["tall", "wide", "square"]
    static let steps = 8
    static let rank = 8, gap = 3
    static let scale: Float = 0.25, lr: Float = 0.01, weightDecay: Float = 0.1

    static func load(_ name: String) throws -> SafeTensorsFile {
        let url = try #require(
            Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Fixtures"),
            "missing Fixtures/\(name).safetensors; run scripts/make_galore_fixtures.py")
        return try SafeTensorsFile.load(url: url)
    }

    static let galore: SafeTensorsFile = try! load("galore_steps")
    static let fira: SafeTensorsFile = try! load("fira_steps")

    /// Runs `opt` on the fixture's gradients for `shape`; checks the weights after every step
    /// against `<run>.<shape>.w.<t>` in `reference`, and returns the parameter.
    static func replay(
        _ opt: ParameterOptimizer, shape: String, run: String, reference: SafeTensorsFile,
        tolerance: Double = 1e-4
    ) throws -> Parameter {
        let w0 = try galore.tensor("\(shape).w0")
        let p = Parameter(name: "model.layers.0.mlp.up_proj.weight", role: .mlp, value: w0.copy())
        for t in 0..<steps {
            opt.update(p, gradient: try galore.tensor("\(shape).grad.\(t)"), lrScale: 1)
            let expected = try reference.tensor("\(run).\(shape).w.\(t)")
            #expect(p.shape == expected.shape)
            let err = relativeError(p.value.array, expected.array)
            // The change from w0 is the signal; compare it too, more loosely.
            let delta = zip(p.value.array, w0.array).map { $0 - $1 }
            let refDelta = zip(expected.array, w0.array).map { $0 - $1 }
            let deltaErr = relativeError(delta, refDelta)
            #expect(err < tolerance, "\(run) \(shape) step \(t): weights off by \(err) relative")
            #expect(deltaErr < 1e-3, "\(run) \(shape) step \(t): update off by \(deltaErr) relative")
        }
        return p
    }

    /// Compares `opt`'s exported state with `<run>.<shape>.<key>`.
    static func checkState(
        _ opt: ParameterOptimizer, _ p: Parameter, shape: String, run: String, reference: SafeTensorsFile,
        keys: [String]
    ) throws {
        let state = opt.exportState(for: p)
        for key in keys {
            let ours = try #require(state[key], "no \(key) in the exported state")
            let ref = try reference.tensor("\(run).\(shape).\(key)")
            #expect(ours.count == ref.count, "\(key): \(ours.shape) vs \(ref.shape)")
            let err = relativeError(ours.array, ref.array)
            #expect(err < 1e-4, "\(run) \(shape) \(key) off by \(err) relative")
        }
    }
}

func isFiniteTensor(_ t: Tensor) -> Bool { t.array.allSatisfy { $0.isFinite } }

@Suite("GaLore") struct GaLoreTests {
    // MARK: Parity with galore-torch 1.0

    @Test(arguments: [("tall", "std"), ("wide", "std"), ("square", "std"), ("tall", "reverse_std")])
    func matchesGaloreTorch(shape: String, type: String) throws {
        let opt = try GaLore(
            learningRate: ProjectionFixtures.lr, weightDecay: ProjectionFixtures.weightDecay,
            rank: ProjectionFixtures.rank, updateGap: ProjectionFixtures.gap, scale: ProjectionFixtures.scale,
            projection: try ProjectionType(parsing: type))
        let p = try ProjectionFixtures.replay(opt, shape: shape, run: "galore_\(type)", reference: ProjectionFixtures.galore)
        try ProjectionFixtures.checkState(
            opt, p, shape: shape, run: "galore_\(type)", reference: ProjectionFixtures.galore,
            keys: ["step", "exp_avg", "exp_avg_sq", "ortho_matrix"])
    }

    // MARK: Projector

    @Test(arguments: [[48, 20], [20, 48], [32, 32]])
    func svdProjectorShapesAndOrthonormality(shape: [Int]) throws {
        let m = shape[0], n = shape[1], r = 6
        var proj = try Projector(type: .std, shape: shape, rank: r, gap: 5, scale: 0.5)
        let g = randomTensor(shape, seed: 3)
        let refreshed = proj.refresh(gradient: g, step: 0)
        #expect(refreshed)
        let p = try #require(proj.matrix)
        // std projects the smaller side.
        #expect(proj.side == (m >= n ? .right : .left))
        #expect(p.shape == (m >= n ? [r, n] : [m, r]))
        #expect(proj.projectedShape == (m >= n ? [m, r] : [r, n]))
        // Orthonormal: P Pᵀ = I (right) or Pᵀ P = I (left).
        let gram = m >= n ? p.matmul(p, transposeOther: true) : p.matmul(p, transposeSelf: true)
        for i in 0..<r { for j in 0..<r { #expect(abs(gram.data[i * r + j] - (i == j ? 1 : 0)) < 1e-5) } }
        let rt = proj.project(g)
        #expect(rt.shape == proj.projectedShape)
        let back = proj.projectBack(rt)
        #expect(back.shape == shape)
        // projectBack(project(G)) = scale · (rank-r SVD truncation of G).
        let (u, s, vt) = try Linalg.svd(g)
        let k = min(m, n)
        for i in 0..<m {
            for j in 0..<n {
                var x: Float = 0
                for l in 0..<r { x += u.data[i * k + l] * s[l] * vt.data[l * n + j] }
                #expect(abs(back.data[i * n + j] - 0.5 * x) < 1e-4)
            }
        }
        #expect(proj.bytes == r * min(m, n) * 4)
        // The sign convention: column i of U has its largest-magnitude entry positive.
        let uCols = m >= n ? p.matmul(g, transposeOther: true) : p.transposed()  // r x m, rows ∝ columns of U
        for i in 0..<r {
            let col = Array(uCols.array[(i * m)..<((i + 1) * m)])
            let big = col.max { abs($0) < abs($1) }!
            #expect(big > 0)
        }
    }

    /// The default Gram-matrix basis (leading eigenvectors of the smaller Gram matrix) equals
    /// the full SVD's sign-normalized basis for every SVD type and shape; where the projected
    /// side is the larger one (reverse_std, left/right against the shape) it is the SVD itself.
    @Test(arguments: [[48, 20], [20, 48], [32, 32]])
    func gramBasisEqualsTheSVDBasis(shape: [Int]) throws {
        let g = randomTensor(shape, seed: 11)
        for type in [ProjectionType.std, .reverseStd, .left, .right] {
            for r in [1, 6, min(shape[0], shape[1])] {
                var gram = try Projector(type: type, shape: shape, rank: r, gap: 1)
                var svd = gram
                svd.basisAlgorithm = .svd
                #expect(gram.basisAlgorithm == .gram)
                gram.refresh(gradient: g, step: 0)
                svd.refresh(gradient: g, step: 0)
                let a = try #require(gram.matrix), b = try #require(svd.matrix)
                // Full rank on a square matrix: the last direction is still well separated.
                #expect(relativeError(a.array, b.array) < 1e-4, "\(type) \(shape) r=\(r)")
                let smaller = (gram.side == .left ? shape[0] : shape[1]) <= (gram.side == .left ? shape[1] : shape[0])
                #expect(gram.gramBasis(g) == nil ? !smaller : smaller)
            }
        }
        #expect(try Projector.BasisAlgorithm(parsing: "SVD") == .svd)
        #expect(throws: ConfigurationError.self) { try Projector.BasisAlgorithm(parsing: "qr") }
        var o = OptimizerOptions()
        o.svdBasis = "svd"
        let routed = try OptimizerRegistry.make("galore", options: o)
        let spec = ParameterSpec(name: "model.layers.0.mlp.up_proj.weight", role: .mlp, shape: [8, 4])
        #expect((routed.optimizer(for: spec) as? GaLore)?.settings.basisAlgorithm == .svd)
        o.svdBasis = "nope"
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("fira", options: o) }
    }

    /// `RoutedOptimizer.step` computes the refresh SVDs side by side (`StepPreparing`); the
    /// weights and states are bit-identical to updating the parameters one by one.
    @Test(arguments: ["galore", "fira"])
    func preparedRefreshesMatchOneByOne(name: String) throws {
        var o = OptimizerOptions()
        o.rank = 3; o.updateGap = 2; o.learningRate = 1e-2
        let config = LlamaConfig(dim: 16, layers: 1, heads: 2, ffnDim: 24, vocab: 20, maxSeq: 8)
        let a = try LlamaModel(config: config), b = try LlamaModel(config: config)
        let stepped = try OptimizerRegistry.make(name, options: o), single = try OptimizerRegistry.make(name, options: o)
        for step in 0..<5 {
            for (i, (p, q)) in zip(a.parameters, b.parameters).enumerated() {
                let g = randomTensor(p.shape, seed: UInt64(100 * step + i))
                if step == 3 && i == 2 { for k in 0..<g.count { g.data[k] = 0 } }  // degenerate: keeps P
                p.gradient().assign(g)
                q.gradient().assign(g)
            }
            stepped.step(a.parameters, lrScale: 1)
            for q in b.parameters { single.update(q, lrScale: 1) }
        }
        for (p, q) in zip(a.parameters, b.parameters) {
            #expect(p.value.array == q.value.array, "\(p.name)")
            let sp = stepped.optimizer(for: p).exportState(for: p), sq = single.optimizer(for: q).exportState(for: q)
            #expect(Set(sp.keys) == Set(sq.keys))
            for (k, t) in sp { #expect(t.array == sq[k]?.array, "\(p.name) \(k)") }
        }
    }

    /// The fallback when LAPACK does not converge: the randomized SVD finds the same
    /// sign-normalized basis for a gradient with a clear spectral gap.
    @Test(arguments: [[40, 24], [24, 40]])
    func randomizedFallbackFindsTheSameBasis(shape: [Int]) throws {
        let m = shape[0], n = shape[1], r = 4
        let a = try Linalg.qr(randomTensor([m, r], seed: 1)).q, b = try Linalg.qr(randomTensor([n, r], seed: 2)).q
        for j in 0..<r { for i in 0..<m { a.data[i * r + j] *= Float(8 - j) } }
        let g = a.matmul(b, transposeOther: true)
        let noise = randomTensor(shape, seed: 3, std: 0.01)
        BLAS.axpy(g.count, 1, noise.data, g.data)
        let proj = try Projector(shape: shape, rank: r, gap: 1)
        let exact = try #require(proj.singularBasis(g, index: 0))
        let approx = try #require(proj.singularBasis(g, index: 0, randomized: true))
        #expect(approx.shape == exact.shape)
        #expect(relativeError(approx.array, exact.array) < 1e-3)
    }

    @Test func projectionSidesOfEveryType() throws {
        for (type, tallSide, wideSide) in [
            (ProjectionType.std, Projector.Side.right, Projector.Side.left), (.reverseStd, .left, .right),
            (.left, .left, .left), (.right, .right, .right), (.gaussian, .right, .left), (.rademacher, .right, .left),
        ] {
            #expect(try Projector(type: type, shape: [30, 10], rank: 4, gap: 1).side == tallSide, "\(type)")
            #expect(try Projector(type: type, shape: [10, 30], rank: 4, gap: 1).side == wideSide, "\(type)")
        }
    }

    /// SVD at steps 0, T, 2T (the step counted before the increment, as galore-torch does).
    @Test func refreshesAtMultiplesOfTheGap() throws {
        var proj = try Projector(shape: [12, 8], rank: 3, gap: 4)
        var refreshed: [Int] = []
        for step in 0..<10 {
            if proj.refresh(gradient: randomTensor([12, 8], seed: UInt64(step)), step: step) { refreshed.append(step) }
        }
        #expect(refreshed == [0, 4, 8])
        #expect(proj.refreshIndex == 2)
        // Within one GaLore run: the projector changes exactly at those steps.
        let opt = try GaLore(rank: 3, updateGap: 4)
        let p = Parameter(name: "w", role: .mlp, value: randomTensor([12, 8], seed: 1))
        var last: [Float] = []
        var changes: [Int] = []
        for step in 0..<10 {
            opt.update(p, gradient: randomTensor([12, 8], seed: UInt64(50 + step)), lrScale: 1)
            let now = opt.states["w"]!.projector!.matrix!.array
            if now != last { changes.append(step) }
            last = now
        }
        #expect(changes == [0, 4, 8])
    }

    @Test(arguments: [ProjectionType.gaussian, .rademacher])
    func seededRandomProjectorIsRegeneratedNotStored(type: ProjectionType) throws {
        func make(_ label: String, seed: UInt64 = 7) throws -> Projector {
            try Projector(type: type, shape: [40, 24], rank: 6, gap: 5, scale: 1, seed: seed, label: label)
        }
        let g = randomTensor([40, 24], seed: 1)
        var a = try make("q_proj"), b = try make("q_proj"), c = try make("k_proj"), d = try make("q_proj", seed: 8)
        a.refresh(gradient: g, step: 7); b.refresh(gradient: randomTensor([40, 24], seed: 2), step: 7)
        c.refresh(gradient: g, step: 7); d.refresh(gradient: g, step: 7)
        // A pure function of (seed, name, refresh index = step / gap); the gradient is ignored.
        #expect(a.matrix!.array == b.matrix!.array)
        #expect(a.matrix!.array != c.matrix!.array)
        #expect(a.matrix!.array != d.matrix!.array)
        #expect(a.refreshIndex == 1)
        #expect(a.bytes == 0)
        // Dropped after use and regenerated identically, also at a step inside the interval.
        let before = a.matrix!.array
        a.release()
        #expect(a.matrix == nil)
        a.refresh(gradient: g, step: 9)
        #expect(a.matrix!.array == before)
        a.refresh(gradient: g, step: 10)
        #expect(a.matrix!.array != before)
        #expect(a.encode().isEmpty)
        // Scaled so that E[PᵀP] = I on the projected side (right side here: P is r x n).
        var diag = 0.0, off = 0.0
        let trials = 200
        for s in 0..<trials {
            var q = try make("x", seed: UInt64(s))
            q.refresh(gradient: g, step: 0)
            let gram = q.matrix!.matmul(q.matrix!, transposeSelf: true)  // n x n
            for i in 0..<24 { diag += Double(gram.data[i * 24 + i]); off += Double(gram.data[i * 24 + (i + 1) % 24]) }
        }
        #expect(abs(diag / Double(trials * 24) - 1) < 0.03)
        #expect(abs(off / Double(trials * 24)) < 0.03)
    }

    @Test func randomProjectionGaloreStoresOnlyMomentsAndResumes() throws {
        let shape = [30, 12]
        func run(_ opt: GaLore, _ p: Parameter, _ steps: Range<Int>) {
            for s in steps { opt.update(p, gradient: randomTensor(shape, seed: UInt64(300 + s)), lrScale: 1) }
        }
        let a = try GaLore(learningRate: 0.01, rank: 4, updateGap: 3, projection: .gaussian, seed: 11)
        let pa = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 1))
        run(a, pa, 0..<4)
        #expect(a.stateBytes(for: pa) == 2 * 4 * 30 * 4)
        #expect(a.states["w"]!.projector!.matrix == nil)
        let saved = a.exportState(for: pa)
        #expect(Set(saved.keys) == ["step", "exp_avg", "exp_avg_sq"])
        let b = try GaLore(learningRate: 0.01, rank: 4, updateGap: 3, projection: .gaussian, seed: 11)
        let pb = Parameter(name: "w", role: .mlp, value: pa.value.copy())
        try b.importState(saved.mapValues { $0.copy() }, for: pb)
        run(a, pa, 4..<8); run(b, pb, 4..<8)
        #expect(pa.value.array == pb.value.array)
    }

    // MARK: State

    @Test(arguments: [[48, 20], [20, 48], [32, 32]])
    func stateBytesFollowTheFormula(shape: [Int]) throws {
        let m = shape[0], n = shape[1], r = 8
        let opt = try GaLore(rank: r, updateGap: 3)
        let p = Parameter(name: "w", role: .attention, value: Tensor(zeros: shape))
        #expect(opt.stateBytes(for: p) == 0)
        opt.update(p, gradient: randomTensor(shape, seed: 2), lrScale: 1)
        #expect(opt.stateBytes(for: p) == (2 * r * max(m, n) + r * min(m, n)) * 4)
        // reverse_std projects the larger side: moments 2r·min, projector r·max.
        let rev = try GaLore(rank: r, updateGap: 3, projection: .reverseStd)
        rev.update(p, gradient: randomTensor(shape, seed: 2), lrScale: 1)
        #expect(rev.stateBytes(for: p) == (2 * r * min(m, n) + r * max(m, n)) * 4)
        // Ranks above min(m, n) are clamped per matrix, as galore-torch's slicing does.
        let big = try GaLore(rank: 1000, updateGap: 3)
        big.update(p, gradient: randomTensor(shape, seed: 2), lrScale: 1)
        let k = min(m, n)
        #expect(big.stateBytes(for: p) == (2 * k * max(m, n) + k * min(m, n)) * 4)
        // A vector routed here gets plain Adam: 2 floats per element.
        let v = Parameter(name: "b", role: .norm, value: Tensor(zeros: [10]))
        opt.update(v, gradient: randomTensor([10], seed: 1), lrScale: 1)
        #expect(opt.stateBytes(for: v) == 2 * 10 * 4)
    }

    /// Export, import into a fresh optimizer, continue: identical to running on.
    @Test(arguments: [ProjectionType.std, .reverseStd, .rademacher])
    func checkpointRoundTrip(type: ProjectionType) throws {
        let shape = [24, 40]
        func make() throws -> GaLore { try GaLore(learningRate: 0.02, weightDecay: 0.05, rank: 5, updateGap: 3, projection: type) }
        let a = try make(), b = try make()
        let pa = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 5))
        for s in 0..<4 { a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1) }
        let saved = a.exportState(for: pa)
        let pb = Parameter(name: "w", role: .mlp, value: pa.value.copy())
        try b.importState(saved.mapValues { $0.copy() }, for: pb)
        for s in 4..<9 {
            a.update(pa, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
            b.update(pb, gradient: randomTensor(shape, seed: UInt64(s)), lrScale: 1)
        }
        #expect(pa.value.array == pb.value.array)
        // Bad states are rejected.
        var wrong = saved
        wrong["exp_avg"] = Tensor(zeros: [3, 3])
        #expect(throws: OptimizerStateError.self) { try b.importState(wrong, for: pb) }
        if !type.isRandom {
            var missing = saved
            missing["ortho_matrix"] = nil
            #expect(throws: OptimizerStateError.self) { try b.importState(missing, for: pb) }
        }
    }

    /// Through the model checkpoint: a GaLore run saved and restored continues bit for bit.
    @Test func modelCheckpointResume() throws {
        var o = OptimizerOptions(); o.rank = 4; o.updateGap = 2; o.learningRate = 1e-2; o.weightDecay = 0.01
        func trainer() throws -> Trainer {
            try Trainer(model: LlamaModel(config: smallConfig(), seed: 3), optimizer: OptimizerRegistry.make("galore", options: o), options: StepOptions())
        }
        let a = try trainer()
        for s in 0..<3 { _ = try a.trainStep([randomBatch(vocab: 20, batch: 2, seq: 8, seed: UInt64(s))]) }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("galore-ckpt-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try Checkpoint.save(to: dir, model: a.model, optimizer: a.optimizer)
        let b = try trainer()
        _ = try Checkpoint.restore(from: dir, into: b.model, optimizer: b.optimizer)
        for s in 3..<6 {
            let batch = randomBatch(vocab: 20, batch: 2, seq: 8, seed: UInt64(s))
            _ = try a.trainStep([batch]); _ = try b.trainStep([batch])
        }
        for (p, q) in zip(a.model.parameters, b.model.parameters) { #expect(p.value.array == q.value.array, "\(p.name)") }
    }

    // MARK: Training modes and routing

    @Test func registryRoutesHiddenMatricesToGaLore() throws {
        let model = try LlamaModel(config: smallConfig())
        var o = OptimizerOptions(); o.rank = 4
        for name in ["galore", "fira"] {
            let r = try OptimizerRegistry.make(name, options: o)
            for p in model.parameters {
                let isHidden = (p.role == .attention || p.role == .mlp) && p.shape.count == 2
                #expect(r.optimizer(for: p).name == (isHidden ? name : "adamw"), "\(name) \(p.name)")
            }
        }
    }

    /// Per-layer mode, with and without gradient accumulation, gives the ordinary mode's weights.
    @Test(arguments: [1, 2])
    func perLayerUpdateMatchesOrdinaryMode(accum: Int) throws {
        func run(perLayer: Bool) throws -> LlamaModel {
            let model = try LlamaModel(config: smallConfig(), seed: 9)
            var s = StepOptions(); s.gradAccum = accum; s.perLayerUpdate = perLayer
            var o = OptimizerOptions(); o.rank = 4; o.updateGap = 2; o.learningRate = 1e-2
            let trainer = try Trainer(model: model, optimizer: OptimizerRegistry.make("galore", options: o), options: s)
            for step in 0..<5 {
                let mbs = (0..<accum).map { randomBatch(vocab: 20, batch: 2, seq: 8, seed: UInt64(10 * step + $0)) }
                _ = try trainer.trainStep(mbs)
            }
            return model
        }
        let a = try run(perLayer: false), b = try run(perLayer: true)
        for (p, q) in zip(a.parameters, b.parameters) {
            #expect(maxAbsDiff(p.value.array, q.value.array) == 0, "\(p.name)")
        }
    }

    // MARK: Validation and robustness

    @Test func rejectsImpossibleSettings() throws {
        #expect(throws: ConfigurationError.self) { try Projector(shape: [10, 6], rank: 0, gap: 1) }
        #expect(throws: ConfigurationError.self) { try Projector(shape: [10, 6], rank: 7, gap: 1) }
        #expect(throws: ConfigurationError.self) { try Projector(shape: [10, 6], rank: 3, gap: 0) }
        #expect(throws: ConfigurationError.self) { try Projector(shape: [10], rank: 1, gap: 1) }
        #expect(throws: ConfigurationError.self) { try ProjectionType(parsing: "full") }
        #expect(try ProjectionType(parsing: "reverse-std") == .reverseStd)
        #expect(throws: ConfigurationError.self) { try GaLore(rank: 0) }
        #expect(throws: ConfigurationError.self) { try GaLore(updateGap: -1) }
        #expect(throws: ConfigurationError.self) { try GaLore(learningRate: 0) }
        var o = OptimizerOptions(); o.projectionType = "bogus"
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("galore", options: o) }
        o = OptimizerOptions(); o.rank = -2
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("galore", options: o) }
        o = OptimizerOptions(); o.updateGap = 0
        #expect(throws: ConfigurationError.self) { try OptimizerRegistry.make("galore", options: o) }
        do {
            _ = try Projector(shape: [10, 6], rank: 7, gap: 1)
        } catch let e as ConfigurationError {
            #expect(e.message.contains("1...6"))
        }
    }

    /// A zero gradient (first step included) and a NaN gradient never put NaN into the weights;
    /// the NaN step is skipped.
    @Test(arguments: [ProjectionType.std, .gaussian])
    func zeroAndNonFiniteGradients(type: ProjectionType) throws {
        let shape = [16, 10]
        let opt = try GaLore(learningRate: 0.01, weightDecay: 0.1, rank: 4, updateGap: 2, projection: type)
        let p = Parameter(name: "w", role: .mlp, value: randomTensor(shape, seed: 1))
        opt.update(p, gradient: Tensor(zeros: shape), lrScale: 1)
        #expect(isFiniteTensor(p.value))
        opt.update(p, gradient: randomTensor(shape, seed: 2), lrScale: 1)
        opt.update(p, gradient: Tensor(zeros: shape), lrScale: 1)  // a refresh step: keeps P
        #expect(isFiniteTensor(p.value))
        let before = p.value.array, stepBefore = opt.states["w"]!.step
        let bad = randomTensor(shape, seed: 3)
        bad.data[5] = .nan
        opt.update(p, gradient: bad, lrScale: 1)
        bad.data[5] = .infinity
        opt.update(p, gradient: bad, lrScale: 1)
        #expect(p.value.array == before)
        #expect(opt.states["w"]!.step == stepBefore)
        #expect(opt.states["w"]!.skipped == 2)
        opt.update(p, gradient: randomTensor(shape, seed: 4), lrScale: 1)
        #expect(isFiniteTensor(p.value))
        #expect(p.value.array != before)
        // A NaN on the very first step leaves no state to checkpoint.
        let fresh = try GaLore(rank: 4)
        let q = Parameter(name: "q", role: .mlp, value: randomTensor(shape, seed: 1))
        fresh.update(q, gradient: bad, lrScale: 1)
        #expect(fresh.exportState(for: q).isEmpty)
    }

    /// The shared Adam element update (`AdamMoments`, torch style) reproduces AdamW's update
    /// as written before it was factored out, bit for bit.
    @Test func adamMomentsKeepsAdamWBitForBit() {
        let n = 1000
        let g = randomTensor([n], seed: 1), p0 = randomTensor([n], seed: 2)
        let p = p0.copy(), m = Tensor(zeros: [n]), v = Tensor(zeros: [n])
        var pr = p0.array, mr = [Float](repeating: 0, count: n), vr = mr
        let lr: Float = 0.01, b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8, wd: Float = 0.1
        for t in 1...3 {
            let bc1 = 1 - Subspace.pow(b1, Float(t)), bc2 = 1 - Subspace.pow(b2, Float(t))
            AdamW.kernel(
                p: p.data, g: g.data, m: m.data, v: v.data, vMax: nil, count: n, lr: lr, beta1: b1, beta2: b2,
                eps: eps, weightDecay: wd, stepSize: lr / bc1, bc2Sqrt: bc2.squareRoot())
            let stepSize = lr / bc1, bc2Sqrt = bc2.squareRoot(), decay = 1 - lr * wd
            for i in 0..<n {
                let gi = g[i]
                pr[i] *= decay
                let mi = mr[i] + (1 - b1) * (gi - mr[i])
                let vi = b2 * vr[i] + (1 - b2) * gi * gi
                mr[i] = mi; vr[i] = vi
                pr[i] -= stepSize * mi / (vi.squareRoot() / bc2Sqrt + eps)
            }
        }
        #expect(p.array == pr)
        #expect(m.array == mr && v.array == vr)
    }
}
