import SubspaceCore
import SubspaceModels

/// How a low-rank method chooses the subspace it projects gradients onto.
///
/// The first four are galore-torch's `proj_type` values (the SVD of the current gradient);
/// the last two are seeded random projections (Flora, VLoRP) that are regenerated rather
/// than stored. galore-torch's `full` (two-sided) type is not offered.
public enum ProjectionType: String, CaseIterable, Codable, Sendable {
    /// Project the smaller side (galore-torch's default): right (P = Vᵀ[:r, :]) when
    /// m >= n, left (P = U[:, :r]) otherwise. The moments then hold r·max(m, n) elements.
    case std
    /// Project the larger side: left when m >= n, right otherwise.
    case reverseStd = "reverse_std"
    /// Always P = U[:, :r] (m x r), R = Pᵀ G.
    case left
    /// Always P = Vᵀ[:r, :] (r x n), R = G Pᵀ.
    case right
    /// Gaussian entries N(0, 1/r), regenerated from (seed, parameter name, refresh index).
    case gaussian
    /// Rademacher entries ±1/sqrt(r), regenerated like `gaussian`.
    case rademacher

    /// Parses a command-line or config spelling: the raw values above, plus `reverse-std`
    /// and `reverseStd`.
    public init(parsing text: String) throws {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        switch t {
        case "reverse-std", "reversestd": self = .reverseStd
        default:
            guard let v = ProjectionType(rawValue: t) else {
                throw ConfigurationError(
                    "unknown projection type '\(text)'; known: \(ProjectionType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            self = v
        }
    }

    /// Whether the projection is random and regenerated from a seed instead of stored.
    public var isRandom: Bool { self == .gaussian || self == .rademacher }
}

/// A gradient projector shared by the low-rank methods (GaLore, Fira, and later GUM,
/// Q-GaLore, VLoRP): it maps an m x n gradient G to a small matrix R and maps updates in
/// that space back.
///
/// **Sides.** On the *left* side P is m x r with R = Pᵀ G (r x n) and the back projection is
/// P N; on the *right* side P is r x n with R = G Pᵀ (m x r) and the back projection is N P.
/// `std` takes the right side when m >= n and the left side otherwise, exactly galore-torch's
/// `GaLoreProjector` rule, so the projected side is always the smaller one and the moments
/// hold r·max(m, n) elements; `reverseStd`, `left` and `right` are galore-torch's other types.
/// `gaussian` and `rademacher` use the `std` side rule.
///
/// **Refresh.** `refresh(gradient:step:)` recomputes P when `step % gap == 0` or when there
/// is none yet, where `step` counts the updates already made (galore-torch passes
/// `state["step"]` before incrementing it), so the SVD runs at steps 0, T, 2T, ...
///
/// **SVD types** keep P (the first r left or right singular vectors of the gradient at the
/// last refresh). Singular vectors are only defined up to sign, and LAPACK and PyTorch may
/// choose differently; because GaLore's moments live in the projected space and are carried
/// across refreshes, the choice changes the trajectory. We fix it: after each SVD, column i of
/// U is flipped so that its entry of largest magnitude is positive, and row i of Vᵀ is
/// flipped with it (still an exact SVD). This makes runs reproducible across BLAS/LAPACK
/// builds; the parity fixtures apply the same rule to `torch.linalg.svd`. When the SVD does
/// not converge (`LinalgError.noConvergence`, GaLore issue 58) the projector falls back to
/// `Linalg.randomizedSVD` seeded from (seed, label, refresh index).
///
/// **How the singular vectors are computed** (`BasisAlgorithm`). P needs only the r leading
/// singular vectors of one side, and for `std` that side is the smaller one, k = min(m, n).
/// By default (`gram`) they are the r leading eigenvectors of the k x k Gram matrix (G Gᵀ on
/// the left, Gᵀ G on the right; one parallel product) from `ssyevr`, which computes only the
/// selected vectors: on `llama60m`'s 512 x 1376 matrices this is several times cheaper than
/// `sgesdd`'s full thin SVD, which torch.linalg.svd (galore-torch) computes and then slices.
/// The subspace is the same in exact arithmetic. In float32, squaring G costs accuracy in
/// directions with small singular values, and where singular values near the rank cut are
/// nearly equal the two methods pick different (equally valid) bases: GaLore-AdamW's 20-step
/// loss moves in the fifth digit, GaLore-Adafactor's by 7e-4 relative (its factored second
/// moment is not rotation-invariant). `svd` reproduces the references exactly.
/// The sign rule above is applied to U (on the right side through G v = σ u). `svd` is
/// the reference's full decomposition; the Gram path also falls back to it when the
/// eigensolver fails or when the projected side is the larger one (`reverseStd`, or `left`
/// / `right` against the shape).
///
/// **Random types** store nothing (`bytes == 0`): P is a pure function of
/// (`seed`, `label`, refresh index = step / gap) drawn from `RandomStream.split`, and is
/// regenerated whenever needed; `release()` drops the working copy after a step. Entries are
/// N(0, 1/r) or ±1/sqrt(r), so E[P Pᵀ] = I_m on the left side and E[Pᵀ P] = I_n on the right
/// side: `projectBack(project(G)) / scale` is an unbiased estimate of G (P is not
/// orthonormal, only nearly so when r is large).
///
/// **Degenerate gradients.** A refresh with an all-zero or non-finite gradient keeps the
/// previous P (a zero gradient has no dominant subspace, and LAPACK would reject a NaN); if
/// there is none yet, P starts as the first r coordinate axes. The optimizers decide what to
/// do with the step itself (GaLore and Fira skip a non-finite gradient entirely).
public struct Projector {
    public enum Side: String, Sendable { case left, right }

    /// How P's singular vectors are computed (see the type's notes).
    public enum BasisAlgorithm: String, Sendable, CaseIterable {
        /// The leading eigenvectors of the smaller Gram matrix (default).
        case gram
        /// The full thin SVD (`sgesdd`, then `sgesvd`), as galore-torch does.
        case svd

        public init(parsing text: String) throws {
            guard let a = BasisAlgorithm(rawValue: text.lowercased()) else {
                throw ConfigurationError("unknown SVD basis algorithm '\(text)'; known: gram, svd")
            }
            self = a
        }
    }

    public let type: ProjectionType
    /// The gradient's shape (m, n).
    public let rows: Int, cols: Int
    public let rank: Int
    /// Steps between refreshes (T).
    public let gap: Int
    /// Multiplier of `projectBack` (GaLore's scale, Fira's alpha).
    public let scale: Float
    public let side: Side
    /// Seed and label of the random stream (random types, and the randomized-SVD fallback).
    public let seed: UInt64
    public let label: String
    /// P: m x r on the left side, r x n on the right side. For random types a regenerable
    /// working copy (nil after `release()`).
    public private(set) var matrix: Tensor?
    /// The refresh index (step / gap) that produced `matrix`.
    public private(set) var refreshIndex: Int?
    /// How the SVD types compute P (default `gram`).
    public var basisAlgorithm: BasisAlgorithm = .gram
    /// A basis computed ahead for the refresh at `step` (`prepareRefreshes`), taken by that
    /// refresh. Transient: never stored in checkpoints or counted in `bytes`.
    var pending: (step: Int, basis: Tensor)?

    /// - Throws: `ConfigurationError` when the shape is not a non-empty matrix, rank is not
    ///   in 1...min(m, n) or gap is not positive.
    public init(
        type: ProjectionType = .std, shape: [Int], rank: Int, gap: Int, scale: Float = 1,
        seed: UInt64 = 0, label: String = ""
    ) throws {
        guard shape.count == 2, shape[0] > 0, shape[1] > 0 else {
            throw ConfigurationError("a projector needs a non-empty matrix, got shape \(shape)")
        }
        let m = shape[0], n = shape[1]
        guard rank > 0, rank <= min(m, n) else {
            throw ConfigurationError("projection rank must be in 1...\(min(m, n)) for a \(m)x\(n) matrix, got \(rank)")
        }
        guard gap > 0 else { throw ConfigurationError("projection update gap must be positive, got \(gap)") }
        guard scale.isFinite else { throw ConfigurationError("projection scale must be finite, got \(scale)") }
        self.type = type; rows = m; cols = n
        self.rank = rank; self.gap = gap; self.scale = scale; self.seed = seed; self.label = label
        switch type {
        case .std, .gaussian, .rademacher: side = m >= n ? .right : .left
        case .reverseStd: side = m >= n ? .left : .right
        case .left: side = .left
        case .right: side = .right
        }
    }

    /// P's shape.
    public var matrixShape: [Int] { side == .left ? [rows, rank] : [rank, cols] }
    /// R's shape (also the shape of moments kept in the projected space).
    public var projectedShape: [Int] { side == .left ? [rank, cols] : [rows, rank] }
    /// Bytes of stored projector state: P for the SVD types, 0 for the random types.
    public var bytes: Int { type.isRandom ? 0 : (matrix?.byteCount ?? 0) }
    /// What `bytes` counts once P exists, by shape: P for the SVD types, nothing for the
    /// random ones.
    public var footprint: StateFootprint { StateFootprint(projectors: type.isRandom ? [] : [.init(matrixShape)]) }

    /// Whether `refresh` at `step` would recompute P.
    public func needsRefresh(step: Int) -> Bool { matrix == nil || step % gap == 0 }

    /// Recomputes P if `step % gap == 0` or there is none (see the type's comment for the
    /// step convention and degenerate gradients). Returns whether P was recomputed.
    @discardableResult
    public mutating func refresh(gradient g: Tensor, step: Int) -> Bool {
        precondition(g.shape == [rows, cols], "projector for \(rows)x\(cols) got a gradient of shape \(g.shape)")
        guard needsRefresh(step: step) else { return false }
        let index = step / gap
        if type.isRandom {
            regenerate(step: step)
            return true
        }
        guard Self.isUsable(g) else {
            if matrix == nil { matrix = axes(); refreshIndex = index }
            return false
        }
        if let ready = pending, ready.step == step {
            pending = nil
            matrix = ready.basis
            refreshIndex = index
            return true
        }
        guard let p = singularBasis(g, index: index) else {
            if matrix == nil { matrix = axes(); refreshIndex = index }
            return false
        }
        matrix = p
        refreshIndex = index
        return true
    }

    /// A random type's P for `step` (refresh index step / gap), drawn from the seed without
    /// a gradient: what `refresh` does for these types.
    public mutating func regenerate(step: Int) {
        precondition(type.isRandom, "only the random projections are regenerated from a seed")
        let index = step / gap
        matrix = Projector.random(type, shape: matrixShape, rank: rank, stream: stream(index))
        refreshIndex = index
    }

    /// Leaves `basis` (shape `matrixShape`) as the basis the refresh at `step` takes instead
    /// of computing one: data-parallel ranks install the one a single rank computed and
    /// broadcast (`GradientProjecting.installBasis`).
    public mutating func install(_ basis: Tensor, forStep step: Int) {
        precondition(basis.shape == matrixShape, "basis of shape \(basis.shape), expected \(matrixShape)")
        pending = (step, basis)
    }

    /// Computes the SVD bases that `projectors` will need at their refreshes with these
    /// gradients and steps, spread over the cores (`Parallel.workers` at a time), and leaves
    /// each as the projector's `pending` basis for that refresh to take. Projectors not due,
    /// already holding a basis for that step (`install`), random types and degenerate
    /// gradients are left alone (their refresh does its usual
    /// work). The refresh SVDs are single-threaded LAPACK, so a step that refreshes many
    /// matrices (every T steps) runs them side by side instead of one after another.
    public static func prepareRefreshes(_ projectors: inout [Projector], gradients: [Tensor], steps: [Int]) {
        precondition(projectors.count == gradients.count && gradients.count == steps.count)
        let due = projectors.indices.filter { i in
            let p = projectors[i]
            return !p.type.isRandom && p.needsRefresh(step: steps[i]) && gradients[i].shape == [p.rows, p.cols]
                && p.pending?.step != steps[i]
        }
        if due.count < 2 { return }
        let results = UnsafeMutablePointer<Tensor?>.allocate(capacity: due.count)
        results.initialize(repeating: nil, count: due.count)
        defer { results.deinitialize(count: due.count); results.deallocate() }
        let snapshot = projectors, workers = min(Parallel.workers, due.count)
        Parallel.perform(workers) { w in
            for j in stride(from: w, to: due.count, by: workers) {
                let i = due[j], g = gradients[i]
                guard isUsable(g) else { continue }
                results[j] = snapshot[i].singularBasis(g, index: steps[i] / snapshot[i].gap)
            }
        }
        for (j, i) in due.enumerated() {
            if let b = results[j] { projectors[i].pending = (steps[i], b) }
        }
    }

    /// Drops a random type's working copy of P (it is regenerated on the next refresh); no
    /// effect for the SVD types, whose P is state.
    public mutating func release() {
        if type.isRandom { matrix = nil }
    }

    /// R = Pᵀ G (left) or G Pᵀ (right). Requires a refreshed projector.
    public func project(_ g: Tensor) -> Tensor {
        let p = basis()
        precondition(g.shape == [rows, cols], "projector for \(rows)x\(cols) got shape \(g.shape)")
        return side == .left ? p.matmul(g, transposeSelf: true) : g.matmul(p, transposeOther: true)
    }

    /// `scale` · P R (left) or `scale` · R P (right): an m x n tensor.
    public func projectBack(_ r: Tensor) -> Tensor {
        let out = Tensor(zeros: [rows, cols])
        addBack(r, to: out, alpha: scale)
        return out
    }

    /// `c += alpha · P R` (left) or `c += alpha · R P` (right), without `scale` and without an
    /// m x n temporary: callers fold `scale` and their step size into `alpha`.
    public func addBack(_ r: Tensor, to c: Tensor, alpha: Float) {
        let p = basis()
        precondition(r.shape == projectedShape, "projected tensor has shape \(r.shape), expected \(projectedShape)")
        precondition(c.shape == [rows, cols], "target has shape \(c.shape), expected [\(rows), \(cols)]")
        if side == .left {
            BLAS.gemm(m: rows, n: cols, k: rank, alpha: alpha, a: p.data, lda: rank, b: r.data, ldb: cols, beta: 1, c: c.data, ldc: cols)
        } else {
            BLAS.gemm(m: rows, n: cols, k: rank, alpha: alpha, a: r.data, lda: rank, b: p.data, ldb: cols, beta: 1, c: c.data, ldc: cols)
        }
    }

    /// The stored state: `ortho_matrix` (galore-torch's name for P) for the SVD types once P
    /// exists; nothing for the random types.
    public func encode() -> [String: Tensor] {
        guard !type.isRandom, let matrix else { return [:] }
        return ["ortho_matrix": matrix]
    }

    /// Restores P from `encode`'s output (`ortho_matrix` of shape `matrixShape`; for the
    /// random types the key must be absent). Only the projector's keys are looked at.
    public mutating func decode(_ t: [String: Tensor], for parameter: Parameter) throws {
        if type.isRandom {
            if t["ortho_matrix"] != nil {
                throw OptimizerStateError.unexpectedTensor(parameter: parameter.name, key: "ortho_matrix")
            }
            matrix = nil; refreshIndex = nil
            return
        }
        let p = try OptimizerStateError.tensor(t, "ortho_matrix", shape: matrixShape, parameter: parameter)
        for i in 0..<p.count where !p.data[i].isFinite {
            throw OptimizerStateError.invalidValue(parameter: parameter.name, key: "ortho_matrix", reason: "not finite")
        }
        matrix = p
        refreshIndex = nil
    }

    /// The keys `encode` may produce.
    public static let stateKeys = ["ortho_matrix"]

    // MARK: Internals

    private func basis() -> Tensor {
        guard let matrix else { preconditionFailure("projector used before refresh(gradient:step:)") }
        return matrix
    }

    private func stream(_ index: Int) -> RandomStream {
        RandomStream(seed: seed).split(label, index: UInt64(max(0, index)))
    }

    /// The first r coordinate axes (a valid orthonormal P).
    private func axes() -> Tensor {
        let p = Tensor(zeros: matrixShape)
        for i in 0..<rank { p.data[side == .left ? i * rank + i : i * cols + i] = 1 }
        return p
    }

    /// P from the r leading singular vectors of `g`, sign-normalized: by the Gram matrix
    /// when `basisAlgorithm` is `gram` and the projected side is the smaller one, else by the
    /// SVD (randomized if LAPACK does not converge, or if `randomized`).
    func singularBasis(_ g: Tensor, index: Int, randomized: Bool = false) -> Tensor? {
        if !randomized, basisAlgorithm == .gram, let p = gramBasis(g) { return p }
        var factors: (u: Tensor, s: [Float], vt: Tensor)
        func fallback() -> (u: Tensor, s: [Float], vt: Tensor)? {
            var rng = stream(index).split("randomized-svd")
            return try? Linalg.randomizedSVD(g, rank: rank, rng: &rng)
        }
        if randomized {
            guard let f = fallback() else { return nil }
            factors = f
        } else {
            do {
                factors = try Linalg.svd(g)
            } catch LinalgError.noConvergence {
                guard let f = fallback() else { return nil }
                factors = f
            } catch {
                return nil
            }
        }
        let (u, _, vt) = factors
        let k = u.shape[1], m = rows, n = cols
        let p = Tensor(uninitialized: matrixShape)
        for i in 0..<rank {
            let sign = Self.dominantSign(u, column: i)
            if side == .left {
                for row in 0..<m { p.data[row * rank + i] = sign * u.data[row * k + i] }
            } else {
                for col in 0..<n { p.data[i * n + col] = sign * vt.data[i * n + col] }
            }
        }
        return p
    }

    /// Whether a gradient can define a basis: finite, and not all zero (see the type's notes
    /// on degenerate gradients).
    static func isUsable(_ g: Tensor) -> Bool {
        var nonZero = false
        for i in 0..<g.count {
            let x = g.data[i]
            if !x.isFinite { return false }
            if x != 0 { nonZero = true }
        }
        return nonZero
    }

    /// Sign of the largest-magnitude entry of column `column` of `u` (first one on ties).
    static func dominantSign(_ u: Tensor, column: Int) -> Float {
        let m = u.shape[0], k = u.shape[1]
        var best: Float = -1, sign: Float = 1
        for row in 0..<m {
            let x = u.data[row * k + column]
            if abs(x) > best { best = abs(x); sign = x < 0 ? -1 : 1 }
        }
        return sign
    }

    /// P from the r leading eigenvectors of the Gram matrix of the projected side, or nil
    /// when that side is the larger one or the eigensolver fails (the caller then takes the
    /// SVD). Left: G Gᵀ's eigenvectors are U's columns. Right: Gᵀ G's are V's columns, and
    /// the sign rule reads U's columns as G V (σ > 0 does not change a sign).
    func gramBasis(_ g: Tensor) -> Tensor? {
        let m = rows, n = cols
        let k = side == .left ? m : n
        guard k <= (side == .left ? n : m) else { return nil }
        let gram = Tensor(uninitialized: [k, k])
        if side == .left {
            BLAS.gemm(transB: true, m: m, n: m, k: n, a: g.data, lda: n, b: g.data, ldb: n, c: gram.data, ldc: m)
        } else {
            BLAS.gemm(transA: true, m: n, n: n, k: m, a: g.data, lda: n, b: g.data, ldb: n, c: gram.data, ldc: n)
        }
        guard let (_, vectors) = try? Linalg.topEigenvectors(symmetric: gram, count: rank) else { return nil }
        withExtendedLifetime(g) {}
        let p = Tensor(uninitialized: matrixShape)
        if side == .left {
            for i in 0..<rank {
                let sign = Self.dominantSign(vectors, column: i)
                for row in 0..<m { p.data[row * rank + i] = sign * vectors.data[row * rank + i] }
            }
        } else {
            let u = g.matmul(vectors)  // m x r: column i is σ_i u_i
            for i in 0..<rank {
                let sign = Self.dominantSign(u, column: i)
                for col in 0..<n { p.data[i * n + col] = sign * vectors.data[col * rank + i] }
            }
        }
        return p
    }

    static func random(_ type: ProjectionType, shape: [Int], rank: Int, stream: RandomStream) -> Tensor {
        var rng = stream
        let p = Tensor(uninitialized: shape)
        let s = 1 / Float(rank).squareRoot()
        if type == .gaussian {
            rng.fillNormal(p, std: s)
        } else {
            for i in 0..<p.count { p.data[i] = s * rng.sign() }
        }
        return p
    }
}
