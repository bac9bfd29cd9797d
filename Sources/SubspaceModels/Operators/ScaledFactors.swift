import SubspaceCore

/// The scaled low-rank product of a slot, `W_L = s B A` with A `[r, in]` and B `[out, r]`:
/// its map `y (+)= s (x A^T) B^T`, backward pass, dense product and refactorization, shared
/// by the operators built on it (`LoRALinear`'s adapter, `LowRankLinear`, `SLTrainLinear`).
///
/// A training forward keeps t = x A^T `[rows, r]` for B's gradient (recomputed from the
/// input if absent); the gradients are
///
///     u = s dy B  [rows, r],   dA += u^T x,   dB += s dy^T t,   dx (+)= u A.
final class ScaledFactors {
    let a: Parameter
    let b: Parameter
    let scaling: Float
    let rank: Int
    let inFeatures: Int
    let outFeatures: Int
    private var saved = SavedRows()

    init(a: Parameter, b: Parameter, scaling: Float) {
        precondition(a.shape.count == 2 && b.shape.count == 2 && b.shape[1] == a.shape[0], "factor shapes disagree: A \(a.shape), B \(b.shape)")
        self.a = a; self.b = b; self.scaling = scaling
        rank = a.shape[0]; inFeatures = a.shape[1]; outFeatures = b.shape[0]
    }

    var activationBytes: Int { saved.byteCount }
    func releaseActivations() { saved.release() }

    /// `y = s (x A^T) B^T`, or `y +=` when `accumulate`.
    func forward(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool, mode: ForwardMode) {
        if rows == 0 { return }
        let t = saved.buffer(rows: rows, columns: rank, mode: mode)
        Linear.forward(x: x, weight: a.value.data, y: t.data, rows: rows, inFeatures: inFeatures, outFeatures: rank)
        BLAS.gemm(
            transB: true, m: rows, n: outFeatures, k: rank, alpha: scaling, a: t.data, lda: rank,
            b: b.value.data, ldb: rank, beta: accumulate ? 1 : 0, c: y, ldc: outFeatures)
    }

    /// `dx = (s dy B) A`, or `dx +=` when `accumulate`.
    func backwardInput(_ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool) {
        if rows == 0 { return }
        let u = scaledProjection(dy, b: b, scaling: scaling, rows: rows)
        Linear.backwardInput(dy: u.data, weight: a.value.data, dx: dx, rows: rows, inFeatures: inFeatures, outFeatures: rank, accumulateInput: accumulate)
    }

    /// dA += (s dy B)^T x and dB += s dy^T (x A^T), for whichever factor trains.
    func accumulateGradients(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int) {
        if rows == 0 { return }
        if a.requiresGrad {
            let u = scaledProjection(dy, b: b, scaling: scaling, rows: rows)
            Linear.backwardWeight(dy: u.data, x: x, dWeight: a.gradient().data, rows: rows, inFeatures: inFeatures, outFeatures: rank)
        }
        if b.requiresGrad {
            let t = saved.kept(rows: rows, columns: rank) ?? projection(x, a: a, rows: rows)
            BLAS.gemm(
                transA: true, m: outFeatures, n: rank, k: rows, alpha: scaling, a: dy, lda: outFeatures,
                b: t.data, ldb: rank, beta: 1, c: b.gradient().data, ldc: rank)
        }
    }

    /// w += sign * s B A (w is `[out, in]`).
    func addProduct(to w: Tensor, sign: Float = 1) {
        precondition(w.shape == [outFeatures, inFeatures])
        BLAS.gemm(
            m: outFeatures, n: inFeatures, k: rank, alpha: sign * scaling, a: b.value.data, lda: rank,
            b: a.value.data, ldb: inFeatures, beta: 1, c: w.data, ldc: inFeatures)
    }

    /// Rebalances B A = U_r S_r V_r^T as B <- U_r sqrt(S_r), A <- sqrt(S_r) V_r^T (see
    /// `Refactorizable`). Computed from thin QRs, B = Q_B R_B and A^T = Q_A R_A, and the SVD
    /// of the r x r core R_B R_A^T = U_c S V_c^T: then B A = (Q_B U_c) S (Q_A V_c)^T, which
    /// costs O((out + in) r^2 + r^3) instead of an SVD of the out x in product.
    func refactorize() throws {
        guard rank <= min(inFeatures, outFeatures) else {
            throw ConfigurationError("cannot refactorize \(b.name): rank \(rank) exceeds min(\(outFeatures), \(inFeatures))")
        }
        let (qb, rb) = try Linalg.qr(b.value)  // [out, r], [r, r]
        let (qa, ra) = try Linalg.qr(a.value.transposed())  // [in, r], [r, r]
        let r = rank
        let core = Tensor(zeros: [r, r])
        BLAS.gemm(transB: true, m: r, n: r, k: r, a: rb.data, lda: r, b: ra.data, ldb: r, beta: 0, c: core.data, ldc: r)
        let (u, s, vt) = try Linalg.svd(core)
        // B <- Q_B U_c sqrt(S); A <- sqrt(S) V_c^T Q_A^T.
        BLAS.gemm(m: outFeatures, n: r, k: r, a: qb.data, lda: r, b: u.data, ldb: r, beta: 0, c: b.value.data, ldc: r)
        BLAS.gemm(transB: true, m: r, n: inFeatures, k: r, a: vt.data, lda: r, b: qa.data, ldb: r, beta: 0, c: a.value.data, ldc: inFeatures)
        let root = s.map { $0.squareRoot() }
        for i in 0..<outFeatures { for j in 0..<r { b.value.data[i * r + j] *= root[j] } }
        for j in 0..<r { for c in 0..<inFeatures { a.value.data[j * inFeatures + c] *= root[j] } }
    }
}

/// A `[rows, columns]` buffer an operator keeps from a training forward for its backward.
struct SavedRows {
    private var tensor: Tensor?
    var byteCount: Int { tensor?.byteCount ?? 0 }

    /// The kept buffer, reallocated to this shape (training), or a fresh one (inference).
    mutating func buffer(rows: Int, columns: Int, mode: ForwardMode) -> Tensor {
        guard mode == .training else { return Tensor(zeros: [rows, columns]) }
        if tensor?.shape != [rows, columns] { tensor = Tensor(zeros: [rows, columns]) }
        return tensor!
    }

    /// The kept buffer if it has this shape.
    func kept(rows: Int, columns: Int) -> Tensor? { tensor?.shape == [rows, columns] ? tensor : nil }

    mutating func release() { tensor = nil }
}

/// u = s dy B `[rows, r]` (B `[out, r]`), the output gradient in a factor's coordinates.
func scaledProjection(_ dy: UnsafePointer<Float>, b: Parameter, scaling: Float, rows: Int) -> Tensor {
    let (out, r) = (b.shape[0], b.shape[1])
    let u = Tensor(zeros: [rows, r])
    BLAS.gemm(m: rows, n: r, k: out, alpha: scaling, a: dy, lda: out, b: b.value.data, ldb: r, beta: 0, c: u.data, ldc: r)
    return u
}

/// t = x A^T `[rows, r]` (A `[r, in]`), a new buffer.
func projection(_ x: UnsafePointer<Float>, a: Parameter, rows: Int) -> Tensor {
    let t = Tensor(zeros: [rows, a.shape[0]])
    Linear.forward(x: x, weight: a.value.data, y: t.data, rows: rows, inFeatures: a.shape[1], outFeatures: a.shape[0])
    return t
}

/// torch's `kaiming_uniform_(a = sqrt(5))` on a `[out, fan_in]` weight, as `nn.Linear` and
/// PEFT's `lora_A` initialise: gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in) =
/// 1 / sqrt(fan_in).
func fillKaimingUniform(_ t: Tensor, fanIn: Int, rng: inout RandomStream) {
    let bound = 1 / Float(fanIn).squareRoot()
    rng.fillUniform(t, -bound, bound)
}

extension ParameterInitializer {
    /// A Kaiming-uniform parameter (`fillKaimingUniform`) drawn from its own stream.
    func kaimingUniform(_ spec: ParameterSpec) -> Parameter {
        let t = Tensor(uninitialized: spec.shape)
        var r = root.split(spec.name)
        fillKaimingUniform(t, fanIn: spec.shape[1], rng: &r)
        return Parameter(spec, value: t)
    }

    /// The value a dense slot's `<path>.weight` would get, N(0, std^2) from that name's
    /// stream, as a frozen base `spec` of the same shape: an adapter's base then equals the
    /// dense model's weight bit for bit.
    func denseBase(_ spec: ParameterSpec, for slot: LinearSlotSpec) -> Parameter {
        let w = Tensor(uninitialized: spec.shape)
        var r = root.split(slot.path + ".weight")
        r.fillNormal(w, std: std)
        return Parameter(spec, value: w)
    }
}

extension LinearSlotSpec {
    /// Refuses a factor rank outside 1...min(in, out) (a larger rank adds parameters and no
    /// expressiveness, and cannot be refactorized).
    func checkRank(_ rank: Int, method: String) throws {
        guard rank >= 1, rank <= min(inFeatures, outFeatures) else {
            throw ConfigurationError("the \(method) rank \(rank) of \(path) must be between 1 and min(\(outFeatures), \(inFeatures)) = \(min(inFeatures, outFeatures))")
        }
    }
}
