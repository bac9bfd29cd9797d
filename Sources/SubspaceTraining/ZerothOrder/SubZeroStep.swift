import Foundation
import SubspaceCore
import SubspaceModels
import SubspaceOptim

/// SubZero: random subspace zeroth-order optimization (Yu et al., 2024, "SubZero: Random
/// Subspace Zeroth-Order Optimization for Memory-Efficient LLM Fine-Tuning",
/// arXiv 2410.08989; code `zimingyy/SubZero`, `large_models/trainer.py`,
/// `zo_subspace_step`/`zo_subspace_update`).
///
/// Each trainable matrix W (m x n) has orthonormal bases U (m x r) and V (n x r), the Q
/// factors of the QR decompositions of Gaussian matrices (`Linalg.qr`), redrawn every
/// `interval` steps (at steps 0, T, 2T, ...) from their own stream; each step draws an
/// r x r core Z0 ~ N(0,1) from the step's seed, and the direction is
///
///     z = sqrt(m n / r^2) U Z0 V^T
///
/// whose squared norm is (m n / r^2) |Z0|_F^2, m n in expectation, as a dense Gaussian z's.
/// 1-D tensors take a dense Gaussian z. The two-point estimate and update are MeZO's
/// (`ZerothOrderStep`); r is clamped to min(m, n) per matrix.
///
/// State (saved in checkpoints): U and V per matrix.
public final class SubZeroStep: ZerothOrderStep, StatefulStepRule {
    public private(set) var u: [String: Tensor] = [:]
    public private(set) var v: [String: Tensor] = [:]
    let rank: Int, interval: Int

    public init(model: LlamaModel, optimizer: RoutedOptimizer, options: StepOptions) throws {
        let s = options.zerothOrder.resolved(for: .subzero)
        rank = s.rank ?? 1; interval = s.interval ?? 1
        try super.init(model: model, optimizer: optimizer, options: options, method: .subzero)
    }

    /// The rank used for a matrix of this shape.
    static func rank(_ r: Int, shape: [Int]) -> Int { min(r, shape[0], shape[1]) }

    /// The scale sqrt(m n / r^2) of a matrix's direction.
    static func scale(shape: [Int], rank r: Int) -> Float {
        Float((Double(shape[0]) * Double(shape[1])).squareRoot() / Double(r))
    }

    /// The orthonormal bases of `p` at refresh `index`.
    func drawBases(_ p: Parameter, index: Int) throws -> (u: Tensor, v: Tensor) {
        let k = Self.rank(rank, shape: p.shape)
        let s = ZerothOrderNoise.factorStream(seed: options.seed, role: "subzero.basis", index: index).split(p.name)
        let gu = ZerothOrderNoise.normalMatrix(p.shape[0], k, stream: s.split("U"))
        let gv = ZerothOrderNoise.normalMatrix(p.shape[1], k, stream: s.split("V"))
        do {
            return (try Linalg.qr(gu).q, try Linalg.qr(gv).q)
        } catch {
            throw ConfigurationError("SubZero's basis of \(p.name) failed: \(error)")
        }
    }

    override func prepare(step: Int) throws {
        for p in trainable where p.shape.count == 2 {
            guard step % interval == 0 || u[p.name] == nil else { continue }
            (u[p.name], v[p.name]) = try drawBases(p, index: step / interval)
        }
    }

    /// `T = Z0 V^T` (r x n) for this step.
    func coreTimesV(_ p: Parameter, stream: RandomStream, v vp: Tensor) -> Tensor {
        let k = vp.shape[1], cols = p.shape[1]
        let z0 = ZerothOrderNoise.normalMatrix(k, k, stream: stream.split(p.name))
        let t = Tensor(zeros: [k, cols])
        BLAS.gemm(transB: true, m: k, n: cols, k: k, a: z0.data, lda: k, b: vp.data, ldb: k, c: t.data, ldc: cols)
        return t
    }

    override func perturb(_ p: Parameter, scale: Float, stream: RandomStream) {
        guard p.shape.count == 2, let up = u[p.name], let vp = v[p.name] else { return super.perturb(p, scale: scale, stream: stream) }
        let k = up.shape[1], rows = p.shape[0], cols = p.shape[1]
        let t = coreTimesV(p, stream: stream, v: vp)
        let a = scale * Self.scale(shape: p.shape, rank: k)
        BLAS.gemm(m: rows, n: cols, k: k, alpha: a, a: up.data, lda: k, b: t.data, ldb: cols, beta: 1, c: p.value.data, ldc: cols)
    }

    public func exportState() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (k, t) in u { out["\(k)/U"] = t }
        for (k, t) in v { out["\(k)/V"] = t }
        return out
    }

    public func importState(_ state: [String: Tensor]) throws {
        var nu: [String: Tensor] = [:], nv: [String: Tensor] = [:]
        for p in trainable where p.shape.count == 2 {
            let k = Self.rank(rank, shape: p.shape)
            nu[p.name] = try StepRuleState.tensor(state, "\(p.name)/U", shape: [p.shape[0], k])
            nv[p.name] = try StepRuleState.tensor(state, "\(p.name)/V", shape: [p.shape[1], k])
        }
        try StepRuleState.noExtra(state, known: Set(nu.keys.flatMap { ["\($0)/U", "\($0)/V"] }))
        u = nu; v = nv
    }
}
