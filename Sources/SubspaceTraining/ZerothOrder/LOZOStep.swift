import SubspaceCore
import SubspaceModels
import SubspaceOptim

/// LOZO and LOZO-M: zeroth-order steps with low-rank directions (Chen et al., ICLR 2025,
/// "Enhancing Zeroth-order Fine-tuning for Language Models with Low-rank Structures",
/// arXiv 2410.07698; code `optsuite/LOZO`, `large_models/LOZOtrainer.py`).
///
/// For each trainable matrix W (m x n) the direction is z = U V^T with U ~ N(0,1)^{m x r}
/// drawn from the step's seed and V ~ N(0,1)^{n x r} kept for `interval` (nu) steps and
/// redrawn at steps 0, nu, 2 nu, ... ("lazy sampling"); 1-D tensors take a dense Gaussian
/// z as in MeZO. The update is `W <- W - lr (c U V^T + wd W)` (no 1/r factor, as the code).
///
/// V comes from its own stream (`ZerothOrderNoise.factorStream`, role `lozo.V`), not the
/// step's: the reference draws V and then U from the step's seed on refresh steps but
/// redraws only U in the update, so on those steps it updates along a different U from the
/// one it evaluated. Here U is the same in evaluation and update.
///
/// LOZO-M (`momentum` beta > 0) keeps N (m x r) per matrix:
/// `N <- beta N + (1 - beta) c U; W <- W - lr (N V^T + wd W)`; on a V refresh the momentum
/// is carried into the new basis first, `N <- N V_old^T V_new / n` (V^T V ~ n I). 1-D tensors
/// take the plain update (their momentum would be a dense buffer; the paper's is for the
/// matrices).
///
/// State (saved in checkpoints): V per matrix (n x r) and, for LOZO-M, N (m x r).
public final class LOZOStep: ZerothOrderStep, StatefulStepRule {
    /// Per matrix name: the kept V and the momentum N.
    public private(set) var v: [String: Tensor] = [:]
    public private(set) var n: [String: Tensor] = [:]
    let rank: Int, interval: Int, momentum: Float

    public init(model: LlamaModel, optimizer: RoutedOptimizer, options: StepOptions, rule: StepRuleName = .lozo) throws {
        let s = options.zerothOrder.resolved(for: rule)
        rank = s.rank ?? 1; interval = s.interval ?? 1; momentum = s.momentum ?? 0
        try super.init(model: model, optimizer: optimizer, options: options, method: rule)
    }

    /// The rank used for a matrix of this shape.
    static func rank(_ r: Int, shape: [Int]) -> Int { min(r, shape[0], shape[1]) }

    /// V of `p` at refresh `index`.
    func drawV(_ p: Parameter, index: Int) -> Tensor {
        let s = ZerothOrderNoise.factorStream(seed: options.seed, role: "lozo.V", index: index).split(p.name)
        return ZerothOrderNoise.normalMatrix(p.shape[1], Self.rank(rank, shape: p.shape), stream: s)
    }

    /// U of `p` at this step.
    func drawU(_ p: Parameter, stream: RandomStream) -> Tensor {
        ZerothOrderNoise.normalMatrix(p.shape[0], Self.rank(rank, shape: p.shape), stream: stream.split(p.name))
    }

    override func prepare(step: Int) throws {
        for p in trainable where p.shape.count == 2 {
            let refresh = step % interval == 0
            guard refresh || v[p.name] == nil else { continue }
            let fresh = drawV(p, index: step / interval)
            if momentum > 0, refresh, let old = v[p.name], let mom = n[p.name] {
                // N <- N (V_old^T V_new) / n
                let k = fresh.shape[1], cols = p.shape[1]
                let proj = Tensor(zeros: [k, k])
                BLAS.gemm(transA: true, m: k, n: k, k: cols, alpha: 1 / Float(cols), a: old.data, lda: k, b: fresh.data, ldb: k, c: proj.data, ldc: k)
                let carried = Tensor(zeros: mom.shape)
                BLAS.gemm(m: mom.shape[0], n: k, k: k, a: mom.data, lda: k, b: proj.data, ldb: k, c: carried.data, ldc: k)
                n[p.name] = carried
            }
            v[p.name] = fresh
        }
    }

    override func perturb(_ p: Parameter, scale: Float, stream: RandomStream) {
        guard p.shape.count == 2, let vp = v[p.name] else { return super.perturb(p, scale: scale, stream: stream) }
        ZerothOrderNoise.addProduct(p.value, alpha: scale, drawU(p, stream: stream), vp)
    }

    override func sgdUpdate(_ p: Parameter, c: Float, lr: Float, stream: RandomStream) {
        guard momentum > 0, p.shape.count == 2, let vp = v[p.name] else { return super.sgdUpdate(p, c: c, lr: lr, stream: stream) }
        let u = drawU(p, stream: stream)
        let mom = n[p.name] ?? Tensor(zeros: u.shape)
        for i in 0..<mom.count { mom.data[i] = momentum * mom.data[i] + (1 - momentum) * c * u.data[i] }
        n[p.name] = mom
        ZerothOrderNoise.decay(p, lr: lr, weightDecay: weightDecay)
        ZerothOrderNoise.addProduct(p.value, alpha: -lr, mom, vp)
    }

    public func exportState() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (k, t) in v { out["\(k)/V"] = t }
        for (k, t) in n { out["\(k)/N"] = t }
        return out
    }

    public func importState(_ state: [String: Tensor]) throws {
        var nv: [String: Tensor] = [:], nn: [String: Tensor] = [:]
        for p in trainable where p.shape.count == 2 {
            let k = Self.rank(rank, shape: p.shape)
            nv[p.name] = try StepRuleState.tensor(state, "\(p.name)/V", shape: [p.shape[1], k])
            if momentum > 0, state["\(p.name)/N"] != nil {
                nn[p.name] = try StepRuleState.tensor(state, "\(p.name)/N", shape: [p.shape[0], k])
            }
        }
        try StepRuleState.noExtra(state, known: Set(nv.keys.map { "\($0)/V" } + nn.keys.map { "\($0)/N" }))
        v = nv; n = nn
    }
}
